#include "session.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "tcp.server"

/* 16 KiB: about 100 submits, a few hundred microseconds of work, and more than a
 * non-pipelining client ever sends in one round (see "fairness" below). */
#define READ_BUDGET (16u * 1024u)
/* A WebSocket read is fed to ws.c in slices, so a session that closed mid-read stops being
 * parsed within a slice. */
#define WS_FEED_SLICE 4096u

static void resume_unlink(kp_session *sess);

/* ---- life and death ---- */

static void on_conn_closed(void *owner)
{
    kp_session *sess = owner;
    sess->env->hooks->closed(sess->env->ctx);
    kp_ws_free(sess->ws);
    kp_protocol_peer_free(sess->env->protocol, &sess->peer);
    free(sess->partial);
    free(sess->backlog);
    free(sess); /* and the connection in its room */
}

static void close_conn(kp_session *sess, const char *why, bool reset)
{
    if (sess->closing)
        return;
    sess->closing = true;
    sess->env->hooks->closing(sess->env->ctx, sess);
    resume_unlink(sess);
    KP_DEBUG(MODULE, "session closed", KP_QSTR("reason", why),
             KP_QSTR("username", sess->peer.username));
    kp_conn_close(sess->conn, reset);
}

void kp_session_close(kp_session *sess, const char *why)
{
    close_conn(sess, why, false);
}

void kp_session_abort(kp_session *sess, const char *why)
{
    close_conn(sess, why, true);
}

void kp_session_discard(kp_session *sess)
{
    if (sess->closing)
        return;
    sess->closing = true;
    sess->env->hooks->closing(sess->env->ctx, sess);
    kp_conn_close(sess->conn, false);
}

/* A session that is closing, or draining after a closing error, handles no more input: whatever
 * closed it (a full output, a write error, an error reply), the rest of the read it was in is
 * dropped unanswered, and it never joins a list again. */
static bool stopped(const kp_session *sess)
{
    return sess->closing || sess->draining;
}

/* ---- output: one path for every byte ---- */

/* What a failed write means for the session. */
static void write_failed(kp_session *sess, int rc)
{
    if (rc == KP_EAGAIN) {
        sess->env->counters.closed_slow++;
        kp_session_abort(sess, "slow reader");
    } else {
        kp_session_close(sess, rc == KP_ENOMEM ? "out of memory" : "write failed");
    }
}

/* Bytes out: into the batch while this session's read is being answered, else written now. A
 * draining session still writes: what it answered before closing must arrive. */
static void put(kp_session *sess, const char *data, size_t len, kp_shared_line *line)
{
    if (sess->closing || len == 0)
        return;
    kp_out_batch *b = sess->env->batch;
    int rc = b->owner == sess->conn ? kp_out_batch_append(b, data, len)
                                    : kp_conn_write(sess->conn, data, len, line);
    if (rc != 0)
        write_failed(sess, rc);
}

/* The answers so far leave now (before a close, so they arrive first). */
static void flush(kp_session *sess)
{
    kp_out_batch *b = sess->env->batch;
    if (b->owner != sess->conn || sess->closing)
        return;
    int rc = kp_out_batch_flush(b);
    if (rc != 0)
        write_failed(sess, rc);
}

/* One protocol message out (a "\n"-terminated line): the framing switch. A line as it is, or
 * a text frame without its "\n" (ws.c frames it and hands the bytes to ws_send). */
static void emit(kp_session *sess, const char *line, size_t len, kp_shared_line *shared)
{
    if (len == 0)
        return;
    if (sess->ws)
        kp_ws_send_text(sess->ws, line, len - 1);
    else
        put(sess, line, len, shared);
}

/* SPEC §8: the set_difficulty due before job `job_id` into buf (KP_SET_DIFFICULTY_MAX bytes), or
 * 0 when none is due. Off (the default), this is one load and no call per session per broadcast. */
static size_t difficulty_line(kp_session *sess, int64_t job_id, char *buf)
{
    kp_protocol *p = sess->env->protocol;
    if (!p->difficulty.on)
        return 0;
    return kp_protocol_job_sent(p, &sess->peer, job_id, sess->env->hooks->now_ms(sess->env->ctx),
                                buf);
}

/* Room for a set_difficulty and a job line together (a job line is about 100 bytes). */
#define NOTICE_AND_JOB_MAX (KP_SET_DIFFICULTY_MAX + 192)

void kp_session_send_job(kp_session *sess, kp_shared_line *line, int64_t job_id)
{
    if (sess->last_job_id >= job_id)
        return;
    sess->last_job_id = job_id;
    if (sess->draining)
        return;
    char buf[NOTICE_AND_JOB_MAX];
    size_t n = difficulty_line(sess, job_id, buf);
    if (n > 0 && !sess->ws && n + line->len <= sizeof buf) {
        /* A session whose difficulty changed gets its notification and the job in one write
         * (one syscall, as for every other session); the others keep the shared line. */
        memcpy(buf + n, line->data, line->len);
        put(sess, buf, n + line->len, NULL);
        return;
    }
    emit(sess, buf, n, NULL);
    emit(sess, line->data, line->len, line);
}

/* Closes once everything queued has been written, so the client reads the error first. Reads
 * stop; the server watches the drain deadline, which resets a peer that does not read its last
 * bytes (a shutdown would wait for them forever). */
static void close_after_writes(kp_session *sess)
{
    if (stopped(sess))
        return;
    sess->draining = true;
    sess->env->hooks->draining(sess->env->ctx, sess);
    resume_unlink(sess); /* what it had not handled yet is dropped with it */
    kp_conn_read_stop(sess->conn);
    if (sess->ws && kp_ws_is_open(sess->ws)) {
        kp_ws_close(sess->ws, 1000, "");
        flush(sess);
    }
    if (!sess->closing && kp_conn_shutdown(sess->conn) != 0)
        kp_session_close(sess, "closed after response");
}

/* ---- messages ---- */

static void on_authorized(kp_session *sess)
{
    int64_t job_id = 0;
    const kp_shared_line *job = sess->env->hooks->authorized(sess->env->ctx, sess, &job_id);
    /* The current job follows the response at once (SPEC §2 Sessions). */
    if (job) {
        sess->last_job_id = job_id;
        /* Inside the read's batch: the response, the set_difficulty and the job leave in one
         * write anyway. */
        char notice[KP_SET_DIFFICULTY_MAX];
        emit(sess, notice, difficulty_line(sess, job_id, notice), NULL);
        emit(sess, job->data, job->len, NULL);
    }
}

/* An over-long message closes the session without buffering the rest; what was answered before
 * it in the same read still reaches the client. */
static void close_too_long(kp_session *sess)
{
    sess->env->counters.closed_too_long++;
    KP_DEBUG(MODULE, "message too long", KP_UINT("max_msg", sess->env->max_msg));
    flush(sess);
    close_after_writes(sess);
}

/* Handles one message, whatever its framing. Returns false when the session must stop reading
 * (it is closing). `now_ms` is the loop time of the read. */
static bool handle_message(kp_session *sess, const char *msg, size_t len, uint64_t now_ms)
{
    kp_reply reply;
    kp_protocol_handle(sess->env->protocol, &sess->peer, msg, len, now_ms, &reply);
    emit(sess, reply.line, reply.len, NULL);
    /* The reply itself can close the session (it filled the output: a slow reader). */
    if (stopped(sess))
        return false;
    if (reply.actions & KP_REPLY_SEND_JOB)
        on_authorized(sess);
    if (reply.actions & KP_REPLY_CLOSE) {
        if (kp_outcome_is_malformed(reply.outcome))
            sess->env->counters.closed_max_errors++;
        flush(sess);
        close_after_writes(sess);
        return false;
    }
    return !stopped(sess);
}

/* ---- line framing ---- */

/* Handles one complete line (terminator removed). */
static bool handle_line(kp_session *sess, const char *line, size_t len, uint64_t now_ms)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (len > sess->env->max_msg) {
        close_too_long(sess);
        return false;
    }
    if (len == 0)
        return true; /* blank lines are keep-alive noise, not messages */
    return handle_message(sess, line, len, now_ms);
}

static bool keep_partial(kp_session *sess, const char *data, size_t len)
{
    size_t need = sess->partial_len + len;
    size_t max = sess->env->max_msg;
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
static size_t feed_lines(kp_session *sess, const char *start, const char *end, size_t budget,
                         uint64_t now_ms)
{
    const char *p = start;
    size_t all = (size_t)(end - start);
    if (sess->partial_len) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!keep_partial(sess, p, nl ? (size_t)(nl - p) : (size_t)(end - p)) || !nl)
            return all;
        bool go_on = handle_line(sess, sess->partial, sess->partial_len, now_ms);
        if (sess->partial) /* a closed session's buffer is freed by on_conn_closed */
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
        if (!handle_line(sess, p, (size_t)(nl - p), now_ms))
            return all;
        p = nl + 1;
    }
    return (size_t)(p - start);
}

/* ---- WebSocket framing: ws.c frames, these callbacks connect it to the session ---- */

static int ws_send(void *user, const char *data, size_t len)
{
    kp_session *sess = user;
    put(sess, data, len, NULL);
    return sess->closing ? -1 : 0;
}

static void ws_on_text(void *user, const char *msg, size_t len)
{
    kp_session *sess = user;
    if (stopped(sess)) /* ws.c goes on parsing the rest of the slice: ignore it */
        return;
    /* ws.c already closed (1009) any message over -max_msg, at its header. The messages of
     * one read share its loop time, as the lines of a TCP read do. */
    if (len)
        handle_message(sess, msg, len, sess->env->read_ms);
}

static void ws_on_close(void *user, uint16_t code, const char *why)
{
    kp_session *sess = user;
    if (code == 1009)
        sess->env->counters.closed_too_long++;
    KP_DEBUG("ws.server", "websocket closed", KP_UINT("code", code), KP_QSTR("reason", why));
    flush(sess);
    close_after_writes(sess);
}

static const kp_ws_callbacks ws_callbacks = {
    .send = ws_send,
    .on_text = ws_on_text,
    .on_close = ws_on_close,
};

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

/* ---- fairness: a read budget per session and loop iteration ----
 *
 * A pipelining client's reads are 64 KiB and libuv reads a stream up to 32 times per wakeup:
 * answered at once, one client holds the loop for milliseconds while everyone else waits. So
 * each session handles at most READ_BUDGET bytes per loop iteration ("round", counted by the
 * server in env->round). What a read brings beyond that is copied into the session's backlog
 * (at most one read buffer: reads stay stopped until it is handled, which also ends libuv's
 * 32-reads loop for that stream) and the session joins env's resume list, which the server works
 * through once per round, each session again with one budget. Order is kept: the backlog is
 * handled before anything new is read. */

static size_t budget_left(kp_session *sess)
{
    if (sess->budget_round != sess->env->round) {
        sess->budget_round = sess->env->round;
        sess->budget_used = 0;
    }
    return sess->budget_used < READ_BUDGET ? READ_BUDGET - sess->budget_used : 0;
}

/* Handles what the session's budget allows of [data, data + len), answers in one write, and
 * returns the bytes consumed. */
static size_t handle_input(kp_session *sess, const char *data, size_t len)
{
    size_t budget = budget_left(sess);
    kp_out_batch *b = sess->env->batch;
    kp_out_batch_lend(b, sess->conn);
    uint64_t now_ms = sess->env->hooks->now_ms(sess->env->ctx);
    sess->env->read_ms = now_ms;
    size_t used = sess->ws ? feed_ws(sess, data, len, budget)
                           : feed_lines(sess, data, data + len, budget, now_ms);
    flush(sess);
    b->owner = NULL;
    sess->budget_used += used < budget ? (uint32_t)used : (uint32_t)budget;
    return used;
}

static void resume_unlink(kp_session *sess)
{
    kp_session_env *env = sess->env;
    if (!sess->resuming)
        return;
    if (sess->resume_prev)
        sess->resume_prev->resume_next = sess->resume_next;
    else
        env->resume_head = sess->resume_next;
    if (sess->resume_next)
        sess->resume_next->resume_prev = sess->resume_prev;
    else
        env->resume_tail = sess->resume_prev;
    sess->resume_prev = sess->resume_next = NULL;
    sess->resuming = false;
}

/* Keeps the unhandled rest of a read and stops reading until it is handled. */
static void defer_rest(kp_session *sess, const char *rest, size_t len)
{
    kp_session_env *env = sess->env;
    sess->backlog = malloc(len);
    if (!sess->backlog) {
        kp_session_close(sess, "out of memory");
        return;
    }
    memcpy(sess->backlog, rest, len);
    sess->backlog_off = 0;
    sess->backlog_len = (uint32_t)len;
    kp_conn_read_stop(sess->conn);
    sess->resuming = true;
    sess->resume_next = NULL;
    sess->resume_prev = env->resume_tail;
    if (env->resume_tail)
        env->resume_tail->resume_next = sess;
    else
        env->resume_head = sess;
    env->resume_tail = sess;
    env->hooks->deferred(env->ctx);
}

static void drop_backlog(kp_session *sess)
{
    free(sess->backlog);
    sess->backlog = NULL;
    sess->backlog_off = sess->backlog_len = 0;
}

/* One more budget of a deferred session's backlog; reads start again once it is handled. */
static void resume_one(kp_session *sess)
{
    size_t len = sess->backlog_len - sess->backlog_off;
    size_t used = handle_input(sess, sess->backlog + sess->backlog_off, len);
    if (stopped(sess)) /* unlinked; a closing session's backlog is freed by on_conn_closed */
        return;
    sess->backlog_off += (uint32_t)used;
    if (used < len)
        return;
    resume_unlink(sess);
    drop_backlog(sess);
    if (kp_conn_read_start(sess->conn) != 0)
        kp_session_close(sess, "read failed");
}

void kp_session_resume_step(kp_session_env *env)
{
    /* Each session on the list at the start gets one budget; handling one session never
     * closes another, so `next` stays valid. */
    kp_session *last = env->resume_tail;
    for (kp_session *sess = env->resume_head; sess;) {
        kp_session *next = sess->resume_next;
        bool was_last = sess == last;
        resume_one(sess);
        if (was_last)
            break;
        sess = next;
    }
}

/* ---- the connection's events ---- */

static void on_conn_read(void *owner, const char *data, size_t len)
{
    kp_session *sess = owner;
    if (stopped(sess))
        return;
    size_t used = handle_input(sess, data, len);
    if (used < len && !stopped(sess))
        defer_rest(sess, data + used, len - used);
}

static void on_conn_end(void *owner, const char *why)
{
    kp_session_close(owner, why);
}

static const kp_conn_events conn_events = {
    .on_read = on_conn_read,
    .on_end = on_conn_end,
    .on_closed = on_conn_closed,
};

/* ---- creation ---- */

/* The connection's room starts at this offset, aligned for any type. */
#define CONN_OFFSET \
    ((sizeof(kp_session) + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t))

kp_session *kp_session_new(kp_session_env *env, size_t conn_room, void **conn_mem)
{
    kp_session *sess = calloc(1, CONN_OFFSET + conn_room);
    if (!sess)
        return NULL;
    sess->env = env;
    *conn_mem = (char *)sess + CONN_OFFSET;
    return sess;
}

void kp_session_attach(kp_session *sess, kp_conn *conn)
{
    sess->conn = conn;
    kp_conn_bind(conn, &conn_events, sess);
}

int kp_session_start(kp_session *sess, bool websocket)
{
    int rc = 0;
    if (websocket)
        rc = kp_ws_server_new(&ws_callbacks, sess, sess->env->max_msg, &sess->ws);
    if (rc != 0) {
        kp_session_discard(sess);
        return rc;
    }
    rc = kp_conn_read_start(sess->conn);
    if (rc != 0)
        kp_session_close(sess, "read failed");
    return rc;
}
