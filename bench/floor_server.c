/* The I/O floor for bench/run.sh scenario (c): the least a server can do for a submit over the
 * same loopback sockets — read, split lines, parse (the library's codec), check the SHA-256
 * (the library's hasher), write the answer — and nothing else: one fixed job, no job book, no
 * rate limit, no duplicate sets, no events, no logging. kupool-client drives it exactly like
 * kupool-server, so "server CPU per submit ÷ this CPU per submit" is the cost of everything
 * KuPool does beyond one core's worth of read + parse + hash + write.
 *
 *   floor_server        prints "listen=PORT" on stdout, then serves until SIGTERM/SIGINT */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "codec.h"
#include "hasher.h"

#define LINE_MAX_BYTES 4096
#define OUT_MAX (64 * 1024)

static const char SERVER_NONCE[] = "3f1c0e9a8b7d6c5e4f3a2b1c0d9e8f7a";
static kp_hasher hasher;
static char read_buf[64 * 1024]; /* one read at a time on the loop: one buffer serves all */
static char parse_scratch[64 * 1024]; /* kp_request_parse's decoded strings; a line fits */
static char out_buf[OUT_MAX];    /* the answers to one read, written once */
static size_t out_len;

typedef struct conn {
    uv_tcp_t tcp; /* first: the handle is the connection */
    char partial[LINE_MAX_BYTES];
    size_t partial_len;
} conn;

static void on_closed(uv_handle_t *h) { free(h); }

static void on_written(uv_write_t *req, int status)
{
    free(req->data);
    free(req);
}

/* Writes what the socket takes now and queues a copy of the rest. */
static void flush(conn *c)
{
    if (out_len == 0)
        return;
    uv_buf_t buf = uv_buf_init(out_buf, (unsigned)out_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    size_t done = n > 0 ? (size_t)n : 0;
    if (done < out_len) {
        uv_write_t *req = malloc(sizeof(*req));
        char *rest = malloc(out_len - done);
        if (!req || !rest) {
            free(req);
            free(rest);
            out_len = 0;
            return;
        }
        memcpy(rest, out_buf + done, out_len - done);
        req->data = rest;
        uv_buf_t b = uv_buf_init(rest, (unsigned)(out_len - done));
        uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    }
    out_len = 0;
}

static void answer(const char *line, size_t len)
{
    if (out_len + 256 > OUT_MAX)
        return; /* a read of more answers than fit: the bench never sends that many */
    kp_request req;
    kp_outcome oc = kp_request_parse(line, len, parse_scratch, sizeof(parse_scratch), &req);
    bool owned = oc == KP_OUTCOME_OK; /* kp_request_free() pairs with a successful parse */
    if (oc == KP_OUTCOME_OK && req.method == KP_METHOD_AUTHORIZE) {
        out_len += kp_format_response(out_buf + out_len, req.has_id, req.id, KP_OUTCOME_OK);
        out_len += kp_format_job(out_buf + out_len, OUT_MAX - out_len, 1, SERVER_NONCE);
    } else if (oc == KP_OUTCOME_OK) {
        kp_submit_params p;
        oc = kp_submit_params_get(&req, &p);
        if (oc == KP_OUTCOME_OK &&
            !kp_hasher_check(&hasher, SERVER_NONCE, sizeof(SERVER_NONCE) - 1, p.client_nonce,
                             p.client_nonce_len, p.result, p.result_len))
            oc = KP_OUTCOME_INVALID_RESULT;
        out_len += kp_format_response(out_buf + out_len, req.has_id, req.id, oc);
    } else {
        out_len += kp_format_response(out_buf + out_len, req.has_id, req.id, oc);
    }
    if (owned)
        kp_request_free(&req);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)stream;
    if (nread < 0) {
        uv_close((uv_handle_t *)stream, on_closed);
        return;
    }
    const char *p = buf->base, *end = buf->base + nread;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        if (c->partial_len + len > sizeof(c->partial)) {
            uv_close((uv_handle_t *)stream, on_closed); /* over-long line */
            return;
        }
        if (!nl) { /* keep the unfinished line for the next read */
            memcpy(c->partial + c->partial_len, p, len);
            c->partial_len += len;
            break;
        }
        if (c->partial_len) {
            memcpy(c->partial + c->partial_len, p, len);
            answer(c->partial, c->partial_len + len);
            c->partial_len = 0;
        } else {
            answer(p, len);
        }
        p = nl + 1;
    }
    flush(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(listener->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *sig, int signum) { uv_stop(sig->loop); }

int main(void)
{
    if (kp_hasher_init(&hasher) != 0)
        return 1;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t listener;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &listener);
    if (uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&listener, 1024, on_connection) != 0) {
        fprintf(stderr, "floor_server: cannot listen\n");
        return 1;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
    printf("listen=%d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    kp_hasher_free(&hasher);
    return 0;
}
