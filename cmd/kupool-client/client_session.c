/* One client session, demo or load mode: connect (TCP or WebSocket), authorize, follow jobs,
 * submit, read answers, reconnect with backoff.
 *
 * Over 600 lines: the session's state machine is one unit (its transitions read each other's
 * state), shared by demo and load mode; the pieces that stand alone (addresses, submit pacing,
 * summary, histogram) already live in files of their own. */
#include "client_session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kupool/error.h"
#include "kupool/event.h"

#define IO_BUF_SIZE (64u * 1024u)
/* The longest line a KuPool server sends is a job notification of about 110 bytes; anything
 * much longer is not a KuPool server. */
#define LINE_MAX_BYTES 4096u
/* A server that leaves this much of our output unread is not keeping up; give up on it. */
#define MAX_QUEUED_BYTES (1024u * 1024u)
#define BACKOFF_FLOOR_MS 10u
#define NONCE_HEX_MAX 64u
/* The largest WebSocket message taken from the server; jobs and answers are far smaller. */
#define WS_MAX_MSG (64u * 1024u)
#define JSON_INT_MAX 9007199254740991.0 /* 2^53 - 1: beyond it a JSON number is not exact */

/* A queued write owns a copy of the bytes the socket did not take at once. */
typedef struct write_req {
    uv_write_t req;
    char bytes[];
} write_req;

static void on_tcp_closed(uv_handle_t *h);
static void on_deadline(uv_timer_t *t);

const char *kc_down_reason_name(kc_down_reason why)
{
    static const char *const names[KC_DOWN_REASON_COUNT] = {
        [KC_DOWN_CONNECT_FAILED] = "connect failed",
        [KC_DOWN_CLOSED_BY_SERVER] = "closed by server",
        [KC_DOWN_AUTH_REJECTED] = "authorize rejected",
        [KC_DOWN_PROTOCOL] = "protocol error",
        [KC_DOWN_TIMEOUT] = "timeout",
        [KC_DOWN_STOPPED] = "stopped",
    };
    return (unsigned)why < KC_DOWN_REASON_COUNT ? names[why] : "unknown";
}

uint64_t kc_backoff_ms(kc_nonce_seq *rng, uint64_t base, uint64_t max, uint32_t attempt)
{
    uint64_t window = base;
    for (uint32_t i = 0; i < attempt && window < max; i++)
        window *= 2;
    if (window > max)
        window = max;
    uint64_t delay = (uint64_t)(kc_random_unit(rng) * (double)window);
    return delay < BACKOFF_FLOOR_MS ? BACKOFF_FLOOR_MS : delay;
}

int kc_client_init(kc_client *c)
{
    c->read_buf_size = IO_BUF_SIZE;
    c->read_buf = malloc(IO_BUF_SIZE);
    c->out_buf = malloc(IO_BUF_SIZE);
    c->out_len = 0;
    c->out_owner = NULL;
    c->read_buf_busy = false;
    if (!c->read_buf || !c->out_buf || kc_nonce_seq_seed(&c->rng) != 0 ||
        kp_hasher_init(&c->hasher) != 0) {
        free(c->read_buf);
        free(c->out_buf);
        c->read_buf = c->out_buf = NULL;
        return KP_ENOMEM;
    }
    return 0;
}

void kc_client_free(kc_client *c)
{
    kp_hasher_free(&c->hasher);
    free(c->read_buf);
    free(c->out_buf);
    c->read_buf = c->out_buf = NULL;
}

int kc_session_init(kc_session *s, kc_client *c, const char *username)
{
    memset(s, 0, sizeof(*s));
    s->client = c;
    s->username = strdup(username);
    s->fifo = calloc(c->max_in_flight + 1, sizeof(*s->fifo));
    if (!s->username || !s->fifo || kc_nonce_seq_seed(&s->nonces) != 0) {
        kc_session_free(s);
        return KP_ENOMEM;
    }
    s->next_id = 1;
    kc_search_init(&s->search, c->hashrate);
    uv_timer_init(c->loop, &s->timer);
    uv_timer_init(c->loop, &s->pace);
    s->timer.data = s;
    s->pace.data = s;
    return 0;
}

void kc_session_free(kc_session *s)
{
    free(s->username);
    free(s->fifo);
    free(s->partial);
    s->username = NULL;
    s->fifo = NULL;
    s->partial = NULL;
}

/* ---- closing: one path for every way a connection ends ---- */

static bool is_connected_state(kc_state st)
{
    return st == KC_STATE_CONNECTING || st == KC_STATE_UPGRADING || st == KC_STATE_AUTHORIZING ||
           st == KC_STATE_READY;
}

static void drop(kc_session *s, kc_down_reason why, const char *detail)
{
    if (!is_connected_state(s->state))
        return;
    s->state = KC_STATE_CLOSING;
    kc_tls_stop(s->tls);
    s->down_reason = why;
    s->down_detail = detail;
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->pace);
    uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
}

static void on_backoff_done(uv_timer_t *t)
{
    kc_session_connect(t->data);
}

/* The connection is gone: forget its state, then retry later or stop, and tell the mode. */
static void went_down(kc_session *s, uint32_t lost)
{
    kc_client *c = s->client;
    kp_ws_free(s->ws); /* safe here: no kp_ws call is on the stack in a close callback */
    s->ws = NULL;
    kc_tls_free(s->tls);
    s->tls = NULL;
    s->fifo_head = s->fifo_len = 0;
    s->job_id = 0;
    s->last_ok_job = 0;
    kc_search_reset(&s->search);
    free(s->partial);
    s->partial = NULL;
    s->partial_len = s->partial_cap = 0;

    uint64_t retry = 0;
    if (!s->stopping && s->down_reason != KC_DOWN_AUTH_REJECTED && c->backoff_base_ms) {
        retry = kc_backoff_ms(&c->rng, c->backoff_base_ms, c->backoff_max_ms, s->attempt);
        if (s->attempt < 32)
            s->attempt++;
        s->state = KC_STATE_BACKOFF;
        uv_timer_start(&s->timer, on_backoff_done, retry, 0);
    } else {
        s->state = KC_STATE_STOPPED;
    }
    c->events->on_down(s, s->down_reason, s->down_detail, lost, retry);
}

static void on_tcp_closed(uv_handle_t *h)
{
    kc_session *s = h->data;
    went_down(s, s->fifo_len);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    kc_session *s = req->data;
    free(req);
    if (status < 0 && status != UV_ECANCELED)
        drop(s, KC_DOWN_CLOSED_BY_SERVER, uv_strerror(status));
}

/* Writes what the socket takes now and queues a copy of the rest. A TLS handshake writes while
 * the state is still CONNECTING (connect done, the protocol not begun). */
static void write_raw(kc_session *s, const char *data, size_t len)
{
    if (s->state != KC_STATE_UPGRADING && s->state != KC_STATE_AUTHORIZING &&
        s->state != KC_STATE_READY && !(s->tls && s->state == KC_STATE_CONNECTING))
        return;
    uv_stream_t *stream = (uv_stream_t *)&s->tcp;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(stream, &buf, 1);
    if (n == (int)len)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        drop(s, KC_DOWN_CLOSED_BY_SERVER, uv_strerror(n));
        return;
    }
    size_t off = n > 0 ? (size_t)n : 0;
    size_t rest = len - off;
    if (stream->write_queue_size + rest > MAX_QUEUED_BYTES) {
        drop(s, KC_DOWN_PROTOCOL, "server does not read");
        return;
    }
    write_req *wr = malloc(sizeof(*wr) + rest);
    if (!wr) {
        drop(s, KC_DOWN_PROTOCOL, "out of memory");
        return;
    }
    memcpy(wr->bytes, data + off, rest);
    wr->req.data = s;
    buf = uv_buf_init(wr->bytes, (unsigned)rest);
    if (uv_write(&wr->req, stream, &buf, 1, on_write) != 0) {
        free(wr);
        drop(s, KC_DOWN_CLOSED_BY_SERVER, "write failed");
    }
}

/* The protocol's bytes: through TLS when the connection has it. */
static void write_now(kc_session *s, const char *data, size_t len)
{
    if (s->tls)
        kc_tls_write(s->tls, data, len);
    else
        write_raw(s, data, len);
}

static void flush_out(kc_session *s)
{
    kc_client *c = s->client;
    if (c->out_owner == s && c->out_len) {
        size_t n = c->out_len;
        c->out_len = 0;
        write_now(s, c->out_buf, n);
    }
}

/* Bytes for the wire: appended to the batch when `s` owns it, written at once otherwise. */
static void send_bytes(kc_session *s, const char *data, size_t len)
{
    kc_client *c = s->client;
    if (c->out_owner != s) {
        write_now(s, data, len);
        return;
    }
    if (c->out_len + len > c->read_buf_size)
        flush_out(s);
    if (len > c->read_buf_size) {
        write_now(s, data, len);
        return;
    }
    memcpy(c->out_buf + c->out_len, data, len);
    c->out_len += len;
}

/* Runs fn(s, arg) with the output batched into one write (the pieces of a WebSocket frame, the
 * answers to one read). Nested calls join the outer batch. */
static void with_batch(kc_session *s, void (*fn)(kc_session *s, void *arg), void *arg)
{
    kc_client *c = s->client;
    if (c->out_owner) {
        fn(s, arg);
        return;
    }
    c->out_owner = s;
    c->out_len = 0;
    fn(s, arg);
    flush_out(s);
    c->out_owner = NULL;
    c->out_len = 0;
}

static int ws_send_cb(void *user, const char *data, size_t len)
{
    kc_session *s = user;
    if (!is_connected_state(s->state))
        return -1;
    send_bytes(s, data, len);
    return is_connected_state(s->state) ? 0 : -1;
}

static void ws_close_normal(kc_session *s, void *arg)
{
    kp_ws_close(s->ws, 1000, "client stopping");
}

typedef struct line_out {
    const char *data;
    size_t len; /* "\n" included */
} line_out;

static void send_line_batched(kc_session *s, void *arg)
{
    const line_out *l = arg;
    if (!s->ws) {
        send_bytes(s, l->data, l->len);
        return;
    }
    /* One text frame per message, without the line terminator TCP needs. */
    int rc = kp_ws_send_text(s->ws, l->data, l->len - 1);
    if (rc != 0)
        drop(s, KC_DOWN_CLOSED_BY_SERVER, rc == KP_ENOMEM ? "out of memory" : "websocket send failed");
}

/* Sends one protocol line ("\n"-terminated) over the session's transport. */
static void send_line(kc_session *s, const char *data, size_t len)
{
    line_out l = {data, len};
    with_batch(s, send_line_batched, &l);
}

static bool can_submit(const kc_session *s)
{
    return s->state == KC_STATE_READY && s->job_id != 0 && s->fifo_len <= s->client->max_in_flight;
}

static kc_in_flight *next_slot(kc_session *s)
{
    return &s->fifo[(s->fifo_head + s->fifo_len) % (s->client->max_in_flight + 1)];
}

/* Formats the submit of slot f (nonce, kind, difficulty and hashes filled) and sends it. */
static bool send_submit(kc_session *s, kc_in_flight *f, int64_t job_id, const char *result)
{
    char line[KC_SUBMIT_LINE_MAX];
    size_t len = kc_format_submit(line, s->next_id, job_id, f->nonce, result);
    if (len == 0)
        return false;
    f->id = s->next_id++;
    f->job_id = job_id;
    f->sent_ns = uv_hrtime();
    s->fifo_len++;
    send_line(s, line, len);
    return true;
}

bool kc_session_submit_share(kc_session *s, const kc_share *sh)
{
    if (!can_submit(s))
        return false;
    kc_in_flight *f = next_slot(s);
    memcpy(f->nonce, sh->nonce, sizeof(f->nonce));
    f->kind = KC_SUBMIT_VALID;
    f->difficulty = sh->difficulty;
    f->hashes = sh->hashes;
    return send_submit(s, f, sh->job_id, sh->result);
}

bool kc_session_submit(kc_session *s, kc_submit_kind kind)
{
    kc_client *c = s->client;
    if (!can_submit(s))
        return false;
    kc_in_flight *f = next_slot(s);
    /* Only the current job is sure to be valid: with the default -expire (two intervals) the
     * previous one expires the moment the next is issued, which may be before its notification
     * arrives here, and the answer would be "Task expired" instead of a duplicate. */
    if (kind == KC_SUBMIT_DUPLICATE && !kc_session_can_duplicate(s))
        kind = KC_SUBMIT_VALID;
    if (kind == KC_SUBMIT_DUPLICATE)
        memcpy(f->nonce, s->last_ok_nonce, sizeof(f->nonce));
    else
        kc_nonce_next(&s->nonces, f->nonce);

    char result[KC_RESULT_HEX + 1];
    if (kc_compute_result(&c->hasher, s->server_nonce, f->nonce, result) != 0)
        return false;
    if (kind == KC_SUBMIT_INVALID) /* still 64 hex digits, just not the right ones */
        result[0] = result[0] == '0' ? '1' : '0';
    f->kind = (uint8_t)kind;
    /* Not a share the search found: it is judged at the difficulty in force (1 when off). */
    f->difficulty = s->search.on && s->search.difficulty ? s->search.difficulty : 1;
    f->hashes = 1;
    return send_submit(s, f, s->job_id, result);
}

void kc_session_stop(kc_session *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    if (s->state == KC_STATE_AUTHORIZING || s->state == KC_STATE_READY) {
        if (s->ws) /* a close frame first, so the server logs a clean close */
            with_batch(s, ws_close_normal, NULL);
    }
    if (is_connected_state(s->state))
        drop(s, KC_DOWN_STOPPED, "stopped");
    else if (s->state != KC_STATE_CLOSING) /* a closing connection ends in went_down */
        s->state = KC_STATE_STOPPED;
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_close((uv_handle_t *)&s->pace, NULL);
}

/* ---- connecting ---- */

/* Creates the socket, bound to the next -src address if there is a range. Returns 0 or a uv
 * error; *opened says whether the handle exists (and so must be closed). */
static int open_socket(kc_session *s, bool *opened)
{
    kc_client *c = s->client;
    *opened = false;
    if (!c->src) {
        int rc = uv_tcp_init(c->loop, &s->tcp);
        *opened = rc == 0;
        return rc;
    }
    int rc = uv_tcp_init_ex(c->loop, &s->tcp, AF_INET);
    if (rc != 0)
        return rc;
    *opened = true;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0) {
        /* Let connect() pick the port per destination: without this, bind() reserves a port
         * for the address and ~28k connections per source address is the most we get. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(c->src->first + c->src_next++ % kc_src_range_count(c->src));
    return uv_tcp_bind(&s->tcp, (const struct sockaddr *)&sa, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    kc_client *c = ((kc_session *)h->data)->client;
    /* One read at a time on the loop thread, so one buffer serves every session. */
    if (c->read_buf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    c->read_buf_busy = true;
    *buf = uv_buf_init(c->read_buf, (unsigned)c->read_buf_size);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void send_authorize(kc_session *s)
{
    char line[512];
    size_t len = kc_format_authorize(line, sizeof(line), s->next_id, s->username);
    s->auth_id = s->next_id++;
    s->state = KC_STATE_AUTHORIZING;
    send_line(s, line, len);
}

static bool handle_line(kc_session *s, const char *line, size_t len);

static void ws_open_cb(void *user)
{
    kc_session *s = user;
    if (s->state == KC_STATE_UPGRADING)
        send_authorize(s);
}

static void ws_text_cb(void *user, const char *msg, size_t len)
{
    kc_session *s = user;
    /* Frames after the one that ended the connection are ignored. */
    if (s->state == KC_STATE_AUTHORIZING || s->state == KC_STATE_READY)
        handle_line(s, msg, len);
}

static void ws_close_cb(void *user, uint16_t code, const char *why)
{
    kc_session *s = user;
    drop(s, s->state == KC_STATE_UPGRADING ? KC_DOWN_PROTOCOL : KC_DOWN_CLOSED_BY_SERVER,
         why ? why : "websocket closed");
}

static const kp_ws_callbacks ws_callbacks = {
    .send = ws_send_cb,
    .on_text = ws_text_cb,
    .on_open = ws_open_cb,
    .on_close = ws_close_cb,
};

static void start_upgrade(kc_session *s, void *arg)
{
    kc_client *c = s->client;
    int rc = kp_ws_client_new(&ws_callbacks, s, c->ws_host, c->ws_path, WS_MAX_MSG, &s->ws);
    if (rc != 0)
        drop(s, KC_DOWN_CONNECT_FAILED, "cannot start the WebSocket handshake");
}

/* ---- TLS (client_tls.h): ciphertext to the socket, plaintext to the framing ---- */

static void begin_protocol(kc_session *s);
static void feed(kc_session *s, void *arg);

typedef struct read_chunk {
    const char *data;
    size_t len;
} read_chunk;

static void tls_out(void *user, const char *data, size_t len)
{
    write_raw(user, data, len);
}

static void tls_plain(void *user, const char *data, size_t len)
{
    read_chunk chunk = {data, len};
    with_batch(user, feed, &chunk);
}

static void tls_ready(void *user)
{
    kc_session *s = user;
    if (s->state == KC_STATE_CONNECTING)
        begin_protocol(s);
}

static void tls_fail(void *user, const char *why)
{
    kc_session *s = user;
    drop(s, s->state == KC_STATE_CONNECTING ? KC_DOWN_CONNECT_FAILED : KC_DOWN_CLOSED_BY_SERVER,
         why);
}

static const kc_tls_events tls_events = {
    .out = tls_out,
    .plain = tls_plain,
    .ready = tls_ready,
    .fail = tls_fail,
};

static void on_connect(uv_connect_t *req, int status)
{
    kc_session *s = req->data;
    if (status == UV_ECANCELED || s->state != KC_STATE_CONNECTING)
        return; /* closed while connecting: on_tcp_closed reports it */
    if (status < 0) {
        drop(s, KC_DOWN_CONNECT_FAILED, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc != 0) {
        drop(s, KC_DOWN_CONNECT_FAILED, uv_strerror(rc));
        return;
    }
    if (s->client->tls_ctx) { /* the protocol begins once the handshake is done (tls_ready) */
        s->tls = kc_tls_new(s->client->tls_ctx, s->client->tls_host, &tls_events, s);
        if (!s->tls)
            drop(s, KC_DOWN_CONNECT_FAILED, "out of memory");
        else
            kc_tls_start(s->tls);
        return;
    }
    begin_protocol(s);
}

/* Right after connect (or the TLS handshake): the upgrade, or authorize. */
static void begin_protocol(kc_session *s)
{
    if (s->client->websocket) {
        s->state = KC_STATE_UPGRADING;
        with_batch(s, start_upgrade, NULL); /* the request head leaves in one write */
        return;
    }
    send_authorize(s);
}

void kc_session_connect(kc_session *s)
{
    kc_client *c = s->client;
    if (s->stopping || (s->state != KC_STATE_IDLE && s->state != KC_STATE_BACKOFF))
        return;
    bool opened;
    int rc = open_socket(s, &opened);
    s->tcp.data = s;
    if (!opened) { /* no handle to close (e.g. out of file descriptors): retry like a refusal */
        s->down_reason = KC_DOWN_CONNECT_FAILED;
        s->down_detail = uv_strerror(rc);
        went_down(s, 0);
        return;
    }
    s->state = KC_STATE_CONNECTING;
    uv_timer_start(&s->timer, on_deadline, c->connect_timeout_ms, 0);
    if (rc == 0) {
        s->connect_req.data = s;
        rc = uv_tcp_connect(&s->connect_req, &s->tcp, (const struct sockaddr *)&c->server,
                            on_connect);
    }
    if (rc != 0)
        drop(s, KC_DOWN_CONNECT_FAILED, uv_strerror(rc));
}

static void on_deadline(uv_timer_t *t)
{
    kc_session *s = t->data;
    drop(s, KC_DOWN_TIMEOUT,
         s->state == KC_STATE_CONNECTING   ? "connect timed out"
         : s->state == KC_STATE_UPGRADING ? "no answer to the WebSocket upgrade"
                                          : "no answer to authorize");
}

/* ---- reading ---- */

static bool json_int(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= -JSON_INT_MAX && d <= JSON_INT_MAX) || (double)(int64_t)d != d)
        return false;
    *out = (int64_t)d;
    return true;
}

static bool is_hex(const char *p)
{
    for (; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return false;
    return true;
}

/* The outcome whose wire string is `error`, or KP_OUTCOME_COUNT. */
static kp_outcome outcome_of(const char *error)
{
    for (int oc = KP_OUTCOME_OK + 1; oc < KP_OUTCOME_COUNT; oc++)
        if (strcmp(kp_outcome_wire((kp_outcome)oc), error) == 0)
            return (kp_outcome)oc;
    return KP_OUTCOME_COUNT;
}

static bool handle_job(kc_session *s, const cJSON *params)
{
    int64_t job_id;
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(params, "server_nonce");
    if (!json_int(cJSON_GetObjectItemCaseSensitive(params, "job_id"), &job_id) || job_id < 1 ||
        !cJSON_IsString(nonce) || !nonce->valuestring[0] ||
        strlen(nonce->valuestring) > NONCE_HEX_MAX || !is_hex(nonce->valuestring)) {
        drop(s, KC_DOWN_PROTOCOL, "malformed job notification");
        return false;
    }
    int64_t prev = s->job_id;
    s->job_id = job_id;
    memcpy(s->server_nonce, nonce->valuestring, strlen(nonce->valuestring) + 1);
    kc_search_job(&s->search, job_id, s->server_nonce);
    s->client->events->on_job(s, prev);
    return true;
}

/* set_difficulty (SPEC §8): {"difficulty":D,"target":"<64 hex>"}, for the job that follows. */
static bool handle_set_difficulty(kc_session *s, const cJSON *params)
{
    char target[KC_TARGET_HEX + 1];
    const cJSON *dj = cJSON_GetObjectItemCaseSensitive(params, "difficulty");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(params, "target");
    /* 1..2^53: the top one is exact in a double, though one past JSON_INT_MAX. */
    double d = cJSON_IsNumber(dj) ? dj->valuedouble : 0;
    if (s->state != KC_STATE_READY || !(d >= 1 && d <= (double)KP_DIFFICULTY_MAX) ||
        (double)(uint64_t)d != d || !cJSON_IsString(t) ||
        kc_target_parse(t->valuestring, strlen(t->valuestring), target) != 0) {
        drop(s, KC_DOWN_PROTOCOL, "malformed set_difficulty notification");
        return false;
    }
    kc_search_announce(&s->search, (uint64_t)d, target);
    if (s->client->events->on_difficulty)
        s->client->events->on_difficulty(s, (uint64_t)d);
    return s->state == KC_STATE_READY;
}

static bool handle_auth_answer(kc_session *s, bool ok, const char *error)
{
    if (!ok) {
        kp_outcome oc = error ? outcome_of(error) : KP_OUTCOME_COUNT;
        drop(s, KC_DOWN_AUTH_REJECTED, oc < KP_OUTCOME_COUNT ? kp_outcome_wire(oc) : "rejected");
        return false;
    }
    s->state = KC_STATE_READY;
    s->attempt = 0;
    uv_timer_stop(&s->timer);
    s->client->events->on_authorized(s);
    return true;
}

static bool handle_answer(kc_session *s, int64_t id, bool ok, const char *error)
{
    kc_client *c = s->client;
    if (s->state == KC_STATE_AUTHORIZING && id == s->auth_id)
        return handle_auth_answer(s, ok, error);
    if (s->state != KC_STATE_READY || s->fifo_len == 0 || s->fifo[s->fifo_head].id != id) {
        drop(s, KC_DOWN_PROTOCOL, "answer to no request or out of order");
        return false;
    }
    kc_in_flight f = s->fifo[s->fifo_head];
    s->fifo_head = (s->fifo_head + 1) % (c->max_in_flight + 1);
    s->fifo_len--;
    kc_answer a = {
        .kind = (kc_submit_kind)f.kind,
        .job_id = f.job_id,
        .client_nonce = f.nonce,
        .outcome = ok ? KP_OUTCOME_OK : error ? outcome_of(error) : KP_OUTCOME_COUNT,
        .error = ok ? NULL : error ? error : "(no error string)",
        .latency_us = (uv_hrtime() - f.sent_ns) / 1000u,
        .difficulty = f.difficulty,
        .hashes = f.hashes,
    };
    if (ok) {
        s->last_ok_job = f.job_id;
        memcpy(s->last_ok_nonce, f.nonce, sizeof(s->last_ok_nonce));
    }
    c->events->on_answer(s, &a);
    return s->state == KC_STATE_READY;
}

/* One complete line (terminator removed). Returns false when the session stopped reading. */
static bool handle_line(kc_session *s, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return true;
    cJSON *root = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        drop(s, KC_DOWN_PROTOCOL, "a line that is not a JSON object");
        return false;
    }
    bool go_on;
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(root, "result");
    int64_t id;
    if (cJSON_IsString(method) && strcmp(method->valuestring, "job") == 0) {
        go_on = handle_job(s, cJSON_GetObjectItemCaseSensitive(root, "params"));
    } else if (cJSON_IsString(method) && strcmp(method->valuestring, "set_difficulty") == 0) {
        go_on = handle_set_difficulty(s, cJSON_GetObjectItemCaseSensitive(root, "params"));
    } else if (cJSON_IsBool(result) && json_int(cJSON_GetObjectItemCaseSensitive(root, "id"), &id)) {
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
        go_on = handle_answer(s, id, cJSON_IsTrue(result),
                              cJSON_IsString(error) ? error->valuestring : NULL);
    } else {
        /* An answer with a null id means the server could not read our line at all. */
        drop(s, KC_DOWN_PROTOCOL, "unexpected message");
        go_on = false;
    }
    cJSON_Delete(root);
    return go_on;
}

static bool keep_partial(kc_session *s, const char *data, size_t len)
{
    size_t need = s->partial_len + len;
    if (need > LINE_MAX_BYTES) {
        drop(s, KC_DOWN_PROTOCOL, "line too long");
        return false;
    }
    if (need > s->partial_cap) {
        uint32_t cap = s->partial_cap ? s->partial_cap : 256;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(s->partial, cap);
        if (!grown) {
            drop(s, KC_DOWN_PROTOCOL, "out of memory");
            return false;
        }
        s->partial = grown;
        s->partial_cap = cap;
    }
    memcpy(s->partial + s->partial_len, data, len);
    s->partial_len = (uint32_t)need;
    return true;
}

static void process(kc_session *s, const char *p, const char *end)
{
    if (s->partial_len) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!keep_partial(s, p, nl ? (size_t)(nl - p) : (size_t)(end - p)) || !nl)
            return;
        bool go_on = handle_line(s, s->partial, s->partial_len);
        s->partial_len = 0;
        if (!go_on)
            return;
        p = nl + 1;
    }
    while (p < end && is_connected_state(s->state)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            keep_partial(s, p, (size_t)(end - p));
            return;
        }
        if (!handle_line(s, p, (size_t)(nl - p)))
            return;
        p = nl + 1;
    }
}

static void feed(kc_session *s, void *arg)
{
    const read_chunk *chunk = arg;
    if (s->ws) /* whole messages come back through ws_text_cb; an end through ws_close_cb */
        kp_ws_feed(s->ws, chunk->data, chunk->len);
    else
        process(s, chunk->data, chunk->data + chunk->len);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    kc_session *s = stream->data;
    kc_client *c = s->client;
    if (buf->base == c->read_buf)
        c->read_buf_busy = false;
    if (nread < 0) {
        drop(s, KC_DOWN_CLOSED_BY_SERVER, nread == UV_EOF ? "end of stream" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || !is_connected_state(s->state))
        return;
    if (s->tls) {
        kc_tls_feed(s->tls, buf->base, (size_t)nread);
        return;
    }
    read_chunk chunk = {buf->base, (size_t)nread};
    with_batch(s, feed, &chunk);
}
