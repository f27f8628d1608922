/* The pipeline's decisions, apart from the loop that carries them out (issue 10).
 *
 * pipeline.c owns the timers, the worker job and the memory array; this file owns the two
 * questions it asks about them, as pure functions of plain values so a table of rows can test
 * them without a loop:
 *   - kp_pipeline_phase_after: where the pipeline is in its life after something happened
 *     (a drain began, its deadline passed, a publish or a spool append failed);
 *   - kp_pipeline_next: which worker job to start now, if any, or whether the drain is over.
 * Everything else pipeline.c keeps (the backoff length, the pause after a failed append, the
 * counts) is an input here, computed by the caller. No libuv, no clock, no allocation. */
#ifndef KP_PIPELINE_STATE_H
#define KP_PIPELINE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A batch this large is handed to a worker at once; smaller ones wait for the flush timer, so
 * a trickle of submits still costs one worker round trip per flush, not one per event. One job
 * is in flight at a time and a busy loop completes about one job per iteration, so the batch
 * bounds the publish rate: at 1024 a loop answering ~450k submits/s fell behind even the memory
 * mq; 4096 keeps up (docs/benchmarks.md, scenario c), and RabbitMQ confirms a batch of that size
 * well within its 5 s deadline. */
#define KP_PIPELINE_BATCH_MAX 4096

/* Events moved to the spool per append job. */
#define KP_PIPELINE_SPOOL_CHUNK 4096

/* Every job goes through the pipeline's one batch buffer, allocated for SPOOL_CHUNK events: a
 * memory publish copies up to BATCH_MAX events into it and a spool publish reads up to BATCH_MAX
 * into it, so BATCH_MAX above SPOOL_CHUNK would overrun it. They are kept equal (not merely
 * ordered) so that what one append wrote is read back as one publish. */
_Static_assert(KP_PIPELINE_BATCH_MAX == KP_PIPELINE_SPOOL_CHUNK,
               "the worker's batch buffer holds one job of either kind");

/* The job size with -mq_batch above 1 (issue 12): a job of 4096 events is then only a few
 * messages, and one job per busy loop iteration bounded the publish rate below what the broker
 * takes; 16384 events are 64 messages at -mq_batch 256, well within a publish's 5 s deadline.
 * (At -mq_batch 1 a job stays 4096 messages: the deadline holds them on a slow broker.) Appends
 * and spool reads use the same job size, and the worker's buffers are sized for it. */
#define KP_PIPELINE_JOB_MAX 16384
_Static_assert(KP_PIPELINE_BATCH_MAX <= KP_PIPELINE_JOB_MAX, "the default job fits the buffers");

/* Where the pipeline is in its life. Only ever moves down this list (CLOSED from anywhere). */
typedef enum kp_pipeline_phase {
    KP_PIPELINE_SERVING,        /* publishing events as they come */
    KP_PIPELINE_DRAINING,       /* shutting down: publish everything that waits */
    KP_PIPELINE_DRAIN_TO_SPOOL, /* shutting down, and the mq failed or time ran out: spool the
                                 * rest instead of publishing it (only with a spool) */
    KP_PIPELINE_DRAINED,        /* the drained callback ran: nothing is dispatched or retried */
    KP_PIPELINE_CLOSED,         /* kp_pipeline_close: only the handles' close callbacks remain */
} kp_pipeline_phase;

/* What happened, for kp_pipeline_phase_after. */
typedef enum kp_pipeline_event {
    KP_PIPELINE_DRAIN_STARTED,  /* kp_pipeline_drain */
    KP_PIPELINE_DRAIN_DEADLINE, /* the drain's timeout ran out */
    KP_PIPELINE_PUBLISH_FAILED, /* a publish job (memory or spool) failed */
    KP_PIPELINE_APPEND_FAILED,  /* a spool append job failed */
    KP_PIPELINE_DRAIN_FINISHED, /* the drained callback was called */
    KP_PIPELINE_CLOSE,          /* kp_pipeline_close */
} kp_pipeline_event;

/* The facts kp_pipeline_phase_after needs beside the phase. */
typedef struct kp_pipeline_facts {
    bool have_spool; /* a spool dir is configured */
    bool mq_failing; /* the last publish failed and none has succeeded since */
} kp_pipeline_facts;

/* The phase after `ev`. Becoming KP_PIPELINE_DRAINED from a deadline or a failed append means
 * the caller must now finish the drain with KP_ETIMEDOUT or KP_EIO: nothing can hold the rest.
 * A publish that fails while SERVING or DRAINING without a spool keeps the phase and is retried
 * after a backoff; kp_pipeline_retries says whether to arm that retry. */
kp_pipeline_phase kp_pipeline_phase_after(kp_pipeline_phase phase, kp_pipeline_event ev,
                                          kp_pipeline_facts facts);

/* Whether a failed publish is retried in `phase` (the phase after the failure): not once the
 * drain is over, since nobody waits for it and an armed timer would hold the loop open. */
bool kp_pipeline_retries(kp_pipeline_phase phase);

/* What the caller knows when it asks for the next job. */
typedef struct kp_pipeline_inputs {
    bool job_running;    /* a worker job is in flight (it owns the batch and the spool) */
    bool backing_off;    /* a publish failed and its retry timer has not fired yet */
    bool have_spool;     /* a spool dir is configured */
    bool spool_paused;   /* a spool append failed recently: the disk is not tried again yet */
    bool appended_last;  /* the last job started was a spool append */
    size_t in_memory;    /* events waiting in the memory array */
    uint64_t spooled;    /* events waiting in the spool file (all older than memory's) */
    size_t memory_bound; /* events memory holds before the oldest move to the spool */
    size_t job_max;      /* events per job; 0 = KP_PIPELINE_BATCH_MAX (at most JOB_MAX) */
} kp_pipeline_inputs;

typedef enum kp_pipeline_action_kind {
    KP_PIPELINE_WAIT,           /* nothing to start: a job, a timer or new events will ask again */
    KP_PIPELINE_PUBLISH_MEMORY, /* publish the `count` oldest events in memory */
    KP_PIPELINE_PUBLISH_SPOOL,  /* read the oldest spooled events, publish them, commit */
    KP_PIPELINE_SPOOL_APPEND,   /* move the `count` oldest events in memory to the spool */
    KP_PIPELINE_FINISH_DRAIN,   /* draining and nothing is left to do: call back with 0 (events
                                 * still spooled stay for the next start) */
} kp_pipeline_action_kind;

typedef struct kp_pipeline_action {
    kp_pipeline_action_kind kind;
    size_t count; /* events, for PUBLISH_MEMORY and SPOOL_APPEND; 0 otherwise */
} kp_pipeline_action;

/* The next step. Spools what is over the memory bound (everything, in DRAIN_TO_SPOOL), else
 * publishes the oldest events, spooled ones first; while both an append and a publish are due
 * they take turns, so a sustained overload with a healthy mq still publishes. */
kp_pipeline_action kp_pipeline_next(kp_pipeline_phase phase, const kp_pipeline_inputs *in);

/* "serving", "draining", ... for logs and test failure messages. */
const char *kp_pipeline_phase_name(kp_pipeline_phase phase);
const char *kp_pipeline_action_name(kp_pipeline_action_kind kind);

#endif
