/* The event pipeline, loop side (SPEC §3): accepted events wait in order in a pending batch; a
 * timer or a size threshold hands the oldest batch to a libuv worker thread, which publishes it
 * through the mq vtable. One batch is in flight at a time, so events reach the queue in order.
 * A failed publish keeps its batch and retries it with exponential backoff: nothing accepted is
 * dropped. All functions run on the loop thread. */
#ifndef KP_PIPELINE_H
#define KP_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kupool/event.h"
#include "kupool/mq.h"

typedef struct kp_pipeline kp_pipeline;

typedef struct kp_pipeline_stats {
    uint64_t accepted;      /* events pushed */
    uint64_t published;     /* events the mq confirmed */
    uint64_t publish_errors; /* failed publish calls */
    size_t waiting;         /* pushed and not yet confirmed (pending + in flight) */
    bool failing;           /* the last publish failed and its batch waits for a retry */
} kp_pipeline_stats;

/* `mq` is borrowed and must outlive the pipeline. Returns 0 or KP_ENOMEM. */
int kp_pipeline_open(uv_loop_t *loop, kp_mq *mq, kp_pipeline **out);

/* Copies `ev` to the end of the pending batch. Returns 0 or KP_ENOMEM (the caller must then not
 * acknowledge the submit as accepted). */
int kp_pipeline_push(kp_pipeline *pl, const kp_event *ev);

/* Publishes everything pending, then calls done(status, arg) once: 0 when nothing is left, or
 * KP_ETIMEDOUT when `timeout_ms` ran out first (stats().waiting says how many are left). */
typedef void (*kp_pipeline_drained_cb)(int status, void *arg);
void kp_pipeline_drain(kp_pipeline *pl, uint64_t timeout_ms, kp_pipeline_drained_cb done,
                       void *arg);

kp_pipeline_stats kp_pipeline_get_stats(const kp_pipeline *pl);

/* Closes the pipeline's handles; `pl` is freed once they are closed (the loop must run). A batch
 * still in flight is waited for by the loop, since a worker cannot be interrupted. */
void kp_pipeline_close(kp_pipeline *pl);

#endif
