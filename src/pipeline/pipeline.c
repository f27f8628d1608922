#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "log.h"
#include "spool.h"

#define MODULE "pipeline"

/* A batch this large is handed to a worker at once; smaller ones wait for the flush timer, so
 * a trickle of submits still costs one worker round trip per FLUSH_MS, not one per event. One
 * job is in flight at a time and a busy loop completes about one job per iteration, so the
 * batch bounds the publish rate: at 1024 a loop answering ~450k submits/s fell behind even the
 * memory mq; 4096 keeps up (docs/benchmarks.md, scenario c), and RabbitMQ confirms a batch
 * of that size well within its 5 s deadline. */
#define BATCH_MAX 4096
/* Events moved to the spool per append job. */
#define SPOOL_CHUNK 4096
/* Every job goes through the one `batch` buffer, allocated for SPOOL_CHUNK events: a memory
 * publish copies up to BATCH_MAX events into it and a spool publish reads up to BATCH_MAX into
 * it, so BATCH_MAX above SPOOL_CHUNK would overrun it. They are kept equal (not merely ordered)
 * so that what one append wrote is read back as one publish. */
_Static_assert(BATCH_MAX == SPOOL_CHUNK, "the worker's batch buffer holds one job of either kind");
#define FLUSH_MS 20
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef enum job_kind {
    JOB_PUBLISH_MEMORY, /* publish the oldest events of the memory array */
    JOB_PUBLISH_SPOOL,  /* read the oldest spooled events, publish them, commit the offset */
    JOB_SPOOL_APPEND    /* move the oldest events of the memory array into the spool */
} job_kind;

struct kp_pipeline {
    uv_loop_t *loop;
    kp_mq *mq;
    kp_spool *spool; /* NULL without a spool dir */
    size_t memory_bound;

    /* pending[head..tail) wait in memory, oldest first. Owned by the loop thread. Events leave
     * (head advances) only when a worker job that copied them has succeeded. */
    kp_event *pending;
    size_t head, tail, cap;
    uint64_t spooled; /* events in the spool file, all older than pending[] */

    /* The worker job. While `in_flight` the worker owns `batch` and the spool; the loop
     * touches them only in after_work. */
    uv_work_t work;
    job_kind kind;
    kp_event *batch; /* SPOOL_CHUNK events */
    size_t batch_len;
    size_t batch_skipped; /* spool lines that did not parse (JOB_PUBLISH_SPOOL) */
    int batch_status;
    bool in_flight;
    bool retry_armed; /* a publish failed; the next one waits for retry_timer */
    uint64_t backoff_ms;

    uv_timer_t flush_timer;
    uv_timer_t retry_timer;
    uv_timer_t drain_timer;

    kp_pipeline_drained_cb drained;
    void *drained_arg;
    bool draining;
    bool drain_done; /* the drained callback ran: nothing is dispatched or retried any more */
    bool give_up; /* draining and the mq failed or time ran out: spool instead of publishing */
    bool appended_last; /* the last job was a spool append: a publish may go next */
    uint64_t spool_retry_at; /* loop time before which a failed spool is not tried again */
    bool closing;
    bool warned_spooling;
    int handles_open;

    kp_pipeline_stats stats;
};

static size_t pending_len(const kp_pipeline *pl) { return pl->tail - pl->head; }

static void maybe_dispatch(kp_pipeline *pl);

static void free_if_done(kp_pipeline *pl)
{
    if (pl->closing && pl->handles_open == 0 && !pl->in_flight) {
        kp_spool_close(pl->spool);
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
    pl->drain_done = true;
    uv_timer_stop(&pl->drain_timer);
    /* An armed retry would keep the loop, hence the shutdown, alive for up to BACKOFF_MAX_MS
     * after everything was already published or spooled. */
    uv_timer_stop(&pl->retry_timer);
    cb(status, pl->drained_arg);
}

/* ---- worker side: touches only the batch, the mq and the spool ---- */

static void run_job(uv_work_t *req)
{
    kp_pipeline *pl = req->data;
    switch (pl->kind) {
    case JOB_PUBLISH_MEMORY:
        pl->batch_status = kp_mq_publish(pl->mq, pl->batch, pl->batch_len);
        break;
    case JOB_PUBLISH_SPOOL:
        pl->batch_status = kp_spool_read(pl->spool, pl->batch, BATCH_MAX, &pl->batch_len,
                                         &pl->batch_skipped);
        if (pl->batch_status == 0 && pl->batch_len)
            pl->batch_status = kp_mq_publish(pl->mq, pl->batch, pl->batch_len);
        if (pl->batch_status == 0)
            pl->batch_status = kp_spool_commit(pl->spool);
        break;
    case JOB_SPOOL_APPEND:
        pl->batch_status = kp_spool_append(pl->spool, pl->batch, pl->batch_len);
        break;
    }
}

/* ---- loop side ---- */

static void on_retry(uv_timer_t *t)
{
    kp_pipeline *pl = t->data;
    pl->retry_armed = false;
    maybe_dispatch(pl);
}

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
    if (pl->draining && pl->spool)
        pl->give_up = true; /* shutting down: spool the rest now rather than wait */
    if (pl->drain_done)
        return; /* a job that outlived a timed-out drain: nobody waits for a retry */
    pl->retry_armed = true;
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
    pl->head += n;
    if (pl->head == pl->tail)
        pl->head = pl->tail = 0;
}

static void after_job(uv_work_t *req, int status)
{
    kp_pipeline *pl = req->data;
    pl->in_flight = false;
    int rc = status == UV_ECANCELED ? KP_ECLOSED : pl->batch_status;
    if (pl->closing) {
        free_if_done(pl);
        return;
    }
    switch (pl->kind) {
    case JOB_PUBLISH_MEMORY:
        if (rc == 0) {
            consume_memory(pl, pl->batch_len);
            publish_succeeded(pl, pl->batch_len);
        } else {
            publish_failed(pl, rc);
        }
        break;
    case JOB_PUBLISH_SPOOL:
        if (pl->batch_skipped) {
            pl->stats.spool_errors += pl->batch_skipped;
            KP_ERROR(MODULE, "unreadable spool lines skipped", KP_UINT("count", pl->batch_skipped));
        }
        if (rc == 0) {
            size_t done = pl->batch_len + pl->batch_skipped;
            /* A spool that ends early (torn last line) counts as drained. */
            pl->spooled = done && done < pl->spooled ? pl->spooled - done : 0;
            publish_succeeded(pl, pl->batch_len);
            if (pl->spooled == 0)
                KP_INFO(MODULE, "spool drained", KP_STR("mq", pl->mq->name));
        } else {
            publish_failed(pl, rc);
        }
        break;
    case JOB_SPOOL_APPEND:
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
            if (pl->draining) {
                finish_drain(pl, KP_EIO);
                return;
            }
            /* Keep the events in memory, over the bound, and try the disk again later. */
            pl->spool_retry_at = uv_now(pl->loop) + BACKOFF_MAX_MS;
        }
        break;
    }
    maybe_dispatch(pl);
}

static void start_job(kp_pipeline *pl, job_kind kind, size_t n)
{
    pl->kind = kind;
    pl->batch_len = n;
    pl->batch_skipped = 0;
    if (kind != JOB_PUBLISH_SPOOL)
        memcpy(pl->batch, pl->pending + pl->head, n * sizeof(kp_event));
    pl->work.data = pl;
    if (uv_queue_work(pl->loop, &pl->work, run_job, after_job) != 0) {
        pl->retry_armed = true;
        uv_timer_start(&pl->retry_timer, on_retry, BACKOFF_MIN_MS, 0);
        return;
    }
    pl->in_flight = true;
}

/* Picks the next worker job: spool what is over the bound (or everything, when giving up),
 * else publish the oldest events, spooled ones first. */
static void maybe_dispatch(kp_pipeline *pl)
{
    if (pl->in_flight || pl->closing || pl->drain_done)
        return;
    size_t n = pending_len(pl);
    if (pl->draining && n == 0 && (pl->spooled == 0 || pl->give_up)) {
        if (pl->spooled)
            KP_WARN(MODULE, "events left in the spool for the next start",
                    KP_UINT("spooled", pl->spooled), KP_STR("mq", pl->mq->name));
        finish_drain(pl, 0);
        return;
    }
    bool over = n > pl->memory_bound || (pl->give_up && n > 0);
    bool want_append = pl->spool && over && uv_now(pl->loop) >= pl->spool_retry_at;
    bool can_publish = !pl->retry_armed && !pl->give_up && (pl->spooled > 0 || n > 0);
    /* Appends and publishes take turns while both are due: under a sustained overload with a
     * healthy mq, appends alone would keep winning and nothing would ever be published. Memory
     * then overshoots its bound by at most what arrives during one publish. */
    if (want_append && !(can_publish && pl->appended_last)) {
        size_t k = pl->give_up ? n : n - pl->memory_bound;
        pl->appended_last = true;
        start_job(pl, JOB_SPOOL_APPEND, k < SPOOL_CHUNK ? k : SPOOL_CHUNK);
        return;
    }
    if (!can_publish)
        return;
    pl->appended_last = false;
    if (pl->spooled > 0) {
        start_job(pl, JOB_PUBLISH_SPOOL, 0);
        return;
    }
    start_job(pl, JOB_PUBLISH_MEMORY, n < BATCH_MAX ? n : BATCH_MAX);
}

static void on_flush(uv_timer_t *t) { maybe_dispatch(t->data); }

int kp_pipeline_open(uv_loop_t *loop, kp_mq *mq, const kp_pipeline_options *opts,
                     kp_pipeline **out)
{
    kp_pipeline *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return KP_ENOMEM;
    pl->batch = malloc(SPOOL_CHUNK * sizeof(kp_event));
    if (!pl->batch) {
        free(pl);
        return KP_ENOMEM;
    }
    pl->loop = loop;
    pl->mq = mq;
    pl->memory_bound = opts && opts->memory_bound ? opts->memory_bound : KP_PIPELINE_MEMORY_BOUND;
    if (opts && opts->spool_dir && opts->spool_dir[0]) {
        int rc = kp_spool_open(opts->spool_dir, &pl->spool, &pl->spooled);
        if (rc != 0) {
            KP_ERROR(MODULE, "cannot read the spool", KP_QSTR("dir", opts->spool_dir),
                     KP_QSTR("error", kp_strerror(rc)));
            free(pl->batch);
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
    if (pending_len(pl) >= BATCH_MAX)
        maybe_dispatch(pl);
    else if (!uv_is_active((uv_handle_t *)&pl->flush_timer))
        uv_timer_start(&pl->flush_timer, on_flush, FLUSH_MS, 0);
    return 0;
}

static void on_drain_timeout(uv_timer_t *t)
{
    kp_pipeline *pl = t->data;
    pl->give_up = true;
    if (!pl->spool) {
        finish_drain(pl, KP_ETIMEDOUT);
        return;
    }
    maybe_dispatch(pl); /* spools the rest, or after the job in flight returns */
}

void kp_pipeline_drain(kp_pipeline *pl, uint64_t timeout_ms, kp_pipeline_drained_cb done,
                       void *arg)
{
    pl->draining = true;
    pl->drained = done;
    pl->drained_arg = arg;
    if (pl->backoff_ms && pl->spool)
        pl->give_up = true; /* the mq is already failing: spool now */
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
    if (!pl || pl->closing)
        return;
    pl->closing = true;
    pl->drained = NULL;
    uv_close((uv_handle_t *)&pl->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pl->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&pl->drain_timer, on_handle_closed);
}
