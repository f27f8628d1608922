/* kupool-mock: the transport demo of the Go original (SPEC §1). `srv` greets each client with
 * "hello from server" five times and closes; `cli` prints every message it receives, one line
 * each on stdout, and exits when the server closes. TCP frames messages with "\n", WebSocket
 * sends each as one text message (src/ws.c). */
#ifndef KM_MOCK_H
#define KM_MOCK_H

#include <stddef.h>

#define KM_GREETING "hello from server"
#define KM_GREETINGS 5

typedef enum km_proto { KM_TCP, KM_WS } km_proto;

/* What `srv` listens on: host "" means every IPv4 interface, port 0 an ephemeral port. */
typedef struct km_listen {
    km_proto proto;
    char host[256];
    int port;
} km_listen;

/* What `cli` dials. */
typedef struct km_target {
    km_proto proto;
    char host[256];        /* for name resolution, without IPv6 brackets */
    int port;
    char host_header[300]; /* WebSocket Host header: host[:port], IPv6 in brackets */
    char path[1024];       /* WebSocket request path, starts with '/' */
} km_target;

/* Serve until SIGINT/SIGTERM. Returns the exit status (0, or 1 when it cannot listen). */
int km_server_run(const km_listen *listen);

/* Dial, print what arrives, return the exit status: 0 when the server closed the connection
 * cleanly, 1 when it could not connect or the connection failed. */
int km_client_run(const km_target *target);

/* The module name in log lines: "ws.server", "tcp.client", ... */
const char *km_module(km_proto proto, int server);

#endif
