/* A session: one connection's framing and protocol state. The protocol decides; the session
 * only frames (newline-delimited lines, or text frames via ws.c: one switch, `ws`), answers and
 * closes. It reaches the bytes through the connection seam (conn.h) and its server through
 * kp_session_env: it never touches a libuv handle, a server list or a server counter.
 *
 * Memory: an idle session is one allocation, this struct followed by its connection (the room
 * asked for in kp_session_new). A partial line is copied into `partial` and freed as soon as it
 * completes; it never grows past -max_msg. Queued writes belong to the connection.
 *
 * Closing happens in one place: kp_session_close() tells the server (hooks->closing) and closes
 * the connection; its on_closed frees the session. */
#ifndef KP_SESSION_H
#define KP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "protocol.h"
#include "submit.h"
#include "ws.h"

typedef struct kp_session kp_session;

/* An intrusive list of sessions (each session is in at most one), kept by the server. */
typedef struct kp_session_list {
    kp_session *head, *tail;
    size_t count;
} kp_session_list;

/* Sessions closed for what they did, counted by the session code (SPEC §5 metrics). */
typedef struct kp_session_counters {
    uint64_t closed_too_long;
    uint64_t closed_slow;
    uint64_t closed_max_errors;
} kp_session_counters;

/* What a session tells its server. */
typedef struct kp_session_hooks {
    /* Loop time in ms, read once per read handled (the protocol's clock). */
    uint64_t (*now_ms)(void *ctx);
    /* The session authorized: it moves to the authorized sessions. Returns the current job line
     * (borrowed) and its id in *job_id, or NULL before the first job. */
    const kp_shared_line *(*authorized)(void *ctx, kp_session *sess, int64_t *job_id);
    /* The session answered with a closing error and waits for its last bytes to leave: the
     * server watches the drain deadline. */
    void (*draining)(void *ctx, kp_session *sess);
    /* The session joined the resume list: kp_session_resume_step must run next iteration. */
    void (*deferred)(void *ctx);
    /* The session is closing: it leaves whatever server list it is in. */
    void (*closing)(void *ctx, kp_session *sess);
    /* The session is gone; its memory is freed right after. */
    void (*closed)(void *ctx);
    /* Optional (NULL: not wanted), for the per-address rules (SPEC §9). `junk`: the session is
     * being closed for what it sent: -max_errors malformed messages, an over-long line or
     * frame, a refused WebSocket upgrade or a frame-level WebSocket error. `answered`: a
     * message was answered with `outcome`; `authorize` tells an authorize's "ok" apart. Neither
     * closes the session from inside the call. */
    void (*junk)(void *ctx, kp_session *sess);
    void (*answered)(void *ctx, kp_session *sess, kp_outcome outcome, bool authorize);
} kp_session_hooks;

/* What every session of one server shares; the server owns it. */
typedef struct kp_session_env {
    kp_protocol *protocol;
    size_t max_msg;
    const kp_session_hooks *hooks;
    void *ctx;                 /* the hooks' first argument */
    kp_out_batch *batch;       /* lent to the session whose read is being answered */
    uint64_t round;            /* the server's loop iteration, for the read budgets */
    uint64_t read_ms;          /* loop time of the read being handled (hooks->now_ms) */
    kp_session *resume_head, *resume_tail; /* sessions over their read budget, in order */
    kp_session_counters counters;
} kp_session_env;

struct kp_session {
    kp_conn *conn;
    kp_session_env *env;
    kp_peer peer;
    kp_ws *ws;             /* NULL for line framing */
    /* The server's bookkeeping: list membership and deadlines. */
    kp_session *prev, *next;
    kp_session_list *list; /* the server list the session is in, NULL once closing */
    uint64_t accepted_ms;  /* loop time at accept: the -auth_timeout clock */
    uint64_t drain_start_ms; /* loop time when draining began: the drain deadline's clock */
    /* Framing and fairness. */
    char *partial;         /* bytes of an unfinished line */
    uint32_t partial_len, partial_cap;
    char *backlog;         /* received, not yet handled: over the read budget (reads stopped) */
    uint32_t backlog_off, backlog_len;
    kp_session *resume_prev, *resume_next; /* in env's resume list while `resuming` */
    uint64_t budget_round; /* the env round budget_used counts for */
    uint32_t budget_used;  /* input bytes handled in that round */
    bool resuming;
    int64_t last_job_id;   /* newest job sent, so a broadcast never sends one twice */
    bool draining;         /* answered with a closing error: no more reads */
    bool closing;          /* the connection is closing; freed in its on_closed */
};

/* A new session in one allocation with `conn_room` bytes after it for its connection, whose
 * address goes to *conn_mem. The caller builds the connection there, then calls
 * kp_session_attach before anything can fail. NULL when out of memory. */
kp_session *kp_session_new(kp_session_env *env, size_t conn_room, void **conn_mem);

/* The room kp_session_new made after the session (where its TCP conn lives). */
void *kp_session_room(kp_session *sess);

/* Makes `conn` the session's connection (it may be the one in the session's room, or a conn
 * stacked on it) and binds its events to the session. */
void kp_session_attach(kp_session *sess, kp_conn *conn);

/* Starts the session: `websocket` selects the framing, then reads begin. Returns 0, or a
 * KP_E* after which the session is closing. */
int kp_session_start(kp_session *sess, bool websocket);

/* Queues the shared job line to the session (zero-copy when the connection is backed up). */
void kp_session_send_job(kp_session *sess, kp_shared_line *line, int64_t job_id);

/* Gives each session on env's resume list one more read budget; the server calls it once per
 * loop iteration while the list is not empty. */
void kp_session_resume_step(kp_session_env *env);

/* Closes now: pending writes are cancelled. `why` is logged at debug level. */
void kp_session_close(kp_session *sess, const char *why);

/* Closes now with a reset, for a peer that stopped reading: the kernel drops what it still
 * holds for it at once instead of keeping an orphaned socket for minutes. */
void kp_session_abort(kp_session *sess, const char *why);

/* Closes a session that never started (refused at accept): no log line. */
void kp_session_discard(kp_session *sess);

#endif
