/* The miner-facing server (net layer): the TCP and WebSocket listeners, accept, the session
 * lists, the job timer and the broadcast, the authorization and drain deadlines, and the read
 * budgets' rounds. It knows the protocol (it hands it to the sessions) and the job book, and
 * nothing of the pipeline, the backends or the admin endpoint: src/app/ wires those.
 * Only the loop thread touches it. */
#ifndef KP_SERVER_H
#define KP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "broadcast.h"
#include "conn_tcp.h"
#include "front_door.h"
#include "conn_tls.h"
#include "job_book.h"
#include "kupool/config.h"
#include "protocol.h"
#include "session.h"

/* Loop-thread counters (SPEC §5 metrics draw from these and from env.counters). */
typedef struct kp_server_counters {
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* over -max_conns */
    uint64_t closed_auth_timeout;
    uint64_t closed_drain_timeout; /* closing error written, peer did not read it in time */
    uint64_t jobs_issued;
} kp_server_counters;

typedef struct kp_server {
    uv_loop_t *loop;
    const kp_config *cfg; /* borrowed; outlives the server */
    kp_job_book *jobs;    /* borrowed */

    uv_tcp_t listener;    /* -addr: newline-delimited JSON; listener.loop is NULL until bound */
    uv_tcp_t ws_listener; /* -ws_addr: WebSocket; ws_listener.loop is NULL when off */
    uv_timer_t job_timer;
    uv_timer_t auth_timer;
    uv_timer_t drain_timer;  /* armed while `draining` is not empty */
    uv_prepare_t round_tick; /* once per loop iteration: the read budgets' round, resumes */
    uv_idle_t resume_idle;   /* active while sessions wait to resume: the poll must not block */
    int port;    /* bound TCP port */
    int ws_port; /* bound WebSocket port, 0 when off */

    kp_session_env env; /* what every session shares: protocol, batch, round, resume list */
    kp_session_hooks hooks; /* env.hooks: the server's, plus the front door's when it is on */
    kp_front_door door;     /* SPEC §9: PROXY headers, per-address limits and bans */
    size_t conn_room;       /* session room for a connection (front_door.h) */
    kp_session_list unauthorized; /* in accept order, so the head times out first */
    kp_session_list authorized;   /* broadcast order; new sessions join at the tail */
    kp_session_list draining;     /* closing after their last writes, in drain order */
    size_t connections;     /* sessions open, counted from accept to close callback */
    size_t max_connections; /* -max_conns, or what the fd limit allows */
    kp_broadcast broadcast;

    /* TLS (SPEC §9): -tls_addr (lines) and -wss_addr (WebSocket), each stacking a TLS conn on
     * the TCP one at accept. tls_ctx is the server's reference to the current context (NULL
     * when neither listener is on); each connection's SSL holds its own. */
    uv_tcp_t tls_listener; /* .loop is NULL when off */
    uv_tcp_t wss_listener;
    int tls_port, wss_port; /* bound ports, 0 when off */
    SSL_CTX *tls_ctx;
    kp_tls_io tls_io;

    /* Scratch owned by the loop: every read lands in read_buf (sessions copy out only a partial
     * line), answers to one read collect in batch and leave in one write. */
    kp_read_buf read_buf;
    kp_out_batch batch;

    bool started;       /* timers and the broadcast exist (kp_server_start ran) */
    bool shutting_down; /* kp_server_close ran */
    kp_server_counters counters;
} kp_server;

/* A server for `loop` with its buffers and the connection bound; `jobs` and `protocol` are
 * borrowed and may be initialized later, before kp_server_listen. Returns 0 or KP_ENOMEM. */
int kp_server_new(uv_loop_t *loop, const kp_config *cfg, kp_job_book *jobs,
                  kp_protocol *protocol, kp_server **out);

/* Binds -addr and -ws_addr (and the TLS listeners, after loading the context: KP_EINVAL when
 * a file or the key is bad). Returns 0, KP_EINVAL (bad address) or KP_EIO (cannot listen); one
 * log line says why. On failure, kp_server_close, run the loop, then kp_server_free. */
int kp_server_listen(kp_server *s);

/* SIGHUP: loads -tls_cert and -tls_key again for new connections (open ones keep theirs). A
 * bad file keeps the current context; one log line says why. Returns 0 or a KP_E*; 0 when TLS
 * is off. */
int kp_server_reload_tls(kp_server *s);

/* Issues the first job and starts the timers: sessions are served from here on. */
void kp_server_start(kp_server *s);

/* Stops accepting, closes every handle and every session; idempotent. The loop must run. */
void kp_server_close(kp_server *s);

/* After the loop ran its close callbacks. */
void kp_server_free(kp_server *s);

/* How long a session that is closing after an error may take to get its last bytes out: a peer
 * that does not read them by then is reset. */
#define KP_DRAIN_TIMEOUT_MS 5000u

#endif
