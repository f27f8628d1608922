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

#define KP_MQ_VERSION 1

typedef struct kp_mq kp_mq;

struct kp_mq {
    unsigned version; /* KP_MQ_VERSION */
    const char *name; /* "memory", "rabbit", ... */

    /* Makes all `n` events durable in the queue, in order. Returns 0 only when every event is
     * stored; on KP_EAGAIN/KP_EIO the caller retries the same batch later, so the consumer side
     * must tolerate an event published twice (it dedupes on event_id). Runs on a worker thread
     * and must return within a bounded time even when the backend hangs (rabbit: 5 s). The
     * events are borrowed for the call. */
    int (*publish)(kp_mq *mq, const kp_event *events, size_t n);

    /* Waits up to `timeout_ms` for events and copies up to `cap` of them into `out`, setting
     * `*n` (0 on timeout). Every event returned stays unacknowledged, and is delivered again
     * after a crash, until `ack`. Returns 0, KP_EIO (retry later) or KP_ECLOSED. */
    int (*consume)(kp_mq *mq, kp_event *out, size_t cap, size_t *n, int timeout_ms);

    /* Acknowledges every event `consume` returned so far: the stats store has committed them. */
    int (*ack)(kp_mq *mq);

    /* Events published and not yet acknowledged, or -1 when the backend cannot tell. */
    int64_t (*pending)(kp_mq *mq);

    /* Releases everything. Mandatory. */
    void (*free)(kp_mq *mq);
};

static inline int kp_mq_publish(kp_mq *mq, const kp_event *events, size_t n)
{
    return mq->publish(mq, events, n);
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
