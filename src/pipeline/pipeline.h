/* The event pipeline, loop side (SPEC §3, issue 4): accepted events wait in order; a timer or a
 * size threshold hands the oldest events to a libuv worker thread, which publishes them through
 * the mq vtable, cut into messages of -mq_batch events (SPEC §3 v1.1; a cut batch keeps its id
 * and events through retries, the spool and a restart). One worker job runs at a time, so events reach the queue in acceptance order.
 *
 * The queue is the spool file (oldest events, on disk) followed by a memory array (newest).
 * While the mq is down or slow, events wait in memory up to `memory_bound`; past it the oldest
 * move to the spool, which is published first once the mq is back, and replayed at the next
 * start if the process stops before. A failed publish keeps its events and retries with
 * exponential backoff: nothing accepted is dropped. All functions run on the loop thread. */
#ifndef KP_PIPELINE_H
#define KP_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kupool/event.h"
#include "kupool/mq.h"

typedef struct kp_pipeline kp_pipeline;

typedef struct kp_pipeline_options {
    const char *spool_dir; /* -data_dir; NULL = no spool: events wait in memory only */
    size_t memory_bound;   /* events kept in memory before spooling; 0 = the default */
    size_t mq_batch;       /* -mq_batch: events per message, 0 or 1 = v1 (one per event) */
} kp_pipeline_options;

/* Events kept in memory by default (~400 bytes each, so about 25 MiB). */
#define KP_PIPELINE_MEMORY_BOUND 65536

typedef struct kp_pipeline_stats {
    uint64_t accepted;       /* events pushed (this run) */
    uint64_t published;      /* events the mq confirmed (this run, spool replays included) */
    uint64_t publish_errors; /* failed publish calls */
    uint64_t spool_errors;   /* failed spool writes or reads */
    size_t waiting;          /* events not yet confirmed: in memory, in flight, and spooled */
    uint64_t spooled;        /* of those, the ones in the spool file */
    bool failing;            /* the last publish failed and its events wait for a retry */
} kp_pipeline_stats;

/* `mq` is borrowed and must outlive the pipeline. With a spool_dir, a spool left by a previous
 * run is found here and replayed first. Returns 0, KP_ENOMEM or KP_EIO (unreadable spool). */
int kp_pipeline_open(uv_loop_t *loop, kp_mq *mq, const kp_pipeline_options *opts,
                     kp_pipeline **out);

/* Copies `ev` to the end of the queue. Returns 0 or KP_ENOMEM (the caller must then not
 * acknowledge the submit as accepted). */
int kp_pipeline_push(kp_pipeline *pl, const kp_event *ev);

/* Shutdown: publishes what waits; if the mq fails, or `timeout_ms` runs out, spools what is
 * left instead. Then calls done(status, arg) once: 0 when every event is published or spooled,
 * KP_ETIMEDOUT/KP_EIO when some could be neither (stats().waiting - spooled says how many). */
typedef void (*kp_pipeline_drained_cb)(int status, void *arg);
void kp_pipeline_drain(kp_pipeline *pl, uint64_t timeout_ms, kp_pipeline_drained_cb done,
                       void *arg);

kp_pipeline_stats kp_pipeline_get_stats(const kp_pipeline *pl);

/* Closes the pipeline's handles; `pl` is freed once they are closed (the loop must run). A job
 * still on a worker is waited for by the loop, since a worker cannot be interrupted. */
void kp_pipeline_close(kp_pipeline *pl);

#endif
