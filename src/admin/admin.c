/* The admin HTTP endpoint (SPEC §5, §9): GET /metrics, /healthz, /stats?username=U, /bans. This file
 * is the listener, the connections with their slots and deadlines, and the routing. The answers
 * come from the rest of src/admin/: admin_http.c parses requests; metrics.c and health.c render a
 * snapshot (admin_snapshot.h) that the source fills on demand; /stats queries run on the worker of
 * admin_query.c and stats_json.c writes their answers. It runs on the server's loop and knows
 * nothing of the server: the source is the only way in.
 *
 * One request per connection: every response carries `Connection: close`. Scrapers and health
 * checkers open a connection per request anyway, and without keep-alive there is no request
 * queue, no pipelining and no idle pool to bound. Only GET with no body is served.
 *
 * Bounds, so a misbehaving client costs little, never blocks the loop and never locks out a
 * health check (docs/observability.md):
 *  - at most KP_ADMIN_MAX_CONNS connections. When all are taken, a new connection evicts the
 *    oldest one that is still sending its request head (or lingering after its response), so
 *    idle sockets cannot starve probes; only when every slot waits for a query or a write is the
 *    new one closed at accept;
 *  - the request line and headers together at most KP_ADMIN_MAX_HEAD bytes (431, then close);
 *  - KP_ADMIN_REQUEST_TIMEOUT_MS from accept to the end of the exchange: a head not complete by
 *    then is closed without an answer, a /stats query not answered by then gets 504;
 *  - after the response, bytes the client still sends are read and dropped (so the close is a
 *    FIN, not a reset that could destroy the response in flight), at most ADMIN_DISCARD_MAX of
 *    them and for at most ADMIN_LINGER_MS.
 *
 * Ownership: a connection owns its handle and its request parser; a response buffer is owned by
 * its write request until the write callback; a /stats query is owned by the query worker, and
 * a connection that closes cancels its query, so the worker never calls back into a freed
 * connection. Connections are closed in conn_close() only and freed in on_conn_close() only. The
 * admin struct is freed once its handles and its query worker are closed and its last
 * connection is freed. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_http.h"
#include "admin_query.h"
#include "health.h"
#include "kupool/error.h"
#include "log.h"
#include "metrics.h"
#include "net_addr.h"
#include "process_stats.h"
#include "stats_json.h"
#include "textbuf.h"
#include "utc_time.h"

#define MODULE "http.admin"

#define ADMIN_LINGER_MS 2000u           /* after the response, wait this long for the peer's FIN */
#define ADMIN_DISCARD_MAX (64u * 1024u) /* bytes dropped after the request before giving up */
#define ADMIN_SWEEP_MS 250u             /* how often deadlines are checked */
#define ADMIN_READ_BUF 4096u
#define ADMIN_BACKLOG 64

typedef enum conn_state {
    CONN_READING,  /* feeding the parser until the headers are complete */
    CONN_QUERYING, /* a /stats query waits for or runs on the query worker */
    CONN_WRITING,  /* the response is being written */
    CONN_LINGERING /* response written and FIN sent: dropping input until the peer closes */
} conn_state;

typedef struct admin_conn {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    kp_admin *admin;
    struct admin_conn *prev, *next; /* kp_admin.conns while open, newest first */
    bool listed;
    bool closing;
    bool peer_eof; /* the peer finished sending while the response was pending */
    conn_state state;
    uint64_t accepted_ms; /* loop time of the accept: eviction takes the oldest */
    uint64_t deadline_ms;
    size_t discarded; /* bytes dropped after the request */
    kp_admin_request req;
    kp_query *query; /* while CONN_QUERYING: the worker's handle, cancelled on close */
    uv_shutdown_t shutdown_req;
} admin_conn;

struct kp_admin {
    uv_loop_t *loop;
    kp_admin_source source; /* what /metrics and /healthz report, the store /stats queries */
    uv_tcp_t listener;
    uv_timer_t sweep;
    kp_query_worker *queries; /* NULL when it could not start: /stats answers 503 */
    unsigned parts_open; /* listener, sweep timer and query worker not yet through their close */
    admin_conn *conns;   /* open connections */
    size_t nopen;        /* length of `conns` */
    size_t nalive;       /* connection structs not yet freed (open or closing) */
    bool closing;
    int64_t base_fds; /* descriptors open when the endpoint started (see process_open_fds) */
    uint64_t rejected, evicted;
    /* One read at a time on the loop thread, and each read is consumed before the next
     * allocation, so one buffer serves every admin connection. */
    char read_buf[ADMIN_READ_BUF];
};

/* A response in flight: owns its bytes until the write callback. */
typedef struct response {
    uv_write_t req;
    size_t len;
    char data[];
} response;

/* ---- connection lifetime ---- */

static void admin_maybe_free(kp_admin *a)
{
    if (a->closing && a->parts_open == 0 && a->nalive == 0)
        free(a);
}

static void on_conn_close(uv_handle_t *h)
{
    admin_conn *c = (admin_conn *)h;
    kp_admin *a = c->admin;
    kp_admin_request_free(&c->req);
    free(c);
    a->nalive--;
    admin_maybe_free(a);
}

static void conn_unlist(admin_conn *c)
{
    if (!c->listed)
        return;
    kp_admin *a = c->admin;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->listed = false;
    a->nopen--;
}

/* The one place a connection is closed. */
static void conn_close(admin_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = true;
    kp_query_cancel(c->query);
    c->query = NULL;
    conn_unlist(c);
    KP_TRACE(MODULE, "connection closed", KP_QSTR("reason", why));
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

/* ---- responses ---- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    admin_conn *c = req->data;
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c, uv_strerror(status));
}

/* The response is out: half-close and drop whatever the peer still sends until it closes. */
static void start_linger(admin_conn *c)
{
    c->state = CONN_LINGERING;
    if (c->peer_eof) {
        conn_close(c, "response sent");
        return;
    }
    uint64_t linger_deadline = uv_now(c->tcp.loop) + ADMIN_LINGER_MS;
    if (linger_deadline < c->deadline_ms)
        c->deadline_ms = linger_deadline;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c, "shutdown failed");
}

static void on_write(uv_write_t *req, int status)
{
    admin_conn *c = req->data;
    free(req);
    if (c->closing)
        return; /* UV_ECANCELED: the close came first */
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    start_linger(c);
}

/* Writes status line, headers and body in one buffer; the connection closes after it. */
static void respond(admin_conn *c, unsigned status, const char *content_type, const char *body,
                    size_t body_len, const char *extra_headers)
{
    if (c->closing)
        return;
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %u %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "Cache-Control: no-store\r\n"
                      "Connection: close\r\n"
                      "%s"
                      "\r\n",
                      status, http_status_str((enum http_status)status), content_type, body_len,
                      extra_headers ? extra_headers : "");
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        conn_close(c, "response header too long");
        return;
    }
    response *r = malloc(sizeof(*r) + (size_t)hn + body_len);
    if (!r) {
        conn_close(c, "out of memory");
        return;
    }
    memcpy(r->data, head, (size_t)hn);
    if (body_len)
        memcpy(r->data + hn, body, body_len);
    r->len = (size_t)hn + body_len;
    r->req.data = c;
    KP_DEBUG(MODULE, "request", KP_STR("method", kp_admin_request_method(&c->req)),
             KP_STR("path", kp_admin_route_name(c->req.verdict.route)), KP_UINT("status", status),
             KP_UINT("bytes", body_len));
    c->state = CONN_WRITING;
    uv_buf_t buf = uv_buf_init(r->data, (unsigned)r->len);
    if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(r);
        conn_close(c, "write failed");
    }
}

static void respond_text(admin_conn *c, unsigned status, const char *text)
{
    respond(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

static void respond_json_error(admin_conn *c, unsigned status, const char *message,
                               const char *extra_headers)
{
    char body[256];
    cJSON *obj = cJSON_CreateObject();
    if (obj && cJSON_AddStringToObject(obj, "error", message) &&
        cJSON_PrintPreallocated(obj, body, sizeof(body) - 1, 0)) {
        size_t len = strlen(body);
        body[len++] = '\n';
        respond(c, status, "application/json", body, len, extra_headers);
    } else {
        conn_close(c, "out of memory");
    }
    cJSON_Delete(obj);
}

/* ---- /metrics and /healthz ---- */

static kp_admin_snapshot take_snapshot(const kp_admin *a)
{
    kp_admin_snapshot snap = {0};
    a->source.snapshot(a->source.ctx, &snap);
    return snap;
}

/* process_open_fds for a scrape, in constant time: the descriptors open when the endpoint
 * started (stdio, log, loop internals, listeners, backend sockets open by then) plus one per
 * miner connection and per admin connection open now. Listing /proc/self/fd instead took 9 ms of
 * loop time at 15,000 connections. A backend socket opened later is not counted. */
static int64_t process_open_fds(const kp_admin *a, const kp_admin_snapshot *snap)
{
    if (a->base_fds < 0)
        return -1;
    return a->base_fds + (int64_t)snap->connections + (int64_t)a->nopen;
}

static void serve_metrics(admin_conn *c)
{
    const kp_admin *a = c->admin;
    kp_admin_snapshot snap = take_snapshot(a);
    kp_admin_endpoint_stats self = {
        .connections = a->nopen,
        .evicted = a->evicted,
        .refused = a->rejected,
        .queries_queued = a->queries ? kp_query_worker_queued(a->queries) : 0,
        .queries_refused = a->queries ? kp_query_worker_refused(a->queries) : 0,
        .queries_dropped = a->queries ? kp_query_worker_dropped(a->queries) : 0,
    };
    kp_process_gauges process = {
        .rss_bytes = kp_process_rss_bytes(),
        .open_fds = process_open_fds(a, &snap),
        .max_fds = kp_process_max_fds(),
    };
    kp_textbuf tb = {0};
    kp_admin_render_metrics(&snap, &self, &process, &tb);
    if (tb.oom)
        respond_text(c, 500, "out of memory\n");
    else
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", tb.data, tb.len, NULL);
    kp_textbuf_release(&tb);
}

static void serve_healthz(admin_conn *c)
{
    kp_admin_snapshot snap = take_snapshot(c->admin);
    kp_health_answer answer;
    kp_admin_healthz(&snap, &answer);
    respond(c, answer.status, "text/plain; charset=utf-8", answer.body, answer.len, NULL);
}

/* ---- /bans ---- */

typedef struct bans_json {
    kp_textbuf tb;
    bool first;
} bans_json;

/* One ban. The address comes from inet_ntop and the reason is one of two labels, so neither
 * needs escaping. */
static void add_ban(void *arg, const char *addr, const char *reason, uint64_t until_unix_ms)
{
    bans_json *j = arg;
    char until[KP_UTC_MS_LEN + 1];
    kp_format_utc_ms((int64_t)until_unix_ms, until, sizeof(until));
    kp_textbuf_printf(&j->tb, "%s{\"addr\":\"%s\",\"reason\":\"%s\",\"until\":\"%s\"}",
                      j->first ? "" : ",", addr, reason, until);
    j->first = false;
}

static void serve_bans(admin_conn *c)
{
    const kp_admin *a = c->admin;
    bans_json j = {.first = true};
    kp_textbuf_printf(&j.tb, "{\"bans\":[");
    if (a->source.bans)
        a->source.bans(a->source.ctx, add_ban, &j);
    kp_textbuf_printf(&j.tb, "]}\n");
    if (j.tb.oom)
        respond_text(c, 500, "out of memory\n");
    else
        respond(c, 200, "application/json", j.tb.data, j.tb.len, NULL);
    kp_textbuf_release(&j.tb);
}

/* ---- /stats ---- */

/* The query worker's answer, on the loop thread; never called for a cancelled query, so the
 * connection is open and waiting. */
static void stats_done(kp_query_result *res, void *arg)
{
    admin_conn *c = arg;
    c->query = NULL;
    if (res->rc != 0) {
        KP_WARN(MODULE, "stats query failed", KP_STR("store", c->admin->source.stats->name),
                KP_QSTR("error", kp_strerror(res->rc)));
        respond_json_error(c, 503, "stats store unavailable", NULL);
        return;
    }
    char *text = kp_admin_stats_json(c->req.verdict.username, res);
    if (!text) {
        respond_text(c, 500, "out of memory\n");
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the body is sized explicitly */
    respond(c, 200, "application/json", text, len + 1, NULL);
    cJSON_free(text);
}

static void serve_stats(admin_conn *c)
{
    kp_admin *a = c->admin;
    int rc = a->queries ? kp_query_submit(a->queries, c->req.verdict.username, stats_done, c,
                                          &c->query)
                        : KP_ECLOSED;
    if (rc == KP_EAGAIN) {
        respond_json_error(c, 503, "too many stats queries waiting", "Retry-After: 1\r\n");
        return;
    }
    if (rc != 0) {
        respond_json_error(c, 503, "stats store unavailable", NULL);
        return;
    }
    c->state = CONN_QUERYING;
}

/* ---- requests ---- */

static void dispatch(admin_conn *c)
{
    const kp_admin_verdict *v = &c->req.verdict;
    if (v->status != 0) {
        if (v->status == 400 && !c->req.head_complete)
            KP_DEBUG(MODULE, "bad request",
                     KP_STR("error", http_errno_name(HTTP_PARSER_ERRNO(&c->req.parser))));
        char text[128];
        snprintf(text, sizeof(text), "%s\n", v->message);
        if (v->json_error)
            respond_json_error(c, v->status, v->message, NULL);
        else
            respond(c, v->status, "text/plain; charset=utf-8", text, strlen(text),
                    v->allow_get ? "Allow: GET\r\n" : NULL);
        return;
    }
    switch (v->route) {
    case KP_ADMIN_ROUTE_METRICS:
        serve_metrics(c);
        break;
    case KP_ADMIN_ROUTE_HEALTHZ:
        serve_healthz(c);
        break;
    case KP_ADMIN_ROUTE_STATS:
        serve_stats(c);
        break;
    case KP_ADMIN_ROUTE_BANS:
        serve_bans(c);
        break;
    case KP_ADMIN_ROUTE_NONE:
        respond_text(c, 404, "not found\n");
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    admin_conn *c = (admin_conn *)h;
    *buf = uv_buf_init(c->admin->read_buf, sizeof(c->admin->read_buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    admin_conn *c = (admin_conn *)stream;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && c->state == CONN_QUERYING) {
            /* A client that merely half-closed and one that went away look the same from here.
             * A query the worker has not taken yet would only hold a queue slot for a client
             * that is probably gone, so it is dropped; one already running is answered. */
            if (kp_query_drop_if_queued(c->query)) {
                c->query = NULL;
                conn_close(c, "client left before its query ran");
                return;
            }
            c->peer_eof = true;
            uv_read_stop(stream);
            return;
        }
        if (nread == UV_EOF && c->state == CONN_WRITING) {
            c->peer_eof = true; /* a client that half-closes after its request gets the answer */
            uv_read_stop(stream);
            return;
        }
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (c->state == CONN_READING) {
        if (kp_admin_request_feed(&c->req, buf->base, (size_t)nread) == KP_ADMIN_FEED_DONE)
            dispatch(c);
        return;
    }
    c->discarded += (size_t)nread;
    if (c->discarded > ADMIN_DISCARD_MAX)
        conn_close(c, "too much data after the request");
}

/* ---- listener and deadlines ---- */

/* The connection a newcomer may replace when every slot is taken: the oldest that is still
 * sending its head (idle sockets, slow clients) or lingering after its answer. A connection
 * waiting for its query or writing its response is never evicted: the query queue is bounded
 * (KP_ADMIN_QUERY_QUEUE + 1 < KP_ADMIN_MAX_CONNS), so some slot is always evictable unless
 * writes stall. */
static admin_conn *eviction_victim(kp_admin *a)
{
    admin_conn *victim = NULL;
    for (admin_conn *c = a->conns; c; c = c->next)
        if ((c->state == CONN_READING || c->state == CONN_LINGERING) &&
            (!victim || c->accepted_ms <= victim->accepted_ms))
            victim = c;
    return victim;
}

/* Makes room for one more connection; false when none can be evicted. */
static bool make_room(kp_admin *a)
{
    if (a->nopen < KP_ADMIN_MAX_CONNS)
        return true;
    admin_conn *victim = eviction_victim(a);
    if (!victim)
        return false;
    if (a->evicted++ % 100 == 0)
        KP_WARN(MODULE, "admin connections full: closing the oldest idle one",
                KP_INT("max", KP_ADMIN_MAX_CONNS), KP_UINT("evicted", a->evicted));
    conn_close(victim, "evicted for a new connection");
    return true;
}

static void on_connection(uv_stream_t *listener, int status)
{
    kp_admin *a = listener->data;
    if (status < 0) {
        KP_WARN(MODULE, "accept failed", KP_QSTR("error", uv_strerror(status)));
        return;
    }
    admin_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        KP_ERROR(MODULE, "out of memory accepting a connection");
        return;
    }
    c->admin = a;
    kp_admin_request_init(&c->req);
    a->nalive++;
    uv_tcp_init(a->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    if (a->closing || !make_room(a)) {
        if (a->rejected++ % 100 == 0)
            KP_WARN(MODULE, "connection refused: every admin connection is busy",
                    KP_INT("max", KP_ADMIN_MAX_CONNS), KP_UINT("rejected", a->rejected));
        conn_close(c, "too many admin connections");
        return;
    }
    c->listed = true;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->nopen++;
    c->accepted_ms = uv_now(a->loop);
    c->deadline_ms = c->accepted_ms + KP_ADMIN_REQUEST_TIMEOUT_MS;
    c->state = CONN_READING;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0)
        conn_close(c, uv_strerror(rc));
}

/* A deadline passed: a head still incomplete is closed without an answer; a query not answered
 * yet is cancelled and answered 504, with a fresh linger so the answer can be read. */
static void conn_expire(admin_conn *c, uint64_t now)
{
    if (c->state == CONN_QUERYING) {
        kp_query_cancel(c->query);
        c->query = NULL;
        c->deadline_ms = now + ADMIN_LINGER_MS;
        respond_json_error(c, 504, "stats query timed out", NULL);
        return;
    }
    conn_close(c, c->state == CONN_LINGERING ? "response sent" : "request timeout");
}

static void on_sweep(uv_timer_t *t)
{
    kp_admin *a = t->data;
    uint64_t now = uv_now(a->loop);
    for (admin_conn *c = a->conns, *next; c; c = next) {
        next = c->next;
        if (now >= c->deadline_ms)
            conn_expire(c, now);
    }
}

static void on_admin_part_closed(kp_admin *a)
{
    a->parts_open--;
    admin_maybe_free(a);
}

static void on_admin_handle_close(uv_handle_t *h)
{
    on_admin_part_closed(h->data);
}

static void on_queries_closed(void *arg)
{
    on_admin_part_closed(arg);
}

int kp_admin_open(uv_loop_t *loop, const char *addr, const kp_admin_source *source,
                  kp_admin **out)
{
    *out = NULL;
    char host[256];
    int port = 0;
    struct sockaddr_storage sa;
    if (kp_split_host_port(addr, host, sizeof(host), &port) != 0 || kp_resolve_listen(host, port, &sa) != 0) {
        KP_ERROR(MODULE, "cannot resolve -http_addr", KP_QSTR("addr", addr));
        return KP_EINVAL;
    }
    kp_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return KP_ENOMEM;
    a->loop = loop;
    a->source = *source;

    uv_tcp_init(loop, &a->listener);
    a->listener.data = a;
    uv_timer_init(loop, &a->sweep);
    a->sweep.data = a;
    a->parts_open = 2;
    int rc = kp_query_worker_open(loop, source->stats, &a->queries);
    if (rc == 0)
        a->parts_open++;
    else
        KP_ERROR(MODULE, "cannot start the stats query thread", KP_QSTR("error", kp_strerror(rc)));
    rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, ADMIN_BACKLOG, on_connection);
    if (rc != 0) {
        KP_ERROR(MODULE, "cannot listen", KP_QSTR("addr", addr), KP_QSTR("error", uv_strerror(rc)));
        kp_admin_close(a);
        return KP_EIO;
    }
    uv_timer_start(&a->sweep, on_sweep, ADMIN_SWEEP_MS, ADMIN_SWEEP_MS);
    a->base_fds = kp_process_count_open_fds();
    int len = sizeof(sa);
    uv_tcp_getsockname(&a->listener, (struct sockaddr *)&sa, &len);
    char shown[300];
    kp_format_sockaddr((const struct sockaddr *)&sa, shown, sizeof(shown));
    KP_INFO(MODULE, "started", KP_QSTR("listen", shown));
    *out = a;
    return 0;
}

void kp_admin_close(kp_admin *a)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    while (a->conns)
        conn_close(a->conns, "admin endpoint closing");
    if (a->queries)
        kp_query_worker_close(a->queries, on_queries_closed, a);
    uv_close((uv_handle_t *)&a->listener, on_admin_handle_close);
    uv_close((uv_handle_t *)&a->sweep, on_admin_handle_close);
}
