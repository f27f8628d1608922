#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "pipeline"

/* A batch this large is handed to a worker at once; smaller ones wait for the flush timer, so
 * a trickle of submits still costs one worker round trip per FLUSH_MS, not one per event. */
#define BATCH_MAX 1024
#define FLUSH_MS 20
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Above this many waiting events the log says so loudly (once per crossing). */
#define WAITING_WARN 100000

struct kp_pipeline {
    uv_loop_t *loop;
    kp_mq *mq;

    /* pending[head..tail) wait, oldest first. Owned by the loop thread. */
    kp_event *pending;
    size_t head, tail, cap;

    /* The batch a worker is publishing (or that failed and waits for its retry). While
     * `in_flight` the worker owns `batch`; the loop touches it only in after_work. */
    uv_work_t work;
    kp_event *batch;
    size_t batch_len;
    int batch_status;
    bool in_flight;
    bool retry_armed; /* batch failed; waiting for retry_timer */
    uint64_t backoff_ms;

    uv_timer_t flush_timer;
    uv_timer_t retry_timer;
    uv_timer_t drain_timer;

    kp_pipeline_drained_cb drained;
    void *drained_arg;
    bool draining;
    bool closing;
    bool warned_waiting;
    int handles_open;

    kp_pipeline_stats stats;
};

static size_t pending_len(const kp_pipeline *pl) { return pl->tail - pl->head; }

static size_t waiting(const kp_pipeline *pl) { return pending_len(pl) + pl->batch_len; }

static void maybe_dispatch(kp_pipeline *pl);

static void free_if_done(kp_pipeline *pl)
{
    if (pl->closing && pl->handles_open == 0 && !pl->in_flight) {
        free(pl->pending);
        free(pl->batch);
        free(pl);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    kp_pipeline *pl = h->data;
    pl->handles_open--;
    free_if_done(pl);
}

static void finish_drain(kp_pipeline *pl, int status)
{
    if (!pl->drained)
        return;
    kp_pipeline_drained_cb cb = pl->drained;
    pl->drained = NULL;
    uv_timer_stop(&pl->drain_timer);
    cb(status, pl->drained_arg);
}

static void publish_work(uv_work_t *req)
{
    kp_pipeline *pl = req->data;
    pl->batch_status = kp_mq_publish(pl->mq, pl->batch, pl->batch_len);
}

static void on_retry(uv_timer_t *t)
{
    kp_pipeline *pl = t->data;
    pl->retry_armed = false;
    maybe_dispatch(pl);
}

static void after_publish(uv_work_t *req, int status)
{
    kp_pipeline *pl = req->data;
    pl->in_flight = false;
    int rc = status == UV_ECANCELED ? KP_ECLOSED : pl->batch_status;
    if (pl->closing) {
        if (rc != 0 && pl->batch_len)
            KP_ERROR(MODULE, "events not published at close", "count=%zu", waiting(pl));
        free_if_done(pl);
        return;
    }
    if (rc == 0) {
        pl->stats.published += pl->batch_len;
        pl->batch_len = 0;
        if (pl->backoff_ms) {
            KP_INFO(MODULE, "publishing recovered", "mq=%s waiting=%zu", pl->mq->name, waiting(pl));
            pl->backoff_ms = 0;
        }
        maybe_dispatch(pl);
        return;
    }
    /* Keep the batch: it is the oldest, and it is retried as it is, before anything newer. */
    pl->stats.publish_errors++;
    pl->backoff_ms = pl->backoff_ms ? pl->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (pl->backoff_ms > BACKOFF_MAX_MS)
        pl->backoff_ms = BACKOFF_MAX_MS;
    KP_WARN(MODULE, "publish failed; retrying", "mq=%s error=\"%s\" waiting=%zu retry_ms=%llu",
            pl->mq->name, kp_strerror(rc), waiting(pl), (unsigned long long)pl->backoff_ms);
    pl->retry_armed = true;
    uv_timer_start(&pl->retry_timer, on_retry, pl->backoff_ms, 0);
}

/* Hands the oldest events to a worker when none is busy. */
static void maybe_dispatch(kp_pipeline *pl)
{
    if (pl->in_flight || pl->retry_armed || pl->closing)
        return;
    if (pl->batch_len == 0) {
        size_t n = pending_len(pl);
        if (n == 0) {
            if (pl->draining)
                finish_drain(pl, 0);
            return;
        }
        if (n > BATCH_MAX)
            n = BATCH_MAX;
        memcpy(pl->batch, pl->pending + pl->head, n * sizeof(kp_event));
        pl->batch_len = n;
        pl->head += n;
        if (pl->head == pl->tail)
            pl->head = pl->tail = 0;
    }
    pl->work.data = pl;
    if (uv_queue_work(pl->loop, &pl->work, publish_work, after_publish) != 0) {
        pl->retry_armed = true;
        uv_timer_start(&pl->retry_timer, on_retry, BACKOFF_MIN_MS, 0);
        return;
    }
    pl->in_flight = true;
}

static void on_flush(uv_timer_t *t) { maybe_dispatch(t->data); }

int kp_pipeline_open(uv_loop_t *loop, kp_mq *mq, kp_pipeline **out)
{
    kp_pipeline *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return KP_ENOMEM;
    pl->batch = malloc(BATCH_MAX * sizeof(kp_event));
    if (!pl->batch) {
        free(pl);
        return KP_ENOMEM;
    }
    pl->loop = loop;
    pl->mq = mq;
    uv_timer_t *timers[] = {&pl->flush_timer, &pl->retry_timer, &pl->drain_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = pl;
        pl->handles_open++;
    }
    *out = pl;
    return 0;
}

static int reserve(kp_pipeline *pl)
{
    if (pl->tail < pl->cap)
        return 0;
    if (pl->head > pl->cap / 2) { /* mostly consumed: slide down instead of growing */
        memmove(pl->pending, pl->pending + pl->head, pending_len(pl) * sizeof(kp_event));
        pl->tail -= pl->head;
        pl->head = 0;
        return 0;
    }
    size_t cap = pl->cap ? pl->cap * 2 : 256;
    kp_event *grown = realloc(pl->pending, cap * sizeof(kp_event));
    if (!grown)
        return KP_ENOMEM;
    pl->pending = grown;
    pl->cap = cap;
    return 0;
}

int kp_pipeline_push(kp_pipeline *pl, const kp_event *ev)
{
    if (reserve(pl) != 0)
        return KP_ENOMEM;
    pl->pending[pl->tail++] = *ev;
    pl->stats.accepted++;
    size_t n = waiting(pl);
    if (n >= WAITING_WARN && !pl->warned_waiting) {
        pl->warned_waiting = true;
        KP_ERROR(MODULE, "events waiting for the queue", "mq=%s waiting=%zu", pl->mq->name, n);
    } else if (n < WAITING_WARN / 2) {
        pl->warned_waiting = false;
    }
    if (pending_len(pl) >= BATCH_MAX)
        maybe_dispatch(pl);
    else if (!uv_is_active((uv_handle_t *)&pl->flush_timer))
        uv_timer_start(&pl->flush_timer, on_flush, FLUSH_MS, 0);
    return 0;
}

static void on_drain_timeout(uv_timer_t *t)
{
    kp_pipeline *pl = t->data;
    finish_drain(pl, KP_ETIMEDOUT);
}

void kp_pipeline_drain(kp_pipeline *pl, uint64_t timeout_ms, kp_pipeline_drained_cb done,
                       void *arg)
{
    pl->draining = true;
    pl->drained = done;
    pl->drained_arg = arg;
    uv_timer_stop(&pl->flush_timer);
    uv_timer_start(&pl->drain_timer, on_drain_timeout, timeout_ms, 0);
    maybe_dispatch(pl);
}

kp_pipeline_stats kp_pipeline_get_stats(const kp_pipeline *pl)
{
    kp_pipeline_stats s = pl->stats;
    s.waiting = waiting(pl);
    s.failing = pl->backoff_ms > 0;
    return s;
}

void kp_pipeline_close(kp_pipeline *pl)
{
    if (!pl || pl->closing)
        return;
    pl->closing = true;
    pl->drained = NULL;
    uv_close((uv_handle_t *)&pl->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pl->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pl->drain_timer, on_handle_closed);
}
