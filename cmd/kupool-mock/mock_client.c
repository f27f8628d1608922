/* kupool-mock cli: resolve, try each address in turn, then print every message that arrives,
 * one line each on stdout, until the server closes. TCP messages are lines; WebSocket messages
 * come whole from ws.c, which also answers the server's close frame.
 *
 * Exit status: 0 when the server ended the connection cleanly (TCP: EOF; WebSocket: a close
 * frame) or a signal stopped us, 1 when nothing could be reached or the connection failed. */
#include <netdb.h>
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

#define READ_BUF_SIZE (64 * 1024)
#define MAX_MSG (1024 * 1024)     /* one message (or TCP line) we are willing to hold */
#define CONNECT_TIMEOUT_MS 10000  /* resolve, connect and (WebSocket) upgrade */
#define CLOSE_TIMEOUT_MS 2000     /* after a signal: the server's answer to our close frame */

typedef struct mock_client {
    uv_loop_t *loop;
    const km_target *target;
    const char *module;
    uv_getaddrinfo_t resolver;
    bool resolving;
    struct addrinfo *addrs;     /* what the resolver found; freed at the end */
    struct addrinfo *next_addr; /* the next one to try */
    uv_tcp_t tcp;
    bool tcp_live; /* initialised and not yet closed */
    uv_connect_t connect_req;
    uv_timer_t deadline;
    uv_signal_t sigint, sigterm;
    kp_ws *ws;  /* NULL for TCP */
    char *out;  /* bytes from ws.c for the next uv_write */
    size_t out_len, out_cap;
    char *line; /* TCP: an unfinished line */
    size_t line_len, line_cap;
    char read_buf[READ_BUF_SIZE];
    unsigned long long received;
    int status;       /* the exit status so far */
    bool stopping;    /* every handle is closing */
    bool finishing;   /* a shutdown is under way */
    bool interrupted; /* SIGINT/SIGTERM: we closed first */
    char last_error[128];
} mock_client;

typedef struct write_req {
    uv_write_t req;
    mock_client *client;
    char *bytes;
} write_req;

/* ---- the end ---- */

static void client_stop(mock_client *c)
{
    if (c->stopping)
        return;
    c->stopping = true;
    uv_timer_stop(&c->deadline);
    uv_close((uv_handle_t *)&c->deadline, NULL);
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_close((uv_handle_t *)&c->sigterm, NULL);
    if (c->tcp_live) {
        c->tcp_live = false;
        uv_close((uv_handle_t *)&c->tcp, NULL); /* a pending connect ends with UV_ECANCELED */
    }
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->resolver);
}

static void fail(mock_client *c, const char *msg, const char *error)
{
    char addr[sizeof(c->target->host) + sizeof(":65535")];
    snprintf(addr, sizeof(addr), "%s:%d", c->target->host, c->target->port);
    KP_ERROR(c->module, msg, KP_QSTR("addr", addr), KP_QSTR("error", error));
    c->status = 1;
    client_stop(c);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    mock_client *c = wr->client;
    free(wr->bytes);
    free(wr);
    if (status < 0 && status != UV_ECANCELED && !c->stopping)
        fail(c, "write failed", uv_strerror(status));
}

static void flush_out(mock_client *c)
{
    if (c->out_len == 0 || !c->tcp_live)
        return;
    write_req *wr = malloc(sizeof(*wr));
    if (!wr) {
        fail(c, "write failed", "out of memory");
        return;
    }
    wr->client = c;
    wr->bytes = c->out;
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)c->out_len);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc != 0) {
        free(wr->bytes);
        free(wr);
        fail(c, "write failed", uv_strerror(rc));
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    mock_client *c = req->data;
    free(req);
    client_stop(c);
}

/* Stops once what we wrote (our answer to the server's close frame) has left. */
static void client_finish(mock_client *c)
{
    if (c->stopping || c->finishing)
        return;
    flush_out(c);
    if (c->stopping)
        return;
    c->finishing = true;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        client_stop(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        client_stop(c);
    }
}

/* ---- messages ---- */

static void print_message(mock_client *c, const char *msg, size_t len)
{
    fwrite(msg, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    c->received++;
    KP_DEBUG(c->module, "receive message", KP_STRN("msg", msg, len)); /* the server's bytes */
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *p = realloc(*buf, n);
    if (!p)
        return KP_ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

/* Prints each whole line; keeps an unfinished one for the next read. */
static void tcp_lines(mock_client *c, const char *p, const char *end)
{
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        size_t n = (size_t)(stop - p);
        if (c->line_len + n > MAX_MSG) {
            fail(c, "line too long", "over 1 MiB without a newline");
            return;
        }
        if (!nl || c->line_len) {
            if (grow(&c->line, &c->line_cap, c->line_len + n) != 0) {
                fail(c, "read failed", "out of memory");
                return;
            }
            memcpy(c->line + c->line_len, p, n);
            c->line_len += n;
        }
        if (!nl)
            return;
        const char *line = c->line_len ? c->line : p;
        size_t len = c->line_len ? c->line_len : n;
        if (len && line[len - 1] == '\r')
            len--;
        print_message(c, line, len);
        c->line_len = 0;
        p = nl + 1;
    }
}

/* ---- WebSocket: ws.c's callbacks ---- */

static int ws_send(void *user, const char *data, size_t len)
{
    mock_client *c = user;
    if (c->stopping || c->finishing || grow(&c->out, &c->out_cap, c->out_len + len) != 0)
        return -1;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

static void ws_on_open(void *user)
{
    mock_client *c = user;
    uv_timer_stop(&c->deadline);
    char url[sizeof("ws://") + sizeof(c->target->host_header) + sizeof(c->target->path)];
    snprintf(url, sizeof(url), "ws://%s%s", c->target->host_header, c->target->path);
    KP_INFO(c->module, "connected", KP_QSTR("url", url));
}

static void ws_on_text(void *user, const char *msg, size_t len)
{
    print_message(user, msg, len);
}

static void ws_on_close(void *user, uint16_t code, const char *why)
{
    mock_client *c = user;
    /* 1000 normal, 1001 going away, 1005 a close frame without a code: all clean. */
    bool clean = code == 1000 || code == 1001 || code == 1005;
    if (clean)
        KP_INFO(c->module, "server closed", KP_UINT("code", code), KP_QSTR("reason", why),
                KP_UINT("received", c->received));
    else
        KP_ERROR(c->module, "connection failed", KP_UINT("code", code), KP_QSTR("reason", why),
                 KP_UINT("received", c->received));
    c->status = clean ? 0 : 1;
    client_finish(c);
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
    mock_client *c = h->data;
    *buf = uv_buf_init(c->read_buf, sizeof(c->read_buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    mock_client *c = stream->data;
    if (c->stopping || c->finishing)
        return;
    if (nread == UV_EOF) {
        if (c->ws) { /* a WebSocket ends with a close frame, which ends us before this */
            KP_ERROR(c->module, "connection closed without a close frame",
                     KP_UINT("received", c->received));
            c->status = 1;
        } else {
            if (c->line_len)
                print_message(c, c->line, c->line_len);
            KP_INFO(c->module, "server closed", KP_UINT("received", c->received));
            c->status = 0;
        }
        client_stop(c);
        return;
    }
    if (nread < 0) {
        fail(c, "read failed", uv_strerror((int)nread));
        return;
    }
    if (c->ws) {
        kp_ws_feed(c->ws, buf->base, (size_t)nread); /* the end arrives through ws_on_close */
        flush_out(c);
    } else {
        tcp_lines(c, buf->base, buf->base + nread);
    }
}

/* ---- connecting ---- */

static void try_next(mock_client *c);

static void on_attempt_closed(uv_handle_t *h)
{
    mock_client *c = h->data;
    if (!c->stopping)
        try_next(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    mock_client *c = req->data;
    if (status == UV_ECANCELED || c->stopping)
        return;
    if (status < 0) {
        snprintf(c->last_error, sizeof(c->last_error), "%s", uv_strerror(status));
        c->tcp_live = false;
        uv_close((uv_handle_t *)&c->tcp, on_attempt_closed);
        return;
    }
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    char name[80] = "?";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0)
        kp_format_sockaddr((struct sockaddr *)&sa, name, sizeof(name));
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        fail(c, "read failed", uv_strerror(rc));
        return;
    }
    if (c->target->proto == KM_TCP) {
        uv_timer_stop(&c->deadline); /* the server speaks first, whenever it likes */
        KP_INFO(c->module, "connected", KP_QSTR("addr", name));
        return;
    }
    KP_DEBUG(c->module, "tcp connected, upgrading", KP_QSTR("addr", name));
    rc = kp_ws_client_new(&ws_callbacks, c, c->target->host_header, c->target->path, MAX_MSG, &c->ws);
    if (rc != 0) {
        fail(c, "cannot start the WebSocket handshake", kp_strerror(rc));
        return;
    }
    flush_out(c);
}

static void try_next(mock_client *c)
{
    struct addrinfo *ai = c->next_addr;
    if (!ai) {
        fail(c, "cannot connect", c->last_error[0] ? c->last_error : "no address");
        return;
    }
    c->next_addr = ai->ai_next;
    uv_tcp_init(c->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_live = true;
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, ai->ai_addr, on_connect);
    if (rc != 0) {
        snprintf(c->last_error, sizeof(c->last_error), "%s", uv_strerror(rc));
        c->tcp_live = false;
        uv_close((uv_handle_t *)&c->tcp, on_attempt_closed);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    mock_client *c = req->data;
    c->resolving = false;
    c->addrs = res;
    if (c->stopping)
        return;
    if (status < 0) {
        fail(c, "cannot resolve", uv_strerror(status));
        return;
    }
    c->next_addr = res;
    try_next(c);
}

/* ---- lifecycle ---- */

static void on_deadline(uv_timer_t *t)
{
    mock_client *c = t->data;
    if (c->interrupted) { /* the server did not answer our close in time: stop anyway */
        client_stop(c);
        return;
    }
    fail(c, c->ws ? "WebSocket upgrade timed out" : "connect timed out", "no answer within 10s");
}

static void on_signal(uv_signal_t *sig, int signum)
{
    mock_client *c = sig->data;
    if (c->interrupted || c->stopping)
        return;
    c->interrupted = true;
    c->status = 0;
    KP_INFO(c->module, "stopping", KP_INT("signal", signum), KP_UINT("received", c->received));
    if (c->ws && kp_ws_is_open(c->ws)) {
        kp_ws_close(c->ws, 1000, "client stopping");
        flush_out(c);
        uv_timer_start(&c->deadline, on_deadline, CLOSE_TIMEOUT_MS, 0);
        return;
    }
    client_stop(c);
}

int km_client_run(const km_target *target)
{
    mock_client *c = calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "kupool-mock: out of memory\n");
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    c->loop = &loop;
    c->target = target;
    c->module = km_module(target->proto, 0);
    uv_timer_init(&loop, &c->deadline);
    uv_signal_init(&loop, &c->sigint);
    uv_signal_init(&loop, &c->sigterm);
    c->deadline.data = c->sigint.data = c->sigterm.data = c;
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    uv_timer_start(&c->deadline, on_deadline, CONNECT_TIMEOUT_MS, 0);

    char port[16];
    snprintf(port, sizeof(port), "%d", target->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    c->resolver.data = c;
    c->resolving = true;
    int rc = uv_getaddrinfo(&loop, &c->resolver, on_resolved, target->host, port, &hints);
    if (rc != 0) {
        c->resolving = false;
        fail(c, "cannot resolve", uv_strerror(rc));
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    int status = c->status;
    int leftover = uv_loop_close(&loop);
    if (leftover != 0)
        KP_WARN(c->module, "loop closed with handles open",
                KP_QSTR("error", uv_strerror(leftover)));
    uv_freeaddrinfo(c->addrs);
    kp_ws_free(c->ws);
    free(c->out);
    free(c->line);
    free(c);
    return status;
}
