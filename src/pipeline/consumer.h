/* The consumer: a dedicated thread that reads events from the mq and counts them through the
 * stats vtable, acknowledging a batch only after the store committed it (SPEC §3). A failed
 * stats write keeps the batch and retries it with backoff, so nothing is acknowledged uncounted.
 * It runs on its own thread rather than uv_work because it is long-lived and blocks in
 * consume(); it touches nothing of the loop's. */
#ifndef KP_CONSUMER_H
#define KP_CONSUMER_H

#include <stdbool.h>
#include <stdint.h>

#include "kupool/mq.h"
#include "kupool/stats.h"

typedef struct kp_consumer kp_consumer;

/* Starts the thread. mq and stats are borrowed and must outlive kp_consumer_stop(). Returns 0,
 * KP_ENOMEM or KP_EIO (thread creation failed). */
int kp_consumer_start(kp_mq *mq, kp_stats *stats, kp_consumer **out);

/* Events counted and acknowledged so far (any thread). */
uint64_t kp_consumer_counted(const kp_consumer *c);

/* Stats-store and consume failures so far (any thread). */
uint64_t kp_consumer_errors(const kp_consumer *c);

/* True while the last stats write or consume failed and has not succeeded since (any thread):
 * /healthz names the failing backend from this. Sets *stats_side when the stats store failed,
 * clears it when the mq did. */
bool kp_consumer_failing(const kp_consumer *c, bool *stats_side);

/* Asks the thread to finish: it keeps consuming until the queue has nothing left or
 * `drain_ms` passes, then exits; this call joins it, frees `c` and returns the number of events
 * it counted. Blocks the caller for at most about drain_ms plus one consume timeout: call it only
 * once the loop has stopped serving. */
uint64_t kp_consumer_stop(kp_consumer *c, uint64_t drain_ms);

#endif
