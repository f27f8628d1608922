/* The /stats query worker (see admin_query.h): a FIFO of queries, one thread taking them one at
 * a time, results handed back to the loop through a uv_async_t.
 *
 * A query is in exactly one place: the queue (QUEUED), the worker's hands (RUNNING), the done
 * list (DONE), or nowhere (freed); `state` and the lists are guarded by `mu`. A query is freed
 * on the loop thread only: by kp_query_cancel while QUEUED, by on_async once DONE, or by the
 * close while QUEUED. */
#include "admin_query.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kupool/error.h"

typedef enum query_state { Q_QUEUED, Q_RUNNING, Q_DONE } query_state;

struct kp_query {
    kp_query *next;
    kp_query_worker *w;
    query_state state; /* guarded by w->mu */
    bool cancelled;    /* loop thread only */
    kp_query_cb cb;
    void *arg;
    char username[KP_USERNAME_MAX + 1]; /* read by the worker while RUNNING */
    kp_query_result res;                /* written by the worker while RUNNING */
};

struct kp_query_worker {
    uv_loop_t *loop;
    kp_stats *stats;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t wake;
    uv_async_t async;

    /* Guarded by mu. */
    kp_query *head, *tail; /* the queue, oldest first */
    size_t nqueued;
    kp_query *done;        /* finished, newest first */
    bool stop;             /* close asked the thread to return */
    bool exited;           /* the thread left its loop: joining cannot block */

    /* Loop thread only. */
    bool closing, joined;
    uint64_t dropped, refused;
    void (*closed)(void *arg);
    void *closed_arg;
};

static void worker_main(void *arg)
{
    kp_query_worker *w = arg;
    uv_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            uv_cond_wait(&w->wake, &w->mu);
        if (w->stop)
            break;
        kp_query *q = w->head;
        w->head = q->next;
        if (!w->head)
            w->tail = NULL;
        w->nqueued--;
        q->state = Q_RUNNING;
        uv_mutex_unlock(&w->mu);

        q->res.wall_ms = kp_clock_wall_ms();
        q->res.rc = kp_stats_query(w->stats, q->username, &q->res.counts, &q->res.n);

        uv_mutex_lock(&w->mu);
        q->state = Q_DONE;
        q->next = w->done;
        w->done = q;
        uv_mutex_unlock(&w->mu);
        uv_async_send(&w->async);
        uv_mutex_lock(&w->mu);
    }
    w->exited = true;
    uv_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
}

static void query_free(kp_query *q)
{
    free(q->res.counts);
    free(q);
}

static void on_async_close(uv_handle_t *h)
{
    kp_query_worker *w = h->data;
    void (*closed)(void *) = w->closed;
    void *arg = w->closed_arg;
    uv_cond_destroy(&w->wake);
    uv_mutex_destroy(&w->mu);
    free(w);
    if (closed)
        closed(arg);
}

/* Loop thread: deliver finished queries in the order they finished; after a close, join the
 * thread once it has left its loop. */
static void on_async(uv_async_t *a)
{
    kp_query_worker *w = a->data;
    uv_mutex_lock(&w->mu);
    kp_query *list = w->done;
    w->done = NULL;
    bool exited = w->exited;
    uv_mutex_unlock(&w->mu);

    kp_query *ordered = NULL;
    while (list) {
        kp_query *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered) {
        kp_query *q = ordered;
        ordered = q->next;
        if (!q->cancelled)
            q->cb(&q->res, q->arg);
        query_free(q);
    }
    if (w->closing && exited && !w->joined) {
        w->joined = true;
        uv_thread_join(&w->thread);
        uv_close((uv_handle_t *)&w->async, on_async_close);
    }
}

int kp_query_worker_open(uv_loop_t *loop, kp_stats *stats, kp_query_worker **out)
{
    *out = NULL;
    kp_query_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return KP_ENOMEM;
    w->loop = loop;
    w->stats = stats;
    if (uv_mutex_init(&w->mu) != 0) {
        free(w);
        return KP_EIO;
    }
    if (uv_cond_init(&w->wake) != 0) {
        uv_mutex_destroy(&w->mu);
        free(w);
        return KP_EIO;
    }
    if (uv_async_init(loop, &w->async, on_async) != 0) {
        uv_cond_destroy(&w->wake);
        uv_mutex_destroy(&w->mu);
        free(w);
        return KP_EIO;
    }
    w->async.data = w;
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
        /* No thread: the close callback frees the rest; nothing to join. */
        w->closing = w->joined = true;
        uv_close((uv_handle_t *)&w->async, on_async_close);
        return KP_EIO;
    }
    *out = w;
    return 0;
}

int kp_query_submit(kp_query_worker *w, const char *username, kp_query_cb cb, void *arg,
                    kp_query **out)
{
    *out = NULL;
    if (w->closing)
        return KP_ECLOSED;
    size_t len = strlen(username);
    if (len > KP_USERNAME_MAX)
        return KP_EINVAL;
    uv_mutex_lock(&w->mu);
    bool full = w->nqueued >= KP_ADMIN_QUERY_QUEUE;
    uv_mutex_unlock(&w->mu);
    if (full) {
        w->refused++;
        return KP_EAGAIN;
    }
    kp_query *q = calloc(1, sizeof(*q));
    if (!q)
        return KP_ENOMEM;
    q->w = w;
    q->cb = cb;
    q->arg = arg;
    memcpy(q->username, username, len + 1);
    uv_mutex_lock(&w->mu);
    q->state = Q_QUEUED;
    if (w->tail)
        w->tail->next = q;
    else
        w->head = q;
    w->tail = q;
    w->nqueued++;
    uv_cond_signal(&w->wake);
    uv_mutex_unlock(&w->mu);
    *out = q;
    return 0;
}

/* Unlinks q from the queue; the caller holds mu and knows q is QUEUED. */
static void unqueue(kp_query_worker *w, kp_query *q)
{
    kp_query *prev = NULL;
    for (kp_query *it = w->head; it && it != q; it = it->next)
        prev = it;
    if (prev)
        prev->next = q->next;
    else
        w->head = q->next;
    if (w->tail == q)
        w->tail = prev;
    w->nqueued--;
}

bool kp_query_drop_if_queued(kp_query *q)
{
    kp_query_worker *w = q->w;
    uv_mutex_lock(&w->mu);
    bool queued = q->state == Q_QUEUED;
    if (queued)
        unqueue(w, q);
    uv_mutex_unlock(&w->mu);
    if (queued) {
        w->dropped++;
        query_free(q);
    }
    return queued;
}

void kp_query_cancel(kp_query *q)
{
    if (q && !kp_query_drop_if_queued(q))
        q->cancelled = true; /* on_async frees it when the worker hands it back */
}

size_t kp_query_worker_queued(const kp_query_worker *w)
{
    kp_query_worker *mw = (kp_query_worker *)w; /* the mutex, not the state, changes */
    uv_mutex_lock(&mw->mu);
    size_t n = mw->nqueued;
    uv_mutex_unlock(&mw->mu);
    return n;
}

uint64_t kp_query_worker_dropped(const kp_query_worker *w)
{
    return w->dropped;
}

uint64_t kp_query_worker_refused(const kp_query_worker *w)
{
    return w->refused;
}

void kp_query_worker_close(kp_query_worker *w, void (*closed)(void *arg), void *arg)
{
    if (!w || w->closing)
        return;
    w->closing = true;
    w->closed = closed;
    w->closed_arg = arg;
    uv_mutex_lock(&w->mu);
    w->stop = true;
    kp_query *queued = w->head;
    w->head = w->tail = NULL;
    w->nqueued = 0;
    uv_cond_signal(&w->wake);
    uv_mutex_unlock(&w->mu);
    while (queued) {
        kp_query *next = queued->next;
        w->dropped++;
        query_free(queued);
        queued = next;
    }
    /* The thread's exit wakes on_async, which joins it and closes the handle. */
}
