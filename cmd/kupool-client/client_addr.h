/* Addresses the client understands: where the server is (-addr) and which local addresses the
 * load generator binds its connections to (-src).
 *
 * -addr forms (SPEC §7): "host:port", "[v6]:port", "tcp://host:port", "ws://host[:port]/path",
 * "wss://host[:port]/path", "tls://host:port" (the TCP protocol over TLS). A bare host:port is TCP: unlike the Go original, it is not run through
 * a URL parser that mistakes "127.0.0.1" for a URL scheme. */
#ifndef KC_CLIENT_ADDR_H
#define KC_CLIENT_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum kc_scheme { KC_SCHEME_TCP = 0, KC_SCHEME_WS, KC_SCHEME_WSS, KC_SCHEME_TLS } kc_scheme;

#define KC_HOST_MAX 256
#define KC_PATH_MAX 1024

typedef struct kc_addr {
    kc_scheme scheme;
    char host[KC_HOST_MAX]; /* without brackets; "127.0.0.1" for ":port" */
    int port;               /* 1..65535; ws defaults to 80, wss to 443 */
    char path[KC_PATH_MAX]; /* WebSocket request target, "/" when none was given; "" for TCP */
} kc_addr;

/* Parses `text` into `out`. Returns 0, or KP_EINVAL with *why set to a static reason. */
int kc_addr_parse(const char *text, kc_addr *out, const char **why);

/* Writes the WebSocket Host header value: "host:port", "[v6]:port" for an IPv6 literal.
 * Returns 0 or KP_EINVAL when it does not fit in cap bytes. */
int kc_addr_host_header(const kc_addr *a, char *buf, size_t cap);

/* Resolves a->host (a name or a literal; the first IPv4 or IPv6 address getaddrinfo returns)
 * with a->port into *out. Blocks: call it before the loop runs. Returns 0 or KP_EINVAL with *why
 * set to gai_strerror's text. */
int kc_addr_resolve(const kc_addr *a, struct sockaddr_storage *out, const char **why);

/* "tcp", "ws", "wss" or "tls". */
const char *kc_scheme_name(kc_scheme scheme);

/* An inclusive range of IPv4 source addresses, host byte order. */
typedef struct kc_src_range {
    uint32_t first, last;
} kc_src_range;

/* Parses "A.B.C.D" or "A.B.C.D-E.F.G.H" (first <= last, at most 65536 addresses). Returns 0 or
 * KP_EINVAL with *why set. */
int kc_src_range_parse(const char *text, kc_src_range *out, const char **why);

/* Number of addresses in the range. */
uint32_t kc_src_range_count(const kc_src_range *r);

#endif
