#include "consumer.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "clock.h"
#include "kupool/error.h"
#include "log.h"

#define MODULE "consumer"
/* Events per stats write: several deliveries' worth (a batch message carries up to
 * KP_MQ_BATCH_MAX, and consume never splits one), so the store gets large transactions. */
#define CONSUME_BATCH (4 * KP_MQ_BATCH_MAX)
#define CONSUME_TIMEOUT_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct kp_consumer {
    kp_mq *mq;
    kp_stats *stats;
    uv_thread_t thread;
    kp_event *batch;
    atomic_bool stopping;
    atomic_uint_fast64_t drain_deadline_ms; /* monotonic; valid once stopping */
    atomic_uint_fast64_t counted;
    atomic_uint_fast64_t errors;
    atomic_int failing; /* 0 ok, 1 consume (mq) failing, 2 stats failing */
    /* Fault injection for the exactly-once test: die by SIGKILL after this many committed
     * batches, before their ack (KUP_FAULT_DIE_AFTER_COMMIT; 0 = never). */
    unsigned long die_after_commit;
    /* And a smaller stats write, so that test can kill a consumer with events still queued
     * whatever the prefetch (KUP_FAULT_CONSUME_CAP; 0 = CONSUME_BATCH). */
    size_t cap;
};

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool past_deadline(kp_consumer *c)
{
    return atomic_load(&c->stopping) && kp_clock_mono_ms() >= atomic_load(&c->drain_deadline_ms);
}

/* Sleeps for the backoff, in short steps so a stop request is not kept waiting. */
static void backoff(kp_consumer *c, uint64_t *delay)
{
    *delay = *delay ? *delay * 2 : BACKOFF_MIN_MS;
    if (*delay > BACKOFF_MAX_MS)
        *delay = BACKOFF_MAX_MS;
    for (uint64_t slept = 0; slept < *delay && !past_deadline(c); slept += 50)
        sleep_ms(50);
}

/* Counts one batch, retrying until the store commits it or the drain deadline passes. Returns
 * true when committed (and so may be acknowledged). */
static bool record_batch(kp_consumer *c, size_t n)
{
    uint64_t delay = 0;
    for (;;) {
        int rc = kp_stats_record(c->stats, c->batch, n);
        if (rc == 0) {
            if (delay)
                KP_INFO(MODULE, "stats store recovered", KP_STR("store", c->stats->name));
            atomic_store(&c->failing, 0);
            return true;
        }
        atomic_fetch_add(&c->errors, 1);
        atomic_store(&c->failing, 2);
        KP_WARN(MODULE, "stats write failed; retrying", KP_STR("store", c->stats->name),
                KP_QSTR("error", kp_strerror(rc)), KP_UINT("events", n));
        if (past_deadline(c))
            return false;
        backoff(c, &delay);
    }
}

static void run(void *arg)
{
    kp_consumer *c = arg;
    uint64_t delay = 0;
    for (;;) {
        if (past_deadline(c))
            break;
        size_t n = 0;
        int rc = kp_mq_consume(c->mq, c->batch, c->cap, &n, CONSUME_TIMEOUT_MS);
        if (rc == KP_ECLOSED)
            break;
        if (rc != 0) {
            atomic_fetch_add(&c->errors, 1);
            atomic_store(&c->failing, 1);
            KP_WARN(MODULE, "consume failed; retrying", KP_STR("mq", c->mq->name),
                    KP_QSTR("error", kp_strerror(rc)));
            backoff(c, &delay);
            continue;
        }
        delay = 0;
        if (atomic_load(&c->failing) == 1)
            atomic_store(&c->failing, 0);
        if (n == 0) {
            if (atomic_load(&c->stopping))
                break; /* drained: the publisher finished before stop was asked */
            continue;
        }
        if (!record_batch(c, n))
            break; /* unacknowledged: the queue redelivers it to the next consumer */
        if (c->die_after_commit && --c->die_after_commit == 0) {
            KP_WARN(MODULE, "fault injection: dying between commit and ack", KP_UINT("events", n));
            kp_log_close();
            raise(SIGKILL);
        }
        rc = kp_mq_ack(c->mq);
        if (rc != 0) {
            /* Counted but not acknowledged: the redelivery is deduplicated by event_id. */
            KP_WARN(MODULE, "ack failed", KP_STR("mq", c->mq->name), KP_QSTR("error", kp_strerror(rc)));
        }
        atomic_fetch_add(&c->counted, n);
    }
}

int kp_consumer_start(kp_mq *mq, kp_stats *stats, kp_consumer **out)
{
    kp_consumer *c = calloc(1, sizeof(*c));
    if (!c)
        return KP_ENOMEM;
    c->batch = malloc(CONSUME_BATCH * sizeof(kp_event));
    if (!c->batch) {
        free(c);
        return KP_ENOMEM;
    }
    c->mq = mq;
    c->stats = stats;
    const char *fault = getenv("KUP_FAULT_DIE_AFTER_COMMIT");
    c->die_after_commit = fault ? strtoul(fault, NULL, 10) : 0;
    const char *cap = getenv("KUP_FAULT_CONSUME_CAP");
    c->cap = cap ? strtoul(cap, NULL, 10) : 0;
    if (c->cap == 0 || c->cap > CONSUME_BATCH)
        c->cap = CONSUME_BATCH;
    atomic_init(&c->stopping, false);
    atomic_init(&c->drain_deadline_ms, 0);
    atomic_init(&c->counted, 0);
    atomic_init(&c->errors, 0);
    atomic_init(&c->failing, 0);
    if (uv_thread_create(&c->thread, run, c) != 0) {
        free(c->batch);
        free(c);
        return KP_EIO;
    }
    *out = c;
    return 0;
}

uint64_t kp_consumer_counted(const kp_consumer *c)
{
    return atomic_load(&((kp_consumer *)c)->counted);
}

uint64_t kp_consumer_errors(const kp_consumer *c)
{
    return atomic_load(&((kp_consumer *)c)->errors);
}

bool kp_consumer_failing(const kp_consumer *c, bool *stats_side)
{
    int f = atomic_load(&((kp_consumer *)c)->failing);
    *stats_side = f == 2;
    return f != 0;
}

uint64_t kp_consumer_stop(kp_consumer *c, uint64_t drain_ms)
{
    if (!c)
        return 0;
    atomic_store(&c->drain_deadline_ms, kp_clock_mono_ms() + drain_ms);
    atomic_store(&c->stopping, true);
    uv_thread_join(&c->thread);
    uint64_t counted = atomic_load(&c->counted);
    free(c->batch);
    free(c);
    return counted;
}
