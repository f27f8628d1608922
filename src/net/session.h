/* A session: one connection, its framing and its writes. The protocol decides; the session
 * only frames (newline-delimited lines on TCP, text frames on WebSocket via ws.c), answers and
 * closes. Both transports share every other line of code.
 *
 * Memory: an idle session holds only this struct (no buffers). A partial line is copied into
 * `partial` and freed as soon as it completes; it never grows past -max_msg. Queued writes own
 * their bytes (or a reference on a shared job line) until their callback.
 *
 * Closing happens in one place: kp_session_close() unlinks the session and calls uv_close; the
 * close callback frees it. */
#ifndef KP_SESSION_H
#define KP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server.h"
#include "submit.h"
#include "ws.h"

struct kp_session {
    uv_tcp_t tcp; /* first: the handle's address is the session's */
    kp_server *server;
    kp_peer peer;
    kp_ws *ws;             /* NULL on the TCP listener */
    kp_session *prev, *next;
    kp_session_list *list; /* the server list the session is in, NULL once closing */
    uint64_t accepted_ms;  /* loop time at accept: the -auth_timeout clock */
    uint64_t drain_start_ms; /* loop time when draining began: the KP_DRAIN_TIMEOUT_MS clock */
    char *partial;         /* bytes of an unfinished line */
    uint32_t partial_len, partial_cap;
    char *backlog;         /* received, not yet handled: over the read budget (reads stopped) */
    uint32_t backlog_off, backlog_len;
    kp_session *resume_prev, *resume_next; /* in the server's resume list while `resuming` */
    uint64_t budget_round; /* the server round budget_used counts for */
    uint32_t budget_used;  /* input bytes handled in that round */
    bool resuming;
    int64_t last_job_id;   /* newest job sent, so a broadcast never sends one twice */
    bool draining;         /* answered with a closing error: no more reads, in s->draining */
    bool closing;          /* uv_close called; freed in its callback */
};

/* Accepts a pending connection from `listener` into a new session; `websocket` selects the
 * framing. */
void kp_session_accept(kp_server *s, uv_stream_t *listener, bool websocket);

/* Queues the shared job line to the session (zero-copy when the socket is backed up). */
void kp_session_send_job(kp_session *sess, kp_shared_line *line, int64_t job_id);

/* Gives each session with a backlog one more read budget; the server calls it once per loop
 * iteration while kp_server's resume list is not empty. */
void kp_session_resume_step(kp_server *s);

/* Closes now: pending writes are cancelled. `why` is logged at debug level. */
void kp_session_close(kp_session *sess, const char *why);

/* Closes now with a reset (SO_LINGER 0), for a peer that stopped reading: the kernel drops what
 * it still holds for it at once instead of keeping an orphaned socket for minutes. */
void kp_session_abort(kp_session *sess, const char *why);

#endif
