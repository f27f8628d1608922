/* The admin HTTP endpoint (SPEC §5): GET /metrics, GET /healthz, GET /stats?username=U.
 *
 * It lives on the server's loop, beside the miners' listener, and reads the server's counters
 * directly (loop thread) or through the thread-safe getters of the pipeline and the consumer.
 *
 * One request per connection: every response carries `Connection: close`. Scrapers and health
 * checkers open a connection per request anyway, and without keep-alive there is no request
 * queue, no pipelining and no idle pool to bound. Requests are parsed by http-parser (Debian's
 * libhttp-parser); only GET with no body is served.
 *
 * Bounds, so a misbehaving client costs little and never blocks the loop:
 *  - at most KP_ADMIN_MAX_CONNS connections; more are closed at accept;
 *  - the request line and headers together at most KP_ADMIN_MAX_HEAD bytes (431, then close);
 *  - KP_ADMIN_REQUEST_TIMEOUT_MS from accept to the end of the exchange, whatever the state;
 *  - after the response, bytes the client still sends are read and dropped (so the close is a
 *    FIN, not a reset that could destroy the response in flight), at most ADMIN_DISCARD_MAX of
 *    them and for at most ADMIN_LINGER_MS.
 *
 * Ownership: a connection owns its handle, its URL buffer and its parser; a response buffer is
 * owned by its write request until the write callback; a /stats query owns its job struct and
 * holds one reference on the connection, so a connection closed while its query runs is freed
 * when the query returns. Connections are closed in conn_close() only and freed in
 * conn_release() only. The admin struct is freed once its handles are closed and its last
 * connection is freed. */
#include "admin.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <http_parser.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kupool/error.h"
#include "log.h"
#include "net_addr.h"
#include "outcome.h"

#define MODULE "http.admin"

#define ADMIN_LINGER_MS 2000u           /* after the response, wait this long for the peer's FIN */
#define ADMIN_DISCARD_MAX (64u * 1024u) /* bytes dropped after the request before giving up */
#define ADMIN_SWEEP_MS 250u             /* how often deadlines are checked */
#define ADMIN_READ_BUF 4096u
#define ADMIN_BACKLOG 64
#define USERNAME_MAX 255                /* SPEC §2 */

typedef enum conn_state {
    CONN_READING,  /* feeding the parser until the headers are complete */
    CONN_QUERYING, /* a /stats query runs on a worker */
    CONN_WRITING,  /* the response is being written */
    CONN_LINGERING /* response written and FIN sent: dropping input until the peer closes */
} conn_state;

typedef struct admin_conn {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    kp_admin *admin;
    struct admin_conn *prev, *next; /* kp_admin.conns while open */
    bool listed;
    bool closing;
    bool peer_eof; /* the peer finished sending while the response was pending */
    bool have_method; /* the parser has read the request method (for the debug log) */
    conn_state state;
    unsigned refs; /* 1 for the handle until its close callback, 1 per query in flight */
    uint64_t deadline_ms;
    size_t head_bytes; /* bytes given to the parser */
    size_t discarded;  /* bytes dropped after the request */
    http_parser parser;
    char *url; /* the request target, NUL-terminated; grows up to KP_ADMIN_MAX_HEAD */
    size_t url_len, url_cap;
    uv_shutdown_t shutdown_req;
} admin_conn;

struct kp_admin {
    kp_server *server;
    uv_tcp_t listener;
    uv_timer_t sweep;
    unsigned handles_open; /* listener and sweep timer not yet through their close callback */
    admin_conn *conns;     /* open connections */
    size_t nopen;          /* length of `conns` */
    size_t nalive;         /* connection structs not yet freed (open, closing or in a query) */
    bool closing;
    uint64_t rejected;
    http_parser_settings settings;
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

/* A /stats query handed to a worker: the worker reads `stats` and `username` and fills the
 * result fields; nothing else is touched off the loop thread. */
typedef struct stats_job {
    uv_work_t req;
    admin_conn *conn; /* holds a reference; touched on the loop thread only */
    kp_stats *stats;  /* thread-safe `query` by contract */
    char username[USERNAME_MAX + 1];
    kp_minute_count *counts; /* malloc'd by the store */
    size_t n;
    int rc;
} stats_job;

/* ---- a growable text buffer for response bodies ---- */

typedef struct textbuf {
    char *data;
    size_t len, cap;
    bool oom;
} textbuf;

static void tb_printf(textbuf *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tb_printf(textbuf *tb, const char *fmt, ...)
{
    if (tb->oom)
        return;
    for (;;) {
        size_t room = tb->cap - tb->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tb->data ? tb->data + tb->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            tb->oom = true;
            return;
        }
        if ((size_t)n < room) {
            tb->len += (size_t)n;
            return;
        }
        size_t cap = tb->cap ? tb->cap * 2 : 4096;
        while (cap < tb->len + (size_t)n + 1)
            cap *= 2;
        char *grown = realloc(tb->data, cap);
        if (!grown) {
            tb->oom = true;
            return;
        }
        tb->data = grown;
        tb->cap = cap;
    }
}

/* ---- connection lifetime ---- */

static void admin_maybe_free(kp_admin *a)
{
    if (a->closing && a->handles_open == 0 && a->nalive == 0)
        free(a);
}

static void conn_release(admin_conn *c)
{
    if (--c->refs > 0)
        return;
    kp_admin *a = c->admin;
    free(c->url);
    free(c);
    a->nalive--;
    admin_maybe_free(a);
}

static void on_conn_close(uv_handle_t *h)
{
    conn_release((admin_conn *)h);
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
    conn_unlist(c);
    if (kp_log_enabled(KP_LOG_TRACE))
        KP_TRACE(MODULE, "connection closed", "reason=\"%s\"", why);
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

static const char *route_name(const char *path, size_t len)
{
    static const char *const routes[] = {"/metrics", "/healthz", "/stats"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strlen(routes[i]) == len && memcmp(routes[i], path, len) == 0)
            return routes[i];
    return NULL;
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
    if (kp_log_enabled(KP_LOG_DEBUG)) {
        struct http_parser_url u;
        http_parser_url_init(&u);
        const char *route = NULL;
        if (c->url && http_parser_parse_url(c->url, c->url_len, 0, &u) == 0 &&
            (u.field_set & (1u << UF_PATH)))
            route = route_name(c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        KP_DEBUG(MODULE, "request", "method=%s path=%s status=%u bytes=%zu",
                 c->have_method ? http_method_str((enum http_method)c->parser.method) : "-",
                 route ? route : "other", status, body_len);
    }
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

static void respond_json_error(admin_conn *c, unsigned status, const char *message)
{
    char body[256];
    cJSON *obj = cJSON_CreateObject();
    if (obj && cJSON_AddStringToObject(obj, "error", message) &&
        cJSON_PrintPreallocated(obj, body, sizeof(body) - 1, 0)) {
        size_t len = strlen(body);
        body[len++] = '\n';
        respond(c, status, "application/json", body, len, NULL);
    } else {
        conn_close(c, "out of memory");
    }
    cJSON_Delete(obj);
}

/* ---- /metrics ---- */

/* Resident set size in bytes, or -1. Reading procfs on the loop thread is fine: its files are
 * generated by the kernel on read and never wait on a disk. */
static int64_t process_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 2 || page <= 0)
        return -1;
    return (int64_t)(resident * (unsigned long long)page);
}

/* Open file descriptors (not counting the one used to list them), or -1. Procfs, as above. */
static int64_t process_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static void family(textbuf *tb, const char *name, const char *type, const char *help)
{
    tb_printf(tb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(textbuf *tb, const char *name, uint64_t v)
{
    tb_printf(tb, "%s %" PRIu64 "\n", name, v);
}

static void metric_u64(textbuf *tb, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    family(tb, name, type, help);
    sample_u64(tb, name, v);
}

static void build_metrics(const kp_server *s, textbuf *tb)
{
    const kp_server_counters *k = &s->counters;
    kp_pipeline_stats ps = kp_pipeline_get_stats(s->pipeline);

    metric_u64(tb, "kupool_sessions", "gauge", "Authorized sessions.", s->authorized.count);
    metric_u64(tb, "kupool_connections", "gauge", "Open miner connections (authorized or not).",
               s->connections);
    metric_u64(tb, "kupool_connections_accepted_total", "counter",
               "Miner connections accepted.", k->connections_accepted);
    metric_u64(tb, "kupool_connections_rejected_total", "counter",
               "Miner connections closed at accept because -max_conns was reached.",
               k->connections_rejected);

    family(tb, "kupool_sessions_closed_total", "counter",
           "Sessions closed by the server, by reason.");
    const struct {
        const char *reason;
        uint64_t value;
    } closed[] = {
        {"auth_timeout", k->closed_auth_timeout},
        {"too_long", k->closed_too_long},
        {"slow", k->closed_slow},
        {"max_errors", k->closed_max_errors},
    };
    for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++)
        tb_printf(tb, "kupool_sessions_closed_total{reason=\"%s\"} %" PRIu64 "\n",
                  closed[i].reason, closed[i].value);

    metric_u64(tb, "kupool_jobs_issued_total", "counter", "Jobs issued.", k->jobs_issued);
    metric_u64(tb, "kupool_job_id", "gauge", "Id of the current job.",
               s->job_line_id > 0 ? (uint64_t)s->job_line_id : 0);
    family(tb, "kupool_broadcast_duration_seconds", "gauge",
           "Duration of the last completed job broadcast to every session.");
    tb_printf(tb, "kupool_broadcast_duration_seconds %.6f\n", (double)k->last_broadcast_us / 1e6);

    family(tb, "kupool_submits_total", "counter", "Responses to submit requests, by outcome.");
    for (int oc = 0; oc < KP_OUTCOME_COUNT; oc++)
        tb_printf(tb, "kupool_submits_total{outcome=\"%s\"} %" PRIu64 "\n",
                  kp_outcome_label((kp_outcome)oc), s->protocol.submits[oc]);
    family(tb, "kupool_messages_total", "counter",
           "Responses to every protocol message (authorize, submit, malformed), by outcome.");
    for (int oc = 0; oc < KP_OUTCOME_COUNT; oc++)
        tb_printf(tb, "kupool_messages_total{outcome=\"%s\"} %" PRIu64 "\n",
                  kp_outcome_label((kp_outcome)oc), s->protocol.outcomes[oc]);

    metric_u64(tb, "kupool_events_accepted_total", "counter",
               "Accepted submits handed to the event pipeline.", ps.accepted);
    metric_u64(tb, "kupool_events_published_total", "counter",
               "Events the message queue confirmed.", ps.published);
    metric_u64(tb, "kupool_events_counted_total", "counter",
               "Events the consumer counted in the stats store and acknowledged (0 with -consume=false).",
               s->consumer ? kp_consumer_counted(s->consumer) : 0);
    metric_u64(tb, "kupool_events_pending", "gauge",
               "Events accepted and not yet confirmed by the message queue.", ps.waiting);
    metric_u64(tb, "kupool_events_spooled", "gauge",
               "Of the pending events, those in the -data_dir spool file.", ps.spooled);

    bool consumer_failing = false, stats_side = false;
    if (s->consumer)
        consumer_failing = kp_consumer_failing(s->consumer, &stats_side);
    bool mq_up = !ps.failing && !(consumer_failing && !stats_side);
    bool stats_up = !(consumer_failing && stats_side);
    family(tb, "kupool_backend_errors_total", "counter",
           "Backend failures: failed publish calls (mq), failed consume or stats writes (stats), "
           "failed spool writes or reads (spool).");
    tb_printf(tb, "kupool_backend_errors_total{backend=\"mq\"} %" PRIu64 "\n", ps.publish_errors);
    tb_printf(tb, "kupool_backend_errors_total{backend=\"spool\"} %" PRIu64 "\n", ps.spool_errors);
    tb_printf(tb, "kupool_backend_errors_total{backend=\"stats\"} %" PRIu64 "\n",
              s->consumer ? kp_consumer_errors(s->consumer) : 0);
    family(tb, "kupool_backend_up", "gauge",
           "1 when the backend's last operation succeeded, 0 while it is failing.");
    tb_printf(tb, "kupool_backend_up{backend=\"mq\"} %d\n", mq_up ? 1 : 0);
    tb_printf(tb, "kupool_backend_up{backend=\"stats\"} %d\n", stats_up ? 1 : 0);

    family(tb, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    tb_printf(tb, "process_resident_memory_bytes %" PRId64 "\n", process_rss_bytes());
    family(tb, "process_open_fds", "gauge", "Number of open file descriptors.");
    tb_printf(tb, "process_open_fds %" PRId64 "\n", process_open_fds());
    struct rlimit rl;
    int64_t max_fds = -1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        max_fds = rl.rlim_cur == RLIM_INFINITY ? INT64_MAX : (int64_t)rl.rlim_cur;
    family(tb, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    tb_printf(tb, "process_max_fds %" PRId64 "\n", max_fds);
}

static void serve_metrics(admin_conn *c)
{
    textbuf tb = {0};
    build_metrics(c->admin->server, &tb);
    if (tb.oom)
        respond_text(c, 500, "out of memory\n");
    else
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", tb.data, tb.len, NULL);
    free(tb.data);
}

/* ---- /healthz ---- */

static void serve_healthz(admin_conn *c)
{
    const kp_server *s = c->admin->server;
    if (s->shutting_down) {
        respond_text(c, 503, "shutting down\n");
        return;
    }
    char body[256] = "";
    size_t len = 0;
    bool consumer_failing = false, stats_side = false;
    if (s->consumer)
        consumer_failing = kp_consumer_failing(s->consumer, &stats_side);
    if (kp_pipeline_get_stats(s->pipeline).failing || (consumer_failing && !stats_side))
        len += (size_t)snprintf(body + len, sizeof(body) - len, "mq failing: %s\n", s->mq->name);
    if (consumer_failing && stats_side)
        len += (size_t)snprintf(body + len, sizeof(body) - len, "stats failing: %s\n",
                                s->stats->name);
    if (len)
        respond_text(c, 503, body);
    else
        respond_text(c, 200, "ok\n");
}

/* ---- /stats ---- */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes one application/x-www-form-urlencoded component ('+' is a space, %XX a byte) into
 * out[cap]. Returns the decoded length, or -1 when it is malformed or does not fit. */
static long form_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hex_value(in[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (w + 1 >= cap)
            return -1;
        out[w++] = ch;
    }
    out[w] = '\0';
    return (long)w;
}

/* Finds `username` in the query string. Returns 0 and fills out, KP_EINVAL when it is missing,
 * empty, malformed, too long or holds a control character. */
static int query_username(const char *query, size_t len, char out[USERNAME_MAX + 1])
{
    const char *p = query, *end = query + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        char key[16];
        const char *kend = eq ? eq : stop;
        if (form_decode(p, (size_t)(kend - p), key, sizeof(key)) >= 0 &&
            strcmp(key, "username") == 0) {
            const char *v = eq ? eq + 1 : stop;
            long n = form_decode(v, (size_t)(stop - v), out, USERNAME_MAX + 1);
            if (n <= 0)
                return KP_EINVAL;
            for (long i = 0; i < n; i++)
                if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                    return KP_EINVAL;
            return 0;
        }
        p = stop + 1;
    }
    return KP_EINVAL;
}

static void stats_work(uv_work_t *req)
{
    stats_job *job = req->data;
    job->rc = kp_stats_query(job->stats, job->username, &job->counts, &job->n);
}

static void format_minute(int64_t unix_s, char out[32])
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%" PRId64, unix_s);
}

static char *stats_json(const stats_job *job)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root && cJSON_AddStringToObject(root, "username", job->username);
    cJSON *minutes = ok ? cJSON_AddArrayToObject(root, "minutes") : NULL;
    ok = minutes != NULL;
    for (size_t i = 0; ok && i < job->n; i++) {
        char when[32];
        format_minute(job->counts[i].minute, when);
        cJSON *item = cJSON_CreateObject();
        ok = item && cJSON_AddItemToArray(minutes, item) &&
             cJSON_AddStringToObject(item, "minute", when) &&
             cJSON_AddNumberToObject(item, "count", (double)job->counts[i].count);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

static void stats_done(uv_work_t *req, int status)
{
    stats_job *job = req->data;
    admin_conn *c = job->conn;
    if (!c->closing) {
        if (status != 0 || job->rc != 0) {
            KP_WARN(MODULE, "stats query failed", "store=%s error=\"%s\"", job->stats->name,
                    status != 0 ? uv_strerror(status) : kp_strerror(job->rc));
            respond_json_error(c, 503, "stats store unavailable");
        } else {
            char *text = stats_json(job);
            if (text) {
                size_t len = strlen(text);
                text[len] = '\n'; /* replaces the NUL: the body is sized explicitly */
                respond(c, 200, "application/json", text, len + 1, NULL);
                cJSON_free(text);
            } else {
                respond_text(c, 500, "out of memory\n");
            }
        }
    }
    free(job->counts);
    free(job);
    conn_release(c);
}

static void serve_stats(admin_conn *c, const char *query, size_t query_len)
{
    kp_server *s = c->admin->server;
    stats_job *job = calloc(1, sizeof(*job));
    if (!job) {
        respond_text(c, 500, "out of memory\n");
        return;
    }
    if (query_username(query, query_len, job->username) != 0) {
        free(job);
        respond_json_error(c, 400, "username: 1..255 bytes without control characters required");
        return;
    }
    /* The store may block (PostgreSQL): the query runs on a worker, the answer in stats_done. */
    job->conn = c;
    job->stats = s->stats;
    job->req.data = job;
    c->refs++;
    c->state = CONN_QUERYING;
    int rc = uv_queue_work(s->loop, &job->req, stats_work, stats_done);
    if (rc != 0) {
        c->refs--;
        free(job);
        respond_json_error(c, 503, "stats store unavailable");
    }
}

/* ---- requests ---- */

static void handle_request(admin_conn *c)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!c->url || http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH))) {
        respond_text(c, 400, "bad request target\n");
        return;
    }
    const char *route = route_name(c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (!route) {
        respond_text(c, 404, "not found\n");
        return;
    }
    if (c->parser.method != HTTP_GET) {
        static const char text[] = "method not allowed\n";
        respond(c, 405, "text/plain; charset=utf-8", text, sizeof(text) - 1, "Allow: GET\r\n");
        return;
    }
    bool has_body = (c->parser.flags & F_CHUNKED) ||
                    (c->parser.content_length > 0 && c->parser.content_length != ULLONG_MAX);
    if (has_body) {
        respond_text(c, 400, "a request body is not accepted\n");
        return;
    }
    if (strcmp(route, "/metrics") == 0) {
        serve_metrics(c);
    } else if (strcmp(route, "/healthz") == 0) {
        serve_healthz(c);
    } else {
        const char *q = "";
        size_t qlen = 0;
        if (u.field_set & (1u << UF_QUERY)) {
            q = c->url + u.field_data[UF_QUERY].off;
            qlen = u.field_data[UF_QUERY].len;
        }
        serve_stats(c, q, qlen);
    }
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    admin_conn *c = p->data;
    c->have_method = true; /* the method precedes the target */
    if (c->url_len + len + 1 > c->url_cap) {
        size_t cap = c->url_cap ? c->url_cap : 128;
        while (cap < c->url_len + len + 1)
            cap *= 2;
        char *grown = realloc(c->url, cap);
        if (!grown)
            return 1;
        c->url = grown;
        c->url_cap = cap;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    admin_conn *c = p->data;
    handle_request(c);
    /* Whatever follows (a body, a pipelined request) is not parsed: the connection closes after
     * this one response. */
    http_parser_pause(p, 1);
    return 0;
}

static void feed(admin_conn *c, const char *data, size_t len)
{
    size_t room = KP_ADMIN_MAX_HEAD - c->head_bytes;
    size_t n = len < room ? len : room;
    size_t used = http_parser_execute(&c->parser, &c->admin->settings, data, n);
    c->head_bytes += used;
    if (c->closing || c->state != CONN_READING)
        return; /* the request was dispatched (or the connection failed) */
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err != HPE_OK) {
        if (kp_log_enabled(KP_LOG_DEBUG))
            KP_DEBUG(MODULE, "bad request", "error=%s", http_errno_name(err));
        respond_text(c, 400, "bad request\n");
        return;
    }
    if (c->head_bytes >= KP_ADMIN_MAX_HEAD)
        respond_text(c, 431, "request line and headers exceed 8 KiB\n");
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
        if (nread == UV_EOF && (c->state == CONN_QUERYING || c->state == CONN_WRITING)) {
            /* A client that half-closes after its request still gets the answer. */
            c->peer_eof = true;
            uv_read_stop(stream);
            return;
        }
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (c->state == CONN_READING) {
        feed(c, buf->base, (size_t)nread);
        return;
    }
    c->discarded += (size_t)nread;
    if (c->discarded > ADMIN_DISCARD_MAX)
        conn_close(c, "too much data after the request");
}

/* ---- listener and deadlines ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    kp_admin *a = listener->data;
    if (status < 0) {
        KP_WARN(MODULE, "accept failed", "error=\"%s\"", uv_strerror(status));
        return;
    }
    admin_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        KP_ERROR(MODULE, "out of memory accepting a connection", NULL);
        return;
    }
    c->admin = a;
    c->refs = 1;
    a->nalive++;
    uv_tcp_init(a->server->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    if (a->nopen >= KP_ADMIN_MAX_CONNS || a->closing) {
        if (a->rejected++ % 100 == 0)
            KP_WARN(MODULE, "connection refused: too many admin connections",
                    "max=%d rejected=%" PRIu64, KP_ADMIN_MAX_CONNS, a->rejected);
        conn_close(c, "too many admin connections");
        return;
    }
    c->listed = true;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->nopen++;
    c->deadline_ms = uv_now(a->server->loop) + KP_ADMIN_REQUEST_TIMEOUT_MS;
    c->state = CONN_READING;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0)
        conn_close(c, uv_strerror(rc));
}

static void on_sweep(uv_timer_t *t)
{
    kp_admin *a = t->data;
    uint64_t now = uv_now(a->server->loop);
    for (admin_conn *c = a->conns, *next; c; c = next) {
        next = c->next;
        if (now >= c->deadline_ms)
            conn_close(c, c->state == CONN_LINGERING ? "response sent" : "request timeout");
    }
}

static void on_admin_handle_close(uv_handle_t *h)
{
    kp_admin *a = h->data;
    a->handles_open--;
    admin_maybe_free(a);
}

int kp_admin_open(kp_server *s, const char *addr, kp_admin **out)
{
    *out = NULL;
    char host[256];
    int port = 0;
    struct sockaddr_storage sa;
    if (kp_split_host_port(addr, host, sizeof(host), &port) != 0 || kp_resolve_listen(host, port, &sa) != 0) {
        KP_ERROR(MODULE, "cannot resolve -http_addr", "addr=\"%s\"", addr);
        return KP_EINVAL;
    }
    kp_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return KP_ENOMEM;
    a->server = s;
    http_parser_settings_init(&a->settings);
    a->settings.on_url = on_url;
    a->settings.on_headers_complete = on_headers_complete;

    uv_tcp_init(s->loop, &a->listener);
    a->listener.data = a;
    uv_timer_init(s->loop, &a->sweep);
    a->sweep.data = a;
    a->handles_open = 2;
    int rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, ADMIN_BACKLOG, on_connection);
    if (rc != 0) {
        KP_ERROR(MODULE, "cannot listen", "addr=\"%s\" error=\"%s\"", addr, uv_strerror(rc));
        kp_admin_close(a);
        return KP_EIO;
    }
    uv_timer_start(&a->sweep, on_sweep, ADMIN_SWEEP_MS, ADMIN_SWEEP_MS);
    int len = sizeof(sa);
    uv_tcp_getsockname(&a->listener, (struct sockaddr *)&sa, &len);
    char shown[300];
    kp_format_sockaddr((const struct sockaddr *)&sa, shown, sizeof(shown));
    KP_INFO(MODULE, "started", "listen=\"%s\"", shown);
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
    uv_close((uv_handle_t *)&a->listener, on_admin_handle_close);
    uv_close((uv_handle_t *)&a->sweep, on_admin_handle_close);
}
