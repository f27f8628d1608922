/* kupool-mock srv: one libuv loop, one listener, a connection list. Each client gets the five
 * greetings as soon as it can take them (TCP: at accept; WebSocket: once the upgrade is done),
 * then the server closes: TCP with a shutdown after the last line, WebSocket with a close frame
 * (1000) and the TCP close once the client's close frame came back.
 *
 * Ownership: a connection owns its two handles (socket and deadline timer), its kp_ws and the
 * bytes ws.c produced that are not yet handed to uv_write; a write request owns its bytes until
 * its callback. A connection is freed in one place, when both handles have closed. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "kupool/error.h"
#include "log.h"
#include "mock.h"
#include "net_addr.h"
#include "ws.h"

#define LISTEN_BACKLOG 128
#define READ_BUF_SIZE (64 * 1024)
#define MAX_MSG 4096                 /* what a client may send us in one message */
#define HANDSHAKE_TIMEOUT_MS 10000   /* a connection that has not finished by then is dropped */
#define CLOSE_TIMEOUT_MS 5000        /* how long a WebSocket client has to answer our close */

typedef struct mock_server mock_server;

typedef struct mock_conn {
    uv_tcp_t tcp;
    uv_timer_t deadline;
    mock_server *srv;
    struct mock_conn *prev, *next;
    kp_ws *ws;  /* NULL for TCP */
    char *out;  /* bytes from ws.c for the next uv_write */
    size_t out_len, out_cap;
    int handles; /* open handles; the connection is freed when the last one closes */
    bool closing;   /* uv_close was called */
    bool finishing; /* shutdown requested: nothing more is written */
    bool greeted;   /* the greetings (and, for WebSocket, our close frame) are out */
    char peer[64];
} mock_conn;

struct mock_server {
    uv_loop_t *loop;
    const km_listen *cfg;
    const char *module;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    mock_conn *conns;
    char *read_buf; /* one read at a time on the loop: shared by every connection */
    bool read_buf_busy;
    unsigned long long served;
    bool stopping;
};

typedef struct write_req {
    uv_write_t req;
    mock_conn *conn;
    char *bytes;
} write_req;

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h)
{
    mock_conn *c = h->data;
    if (--c->handles > 0)
        return;
    kp_ws_free(c->ws);
    free(c->out);
    free(c);
}

static void conn_close(mock_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = true;
    mock_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    KP_INFO(s->module, "client closed", KP_QSTR("peer", c->peer), KP_QSTR("reason", why));
    uv_timer_stop(&c->deadline);
    uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    mock_conn *c = wr->conn;
    free(wr->bytes);
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c, uv_strerror(status));
}

/* Hands what is pending to uv_write; the write request takes the buffer. */
static void flush_out(mock_conn *c)
{
    if (c->out_len == 0 || c->closing)
        return;
    write_req *wr = malloc(sizeof(*wr));
    if (!wr) {
        conn_close(c, "out of memory");
        return;
    }
    wr->conn = c;
    wr->bytes = c->out;
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)c->out_len);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    wr->req.data = c;
    int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc != 0) {
        free(wr->bytes);
        free(wr);
        conn_close(c, uv_strerror(rc));
    }
}

static int append_out(mock_conn *c, const char *data, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + len)
            cap *= 2;
        char *grown = realloc(c->out, cap);
        if (!grown)
            return KP_ENOMEM;
        c->out = grown;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    mock_conn *c = req->data;
    free(req);
    conn_close(c, status == 0 ? "done" : uv_strerror(status));
}

/* Closes once everything written so far has left: the client reads its greetings first. */
static void conn_finish(mock_conn *c)
{
    if (c->closing || c->finishing)
        return;
    flush_out(c);
    if (c->closing)
        return;
    c->finishing = true;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_close(c, "out of memory");
        return;
    }
    req->data = c;
    int rc = uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown);
    if (rc != 0) {
        free(req);
        conn_close(c, uv_strerror(rc));
    }
}

static void on_deadline(uv_timer_t *t)
{
    mock_conn *c = t->data;
    conn_close(c, "timed out");
}

/* ---- WebSocket: ws.c's callbacks ---- */

static int ws_send(void *user, const char *data, size_t len)
{
    mock_conn *c = user;
    if (c->closing || c->finishing)
        return -1;
    return append_out(c, data, len) == 0 ? 0 : -1;
}

static void ws_on_open(void *user)
{
    mock_conn *c = user;
    for (int i = 0; i < KM_GREETINGS; i++)
        if (kp_ws_send_text(c->ws, KM_GREETING, strlen(KM_GREETING)) != 0)
            return; /* the transport is gone: on_close follows from kp_ws_feed */
    kp_ws_close(c->ws, 1000, "bye");
    c->greeted = true;
    c->srv->served++;
    uv_timer_start(&c->deadline, on_deadline, CLOSE_TIMEOUT_MS, 0); /* for the client's close */
}

static void ws_on_text(void *user, const char *msg, size_t len)
{
    mock_conn *c = user;
    /* The message is the client's bytes: a length-bounded field, quoted by the text format
     * only when it needs to be. */
    KP_INFO(c->srv->module, "receive message", KP_QSTR("peer", c->peer), KP_STRN("msg", msg, len));
}

static void ws_on_close(void *user, uint16_t code, const char *why)
{
    mock_conn *c = user;
    KP_DEBUG(c->srv->module, "websocket closed", KP_QSTR("peer", c->peer), KP_UINT("code", code),
             KP_QSTR("reason", why));
    conn_finish(c);
}

static const kp_ws_callbacks ws_callbacks = {
    .send = ws_send,
    .on_text = ws_on_text,
    .on_open = ws_on_open,
    .on_close = ws_on_close,
};

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mock_server *s = ((mock_conn *)h->data)->srv;
    if (s->read_buf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    s->read_buf_busy = true;
    *buf = uv_buf_init(s->read_buf, READ_BUF_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    mock_conn *c = stream->data;
    mock_server *s = c->srv;
    if (buf->base == s->read_buf)
        s->read_buf_busy = false;
    if (nread == UV_EOF && c->finishing)
        return; /* a client that half-closed still gets what is queued; the shutdown ends it */
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (!c->ws) /* a TCP client has nothing to say to us */
        return;
    kp_ws_feed(c->ws, buf->base, (size_t)nread); /* the end arrives through ws_on_close */
    flush_out(c);
}

/* ---- accepting ---- */

static void peer_name(uv_tcp_t *tcp, char *out, size_t cap)
{
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&sa, &len) == 0)
        kp_format_sockaddr((const struct sockaddr *)&sa, out, cap);
    else
        snprintf(out, cap, "?:0");
}

static void greet_tcp(mock_conn *c)
{
    for (int i = 0; i < KM_GREETINGS; i++)
        if (append_out(c, KM_GREETING "\n", strlen(KM_GREETING) + 1) != 0) {
            conn_close(c, "out of memory");
            return;
        }
    c->greeted = true;
    c->srv->served++;
    conn_finish(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    mock_server *s = listener->data;
    if (status < 0) {
        KP_WARN(s->module, "accept failed", KP_QSTR("error", uv_strerror(status)));
        return;
    }
    mock_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        KP_ERROR(s->module, "out of memory accepting a connection");
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->deadline);
    c->tcp.data = c->deadline.data = c;
    c->handles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        conn_close(c, uv_strerror(rc));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(&c->tcp, c->peer, sizeof(c->peer));
    KP_INFO(s->module, "client connected", KP_QSTR("peer", c->peer));
    uv_timer_start(&c->deadline, on_deadline, HANDSHAKE_TIMEOUT_MS, 0);
    if (s->cfg->proto == KM_WS && kp_ws_server_new(&ws_callbacks, c, MAX_MSG, &c->ws) != 0) {
        conn_close(c, "out of memory");
        return;
    }
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_close(c, uv_strerror(rc));
        return;
    }
    if (!c->ws)
        greet_tcp(c);
}

/* ---- lifecycle ---- */

static void on_signal(uv_signal_t *sig, int signum)
{
    mock_server *s = sig->data;
    if (s->stopping)
        return;
    s->stopping = true;
    KP_INFO(s->module, "stopping", KP_INT("signal", signum), KP_UINT("served", s->served));
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    /* Connections already greeted are on their way out, bounded by their deadline; the rest
     * (a WebSocket upgrade still under way) are closed now. */
    for (mock_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->greeted && !c->finishing)
            conn_close(c, "server shutting down");
    }
}

/* Binds and listens; logs `started listen="<host as given>:<port>"` (the port the kernel chose
 * for port 0), as the Go original logs `started listen=":8000"`. */
static int start_listener(mock_server *s)
{
    const km_listen *cfg = s->cfg;
    struct sockaddr_storage sa;
    if (kp_resolve_listen(cfg->host, cfg->port, &sa) != 0) {
        KP_ERROR(s->module, "cannot resolve address", KP_QSTR("host", cfg->host));
        return KP_EINVAL;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        KP_ERROR(s->module, "cannot listen", KP_QSTR("host", cfg->host), KP_INT("port", cfg->port),
                 KP_QSTR("error", uv_strerror(rc)));
        uv_close((uv_handle_t *)&s->listener, NULL);
        return KP_EIO;
    }
    int len = sizeof(sa);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len);
    char bound[INET6_ADDRSTRLEN + 8];
    int port = kp_format_sockaddr((const struct sockaddr *)&sa, bound, sizeof(bound));
    const char *open = strchr(cfg->host, ':') ? "[" : "";
    const char *close = open[0] ? "]" : "";
    char listen[sizeof(cfg->host) + sizeof("[]:65535")];
    snprintf(listen, sizeof(listen), "%s%s%s:%d", open, cfg->host, close, port);
    KP_INFO(s->module, "started", KP_QSTR("listen", listen));
    return 0;
}

int km_server_run(const km_listen *cfg)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    mock_server s = {.loop = &loop, .cfg = cfg, .module = km_module(cfg->proto, 1)};
    s.read_buf = malloc(READ_BUF_SIZE);
    int status = 1;
    if (s.read_buf && start_listener(&s) == 0) {
        uv_signal_init(&loop, &s.sigint);
        uv_signal_init(&loop, &s.sigterm);
        s.sigint.data = s.sigterm.data = &s;
        uv_signal_start(&s.sigint, on_signal, SIGINT);
        uv_signal_start(&s.sigterm, on_signal, SIGTERM);
        status = 0;
    } else if (!s.read_buf) {
        KP_ERROR(s.module, "out of memory");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (status == 0)
        KP_INFO(s.module, "stopped", KP_UINT("served", s.served));
    int leftover = uv_loop_close(&loop);
    if (leftover != 0)
        KP_WARN(s.module, "loop closed with handles open", KP_QSTR("error", uv_strerror(leftover)));
    free(s.read_buf);
    return status;
}
