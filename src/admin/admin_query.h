/* The /stats query worker: one dedicated thread with a bounded queue in front of the stats
 * store's `query`.
 *
 * Why not libuv's thread pool: it is shared with the event pipeline's publishing jobs, so queries
 * stuck on a silent database used to sit in front of publishing (issue 9). Here a query can only
 * ever wait behind other queries, the queue has a fixed bound (full: the caller answers 503), and
 * a query whose client went away before the worker took it is dropped without running.
 *
 * Threads: every function runs on the loop thread. The worker thread touches only the queued
 * query it took (username in, results out) and the stats store. */
#ifndef KP_ADMIN_QUERY_H
#define KP_ADMIN_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kupool/event.h"
#include "kupool/stats.h"

/* Queries waiting for the worker (not counting the one it runs). */
#define KP_ADMIN_QUERY_QUEUE 16

typedef struct kp_query_worker kp_query_worker;
typedef struct kp_query kp_query;

/* The result of one query, lent to the callback: `counts` (malloc'd by the store, may be NULL)
 * may be taken by setting it to NULL, otherwise it is freed after the callback. */
typedef struct kp_query_result {
    int rc; /* 0, or the store's error */
    kp_minute_count *counts;
    size_t n;
    int64_t wall_ms; /* the wall clock when the store was asked: "now" for the hashrate */
} kp_query_result;

typedef void (*kp_query_cb)(kp_query_result *res, void *arg);

/* Starts the worker thread on `loop`; `stats` is borrowed and must outlive the worker (it does:
 * the server frees the store after the loop has run the worker's close). Returns 0 or KP_ENOMEM
 * / KP_EIO. */
int kp_query_worker_open(uv_loop_t *loop, kp_stats *stats, kp_query_worker **out);

/* Queues a query for `username`; cb(res, arg) runs later on the loop thread unless the query is
 * cancelled first. Returns 0 with `*out` set (the handle for kp_query_cancel, valid until the
 * callback runs or the cancel), KP_EAGAIN when KP_ADMIN_QUERY_QUEUE queries already wait, or
 * KP_ENOMEM / KP_ECLOSED (the worker is closing). */
int kp_query_submit(kp_query_worker *w, const char *username, kp_query_cb cb, void *arg,
                    kp_query **out);

/* The client went away: a query still queued is dropped without running; one already running
 * finishes, and its result is discarded. The callback never runs after this. */
void kp_query_cancel(kp_query *q);

/* The client stopped sending: drops the query if the worker has not taken it yet (true; the
 * callback never runs), else leaves it to finish and answer (false). */
bool kp_query_drop_if_queued(kp_query *q);

/* Queries waiting and queries dropped before they ran, for /metrics. */
size_t kp_query_worker_queued(const kp_query_worker *w);
uint64_t kp_query_worker_dropped(const kp_query_worker *w);
uint64_t kp_query_worker_refused(const kp_query_worker *w);

/* Stops the worker: queued queries are dropped (their callbacks never run), the running one
 * finishes (a store bounds its own query time). closed(arg) runs on the loop once the thread
 * is joined and the worker freed. */
void kp_query_worker_close(kp_query_worker *w, void (*closed)(void *arg), void *arg);

#endif
