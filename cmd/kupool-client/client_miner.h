/* The search on the client's loop (SPEC §8: "the search never blocks the client's loop"): time
 * slices, not threads. A timer every KC_MINER_TICK_MS gives each session whose search is active
 * the hashes its -hashrate budget allows (client_search.h's bucket); the work runs in slices of
 * at most KC_MINER_SLICE_US, and when budget is left at the end of a slice an idle handle runs
 * the next slice right after the loop has polled its sockets. So an answer or a job waits at
 * most one slice, and with no -hashrate (demo: as fast as one core goes) the loop thread hashes
 * between its I/O, on one core.
 *
 * Why slices and not a uv_work pool: the search state (target, job, queue) is the session's and
 * changes with every set_difficulty and job the loop reads; on the loop it needs no locks and no
 * hand-off, a job change takes effect at the next slice, and one core is what the demo is meant
 * to use. The cost is that the loop's own work and the hashing share one core; at the load-mode
 * default (100 hashes/s per session) that is a small fraction of it (docs/client.md has the
 * figures). */
#ifndef KC_CLIENT_MINER_H
#define KC_CLIENT_MINER_H

#include <stdint.h>
#include <uv.h>

#include "client_session.h"
#include "histogram.h"

#define KC_MINER_TICK_MS 10u
#define KC_MINER_SLICE_US 1000u

typedef struct kc_miner {
    uv_timer_t tick;
    uv_idle_t more;
    kc_session *sessions; /* borrowed: the mode's array */
    uint32_t n;
    uint32_t cursor;      /* where the next slice starts, so no session starves */
    bool unlimited;       /* no -hashrate: keep slicing while any session is active */
    bool more_on;
    /* A share was queued on s (the mode may submit it now). */
    void (*on_share)(kc_session *s);
    /* what the slices cost the loop */
    uint64_t slices;
    uint64_t busy_ns;
    uint64_t slice_max_ns;
    kc_histogram slice_us;   /* each slice that hashed, µs of wall time (preemption included) */
    kc_histogram slice_cpu_us; /* the same slices in this thread's CPU time: their own cost */
    kc_histogram tick_late_us; /* how late each tick ran: the loop's delay, all work included */
    uint64_t last_tick_ns;
} kc_miner;

/* Starts the timer on `loop` for sessions[0..n). unlimited: the sessions have no -hashrate. */
void kc_miner_start(kc_miner *m, uv_loop_t *loop, kc_session *sessions, uint32_t n,
                    bool unlimited, void (*on_share)(kc_session *s));

/* Closes both handles (the memory is the caller's; free it after uv_run returned). */
void kc_miner_close(kc_miner *m);

#endif
