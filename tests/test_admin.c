/* Integration tests of the admin HTTP endpoint (SPEC §5, -http_addr): the real kupool-server
 * binary, plain blocking sockets, one request per connection (the server answers with
 * `Connection: close`, so a response is everything read until EOF).
 *
 * /metrics is checked line by line against the Prometheus text exposition format (0.0.4): every
 * line is a HELP or TYPE comment, another comment, or a sample whose metric and label names match
 * the format's regular expressions and whose value is a float; every sample's family has its
 * TYPE before the first sample, and a family's lines form one group.
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "admin.h"
#include "testsupport.h"

#define REPLY_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 20000
#define LINE_MAX_TEST 8192

static const char *const server_env[] = {"KUP_LOG_LEVEL=info", NULL};

/* ---- fixture: the server of the current test --------------------------------------------------- */

typedef struct fixture {
    kp_proc proc;
    int admin_port;
} fixture;

static int fixture_setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    *state = fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *fx = *state;
    kp_proc_abandon(&fx->proc);
    free(fx);
    return 0;
}

static void server_start(fixture *fx, const char *const *extra)
{
    const char *args[32];
    size_t n = 0;
    args[n++] = "-http_addr";
    args[n++] = "127.0.0.1:0";
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    kp_proc_start(&fx->proc, args, server_env);
    fx->admin_port = kp_proc_listen_port(&fx->proc, "http.admin", 5000);
}

static void server_stop(fixture *fx)
{
    int status = kp_proc_stop(&fx->proc, SIGTERM, STOP_TIMEOUT_MS);
    fx->proc.pid = 0;
    if (status != 0)
        fprintf(stderr, "---- server log (exit %d) ----\n%s\n----\n", status, fx->proc.log);
    assert_int_equal(status, 0);
}

/* ---- HTTP over plain sockets ------------------------------------------------------------------- */

typedef struct http_response {
    int status;
    char *raw;        /* everything read, NUL-terminated */
    size_t raw_len;
    const char *body; /* into raw */
    size_t body_len;
} http_response;

static void response_free(http_response *r)
{
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

/* Reads until EOF (or reset, after which what arrived is kept). Fails on timeout. */
static void read_to_eof(int fd, http_response *r, int timeout_ms)
{
    size_t cap = 16384;
    r->raw = malloc(cap);
    assert_non_null(r->raw);
    r->raw_len = 0;
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            fail_msg("no EOF within %d ms; read so far: %.*s", timeout_ms, (int)r->raw_len, r->raw);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        if (r->raw_len + 4096 + 1 > cap) {
            cap *= 2;
            r->raw = realloc(r->raw, cap);
            assert_non_null(r->raw);
        }
        ssize_t n = recv(fd, r->raw + r->raw_len, cap - r->raw_len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->raw_len += (size_t)n;
    }
    r->raw[r->raw_len] = '\0';
}

/* Splits raw into status and body, checking the framing: a status line, headers, a
 * Content-Length equal to the body's length and Connection: close. */
static void parse_response(http_response *r)
{
    int minor = -1;
    if (sscanf(r->raw, "HTTP/1.%d %d ", &minor, &r->status) != 2)
        fail_msg("not an HTTP response: %.200s", r->raw);
    char *end = strstr(r->raw, "\r\n\r\n");
    if (!end)
        fail_msg("no end of headers: %.200s", r->raw);
    r->body = end + 4;
    r->body_len = r->raw_len - (size_t)(r->body - r->raw);
    const char *cl = strcasestr(r->raw, "\r\nContent-Length: ");
    if (!cl || cl > end)
        fail_msg("no Content-Length: %.200s", r->raw);
    assert_int_equal(strtoull(cl + 18, NULL, 10), r->body_len);
    const char *conn = strcasestr(r->raw, "\r\nConnection: close\r\n");
    if (!conn || conn > end)
        fail_msg("no Connection: close: %.200s", r->raw);
}

/* One raw request on a new connection; the response is read until the server closes. */
static void http_raw(int port, const char *request, size_t len, http_response *r)
{
    int fd = kp_connect(port, 0);
    kp_try_send(fd, request, len);
    read_to_eof(fd, r, REPLY_TIMEOUT_MS);
    kp_close(fd);
    parse_response(r);
}

static void http_get(int port, const char *target, http_response *r)
{
    char req[LINE_MAX_TEST];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n",
                     target);
    assert_true(n > 0 && (size_t)n < sizeof(req));
    http_raw(port, req, (size_t)n, r);
}

static int header_is(const http_response *r, const char *header_line)
{
    const char *end = strstr(r->raw, "\r\n\r\n");
    const char *h = strcasestr(r->raw, header_line);
    return h && h < end;
}

/* ---- the Prometheus text format ---------------------------------------------------------------- */

static int is_name_start(char ch, int colon_ok)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (colon_ok && ch == ':');
}

static int is_name_char(char ch, int colon_ok)
{
    return is_name_start(ch, colon_ok) || (ch >= '0' && ch <= '9');
}

/* Length of the metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or label name ([a-zA-Z_][a-zA-Z0-9_]*)
 * at p, 0 if there is none. */
static size_t name_len(const char *p, int colon_ok)
{
    if (!is_name_start(*p, colon_ok))
        return 0;
    size_t n = 1;
    while (is_name_char(p[n], colon_ok))
        n++;
    return n;
}

/* A sample value: a Go float (decimal, exponent, NaN, +Inf, -Inf). */
static int is_float(const char *text)
{
    if (!strcmp(text, "NaN") || !strcmp(text, "+Inf") || !strcmp(text, "-Inf") || !strcmp(text, "Inf"))
        return 1;
    for (const char *p = text; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    (void)v;
    return *text && end && *end == '\0';
}

typedef struct family_seen {
    char name[128];
    char type[16];
    int has_help, has_type, has_samples, closed;
} family_seen;

typedef struct prom_check {
    family_seen families[128];
    size_t nfamilies;
    family_seen *current; /* the family whose group is open */
    char samples[512][256];
    size_t nsamples;
} prom_check;

static family_seen *family_find(prom_check *pc, const char *name, size_t len)
{
    for (size_t i = 0; i < pc->nfamilies; i++)
        if (strlen(pc->families[i].name) == len && !memcmp(pc->families[i].name, name, len))
            return &pc->families[i];
    return NULL;
}

/* Enters `name`'s group: a family's lines must be contiguous. */
static family_seen *family_enter(prom_check *pc, const char *name, size_t len, int lineno)
{
    family_seen *f = family_find(pc, name, len);
    if (f && f != pc->current && f->closed)
        fail_msg("line %d: family %.*s appears in two groups", lineno, (int)len, name);
    if (!f) {
        assert_true(pc->nfamilies < sizeof(pc->families) / sizeof(pc->families[0]));
        assert_true(len < sizeof(f->name));
        f = &pc->families[pc->nfamilies++];
        memset(f, 0, sizeof(*f));
        memcpy(f->name, name, len);
    }
    if (pc->current && pc->current != f)
        pc->current->closed = 1;
    pc->current = f;
    return f;
}

static void check_comment(prom_check *pc, const char *line, int lineno)
{
    int help = !strncmp(line, "# HELP ", 7), type = !strncmp(line, "# TYPE ", 7);
    if (!help && !type)
        return; /* any other comment is allowed and ignored */
    const char *name = line + 7;
    size_t n = name_len(name, 1);
    if (n == 0)
        fail_msg("line %d: bad metric name: %s", lineno, line);
    family_seen *f = family_enter(pc, name, n, lineno);
    const char *rest = name + n;
    if (help) {
        if (f->has_help)
            fail_msg("line %d: second HELP for %s", lineno, f->name);
        if (*rest != ' ' || rest[1] == '\0')
            fail_msg("line %d: HELP without text: %s", lineno, line);
        for (const char *p = rest + 1; *p; p++) /* only \\ and \n escapes are defined */
            if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
                fail_msg("line %d: bad escape in HELP: %s", lineno, line);
        f->has_help = 1;
        return;
    }
    if (f->has_type)
        fail_msg("line %d: second TYPE for %s", lineno, f->name);
    if (f->has_samples)
        fail_msg("line %d: TYPE after samples of %s", lineno, f->name);
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    int ok = 0;
    if (*rest == ' ')
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (!strcmp(rest + 1, types[i]))
                ok = 1;
    if (!ok)
        fail_msg("line %d: bad TYPE: %s", lineno, line);
    snprintf(f->type, sizeof(f->type), "%s", rest + 1);
    f->has_type = 1;
}

/* The family a sample belongs to: its own name, or for histograms and summaries the name
 * without _bucket/_sum/_count. */
static family_seen *sample_family(prom_check *pc, const char *name, size_t len)
{
    family_seen *f = family_find(pc, name, len);
    if (f)
        return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len > sl && !memcmp(name + len - sl, suffixes[i], sl)) {
            f = family_find(pc, name, len - sl);
            if (f && (!strcmp(f->type, "histogram") || !strcmp(f->type, "summary")))
                return f;
        }
    }
    return NULL;
}

static void check_sample(prom_check *pc, const char *line, int lineno)
{
    size_t n = name_len(line, 1);
    if (n == 0)
        fail_msg("line %d: bad metric name: %s", lineno, line);
    family_seen *f = sample_family(pc, line, n);
    if (!f || !f->has_type)
        fail_msg("line %d: sample without a TYPE line before it: %s", lineno, line);
    if (f != pc->current)
        fail_msg("line %d: sample outside its family's group: %s", lineno, line);
    f->has_samples = 1;
    const char *p = line + n;
    if (*p == '{') {
        p++;
        char labels_seen[16][64];
        size_t nlabels = 0;
        while (*p != '}') {
            size_t ln = name_len(p, 0);
            if (ln == 0 || ln >= 64)
                fail_msg("line %d: bad label name: %s", lineno, line);
            for (size_t i = 0; i < nlabels; i++)
                if (strlen(labels_seen[i]) == ln && !memcmp(labels_seen[i], p, ln))
                    fail_msg("line %d: repeated label: %s", lineno, line);
            assert_true(nlabels < 16);
            memcpy(labels_seen[nlabels], p, ln);
            labels_seen[nlabels++][ln] = '\0';
            p += ln;
            if (p[0] != '=' || p[1] != '"')
                fail_msg("line %d: label without =\"value\": %s", lineno, line);
            p += 2;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                        fail_msg("line %d: bad escape in label value: %s", lineno, line);
                    p++;
                }
                p++;
            }
            if (*p != '"')
                fail_msg("line %d: unterminated label value: %s", lineno, line);
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                fail_msg("line %d: expected , or } after a label: %s", lineno, line);
        }
        p++;
    }
    /* The series (name and labels) must be unique. */
    size_t series_len = (size_t)(p - line);
    assert_true(series_len < sizeof(pc->samples[0]));
    for (size_t i = 0; i < pc->nsamples; i++)
        if (strlen(pc->samples[i]) == series_len && !memcmp(pc->samples[i], line, series_len))
            fail_msg("line %d: duplicate series: %s", lineno, line);
    assert_true(pc->nsamples < sizeof(pc->samples) / sizeof(pc->samples[0]));
    memcpy(pc->samples[pc->nsamples], line, series_len);
    pc->samples[pc->nsamples++][series_len] = '\0';

    if (*p != ' ')
        fail_msg("line %d: no space before the value: %s", lineno, line);
    p++;
    char value[64];
    const char *sp = strchr(p, ' ');
    size_t vl = sp ? (size_t)(sp - p) : strlen(p);
    if (vl == 0 || vl >= sizeof(value))
        fail_msg("line %d: bad value: %s", lineno, line);
    memcpy(value, p, vl);
    value[vl] = '\0';
    if (!is_float(value))
        fail_msg("line %d: value is not a float: %s", lineno, line);
    if (sp) { /* optional timestamp: an integer of milliseconds */
        const char *ts = sp + 1;
        if (*ts == '-')
            ts++;
        if (!*ts || strspn(ts, "0123456789") != strlen(ts))
            fail_msg("line %d: bad timestamp: %s", lineno, line);
    }
}

/* Checks every line of a /metrics body. */
static void check_exposition(const char *body, size_t len)
{
    if (len == 0 || body[len - 1] != '\n')
        fail_msg("the exposition must end with a newline");
    prom_check *pc = calloc(1, sizeof(*pc));
    assert_non_null(pc);
    int lineno = 0;
    for (const char *line = body; line < body + len;) {
        const char *eol = memchr(line, '\n', (size_t)(body + len - line));
        size_t ll = (size_t)(eol - line);
        char buf[1024];
        lineno++;
        if (ll >= sizeof(buf)) {
            fail_msg("line %d too long", lineno);
            ll = sizeof(buf) - 1; /* not reached: fail_msg jumps out of the test */
        }
        memcpy(buf, line, ll);
        buf[ll] = '\0';
        if (memchr(buf, '\r', ll) || strlen(buf) != ll)
            fail_msg("line %d: CR or NUL in a line", lineno);
        if (buf[0] == '#')
            check_comment(pc, buf, lineno);
        else if (buf[0] != '\0') /* blank lines are allowed by the format */
            check_sample(pc, buf, lineno);
        line = eol + 1;
    }
    for (size_t i = 0; i < pc->nfamilies; i++)
        if (!pc->families[i].has_samples)
            fail_msg("family %s has no samples", pc->families[i].name);
    free(pc);
}

/* The value of the series `series` ("name" or "name{l=\"v\"}"); fails when it is missing. */
static double metric_value(const http_response *r, const char *series)
{
    size_t sl = strlen(series);
    for (const char *line = r->body; line < r->body + r->body_len;) {
        const char *eol = memchr(line, '\n', (size_t)(r->body + r->body_len - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > sl && !memcmp(line, series, sl) && line[sl] == ' ')
            return strtod(line + sl + 1, NULL);
        line = eol + 1;
    }
    fail_msg("no series %s in /metrics", series);
    return NAN;
}

static void get_metrics(int port, http_response *r)
{
    http_get(port, "/metrics", r);
    assert_int_equal(r->status, 200);
    assert_true(header_is(r, "\r\nContent-Type: text/plain; version=0.0.4"));
    check_exposition(r->body, r->body_len);
}

/* Polls /metrics until `series` equals `want` (or timeout). */
static void wait_metric(int port, const char *series, double want, int timeout_ms)
{
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    double got = NAN;
    for (;;) {
        http_response r = {0};
        get_metrics(port, &r);
        got = metric_value(&r, series);
        response_free(&r);
        if (got == want)
            return;
        if (kp_test_now_ms() >= deadline)
            break;
        usleep(50 * 1000);
    }
    fail_msg("%s is %g, expected %g", series, got, want);
}

/* ---- miners ------------------------------------------------------------------------------------ */

typedef struct miner {
    int fd;
    int64_t job_id;
    char nonce[33];
} miner;

/* The next line that is not a job notification (remembering the newest job). */
static void miner_reply(miner *m, char *buf, size_t cap)
{
    for (;;) {
        kp_expect_line(m->fd, buf, cap, REPLY_TIMEOUT_MS);
        cJSON *msg = cJSON_Parse(buf);
        assert_non_null(msg);
        cJSON *method = cJSON_GetObjectItem(msg, "method");
        int is_job = cJSON_IsString(method) && !strcmp(method->valuestring, "job");
        if (is_job) {
            cJSON *params = cJSON_GetObjectItem(msg, "params");
            m->job_id = (int64_t)cJSON_GetObjectItem(params, "job_id")->valuedouble;
            snprintf(m->nonce, sizeof(m->nonce), "%s",
                     cJSON_GetObjectItem(params, "server_nonce")->valuestring);
        }
        cJSON_Delete(msg);
        if (!is_job)
            return;
    }
}

static void miner_expect(miner *m, const char *want)
{
    char buf[LINE_MAX_TEST];
    miner_reply(m, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static miner miner_authorize(int port, const char *username)
{
    miner m = {.fd = kp_connect(port, 0)};
    kp_sendf(m.fd, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"%s\"}}\n", username);
    miner_expect(&m, "{\"id\":1,\"result\":true}");
    char buf[LINE_MAX_TEST];
    kp_expect_line(m.fd, buf, sizeof(buf), REPLY_TIMEOUT_MS); /* the current job */
    cJSON *msg = cJSON_Parse(buf);
    assert_non_null(msg);
    cJSON *params = cJSON_GetObjectItem(msg, "params");
    assert_non_null(params);
    m.job_id = (int64_t)cJSON_GetObjectItem(params, "job_id")->valuedouble;
    snprintf(m.nonce, sizeof(m.nonce), "%s", cJSON_GetObjectItem(params, "server_nonce")->valuestring);
    cJSON_Delete(msg);
    return m;
}

static void miner_submit(miner *m, int64_t id, const char *client_nonce, int valid)
{
    char result[65];
    kp_test_result(m->nonce, client_nonce, result);
    if (!valid)
        result[0] = result[0] == '0' ? '1' : '0';
    kp_sendf(m->fd,
             "{\"id\":%" PRId64 ",\"method\":\"submit\",\"params\":{\"job_id\":%" PRId64
             ",\"client_nonce\":\"%s\",\"result\":\"%s\"}}\n",
             id, m->job_id, client_nonce, result);
}

static int64_t unix_minute_now(void)
{
    return (int64_t)time(NULL) / 60 * 60;
}

/* "2026-11-24T20:31:00Z" -> Unix seconds. */
static int64_t parse_minute(const char *text)
{
    struct tm tm = {0};
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end != '\0')
        fail_msg("bad minute: %s", text);
    assert_int_equal(tm.tm_sec, 0);
    return (int64_t)timegm(&tm);
}

/* ---- tests ------------------------------------------------------------------------------------- */

static void test_metrics(void **state)
{
    fixture *fx = *state;
    const char *const args[] = {"-min_submit_interval", "0", "-interval", "30s", NULL};
    server_start(fx, args);

    http_response r = {0};
    get_metrics(fx->admin_port, &r);
    static const char *const families[] = {
        "# TYPE kupool_sessions gauge\n",
        "# TYPE kupool_connections gauge\n",
        "# TYPE kupool_connections_accepted_total counter\n",
        "# TYPE kupool_connections_rejected_total counter\n",
        "# TYPE kupool_sessions_closed_total counter\n",
        "# TYPE kupool_jobs_issued_total counter\n",
        "# TYPE kupool_job_id gauge\n",
        "# TYPE kupool_submits_total counter\n",
        "# TYPE kupool_events_accepted_total counter\n",
        "# TYPE kupool_events_published_total counter\n",
        "# TYPE kupool_events_counted_total counter\n",
        "# TYPE kupool_events_pending gauge\n",
        "# TYPE kupool_events_spooled gauge\n",
        "# TYPE kupool_backend_errors_total counter\n",
        "# TYPE kupool_backend_up gauge\n",
        "# TYPE kupool_broadcast_duration_seconds gauge\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n",
    };
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        if (!strstr(r.body, families[i]))
            fail_msg("missing family: %s", families[i]);
    assert_true(metric_value(&r, "kupool_jobs_issued_total") >= 1);
    assert_true(metric_value(&r, "kupool_job_id") >= 1);
    assert_true(metric_value(&r, "process_resident_memory_bytes") > 0);
    assert_true(metric_value(&r, "process_open_fds") > 0);
    assert_true(metric_value(&r, "kupool_backend_up{backend=\"mq\"}") == 1);
    assert_true(metric_value(&r, "kupool_backend_up{backend=\"stats\"}") == 1);
    assert_true(metric_value(&r, "kupool_submits_total{outcome=\"ok\"}") == 0);
    assert_true(metric_value(&r, "kupool_submits_total{outcome=\"invalid_result\"}") == 0);
    response_free(&r);

    /* Three accepted submits, one duplicate, one wrong result. */
    int64_t minute_before = unix_minute_now();
    miner m = miner_authorize(fx->proc.port, "alice");
    miner_submit(&m, 2, "0a", 1);
    miner_expect(&m, "{\"id\":2,\"result\":true}");
    miner_submit(&m, 3, "0b", 1);
    miner_expect(&m, "{\"id\":3,\"result\":true}");
    miner_submit(&m, 4, "0c", 1);
    miner_expect(&m, "{\"id\":4,\"result\":true}");
    miner_submit(&m, 5, "0a", 1);
    miner_expect(&m, "{\"id\":5,\"result\":false,\"error\":\"Duplicate submission\"}");
    miner_submit(&m, 6, "0d", 0);
    miner_expect(&m, "{\"id\":6,\"result\":false,\"error\":\"Invalid result\"}");
    int64_t minute_after = unix_minute_now();

    wait_metric(fx->admin_port, "kupool_events_counted_total", 3, 5000);
    get_metrics(fx->admin_port, &r);
    assert_true(metric_value(&r, "kupool_submits_total{outcome=\"ok\"}") == 3);
    assert_true(metric_value(&r, "kupool_submits_total{outcome=\"duplicate\"}") == 1);
    assert_true(metric_value(&r, "kupool_submits_total{outcome=\"invalid_result\"}") == 1);
    assert_true(metric_value(&r, "kupool_messages_total{outcome=\"ok\"}") == 4); /* + authorize */
    assert_true(metric_value(&r, "kupool_events_accepted_total") == 3);
    assert_true(metric_value(&r, "kupool_events_published_total") == 3);
    assert_true(metric_value(&r, "kupool_events_pending") == 0);
    assert_true(metric_value(&r, "kupool_sessions") == 1);
    assert_true(metric_value(&r, "kupool_connections") == 1);
    assert_true(metric_value(&r, "kupool_connections_accepted_total") == 1);
    response_free(&r);

    /* /stats: the three accepted submits, in the minute(s) they were made. */
    const char *targets[] = {"/stats?username=alice", "/stats?x=1&username=al%69ce&y"};
    for (size_t t = 0; t < 2; t++) {
        http_get(fx->admin_port, targets[t], &r);
        assert_int_equal(r.status, 200);
        assert_true(header_is(&r, "\r\nContent-Type: application/json"));
        cJSON *doc = cJSON_ParseWithLength(r.body, r.body_len);
        assert_non_null(doc);
        assert_string_equal(cJSON_GetObjectItem(doc, "username")->valuestring, "alice");
        cJSON *minutes = cJSON_GetObjectItem(doc, "minutes");
        assert_true(cJSON_IsArray(minutes));
        double total = 0;
        cJSON *item;
        cJSON_ArrayForEach(item, minutes)
        {
            cJSON *minute = cJSON_GetObjectItem(item, "minute");
            cJSON *count = cJSON_GetObjectItem(item, "count");
            cJSON *dsum = cJSON_GetObjectItem(item, "difficulty_sum");
            assert_true(cJSON_IsString(minute) && cJSON_IsNumber(count));
            int64_t at = parse_minute(minute->valuestring);
            assert_true(at >= minute_before && at <= minute_after);
            total += count->valuedouble;
            /* difficulty off: every share weighs 1 */
            assert_true(cJSON_IsNumber(dsum) && dsum->valuedouble == count->valuedouble);
        }
        assert_true(total == 3);
        /* The hashrate covers complete minutes only: the submits were made just now, so at
         * most the minute before the current one can hold them (a run across a boundary). */
        cJSON *hr = cJSON_GetObjectItem(doc, "hashrate");
        assert_true(cJSON_IsObject(hr));
        const char *windows[] = {"1m", "5m", "60m"};
        for (size_t w = 0; w < 3; w++) {
            cJSON *h = cJSON_GetObjectItem(hr, windows[w]);
            assert_true(cJSON_IsNumber(h) && h->valuedouble >= 0 && h->valuedouble <= 3.0 / 60);
        }
        cJSON_Delete(doc);
        response_free(&r);
    }

    http_get(fx->admin_port, "/stats?username=bob", &r);
    assert_int_equal(r.status, 200);
    static const char bob[] =
        "{\"username\":\"bob\",\"minutes\":[],\"hashrate\":{\"1m\":0,\"5m\":0,\"60m\":0}}\n";
    assert_true(r.body_len == strlen(bob));
    assert_memory_equal(r.body, bob, r.body_len);
    response_free(&r);

    kp_close(m.fd);
    wait_metric(fx->admin_port, "kupool_connections", 0, 5000);
    server_stop(fx);
}

static void test_requests(void **state)
{
    fixture *fx = *state;
    server_start(fx, NULL);
    int port = fx->admin_port;
    http_response r = {0};

    http_get(port, "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 3);
    assert_memory_equal(r.body, "ok\n", 3);
    response_free(&r);

    /* /stats without a usable username: 400 with a JSON error. */
    const char *bad[] = {"/stats", "/stats?username=", "/stats?user=alice", "/stats?username=a%0Ab",
                         "/stats?username=%zz",
                         /* Not UTF-8, or UTF-8 no authorize would accept (issue 9): these used
                          * to be answered 200 with the bytes echoed into the JSON. */
                         "/stats?username=%ff%fe", "/stats?username=a%c3", "/stats?username=%c3%28",
                         "/stats?username=%c0%af", "/stats?username=%ed%a0%80",
                         "/stats?username=%f4%90%80%80", "/stats?username=%c2%85",
                         "/stats?username=a%00b", "/stats?username=%7f", "/stats?username=%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_get(port, bad[i], &r);
        if (r.status != 400)
            fail_msg("%s: status %d", bad[i], r.status);
        cJSON *doc = cJSON_ParseWithLength(r.body, r.body_len);
        assert_non_null(doc);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(doc, "error")));
        cJSON_Delete(doc);
        response_free(&r);
    }

    /* Valid UTF-8 is served, and the answer is valid JSON naming the decoded user. */
    http_get(port, "/stats?username=j%C3%BCrgen+%F0%9F%98%80", &r);
    assert_int_equal(r.status, 200);
    {
        cJSON *doc = cJSON_ParseWithLength(r.body, r.body_len);
        assert_non_null(doc);
        assert_string_equal(cJSON_GetObjectItem(doc, "username")->valuestring,
                            "j\xc3\xbcrgen \xf0\x9f\x98\x80");
        cJSON_Delete(doc);
    }
    response_free(&r);

    http_get(port, "/nope", &r);
    assert_int_equal(r.status, 404);
    response_free(&r);
    http_get(port, "/metrics/extra", &r);
    assert_int_equal(r.status, 404);
    response_free(&r);

    static const char post[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    http_raw(port, post, sizeof(post) - 1, &r);
    assert_int_equal(r.status, 405);
    assert_true(header_is(&r, "\r\nAllow: GET\r\n"));
    response_free(&r);

    static const char garbage[] = "HELLO there\r\n\r\n";
    http_raw(port, garbage, sizeof(garbage) - 1, &r);
    assert_int_equal(r.status, 400);
    response_free(&r);

    static const char with_body[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    http_raw(port, with_body, sizeof(with_body) - 1, &r);
    assert_int_equal(r.status, 400);
    response_free(&r);

    /* HTTP/1.0, and a request trickling in a few bytes at a time. */
    static const char old[] = "GET /healthz HTTP/1.0\r\n\r\n";
    http_raw(port, old, sizeof(old) - 1, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    {
        static const char slow[] = "GET /healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        int fd = kp_connect(port, 0);
        for (size_t off = 0; off < sizeof(slow) - 1; off += 5) {
            size_t n = sizeof(slow) - 1 - off < 5 ? sizeof(slow) - 1 - off : 5;
            assert_int_equal(kp_try_send(fd, slow + off, n), 0);
            usleep(2000);
        }
        read_to_eof(fd, &r, REPLY_TIMEOUT_MS);
        kp_close(fd);
        parse_response(&r);
        assert_int_equal(r.status, 200);
        response_free(&r);
    }

    /* Over-long requests: a 10 KiB target, then a 10 KiB header. */
    size_t big = 10 * 1024;
    char *req = malloc(big + 256);
    assert_non_null(req);
    int n = snprintf(req, big + 256, "GET /metrics?pad=");
    memset(req + n, 'a', big);
    n += (int)big;
    n += snprintf(req + n, 256, " HTTP/1.1\r\nHost: x\r\n\r\n");
    http_raw(port, req, (size_t)n, &r);
    if (r.status != 431 && r.status != 400)
        fail_msg("over-long target: status %d", r.status);
    response_free(&r);
    n = snprintf(req, big + 256, "GET /metrics HTTP/1.1\r\nX-Pad: ");
    memset(req + n, 'b', big);
    n += (int)big;
    n += snprintf(req + n, 256, "\r\n\r\n");
    http_raw(port, req, (size_t)n, &r);
    if (r.status != 431 && r.status != 400)
        fail_msg("over-long header: status %d", r.status);
    response_free(&r);
    free(req);

    /* Still serving. */
    get_metrics(port, &r);
    response_free(&r);
    server_stop(fx);
}

/* 1 when the peer closed fd (EOF or reset) within timeout_ms, having sent nothing. */
static int closed_silently(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    char ch;
    ssize_t n = recv(fd, &ch, 1, 0);
    if (n > 0)
        fail_msg("expected a silent close, got data");
    return 1;
}

static void test_limits(void **state)
{
    fixture *fx = *state;
    server_start(fx, NULL);
    int port = fx->admin_port;

    /* Two idle connections: one silent, one with half a request. Both are closed once
     * KP_ADMIN_REQUEST_TIMEOUT_MS passed since accept. */
    uint64_t opened = kp_test_now_ms();
    int idle = kp_connect(port, 0);
    int half = kp_connect(port, 0);
    static const char partial[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
    assert_int_equal(kp_try_send(half, partial, sizeof(partial) - 1), 0);

    /* Both count as open admin connections meanwhile. */
    wait_metric(port, "kupool_admin_connections", 3, 3000); /* + the scrape's own */

    /* The idle ones are still open well before the timeout... */
    uint64_t elapsed = kp_test_now_ms() - opened;
    if (elapsed + 1000 < KP_ADMIN_REQUEST_TIMEOUT_MS) {
        assert_false(closed_silently(idle, 0));
        assert_false(closed_silently(half, 0));
    }
    /* ...and closed without an answer once it passed. */
    int wait_ms = (int)(KP_ADMIN_REQUEST_TIMEOUT_MS + 3000 - (kp_test_now_ms() - opened));
    assert_true(closed_silently(idle, wait_ms > 0 ? wait_ms : 1));
    assert_true(closed_silently(half, 1000));
    assert_true(kp_test_now_ms() - opened >= KP_ADMIN_REQUEST_TIMEOUT_MS - 500);
    kp_close(idle);
    kp_close(half);
    server_stop(fx);
}

/* Issue 9: KP_ADMIN_MAX_CONNS idle sockets used to fill every admin slot, so /healthz was closed
 * at accept and a load balancer would take the node out. Now the oldest connection that has not
 * sent a complete head makes room for the newcomer. */
static void test_idle_flood(void **state)
{
    fixture *fx = *state;
    server_start(fx, NULL);
    int port = fx->admin_port;

    enum { IDLE = KP_ADMIN_MAX_CONNS + 8 };
    int idle[IDLE];
    static const char partial[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (size_t i = 0; i < IDLE; i++) {
        idle[i] = kp_connect(port, 0);
        if (i % 2) /* half of them with half a request: a slow client */
            assert_int_equal(kp_try_send(idle[i], partial, sizeof(partial) - 1), 0);
    }
    usleep(300 * 1000); /* let the server accept them all */

    for (int k = 0; k < 5; k++) {
        http_response r = {0};
        http_get(port, "/healthz", &r);
        assert_int_equal(r.status, 200);
        response_free(&r);
    }
    /* The oldest idle sockets were closed without an answer; the newest still wait. */
    assert_true(closed_silently(idle[0], 3000));
    assert_true(closed_silently(idle[1], 3000));
    assert_false(closed_silently(idle[IDLE - 1], 0));

    http_response r = {0};
    get_metrics(port, &r);
    assert_true(metric_value(&r, "kupool_admin_connections_evicted_total") >= IDLE - KP_ADMIN_MAX_CONNS + 1);
    assert_true(metric_value(&r, "kupool_admin_connections") <= KP_ADMIN_MAX_CONNS);
    response_free(&r);
    for (size_t i = 0; i < IDLE; i++)
        kp_close(idle[i]);
    server_stop(fx);
}

/* process_open_fds less the admin connections, from one scrape: a scrape's own connection, and
 * the previous one if the server has not seen it close yet, are not the miners'. */
static double fds_besides_admin(int port)
{
    http_response r = {0};
    get_metrics(port, &r);
    double v = metric_value(&r, "process_open_fds") - metric_value(&r, "kupool_admin_connections");
    response_free(&r);
    return v;
}

/* process_open_fds is computed from what the server holds (issue 9: listing /proc/self/fd on the
 * loop cost 9 ms at 15,000 connections); it must still follow the connections. */
static void test_fd_metric(void **state)
{
    fixture *fx = *state;
    server_start(fx, NULL);
    int port = fx->admin_port;

    double before = fds_besides_admin(port);
    assert_true(before > 3);
    enum { N = 40 };
    int miners[N];
    for (size_t i = 0; i < N; i++)
        miners[i] = kp_connect(fx->proc.port, 0);
    wait_metric(port, "kupool_connections", N, 5000);
    double during = fds_besides_admin(port);
    if (during - before != N)
        fail_msg("process_open_fds went from %g to %g with %d more connections", before, during, N);
    for (size_t i = 0; i < N; i++)
        kp_close(miners[i]);
    wait_metric(port, "kupool_connections", 0, 5000);
    double after = fds_besides_admin(port);
    if (after != before)
        fail_msg("process_open_fds is %g after the connections closed, %g before", after, before);
    server_stop(fx);
}

/* A TCP listener that completes handshakes (the kernel does, from the backlog) and never says
 * a word: a PostgreSQL server that hangs. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 256), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Issue 9: with -store pg and a database that never answers, 60 /stats requests on libuv's
 * shared pool stalled publishing for minutes. Queries now have their own thread, a bounded queue
 * and a deadline: events are still published at once, and every request ends with 503/504 (or a
 * close, for a connection evicted before its head was read) within the admin deadline. */
static void test_stats_silent_pg(void **state)
{
    fixture *fx = *state;
    int pg_port = 0;
    int pg = silent_listener(&pg_port);
    char dsn[128];
    snprintf(dsn, sizeof(dsn), "postgresql://127.0.0.1:%d/x", pg_port);
    const char *const args[] = {"-store", "pg", "-pg_dsn", dsn, "-min_submit_interval", "0",
                                "-shutdown_timeout", "2s", NULL};
    server_start(fx, args);
    int port = fx->admin_port;

    enum { QUERIES = 60 };
    int q[QUERIES];
    uint64_t sent = kp_test_now_ms();
    for (int i = 0; i < QUERIES; i++) {
        q[i] = kp_connect(port, 0);
        char req[128];
        int n = snprintf(req, sizeof(req), "GET /stats?username=u%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        kp_try_send(q[i], req, (size_t)n);
        if (i % 2 == 0) { /* abandoned at once */
            kp_close(q[i]);
            q[i] = -1;
        }
    }

    miner m = miner_authorize(fx->proc.port, "alice");
    miner_submit(&m, 2, "0a", 1);
    miner_expect(&m, "{\"id\":2,\"result\":true}");
    wait_metric(port, "kupool_events_published_total", 1, 5000);

    for (int i = 0; i < QUERIES; i++) {
        if (q[i] < 0)
            continue;
        http_response r = {0};
        read_to_eof(q[i], &r, KP_ADMIN_REQUEST_TIMEOUT_MS + 8000);
        kp_close(q[i]);
        if (r.raw_len > 0) {
            parse_response(&r);
            if (r.status != 503 && r.status != 504)
                fail_msg("request %d: status %d", i, r.status);
        }
        response_free(&r);
    }
    uint64_t took = kp_test_now_ms() - sent;
    if (took > KP_ADMIN_REQUEST_TIMEOUT_MS + 6000)
        fail_msg("the /stats requests took %" PRIu64 " ms to end", took);

    /* Still serving, and a second submit is published too. */
    miner_submit(&m, 3, "0b", 1);
    miner_expect(&m, "{\"id\":3,\"result\":true}");
    wait_metric(port, "kupool_events_published_total", 2, 5000);
    kp_close(m.fd);
    server_stop(fx);
    close(pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_requests, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_limits, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_idle_flood, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_fd_metric, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stats_silent_pg, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
