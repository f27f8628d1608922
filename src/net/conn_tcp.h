/* The plain TCP connection (conn.h) over a libuv uv_tcp_t. Its struct is public so an owner can
 * embed it in its own allocation (an idle session is one allocation: session and connection);
 * only conn_tcp.c touches its fields. */
#ifndef KP_CONN_TCP_H
#define KP_CONN_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "conn.h"

/* The loop's one read buffer: one read at a time runs on the loop thread, and the owner copies
 * out whatever it keeps before on_read returns, so every connection reads into it. */
typedef struct kp_read_buf {
    char *data;
    size_t size;
    bool busy;
} kp_read_buf;

typedef struct kp_conn_tcp {
    kp_conn base; /* first: a kp_conn * is a kp_conn_tcp * */
    uv_tcp_t tcp;
    kp_read_buf *read_buf; /* borrowed from the server */
    uint32_t max_queued;   /* the slow-reader bound on queued bytes */
    bool closing;
} kp_conn_tcp;

/* Accepts the pending connection of `listener` into `t`, which the caller allocated and keeps
 * until on_closed. Bind the conn (kp_conn_bind) before calling: when the accept fails, the conn
 * is closed and on_closed follows. Returns 0 or a KP_E*. */
int kp_conn_tcp_accept(kp_conn_tcp *t, uv_stream_t *listener, kp_read_buf *read_buf,
                       size_t max_queued);

/* Socket options for a session: no Nagle delay, and a kernel send buffer of `sndbuf` bytes. */
void kp_conn_tcp_tune(kp_conn_tcp *t, int sndbuf);

#endif
