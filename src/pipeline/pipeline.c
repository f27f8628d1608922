#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "event_batch.h"
#include "kupool/error.h"
#include "log.h"
#include "pipeline_state.h"
#include "spool.h"

#define MODULE "pipeline"

/* The decisions (which job next, which phase after what) are in pipeline_state.c; this file
 * carries them out: it owns the memory array, the worker job, the timers and the logs. */
#define FLUSH_MS 20
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct kp_pipeline {
    uv_loop_t *loop;
    kp_mq *mq;
    kp_spool *spool; /* NULL without a spool dir */
    size_t memory_bound;
    size_t mq_batch; /* events per message; <= 1: v1, one message per event */
    size_t job_max;  /* events per worker job: KP_PIPELINE_BATCH_MAX, or JOB_MAX when batching */
    kp_pipeline_phase phase;

    /* pending[head..tail) wait in memory, oldest first. Owned by the loop thread. Events leave
     * (head advances) only when a worker job that copied them has succeeded. */
    kp_event *pending;
    size_t head, tail, cap;
    uint64_t spooled; /* events in the spool file, all older than pending[] */

    /* The worker job. While `job` is not KP_PIPELINE_WAIT the worker owns `batch` and the
     * spool; the loop touches them only in after_job. */
    uv_work_t work;
    kp_pipeline_action_kind job;      /* the job in flight; KP_PIPELINE_WAIT when none */
    kp_pipeline_action_kind last_job; /* the last job started, for appends' and publishes' turns */
    kp_event *batch;                  /* KP_PIPELINE_JOB_MAX events */
    size_t batch_len;
    size_t batch_skipped; /* spool lines that did not parse (KP_PIPELINE_PUBLISH_SPOOL) */
    size_t batch_bad_markers; /* spool batch markers that did not parse (same) */

    /* SPEC §3 v1.1: a batch keeps its id and events once cut. The oldest `sealed_events` events
     * in memory were cut into sealed[0..nsealed) by the memory job that first took them (a
     * publish or an append); a job that fails leaves them cut, so its retry, or the append that
     * moves them to the spool instead, carries the same batches. Only a success clears them.
     * The loop writes sealed[] between jobs; while a job runs its `events` point into `batch`. */
    kp_mq_batch *sealed; /* KP_PIPELINE_JOB_MAX entries */
    size_t nsealed;
    size_t sealed_events;
    kp_mq_batch *spool_batches; /* KP_PIPELINE_JOB_MAX entries: a spool job's batches */
    size_t nspool_batches;
    int batch_status;
    uint64_t backoff_ms;      /* 0 while publishing works; else the last retry delay */
    uint64_t spool_retry_at;  /* loop time before which a failed spool is not tried again */

    uv_timer_t flush_timer;
    uv_timer_t retry_timer; /* active while a failed publish waits for its retry */
    uv_timer_t drain_timer;
    int handles_open;

    kp_pipeline_drained_cb drained;
    void *drained_arg;
    bool warned_spooling; /* the "spooling to disk" warning is logged once per run */

    kp_pipeline_stats stats;
};

static size_t pending_len(const kp_pipeline *pl) { return pl->tail - pl->head; }

static void maybe_dispatch(kp_pipeline *pl);

static void free_if_done(kp_pipeline *pl)
{
    if (pl->phase == KP_PIPELINE_CLOSED && pl->handles_open == 0 && pl->job == KP_PIPELINE_WAIT) {
        kp_spool_close(pl->spool);
        free(pl->pending);
        free(pl->batch);
        free(pl->sealed);
        free(pl->spool_batches);
        free(pl);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    kp_pipeline *pl = h->data;
    pl->handles_open--;
    free_if_done(pl);
}

/* Moves the phase on after `ev`; when that ends the drain, calls the drained callback once with
 * `drain_status`. The callback may close the pipeline: callers return right after a drain ends. */
static void phase_event(kp_pipeline *pl, kp_pipeline_event ev, int drain_status)
{
    kp_pipeline_phase before = pl->phase;
    kp_pipeline_facts facts = {.have_spool = pl->spool != NULL, .mq_failing = pl->backoff_ms > 0};
    pl->phase = kp_pipeline_phase_after(before, ev, facts);
    if (pl->phase != KP_PIPELINE_DRAINED || before == KP_PIPELINE_DRAINED || !pl->drained)
        return;
    kp_pipeline_drained_cb cb = pl->drained;
    pl->drained = NULL;
    uv_timer_stop(&pl->drain_timer);
    /* An armed retry would keep the loop, hence the shutdown, alive for up to BACKOFF_MAX_MS
     * after everything was already published or spooled. */
    uv_timer_stop(&pl->retry_timer);
    cb(drain_status, pl->drained_arg);
}

/* ---- worker side: touches only the batch, the mq and the spool ---- */

static void run_job(uv_work_t *req)
{
    kp_pipeline *pl = req->data;
    switch (pl->job) {
    case KP_PIPELINE_PUBLISH_MEMORY:
        pl->batch_status = kp_mq_publish(pl->mq, pl->sealed, pl->nsealed);
        break;
    case KP_PIPELINE_PUBLISH_SPOOL: {
        kp_spool_chunk chunk = {.events = pl->batch,
                                .cap = pl->job_max,
                                .batches = pl->spool_batches,
                                .per = pl->mq_batch};
        pl->batch_status = kp_spool_read(pl->spool, &chunk);
        pl->batch_len = chunk.n;
        pl->batch_skipped = chunk.skipped;
        pl->batch_bad_markers = chunk.bad_markers;
        pl->nspool_batches = chunk.nbatches;
        if (pl->batch_status == 0 && chunk.n)
            pl->batch_status = kp_mq_publish(pl->mq, pl->spool_batches, chunk.nbatches);
        if (pl->batch_status == 0)
            pl->batch_status = kp_spool_commit(pl->spool);
        break;
    }
    case KP_PIPELINE_SPOOL_APPEND:
        pl->batch_status = kp_spool_append(pl->spool, pl->sealed, pl->nsealed);
        break;
    case KP_PIPELINE_WAIT:
    case KP_PIPELINE_FINISH_DRAIN:
        break; /* not jobs: never queued */
    }
}

/* ---- loop side ---- */

static void on_retry(uv_timer_t *t) { maybe_dispatch(t->data); }

static void publish_failed(kp_pipeline *pl, int rc)
{
    pl->stats.publish_errors++;
    pl->backoff_ms = pl->backoff_ms ? pl->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (pl->backoff_ms > BACKOFF_MAX_MS)
        pl->backoff_ms = BACKOFF_MAX_MS;
    size_t waiting = pending_len(pl) + pl->spooled;
    KP_WARN(MODULE, "publish failed; retrying", KP_STR("mq", pl->mq->name),
            KP_QSTR("error", kp_strerror(rc)), KP_UINT("waiting", waiting),
            KP_UINT("spooled", pl->spooled), KP_UINT("retry_ms", pl->backoff_ms));
    phase_event(pl, KP_PIPELINE_PUBLISH_FAILED, 0);
    if (kp_pipeline_retries(pl->phase))
        uv_timer_start(&pl->retry_timer, on_retry, pl->backoff_ms, 0);
}

static void publish_succeeded(kp_pipeline *pl, size_t n)
{
    pl->stats.published += n;
    if (pl->backoff_ms) {
        KP_INFO(MODULE, "publishing recovered", KP_STR("mq", pl->mq->name),
                KP_UINT("waiting", pending_len(pl)), KP_UINT("spooled", pl->spooled));
        pl->backoff_ms = 0;
    }
}

static void consume_memory(kp_pipeline *pl, size_t n)
{
    pl->nsealed = pl->sealed_events = 0; /* the batches are stored: the next job cuts anew */
    pl->head += n;
    if (pl->head == pl->tail)
        pl->head = pl->tail = 0;
}

static void after_job(uv_work_t *req, int status)
{
    kp_pipeline *pl = req->data;
    kp_pipeline_action_kind job = pl->job;
    pl->job = KP_PIPELINE_WAIT;
    int rc = status == UV_ECANCELED ? KP_ECLOSED : pl->batch_status;
    if (pl->phase == KP_PIPELINE_CLOSED) {
        free_if_done(pl);
        return;
    }
    switch (job) {
    case KP_PIPELINE_PUBLISH_MEMORY:
        if (rc == 0) {
            consume_memory(pl, pl->batch_len);
            publish_succeeded(pl, pl->batch_len);
        } else {
            publish_failed(pl, rc);
        }
        break;
    case KP_PIPELINE_PUBLISH_SPOOL:
        if (pl->batch_skipped || pl->batch_bad_markers) {
            pl->stats.spool_errors += pl->batch_skipped + pl->batch_bad_markers;
            KP_ERROR(MODULE, "unreadable spool lines skipped", KP_UINT("count", pl->batch_skipped),
                     KP_UINT("batch_markers", pl->batch_bad_markers));
        }
        if (rc == 0) {
            size_t done = pl->batch_len + pl->batch_skipped; /* markers are not events */
            bool progress = done || pl->batch_bad_markers;
            /* A spool that ends early (torn last line) counts as drained. */
            pl->spooled = progress && done < pl->spooled ? pl->spooled - done : 0;
            publish_succeeded(pl, pl->batch_len);
            if (pl->spooled == 0)
                KP_INFO(MODULE, "spool drained", KP_STR("mq", pl->mq->name));
        } else {
            publish_failed(pl, rc);
        }
        break;
    case KP_PIPELINE_SPOOL_APPEND:
        if (rc == 0) {
            consume_memory(pl, pl->batch_len);
            pl->spooled += pl->batch_len;
            if (!pl->warned_spooling) {
                pl->warned_spooling = true;
                KP_WARN(MODULE, "mq not keeping up; spooling events to disk",
                        KP_STR("mq", pl->mq->name), KP_UINT("spooled", pl->spooled),
                        KP_UINT("memory_bound", pl->memory_bound));
            }
        } else {
            pl->stats.spool_errors++;
            phase_event(pl, KP_PIPELINE_APPEND_FAILED, KP_EIO);
            if (pl->phase != KP_PIPELINE_SERVING)
                return; /* the drain ended: nothing else could hold these events */
            /* Keep the events in memory, over the bound, and try the disk again later. */
            pl->spool_retry_at = uv_now(pl->loop) + BACKOFF_MAX_MS;
        }
        break;
    case KP_PIPELINE_WAIT:
    case KP_PIPELINE_FINISH_DRAIN:
        break;
    }
    maybe_dispatch(pl);
}

/* Gives the oldest memory events to the worker as batches: the ones cut by an earlier job that
 * failed, or else the oldest `n` cut now. */
static size_t hand_over_memory(kp_pipeline *pl, size_t n)
{
    if (pl->nsealed == 0) {
        pl->nsealed = kp_batch_seal(pl->pending + pl->head, n, pl->mq_batch, pl->sealed,
                                    KP_PIPELINE_JOB_MAX);
        pl->sealed_events = n;
    }
    n = pl->sealed_events;
    memcpy(pl->batch, pl->pending + pl->head, n * sizeof(kp_event));
    size_t at = 0;
    for (size_t i = 0; i < pl->nsealed; i++) {
        pl->sealed[i].events = pl->batch + at; /* the worker's copy, not pending[] */
        at += pl->sealed[i].n;
    }
    return n;
}

static void start_job(kp_pipeline *pl, kp_pipeline_action_kind job, size_t n)
{
    pl->last_job = job;
    pl->batch_skipped = 0;
    pl->batch_bad_markers = 0;
    if (job != KP_PIPELINE_PUBLISH_SPOOL)
        n = hand_over_memory(pl, n);
    pl->batch_len = n;
    pl->job = job; /* before queueing: the worker reads it */
    pl->work.data = pl;
    if (uv_queue_work(pl->loop, &pl->work, run_job, after_job) != 0) {
        pl->job = KP_PIPELINE_WAIT;
        uv_timer_start(&pl->retry_timer, on_retry, BACKOFF_MIN_MS, 0);
    }
}

/* Asks pipeline_state.c what to do now and does it. */
static void maybe_dispatch(kp_pipeline *pl)
{
    kp_pipeline_inputs in = {
        .job_running = pl->job != KP_PIPELINE_WAIT,
        .backing_off = uv_is_active((uv_handle_t *)&pl->retry_timer),
        .have_spool = pl->spool != NULL,
        .spool_paused = uv_now(pl->loop) < pl->spool_retry_at,
        .appended_last = pl->last_job == KP_PIPELINE_SPOOL_APPEND,
        .in_memory = pending_len(pl),
        .spooled = pl->spooled,
        .memory_bound = pl->memory_bound,
        .job_max = pl->job_max,
    };
    kp_pipeline_action next = kp_pipeline_next(pl->phase, &in);
    switch (next.kind) {
    case KP_PIPELINE_WAIT:
        return;
    case KP_PIPELINE_FINISH_DRAIN:
        if (pl->spooled)
            KP_WARN(MODULE, "events left in the spool for the next start",
                    KP_UINT("spooled", pl->spooled), KP_STR("mq", pl->mq->name));
        phase_event(pl, KP_PIPELINE_DRAIN_FINISHED, 0);
        return;
    case KP_PIPELINE_PUBLISH_MEMORY:
    case KP_PIPELINE_PUBLISH_SPOOL:
    case KP_PIPELINE_SPOOL_APPEND:
        start_job(pl, next.kind, next.count);
        return;
    }
}

static void on_flush(uv_timer_t *t) { maybe_dispatch(t->data); }

int kp_pipeline_open(uv_loop_t *loop, kp_mq *mq, const kp_pipeline_options *opts,
                     kp_pipeline **out)
{
    kp_pipeline *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return KP_ENOMEM;
    pl->batch = malloc(KP_PIPELINE_JOB_MAX * sizeof(kp_event));
    pl->sealed = calloc(KP_PIPELINE_JOB_MAX, sizeof(kp_mq_batch));
    pl->spool_batches = calloc(KP_PIPELINE_JOB_MAX, sizeof(kp_mq_batch));
    if (!pl->batch || !pl->sealed || !pl->spool_batches) {
        free(pl->batch);
        free(pl->sealed);
        free(pl->spool_batches);
        free(pl);
        return KP_ENOMEM;
    }
    pl->loop = loop;
    pl->mq = mq;
    pl->phase = KP_PIPELINE_SERVING;
    pl->job = pl->last_job = KP_PIPELINE_WAIT;
    pl->memory_bound = opts && opts->memory_bound ? opts->memory_bound : KP_PIPELINE_MEMORY_BOUND;
    pl->mq_batch = opts && opts->mq_batch > 1 ? opts->mq_batch : 1;
    if (pl->mq_batch > KP_MQ_BATCH_MAX)
        pl->mq_batch = KP_MQ_BATCH_MAX;
    pl->job_max = pl->mq_batch > 1 ? KP_PIPELINE_JOB_MAX : KP_PIPELINE_BATCH_MAX;
    if (opts && opts->spool_dir && opts->spool_dir[0]) {
        int rc = kp_spool_open(opts->spool_dir, &pl->spool, &pl->spooled);
        if (rc != 0) {
            KP_ERROR(MODULE, "cannot read the spool", KP_QSTR("dir", opts->spool_dir),
                     KP_QSTR("error", kp_strerror(rc)));
            free(pl->batch);
            free(pl->sealed);
            free(pl->spool_batches);
            free(pl);
            return rc;
        }
        if (pl->spooled)
            KP_WARN(MODULE, "replaying events spooled by an earlier run",
                    KP_UINT("spooled", pl->spooled), KP_QSTR("dir", opts->spool_dir));
    }
    uv_timer_t *timers[] = {&pl->flush_timer, &pl->retry_timer, &pl->drain_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = pl;
        pl->handles_open++;
    }
    if (pl->spooled)
        uv_timer_start(&pl->flush_timer, on_flush, 0, 0);
    *out = pl;
    return 0;
}

static int reserve(kp_pipeline *pl)
{
    if (pl->tail < pl->cap)
        return 0;
    /* Mostly consumed: slide down instead of growing. Safe while a job is in flight, because
     * the worker works on its own copy and the loop only ever advances head. */
    if (pl->head > pl->cap / 2) {
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
    if (pending_len(pl) >= pl->job_max)
        maybe_dispatch(pl);
    else if (!uv_is_active((uv_handle_t *)&pl->flush_timer))
        uv_timer_start(&pl->flush_timer, on_flush, FLUSH_MS, 0);
    return 0;
}

static void on_drain_timeout(uv_timer_t *t)
{
    kp_pipeline *pl = t->data;
    phase_event(pl, KP_PIPELINE_DRAIN_DEADLINE, KP_ETIMEDOUT);
    if (pl->phase == KP_PIPELINE_DRAIN_TO_SPOOL)
        maybe_dispatch(pl); /* spools the rest, or after the job in flight returns */
}

void kp_pipeline_drain(kp_pipeline *pl, uint64_t timeout_ms, kp_pipeline_drained_cb done,
                       void *arg)
{
    pl->drained = done;
    pl->drained_arg = arg;
    phase_event(pl, KP_PIPELINE_DRAIN_STARTED, 0);
    uv_timer_stop(&pl->flush_timer);
    uv_timer_start(&pl->drain_timer, on_drain_timeout, timeout_ms, 0);
    maybe_dispatch(pl);
}

kp_pipeline_stats kp_pipeline_get_stats(const kp_pipeline *pl)
{
    kp_pipeline_stats s = pl->stats;
    s.spooled = pl->spooled;
    s.waiting = pending_len(pl) + (size_t)pl->spooled;
    s.failing = pl->backoff_ms > 0;
    return s;
}

void kp_pipeline_close(kp_pipeline *pl)
{
    if (!pl || pl->phase == KP_PIPELINE_CLOSED)
        return;
    pl->phase = kp_pipeline_phase_after(pl->phase, KP_PIPELINE_CLOSE, (kp_pipeline_facts){0});
    pl->drained = NULL;
    uv_close((uv_handle_t *)&pl->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pl->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pl->drain_timer, on_handle_closed);
}
