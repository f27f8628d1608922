#include "session.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "tcp.server"

/* A peer that lets this much output pile up unread is too slow to follow the broadcast; it is
 * dropped rather than allowed to grow the server's memory. */
#define MAX_QUEUED_BYTES (256u * 1024u)
/* The kernel's share of the same output: SO_SNDBUF is capped at accept (Linux doubles the value
 * for its bookkeeping, so the kernel holds at most 256 KiB per socket, payload and overhead).
 * Left to autotuning it grows to tcp_wmem's maximum, about 3-4 MB per socket on loopback,
 * which MAX_QUEUED_BYTES never sees. 256 KiB is still far more than a line protocol keeps in
 * flight: a job line is ~100 bytes and a response ~50. */
#define KERNEL_SNDBUF_BYTES (128 * 1024)

/* A queued write: owns a copy of its bytes, or a reference on a shared job line. */
typedef struct write_req {
    uv_write_t req;
    kp_shared_line *line;
    char bytes[];
} write_req;

static void on_close(uv_handle_t *h)
{
    kp_session *sess = (kp_session *)h;
    kp_server *s = sess->server;
    s->connections--;
    kp_ws_free(sess->ws);
    kp_peer_free(&sess->peer);
    free(sess->partial);
    free(sess->backlog);
    free(sess);
}

static void resume_unlink(kp_session *sess);

void kp_session_close(kp_session *sess, const char *why)
{
    if (sess->closing)
        return;
    sess->closing = true;
    kp_server *s = sess->server;
    if (sess->list)
        kp_session_list_remove(s, sess);
    resume_unlink(sess);
    KP_DEBUG(MODULE, "session closed", KP_QSTR("reason", why),
             KP_QSTR("username", sess->peer.username));
    uv_close((uv_handle_t *)&sess->tcp, on_close);
}

void kp_session_abort(kp_session *sess, const char *why)
{
    uv_os_fd_t fd;
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    /* Not uv_tcp_close_reset: it refuses a stream with a uv_shutdown pending. */
    if (!sess->closing && uv_fileno((uv_handle_t *)&sess->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    kp_session_close(sess, why);
}

static void flush_out(kp_session *sess);

/* A session that is closing, or draining after a closing error, handles no more input: whatever
 * closed it (a full output, a write error, an error reply), the rest of the read it was in is
 * dropped unanswered, and it never joins a list again. */
static bool stopped(const kp_session *sess)
{
    return sess->closing || sess->draining;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    kp_session *sess = req->data;
    free(req);
    kp_session_close(sess, "closed after response"); /* no-op when a close cancelled us */
}

/* Closes once everything queued has been written, so the client reads the error first. Reads
 * stop; the session moves to the server's draining list, whose deadline resets a peer that does
 * not read its last bytes (uv_shutdown would wait for them forever), and where a server shutdown
 * still finds it. */
static void close_after_writes(kp_session *sess)
{
    if (sess->closing || sess->draining)
        return;
    sess->draining = true;
    sess->drain_start_ms = uv_now(sess->server->loop);
    kp_server_watch_drain(sess->server, sess);
    resume_unlink(sess); /* what it had not handled yet is dropped with it */
    uv_read_stop((uv_stream_t *)&sess->tcp);
    if (sess->ws && kp_ws_is_open(sess->ws)) {
        kp_ws_close(sess->ws, 1000, "");
        flush_out(sess);
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        kp_session_close(sess, "closed after response");
        return;
    }
    req->data = sess;
    if (uv_shutdown(req, (uv_stream_t *)&sess->tcp, on_shutdown) != 0) {
        free(req);
        kp_session_close(sess, "closed after response");
    }
}

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    kp_session *sess = req->data;
    if (wr->line)
        kp_shared_line_release(wr->line);
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        kp_session_close(sess, uv_strerror(status));
}

/* Writes now what the socket takes and queues the rest. `line` (optional) backs `data`. A
 * draining session still writes: what it answered before closing must arrive. */
static void write_bytes(kp_session *sess, const char *data, size_t len, kp_shared_line *line)
{
    if (sess->closing || len == 0)
        return;
    uv_stream_t *stream = (uv_stream_t *)&sess->tcp;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(stream, &buf, 1);
    if (n == (int)len)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        kp_session_close(sess, uv_strerror(n));
        return;
    }
    size_t off = n > 0 ? (size_t)n : 0;
    size_t rest = len - off;
    if (stream->write_queue_size + rest > MAX_QUEUED_BYTES) {
        sess->server->counters.closed_slow++;
        kp_session_abort(sess, "slow reader");
        return;
    }
    write_req *wr = malloc(sizeof(*wr) + (line ? 0 : rest));
    if (!wr) {
        kp_session_close(sess, "out of memory");
        return;
    }
    wr->req.data = sess;
    wr->line = line;
    if (line) {
        line->refs++;
        buf = uv_buf_init((char *)data + off, (unsigned)rest);
    } else {
        memcpy(wr->bytes, data + off, rest);
        buf = uv_buf_init(wr->bytes, (unsigned)rest);
    }
    if (uv_write(&wr->req, stream, &buf, 1, on_write) != 0) {
        if (line)
            kp_shared_line_release(line);
        free(wr);
        kp_session_close(sess, "write failed");
    }
}

void kp_session_send_job(kp_session *sess, kp_shared_line *line, int64_t job_id)
{
    if (sess->last_job_id >= job_id)
        return;
    sess->last_job_id = job_id;
    if (sess->draining)
        return;
    if (sess->ws) /* a text frame without the line's "\n"; ws.c frames (and copies) it */
        kp_ws_send_text(sess->ws, line->data, line->len - 1);
    else
        write_bytes(sess, line->data, line->len, line);
}

/* Responses to one read collect in the server's out_buf and leave in one write. */
static void flush_out(kp_session *sess)
{
    kp_server *s = sess->server;
    if (s->out_len) {
        size_t n = s->out_len;
        s->out_len = 0;
        write_bytes(sess, s->out_buf, n, NULL);
    }
}

static void append_out(kp_session *sess, const char *data, size_t len)
{
    kp_server *s = sess->server;
    if (s->out_len + len > s->read_buf_size)
        flush_out(sess);
    memcpy(s->out_buf + s->out_len, data, len);
    s->out_len += len;
}

/* One protocol message out (a "\n"-terminated line): a line on TCP, a text frame on WebSocket.
 * Both end up in out_buf while a read is being answered. */
static void emit(kp_session *sess, const char *line, size_t len)
{
    if (len == 0)
        return;
    if (sess->ws)
        kp_ws_send_text(sess->ws, line, len - 1);
    else
        append_out(sess, line, len);
}

static void on_authorized(kp_session *sess)
{
    kp_server *s = sess->server;
    kp_session_list_remove(s, sess);
    kp_session_list_append(&s->authorized, sess);
    KP_DEBUG("app.acceptor", "authorized", KP_QSTR("username", sess->peer.username),
             KP_UINT("sessions", s->authorized.count));
    /* The current job follows the response at once (SPEC §2 Sessions). */
    if (s->job_line) {
        sess->last_job_id = s->job_line_id;
        emit(sess, s->job_line->data, s->job_line->len);
    }
}

/* An over-long message closes the session without buffering the rest; what was answered before
 * it in the same read still reaches the client. */
static void close_too_long(kp_session *sess)
{
    sess->server->counters.closed_too_long++;
    KP_DEBUG(MODULE, "message too long", KP_UINT("max_msg", sess->server->cfg->max_msg));
    flush_out(sess);
    close_after_writes(sess);
}

/* Handles one message, whatever its framing. Returns false when the session must stop reading
 * (it is closing). */
static bool handle_message(kp_session *sess, const char *msg, size_t len)
{
    kp_server *s = sess->server;
    kp_reply reply;
    kp_protocol_handle(&s->protocol, &sess->peer, msg, len, uv_now(s->loop), &reply);
    emit(sess, reply.line, reply.len);
    /* The reply itself can close the session (it filled the output: a slow reader). */
    if (stopped(sess))
        return false;
    if (reply.actions & KP_REPLY_SEND_JOB)
        on_authorized(sess);
    if (reply.actions & KP_REPLY_CLOSE) {
        if (kp_outcome_is_malformed(reply.outcome))
            s->counters.closed_max_errors++;
        flush_out(sess);
        close_after_writes(sess);
        return false;
    }
    return !stopped(sess);
}

/* Handles one complete TCP line (terminator removed). */
static bool handle_line(kp_session *sess, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (len > sess->server->cfg->max_msg) {
        close_too_long(sess);
        return false;
    }
    if (len == 0)
        return true; /* blank lines are keep-alive noise, not messages */
    return handle_message(sess, line, len);
}

static bool keep_partial(kp_session *sess, const char *data, size_t len)
{
    size_t need = sess->partial_len + len;
    size_t max = sess->server->cfg->max_msg;
    /* The limit is on the message; one byte more is allowed only if it is the '\r' of a CRLF
     * whose '\n' has not arrived yet. */
    char last = len ? data[len - 1] : sess->partial_len ? sess->partial[sess->partial_len - 1] : 0;
    bool crlf_pending = need == max + 1 && last == '\r';
    if (need > max && !crlf_pending) {
        close_too_long(sess);
        return false;
    }
    if (need > sess->partial_cap) {
        uint32_t cap = sess->partial_cap ? sess->partial_cap : 128;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(sess->partial, cap);
        if (!grown) {
            kp_session_close(sess, "out of memory");
            return false;
        }
        sess->partial = grown;
        sess->partial_cap = cap;
    }
    memcpy(sess->partial + sess->partial_len, data, len);
    sess->partial_len = (uint32_t)need;
    return true;
}

static void drop_partial(kp_session *sess)
{
    free(sess->partial);
    sess->partial = NULL;
    sess->partial_len = sess->partial_cap = 0;
}

/* Frames and handles the lines in [start, end) until `budget` bytes are consumed (the last line
 * may cross it) or the session stops. Returns the bytes consumed; an unfinished line at the end
 * counts as consumed (it is kept in `partial`). */
static size_t process(kp_session *sess, const char *start, const char *end, size_t budget)
{
    const char *p = start;
    size_t all = (size_t)(end - start);
    if (sess->partial_len) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!keep_partial(sess, p, nl ? (size_t)(nl - p) : (size_t)(end - p)) || !nl)
            return all;
        bool go_on = handle_line(sess, sess->partial, sess->partial_len);
        if (sess->partial) /* a closed session's buffer is freed by on_close */
            drop_partial(sess);
        if (!go_on)
            return all;
        p = nl + 1;
    }
    while (p < end && (size_t)(p - start) < budget) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            keep_partial(sess, p, (size_t)(end - p));
            return all;
        }
        if (!handle_line(sess, p, (size_t)(nl - p)))
            return all;
        p = nl + 1;
    }
    return (size_t)(p - start);
}

/* ---- WebSocket: ws.c frames, these callbacks connect it to the session ---- */

static int ws_send(void *user, const char *data, size_t len)
{
    kp_session *sess = user;
    /* While this session's read is being answered, frames join the batched write. */
    if (sess->server->out_owner == sess)
        append_out(sess, data, len);
    else
        write_bytes(sess, data, len, NULL);
    return sess->closing ? -1 : 0;
}

static void ws_on_text(void *user, const char *msg, size_t len)
{
    kp_session *sess = user;
    if (stopped(sess)) /* ws.c goes on parsing the rest of the slice: ignore it */
        return;
    /* ws.c already closed (1009) any message over -max_msg, at its header. */
    if (len)
        handle_message(sess, msg, len);
}

static void ws_on_close(void *user, uint16_t code, const char *why)
{
    kp_session *sess = user;
    if (code == 1009)
        sess->server->counters.closed_too_long++;
    KP_DEBUG("ws.server", "websocket closed", KP_UINT("code", code), KP_QSTR("reason", why));
    flush_out(sess);
    close_after_writes(sess);
}

static const kp_ws_callbacks ws_callbacks = {
    .send = ws_send,
    .on_text = ws_on_text,
    .on_close = ws_on_close,
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    kp_server *s = ((kp_session *)h)->server;
    /* One read at a time on the loop thread, so one buffer serves every session. */
    if (s->read_buf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    s->read_buf_busy = true;
    *buf = uv_buf_init(s->read_buf, (unsigned)s->read_buf_size);
}

/* ---- fairness: a read budget per session and loop iteration ----
 *
 * A pipelining client's reads are 64 KiB and libuv reads a stream up to 32 times per wakeup:
 * answered at once, one client holds the loop for milliseconds while everyone else waits. So
 * each session handles at most READ_BUDGET bytes per loop iteration ("round", counted by the
 * server's prepare handle). What a read brings beyond that is copied into the session's backlog
 * (at most one read buffer: reads stay stopped until it is handled, which also ends libuv's
 * 32-reads loop for that stream) and the session joins the resume list, which the server's
 * prepare handle works through once per round, each session again with one budget. Order is
 * kept: the backlog is handled before anything new is read. */

/* 16 KiB: about 100 submits, a few hundred microseconds of work, and more than a
 * non-pipelining client ever sends in one round. */
#define READ_BUDGET (16u * 1024u)
/* A WebSocket read is fed to ws.c in slices, so a session that closed mid-read stops being
 * parsed within a slice. */
#define WS_FEED_SLICE 4096u

static size_t budget_left(kp_session *sess)
{
    kp_server *s = sess->server;
    if (sess->budget_round != s->round) {
        sess->budget_round = s->round;
        sess->budget_used = 0;
    }
    return sess->budget_used < READ_BUDGET ? READ_BUDGET - sess->budget_used : 0;
}

static size_t feed_ws(kp_session *sess, const char *data, size_t len, size_t budget)
{
    size_t off = 0;
    while (off < len && off < budget && !stopped(sess)) {
        size_t n = len - off < WS_FEED_SLICE ? len - off : WS_FEED_SLICE;
        kp_ws_feed(sess->ws, data + off, n); /* errors arrive via ws_on_close */
        off += n;
    }
    return stopped(sess) ? len : off;
}

/* Handles what the session's budget allows of [data, data + len), answers in one write, and
 * returns the bytes consumed. */
static size_t handle_input(kp_session *sess, const char *data, size_t len)
{
    kp_server *s = sess->server;
    size_t budget = budget_left(sess);
    s->out_len = 0;
    s->out_owner = sess;
    size_t used = sess->ws ? feed_ws(sess, data, len, budget)
                           : process(sess, data, data + len, budget);
    s->out_owner = NULL;
    flush_out(sess);
    sess->budget_used += used < budget ? (uint32_t)used : (uint32_t)budget;
    return used;
}

static void resume_unlink(kp_session *sess)
{
    kp_server *s = sess->server;
    if (!sess->resuming)
        return;
    if (sess->resume_prev)
        sess->resume_prev->resume_next = sess->resume_next;
    else
        s->resume_head = sess->resume_next;
    if (sess->resume_next)
        sess->resume_next->resume_prev = sess->resume_prev;
    else
        s->resume_tail = sess->resume_prev;
    sess->resume_prev = sess->resume_next = NULL;
    sess->resuming = false;
}

/* Keeps the unhandled rest of a read and stops reading until it is handled. */
static void defer_rest(kp_session *sess, const char *rest, size_t len)
{
    kp_server *s = sess->server;
    sess->backlog = malloc(len);
    if (!sess->backlog) {
        kp_session_close(sess, "out of memory");
        return;
    }
    memcpy(sess->backlog, rest, len);
    sess->backlog_off = 0;
    sess->backlog_len = (uint32_t)len;
    uv_read_stop((uv_stream_t *)&sess->tcp);
    sess->resuming = true;
    sess->resume_next = NULL;
    sess->resume_prev = s->resume_tail;
    if (s->resume_tail)
        s->resume_tail->resume_next = sess;
    else
        s->resume_head = sess;
    s->resume_tail = sess;
    kp_server_resume_pending(s);
}

static void drop_backlog(kp_session *sess)
{
    free(sess->backlog);
    sess->backlog = NULL;
    sess->backlog_off = sess->backlog_len = 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* One more budget of a deferred session's backlog; reads start again once it is handled. */
static void resume_one(kp_session *sess)
{
    size_t len = sess->backlog_len - sess->backlog_off;
    size_t used = handle_input(sess, sess->backlog + sess->backlog_off, len);
    if (stopped(sess)) /* unlinked; a closing session's backlog is freed by on_close */
        return;
    sess->backlog_off += (uint32_t)used;
    if (used < len)
        return;
    resume_unlink(sess);
    drop_backlog(sess);
    int rc = uv_read_start((uv_stream_t *)&sess->tcp, on_alloc, on_read);
    if (rc != 0)
        kp_session_close(sess, uv_strerror(rc));
}

void kp_session_resume_step(kp_server *s)
{
    /* Each session on the list at the start gets one budget; handling one session never
     * closes another, so `next` stays valid. */
    kp_session *last = s->resume_tail;
    for (kp_session *sess = s->resume_head; sess;) {
        kp_session *next = sess->resume_next;
        bool was_last = sess == last;
        resume_one(sess);
        if (was_last)
            break;
        sess = next;
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    kp_session *sess = (kp_session *)stream;
    kp_server *s = sess->server;
    if (buf->base == s->read_buf)
        s->read_buf_busy = false;
    if (nread < 0) {
        kp_session_close(sess, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || stopped(sess))
        return;
    size_t used = handle_input(sess, buf->base, (size_t)nread);
    if (used < (size_t)nread && !stopped(sess))
        defer_rest(sess, buf->base + used, (size_t)nread - used);
}

void kp_session_accept(kp_server *s, uv_stream_t *listener, bool websocket)
{
    kp_session *sess = calloc(1, sizeof(*sess));
    if (!sess) {
        KP_ERROR(MODULE, "out of memory accepting a connection");
        return;
    }
    sess->server = s;
    uv_tcp_init(s->loop, &sess->tcp);
    s->connections++;
    int rc = uv_accept(listener, (uv_stream_t *)&sess->tcp);
    if (rc != 0) {
        sess->closing = true;
        uv_close((uv_handle_t *)&sess->tcp, on_close);
        return;
    }
    if (s->connections > s->max_connections || s->shutting_down) {
        s->counters.connections_rejected++;
        if (s->counters.connections_rejected == 1 || s->counters.connections_rejected % 1000 == 0)
            KP_WARN(MODULE, "connection refused: -max_conns reached",
                    KP_UINT("max_conns", s->max_connections),
                    KP_UINT("rejected", s->counters.connections_rejected));
        sess->closing = true;
        uv_close((uv_handle_t *)&sess->tcp, on_close);
        return;
    }
    s->counters.connections_accepted++;
    uv_tcp_nodelay(&sess->tcp, 1);
    int sndbuf = KERNEL_SNDBUF_BYTES;
    uv_send_buffer_size((uv_handle_t *)&sess->tcp, &sndbuf);
    if (websocket && kp_ws_server_new(&ws_callbacks, sess, s->cfg->max_msg, &sess->ws) != 0) {
        sess->closing = true;
        uv_close((uv_handle_t *)&sess->tcp, on_close);
        return;
    }
    sess->accepted_ms = uv_now(s->loop);
    kp_session_list_append(&s->unauthorized, sess);
    rc = uv_read_start((uv_stream_t *)&sess->tcp, on_alloc, on_read);
    if (rc != 0)
        kp_session_close(sess, uv_strerror(rc));
}
