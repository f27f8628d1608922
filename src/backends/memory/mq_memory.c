/* The memory mq: a bounded in-process FIFO between the publishing worker and the consumer
 * thread. Nothing survives the process; `ack` has nothing to do because a consumed event can
 * only be lost together with the whole process. Batches (SPEC §3 v1.1) are a message format:
 * in process there is no message, so a publish queues their events and the ids go unused. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends.h"
#include "clock.h"
#include "kupool/error.h"

#define PUBLISH_WAIT_MS 1000

typedef struct mq_memory {
    kp_mq parent; /* first: a kp_mq * is a mq_memory * */
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    kp_event *ring; /* grown on demand up to KP_MQ_MEMORY_CAPACITY */
    size_t cap, head, count;
} mq_memory;

/* Grows the ring (re-linearising it) so `need` events fit; caller holds the lock. */
static int grow(mq_memory *q, size_t need)
{
    if (need <= q->cap)
        return 0;
    size_t cap = q->cap ? q->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > KP_MQ_MEMORY_CAPACITY)
        cap = KP_MQ_MEMORY_CAPACITY;
    kp_event *ring = malloc(cap * sizeof(kp_event));
    if (!ring)
        return KP_ENOMEM;
    for (size_t i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static int mem_publish(kp_mq *mq, const kp_mq_batch *batches, size_t nbatches)
{
    mq_memory *q = (mq_memory *)mq;
    size_t n = 0;
    for (size_t b = 0; b < nbatches; b++)
        n += batches[b].n;
    if (n > KP_MQ_MEMORY_CAPACITY)
        return KP_EINVAL;
    struct timespec until = kp_clock_mono_deadline(PUBLISH_WAIT_MS);
    pthread_mutex_lock(&q->mu);
    int rc = 0;
    while (q->count + n > KP_MQ_MEMORY_CAPACITY && rc == 0)
        rc = pthread_cond_timedwait(&q->not_full, &q->mu, &until);
    if (q->count + n > KP_MQ_MEMORY_CAPACITY) {
        pthread_mutex_unlock(&q->mu);
        return KP_EAGAIN; /* the consumer is behind: the pipeline retries this batch */
    }
    if (grow(q, q->count + n) != 0) {
        pthread_mutex_unlock(&q->mu);
        return KP_ENOMEM;
    }
    for (size_t b = 0; b < nbatches; b++)
        for (size_t i = 0; i < batches[b].n; i++)
            q->ring[(q->head + q->count++) % q->cap] = batches[b].events[i];
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int mem_consume(kp_mq *mq, kp_event *out, size_t cap, size_t *n, int timeout_ms)
{
    mq_memory *q = (mq_memory *)mq;
    struct timespec until = kp_clock_mono_deadline(timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
    pthread_mutex_lock(&q->mu);
    int rc = 0;
    while (q->count == 0 && rc == 0)
        rc = pthread_cond_timedwait(&q->not_empty, &q->mu, &until);
    size_t take = q->count < cap ? q->count : cap;
    for (size_t i = 0; i < take; i++)
        out[i] = q->ring[(q->head + i) % q->cap];
    if (take) {
        q->head = (q->head + take) % q->cap;
        q->count -= take;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    *n = take;
    return 0;
}

static int mem_ack(kp_mq *mq) { return 0; }

static int64_t mem_pending(kp_mq *mq)
{
    mq_memory *q = (mq_memory *)mq;
    pthread_mutex_lock(&q->mu);
    int64_t n = (int64_t)q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

static void mem_free(kp_mq *mq)
{
    mq_memory *q = (mq_memory *)mq;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->ring);
    free(q);
}

int kp_mq_memory_open(const kp_config *cfg, kp_mq **out)
{
    mq_memory *q = calloc(1, sizeof(*q));
    if (!q)
        return KP_ENOMEM;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, &attr);
    pthread_cond_init(&q->not_full, &attr);
    pthread_condattr_destroy(&attr);
    q->parent = (kp_mq){
        .version = KP_MQ_VERSION,
        .name = "memory",
        .publish = mem_publish,
        .consume = mem_consume,
        .ack = mem_ack,
        .pending = mem_pending,
        .free = mem_free,
    };
    *out = &q->parent;
    return 0;
}
