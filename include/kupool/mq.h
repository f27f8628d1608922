/* The message-queue backend vtable (SPEC §3).
 *
 * An implementation embeds `kp_mq` as its first member and is built by a constructor of the form
 * `int kp_mq_NAME_open(const kp_config *cfg, kp_mq **out)`; src/backends/backends.c maps `-mq NAME`
 * to it and refuses (KP_EINVAL) a vtable whose version is not KP_MQ_VERSION or whose mandatory
 * slot is NULL: `name`, `publish`, `consume`, `ack` and `free` are mandatory, `pending` is not.
 *
 * Threads: `publish` runs on a libuv worker thread (one call at a time, batches in order);
 * `consume` and `ack` run on the consumer thread; `pending` on any thread; `free` on the loop
 * thread after both sides have stopped. The core never calls a slot from the loop thread while
 * it serves, so a slot may block, within the bounds given below. */
#ifndef KUPOOL_MQ_H
#define KUPOOL_MQ_H

#include <stddef.h>
#include <stdint.h>

#include "kupool/event.h"

/* 2 (issue 12): `publish` takes batches with ids; `consume` never splits a message. */
#define KP_MQ_VERSION 2

/* SPEC §3 v1.1: the most events one message carries (-mq_batch's upper bound). */
#define KP_MQ_BATCH_MAX 4096

/* content_type of a batch message (SPEC §3 v1.1); a v1 message is application/json. */
#define KP_MQ_NDJSON "application/x-ndjson"

/* A batch id: "<first event_id>+<count>" (src/proto/event_batch.h), NUL not included. */
#define KP_BATCH_ID_MAX (KP_EVENT_ID_MAX + 8)

/* Events published as one message, or, with an empty id, as one v1 message per event. */
typedef struct kp_mq_batch {
    char id[KP_BATCH_ID_MAX + 1]; /* "" = v1: one message per event, message_id = event_id */
    const kp_event *events;       /* borrowed for the call */
    size_t n;                     /* 1..KP_MQ_BATCH_MAX when id is set; any n when it is "" */
} kp_mq_batch;

typedef struct kp_mq kp_mq;

struct kp_mq {
    unsigned version; /* KP_MQ_VERSION */
    const char *name; /* "memory", "rabbit", ... */

    /* Makes every event of the `n` batches durable in the queue, each batch with an id as one
     * message carrying that id. Returns 0 only when every message is stored; on
     * KP_EAGAIN/KP_EIO the caller retries the same batches (same ids, same events) later, so
     * the consumer side must tolerate a message published twice (the stats store dedupes on
     * event_id). Runs on a worker thread and must return within a bounded time even when the
     * backend hangs (rabbit: 5 s). Everything is borrowed for the call. */
    int (*publish)(kp_mq *mq, const kp_mq_batch *batches, size_t n);

    /* Waits up to `timeout_ms` for events and copies up to `cap` of them into `out`, setting
     * `*n` (0 on timeout). A message is never split: a batch is taken only while all of it fits,
     * so `cap` must be at least KP_MQ_BATCH_MAX. Every event returned stays unacknowledged, and
     * is delivered again after a crash, until `ack`. Returns 0, KP_EIO (retry later) or
     * KP_ECLOSED. */
    int (*consume)(kp_mq *mq, kp_event *out, size_t cap, size_t *n, int timeout_ms);

    /* Acknowledges every event `consume` returned so far: the stats store has committed them. */
    int (*ack)(kp_mq *mq);

    /* Events published and not yet acknowledged, or -1 when the backend cannot tell. */
    int64_t (*pending)(kp_mq *mq);

    /* Releases everything. Mandatory. */
    void (*free)(kp_mq *mq);
};

static inline int kp_mq_publish(kp_mq *mq, const kp_mq_batch *batches, size_t n)
{
    return mq->publish(mq, batches, n);
}

/* One v1 batch of `n` events: one message per event (tests, tools, -mq_batch 1). */
static inline kp_mq_batch kp_mq_v1_batch(const kp_event *events, size_t n)
{
    return (kp_mq_batch){.id = "", .events = events, .n = n};
}

static inline int kp_mq_consume(kp_mq *mq, kp_event *out, size_t cap, size_t *n, int timeout_ms)
{
    return mq->consume(mq, out, cap, n, timeout_ms);
}

static inline int kp_mq_ack(kp_mq *mq) { return mq->ack(mq); }

static inline int64_t kp_mq_pending(kp_mq *mq) { return mq->pending ? mq->pending(mq) : -1; }

static inline void kp_mq_free(kp_mq *mq)
{
    if (mq)
        mq->free(mq);
}

#endif
