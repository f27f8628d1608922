/* The server: the loop thread's context. It owns the TCP listener, the job timer and the
 * broadcast, every session, the job book, the protocol state, the event pipeline and the
 * backends. Only the loop thread touches it; workers get owned batches (pipeline.c) and the
 * consumer thread gets the mq and stats vtables, both thread-safe by contract. */
#ifndef KP_SERVER_H
#define KP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consumer.h"
#include "job_book.h"
#include "kupool/config.h"
#include "kupool/mq.h"
#include "kupool/stats.h"
#include "pipeline.h"
#include "protocol.h"

typedef struct kp_session kp_session;
typedef struct kp_admin kp_admin;

/* An intrusive list of sessions (each session is in at most one). */
typedef struct kp_session_list {
    kp_session *head, *tail;
    size_t count;
} kp_session_list;

/* An immutable job line shared by every queued write of one broadcast; freed with its last
 * reference. */
typedef struct kp_shared_line {
    uint32_t refs;
    uint32_t len;
    char data[];
} kp_shared_line;

void kp_shared_line_release(kp_shared_line *line);

/* Loop-thread counters (SPEC §5 metrics draw from these). */
typedef struct kp_server_counters {
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* over -max_conns */
    uint64_t closed_auth_timeout;
    uint64_t closed_too_long;
    uint64_t closed_slow;
    uint64_t closed_max_errors;
    uint64_t closed_drain_timeout; /* closing error written, peer did not read it in time */
    uint64_t jobs_issued;
    uint64_t last_broadcast_us;    /* duration of the last completed broadcast */
} kp_server_counters;

typedef struct kp_server {
    uv_loop_t *loop;
    const kp_config *cfg; /* borrowed; outlives the server */

    uv_tcp_t listener;    /* -addr: newline-delimited JSON */
    uv_tcp_t ws_listener; /* -ws_addr: WebSocket; ws_listener.loop is NULL when off */
    uv_timer_t job_timer;
    uv_timer_t auth_timer;
    uv_timer_t drain_timer; /* armed while `draining` is not empty */
    uv_idle_t broadcast_idle;
    uv_prepare_t round_tick; /* once per loop iteration: the read budgets' round, resumes */
    uv_idle_t resume_idle;   /* active while sessions wait to resume: the poll must not block */
    uv_signal_t sigint, sigterm;
    int port;    /* bound TCP port */
    int ws_port; /* bound WebSocket port, 0 when off */

    kp_job_book jobs;
    kp_protocol protocol;
    kp_mq *mq;
    kp_stats *stats;
    kp_pipeline *pipeline;
    kp_consumer *consumer; /* NULL with -consume=false */
    kp_admin *admin;       /* NULL without -http_addr */

    kp_session_list unauthorized; /* in accept order, so the head times out first */
    kp_session_list authorized;   /* broadcast order; new sessions join at the tail */
    kp_session_list draining;     /* closing after their last writes, in drain order */
    kp_session *resume_head, *resume_tail; /* sessions over their read budget, in order */
    uint64_t round;                        /* loop iterations, for the read budgets */
    size_t connections;           /* sessions open, counted from accept to close callback */
    size_t max_connections;       /* -max_conns, or what the fd limit allows */

    /* The broadcast in progress: the job line and the next session to send it to. */
    kp_shared_line *job_line;
    int64_t job_line_id;
    kp_session *broadcast_next;
    uint64_t broadcast_start_ns;

    /* Scratch owned by the loop: every read lands in read_buf (sessions copy out only a partial
     * line), responses to one read collect in out_buf and leave in one write. */
    char *read_buf;
    size_t read_buf_size;
    bool read_buf_busy;
    char *out_buf;
    size_t out_len;
    kp_session *out_owner; /* the session whose read is being answered into out_buf */

    bool shutting_down;
    uint64_t shutdown_start_ns; /* uv_hrtime() when the shutdown began */
    int exit_status;
    kp_server_counters counters;
} kp_server;

/* Sets up backends, binds -addr, issues the first job and starts serving on `loop`. Returns 0,
 * KP_EINVAL (bad settings: exit 2) or another KP_E* (exit 1); one log line says why. */
int kp_server_open(uv_loop_t *loop, const kp_config *cfg, kp_server **out);

/* Starts the graceful shutdown (SPEC §6); idempotent. uv_run() returns when it is done. */
void kp_server_shutdown(kp_server *s);

/* After uv_run() returned: stops the consumer (draining the queue within what is left of
 * -shutdown_timeout), logs the final counts and frees everything. Returns the exit status. */
int kp_server_free(kp_server *s);

/* How long a session that is closing after an error may take to get its last bytes out (its
 * uv_shutdown): a peer that does not read them by then is reset. */
#define KP_DRAIN_TIMEOUT_MS 5000u

/* Called by sessions. */
void kp_session_list_remove(kp_server *s, kp_session *sess);
void kp_session_list_append(kp_session_list *list, kp_session *sess);
/* A session joined the resume list: it is worked through from the next loop iteration on. */
void kp_server_resume_pending(kp_server *s);
/* Moves `sess` to the draining list and makes sure the drain deadline is watched. */
void kp_server_watch_drain(kp_server *s, kp_session *sess);

#endif
