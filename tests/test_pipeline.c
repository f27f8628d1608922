/* The event path loop -> pipeline -> uv_work -> mq -> consumer -> stats, with the real memory
 * backends, plus a call-counting fake mq that fails on demand to prove retries lose nothing and
 * keep order. */
#include <inttypes.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "backends.h"
#include "consumer.h"
#include "event_batch.h"
#include "kupool/error.h"
#include "pipeline.h"
#include "testsupport.h"

static kp_event make_event(uint64_t seq, const char *user, int64_t ts_ms)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "test-%" PRIu64, seq);
    snprintf(ev.username, sizeof(ev.username), "%s", user);
    ev.job_id = 1;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%" PRIx64, seq);
    ev.ts_ms = ts_ms;
    return ev;
}

typedef struct drain_result {
    int called;
    int status;
} drain_result;

static void on_drained(int status, void *arg)
{
    drain_result *r = arg;
    r->called++;
    r->status = status;
}

static int64_t count_for(kp_stats *st, const char *user, int64_t minute)
{
    kp_minute_count *rows = NULL;
    size_t n = 0;
    assert_int_equal(kp_stats_query(st, user, &rows, &n), 0);
    int64_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(rows[i - 1].minute < rows[i].minute); /* ascending, one row per minute */
        if (rows[i].minute == minute)
            count = rows[i].count;
    }
    free(rows);
    return count;
}

/* N events over 3 users and 2 minutes come out counted exactly once each. */
static void test_memory_backends_count_exactly(void **state)
{
    kp_config cfg;
    kp_config_defaults(&cfg);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_mq *mq = NULL;
    kp_stats *st = NULL;
    assert_int_equal(kp_mq_open(&cfg, &mq), 0);
    assert_int_equal(kp_stats_open(&cfg, &st), 0);
    kp_consumer *consumer = NULL;
    assert_int_equal(kp_consumer_start(mq, st, &consumer), 0);
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, mq, NULL, &pl), 0);

    const char *users[] = {"alice", "bob", "carol \"the\" \xc3\xa9"};
    const int64_t minute0 = 1764016200; /* a minute boundary, Unix seconds */
    const uint64_t n = 30000;
    int64_t expect[3][2] = {{0}};
    for (uint64_t i = 0; i < n; i++) {
        int u = (int)(i % 3);
        int m = (int)((i / 7) % 2);
        int64_t ts = (minute0 + m * 60) * 1000 + (int64_t)(i % 60000);
        kp_event ev = make_event(i, users[u], ts);
        assert_int_equal(kp_pipeline_push(pl, &ev), 0);
        expect[u][m]++;
        if (i % 5000 == 0)
            uv_run(&loop, UV_RUN_NOWAIT); /* let batches leave while we push */
    }
    drain_result dr = {0};
    kp_pipeline_drain(pl, 10000, on_drained, &dr);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(dr.called, 1);
    assert_int_equal(dr.status, 0);
    kp_pipeline_stats ps = kp_pipeline_get_stats(pl);
    assert_int_equal(ps.accepted, n);
    assert_int_equal(ps.published, n);
    assert_int_equal(ps.waiting, 0);

    assert_int_equal(kp_consumer_stop(consumer, 5000), n);
    for (int u = 0; u < 3; u++)
        for (int m = 0; m < 2; m++)
            assert_int_equal(count_for(st, users[u], minute0 + m * 60), expect[u][m]);
    assert_int_equal(count_for(st, "nobody", minute0), 0);

    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    kp_stats_free(st);
    kp_mq_free(mq);
}

/* A fake mq that refuses the first `fail_first` publish calls and records what it stored. */
typedef struct fake_mq {
    kp_mq parent;
    bool down; /* refuse every publish while set */
    int fail_first;
    int calls;
    uint64_t next_expected_seq;
    uint64_t stored;
    int out_of_order;
    /* Batches (issue 12): with batch_of > 1 every batch must carry kp_batch_id of its events
     * and at most batch_of of them; the call after a failed one must carry the same batches. */
    size_t batch_of;
    int bad_batches;
    int retry_changed;
    bool last_failed;
    char failed_ids[65536]; /* the failed call's ids, comma separated */
    uint64_t batches_stored;
} fake_mq;

static void call_ids(const kp_mq_batch *batches, size_t nb, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t b = 0; b < nb && at < cap; b++)
        at += (size_t)snprintf(out + at, cap - at, "%s/%zu,", batches[b].id, batches[b].n);
}

static int fake_publish(kp_mq *mq, const kp_mq_batch *batches, size_t nb)
{
    fake_mq *f = (fake_mq *)mq;
    static char ids[65536];
    call_ids(batches, nb, ids, sizeof(ids));
    /* The retry carries the failed call's batches first (a spool read may add newer ones). */
    if (f->last_failed && strncmp(ids, f->failed_ids, strlen(f->failed_ids)) != 0)
        f->retry_changed++;
    if (f->calls++ < f->fail_first || f->down) {
        f->last_failed = true;
        memcpy(f->failed_ids, ids, sizeof(ids));
        return KP_EIO;
    }
    f->last_failed = false;
    for (size_t b = 0; b < nb; b++) {
        const kp_mq_batch *bt = &batches[b];
        if (f->batch_of > 1) {
            char want[KP_BATCH_ID_MAX + 1];
            if (bt->n > f->batch_of || kp_batch_id(bt->events, bt->n, want, sizeof(want)) < 0 ||
                strcmp(want, bt->id) != 0)
                f->bad_batches++;
        } else if (bt->id[0]) {
            f->bad_batches++; /* -mq_batch 1: v1 messages only */
        }
        for (size_t i = 0; i < bt->n; i++) {
            uint64_t seq = strtoull(bt->events[i].event_id + 5, NULL, 10);
            if (seq != f->next_expected_seq)
                f->out_of_order++;
            f->next_expected_seq = seq + 1;
        }
        f->stored += bt->n;
        f->batches_stored++;
    }
    return 0;
}

static void fake_free(kp_mq *mq) { (void)mq; }

static void test_failed_publish_is_retried_in_order(void **state)
{
    fake_mq f = {.fail_first = 3};
    f.parent = (kp_mq){.version = KP_MQ_VERSION, .name = "fake", .publish = fake_publish,
                       .free = fake_free};
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, NULL, &pl), 0);
    const uint64_t n = 5000;
    for (uint64_t i = 0; i < n; i++) {
        kp_event ev = make_event(i, "alice", 0);
        assert_int_equal(kp_pipeline_push(pl, &ev), 0);
    }
    drain_result dr = {0};
    kp_pipeline_drain(pl, 20000, on_drained, &dr);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(dr.status, 0);
    assert_int_equal(f.stored, n);
    assert_int_equal(f.out_of_order, 0);
    assert_true(f.calls > 3);
    kp_pipeline_stats ps = kp_pipeline_get_stats(pl);
    assert_int_equal(ps.publish_errors, 3);
    assert_int_equal(ps.published, n);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A backend that never recovers: drain gives up at its deadline and says how many wait. */
static void test_drain_times_out_when_backend_stays_down(void **state)
{
    fake_mq f = {.fail_first = 1 << 30};
    f.parent = (kp_mq){.version = KP_MQ_VERSION, .name = "fake", .publish = fake_publish,
                       .free = fake_free};
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, NULL, &pl), 0);
    for (uint64_t i = 0; i < 10; i++) {
        kp_event ev = make_event(i, "alice", 0);
        assert_int_equal(kp_pipeline_push(pl, &ev), 0);
    }
    drain_result dr = {0};
    kp_pipeline_drain(pl, 300, on_drained, &dr);
    while (!dr.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(dr.status, KP_ETIMEDOUT);
    assert_int_equal(kp_pipeline_get_stats(pl).waiting, 10);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void wake(uv_timer_t *t) { (void)t; }

static void run_for_ms(uv_loop_t *loop, uint64_t ms)
{
    uint64_t end = kp_test_now_ms() + ms;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    while (kp_test_now_ms() < end) {
        uv_timer_start(&t, wake, 10, 0);
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void open_fake(fake_mq *f)
{
    memset(f, 0, sizeof(*f));
    f->parent = (kp_mq){.version = KP_MQ_VERSION, .name = "fake", .publish = fake_publish,
                        .free = fake_free};
}

/* With the mq down, events past the memory bound move to the spool; when the mq returns every
 * event is published exactly once, in acceptance order, and the spool empties. */
static void test_spool_past_memory_bound(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    fake_mq f;
    open_fake(&f);
    f.down = true;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_pipeline_options opts = {.spool_dir = dir, .memory_bound = 1000};
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, &opts, &pl), 0);
    const uint64_t n = 6000;
    for (uint64_t i = 0; i < n; i++) {
        kp_event ev = make_event(i, "alice", 0);
        assert_int_equal(kp_pipeline_push(pl, &ev), 0);
        if (i % 500 == 0)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    run_for_ms(&loop, 300);
    kp_pipeline_stats ps = kp_pipeline_get_stats(pl);
    assert_int_equal(ps.waiting, n);
    assert_true(ps.spooled >= n - 1000);
    assert_true(ps.failing);
    assert_int_equal(f.stored, 0);

    f.down = false; /* the mq comes back: the retry timer finds out by itself */
    uint64_t deadline = kp_test_now_ms() + 15000;
    while (kp_pipeline_get_stats(pl).waiting > 0 && kp_test_now_ms() < deadline)
        run_for_ms(&loop, 50);
    drain_result dr = {0};
    kp_pipeline_drain(pl, 20000, on_drained, &dr);
    while (!dr.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(dr.status, 0);
    assert_int_equal(f.stored, n);
    assert_int_equal(f.out_of_order, 0);
    ps = kp_pipeline_get_stats(pl);
    assert_int_equal(ps.spooled, 0);
    assert_int_equal(ps.waiting, 0);
    assert_int_equal(ps.published, n);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);

    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0); /* emptied once everything was published */
    unlink(path);
    rmdir(dir);
}

/* A sustained overload with a healthy mq: events arrive faster than one job per loop iteration
 * takes them, so memory stays over its bound at every dispatch. Spool appends must not starve
 * publishing: publishes continue while the overload lasts, and everything arrives in order. */
static void test_overload_keeps_publishing(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    fake_mq f;
    open_fake(&f);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_pipeline_options opts = {.spool_dir = dir, .memory_bound = 1000};
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, &opts, &pl), 0);
    uint64_t n = 0;
    for (int round = 0; round < 30; round++) {
        for (int i = 0; i < 10000; i++) {
            kp_event ev = make_event(n++, "alice", 0);
            assert_int_equal(kp_pipeline_push(pl, &ev), 0);
        }
        run_for_ms(&loop, 2);
    }
    uint64_t stored_during_overload = f.stored;
    drain_result dr = {0};
    kp_pipeline_drain(pl, 20000, on_drained, &dr);
    while (!dr.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(dr.status, 0);
    assert_true(stored_during_overload > 0);
    assert_int_equal(f.stored, n);
    assert_int_equal(f.out_of_order, 0);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/spool.offset", dir);
    unlink(path);
    rmdir(dir);
}

/* Shutdown while the mq is down spools everything; the next start replays it first, in order,
 * before newer events. */
static void test_drain_spools_and_next_start_replays(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    fake_mq f;
    open_fake(&f);
    f.down = true;
    kp_pipeline_options opts = {.spool_dir = dir};
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, &opts, &pl), 0);
    for (uint64_t i = 0; i < 3000; i++) {
        kp_event ev = make_event(i, "bob", 1764016200000);
        assert_int_equal(kp_pipeline_push(pl, &ev), 0);
    }
    drain_result dr = {0};
    kp_pipeline_drain(pl, 5000, on_drained, &dr);
    while (!dr.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(dr.status, 0);
    kp_pipeline_stats ps = kp_pipeline_get_stats(pl);
    assert_int_equal(ps.spooled, 3000);
    assert_int_equal(ps.published, 0);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* "next start": a fresh pipeline on the same directory, the mq up */
    f.down = false;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, &opts, &pl), 0);
    assert_int_equal(kp_pipeline_get_stats(pl).spooled, 3000);
    for (uint64_t i = 3000; i < 3500; i++) {
        kp_event ev = make_event(i, "bob", 1764016200000);
        assert_int_equal(kp_pipeline_push(pl, &ev), 0);
    }
    dr.called = 0;
    kp_pipeline_drain(pl, 10000, on_drained, &dr);
    while (!dr.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(dr.status, 0);
    assert_int_equal(f.stored, 3500);
    assert_int_equal(f.out_of_order, 0);
    assert_int_equal(kp_pipeline_get_stats(pl).waiting, 0);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    unlink(path);
    rmdir(dir);
}

/* A torn last line (a crash mid-append) and a stale offset cost nothing but themselves. */
static void test_spool_survives_torn_line_and_stale_offset(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    kp_event ev = make_event(7, "carol", 1764016200000);
    char json[KP_EVENT_JSON_MAX];
    int len = kp_event_to_json(&ev, json, sizeof(json));
    assert_true(len > 0);
    FILE *fp = fopen(path, "w");
    fprintf(fp, "%s\n%s\n{\"event_id\":\"torn", json, json);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/spool.offset", dir);
    fp = fopen(path, "w");
    fprintf(fp, "999999\n"); /* past the end: stale */
    fclose(fp);

    fake_mq f;
    open_fake(&f);
    f.next_expected_seq = 7;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    kp_pipeline_options opts = {.spool_dir = dir};
    kp_pipeline *pl = NULL;
    assert_int_equal(kp_pipeline_open(&loop, &f.parent, &opts, &pl), 0);
    assert_int_equal(kp_pipeline_get_stats(pl).spooled, 2);
    drain_result dr = {0};
    kp_pipeline_drain(pl, 5000, on_drained, &dr);
    while (!dr.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(dr.status, 0);
    assert_int_equal(f.stored, 2);
    kp_pipeline_close(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    unlink(path);
    rmdir(dir);
}

/* SPEC §3 v1.1: batches are cut once. A publish that failed is retried with the same batches
 * (same ids, same events) although more events arrived meanwhile, and batches that moved to the
 * spool while the mq was down come back from it with the ids they had. */
static void test_batches_are_immutable(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (int spool = 0; spool < 2; spool++) {
        fake_mq f;
        open_fake(&f);
        f.batch_of = 3;
        f.fail_first = spool ? 0 : 2;
        f.down = spool;
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        kp_pipeline_options opts = {.spool_dir = spool ? dir : NULL, .memory_bound = 8,
                                    .mq_batch = 3};
        kp_pipeline *pl = NULL;
        assert_int_equal(kp_pipeline_open(&loop, &f.parent, &opts, &pl), 0);
        uint64_t n = 0;
        for (; n < 10; n++) {
            kp_event ev = make_event(n, "alice", 0);
            assert_int_equal(kp_pipeline_push(pl, &ev), 0);
        }
        run_for_ms(&loop, 60); /* the first publish of the 10 fails */
        assert_true(f.calls >= 1);
        for (; n < 5000; n++) {
            kp_event ev = make_event(n, "alice", 0);
            assert_int_equal(kp_pipeline_push(pl, &ev), 0);
        }
        run_for_ms(&loop, 300);
        if (spool)
            assert_true(kp_pipeline_get_stats(pl).spooled > 0);
        f.down = false; /* a drain while the mq fails would spool the rest: wait for it */
        uint64_t deadline = kp_test_now_ms() + 15000;
        while (kp_pipeline_get_stats(pl).waiting > 0 && kp_test_now_ms() < deadline)
            run_for_ms(&loop, 50);
        drain_result dr = {0};
        kp_pipeline_drain(pl, 20000, on_drained, &dr);
        while (!dr.called)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(dr.status, 0);
        assert_int_equal(f.stored, n);
        assert_int_equal(f.out_of_order, 0);
        assert_int_equal(f.bad_batches, 0);
        assert_int_equal(f.retry_changed, 0);
        assert_true(f.batches_stored >= n / 3);
        kp_pipeline_close(pl);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
    }
    char path[256];
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/spool.offset", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_backends_count_exactly),
        cmocka_unit_test(test_failed_publish_is_retried_in_order),
        cmocka_unit_test(test_drain_times_out_when_backend_stays_down),
        cmocka_unit_test(test_spool_past_memory_bound),
        cmocka_unit_test(test_overload_keeps_publishing),
        cmocka_unit_test(test_batches_are_immutable),
        cmocka_unit_test(test_drain_spools_and_next_start_replays),
        cmocka_unit_test(test_spool_survives_torn_line_and_stale_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
