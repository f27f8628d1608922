/* The exactly-once bookkeeping's pure part (src/backends/pg/pg_ranges.c), no database: which
 * ids are KuPool's, which events of a batch count given the ranges already stored, and how the
 * ranges change. A simulated table replays random redeliveries and reorderings against it and
 * checks every event is counted once and the rows stay one per run of counted numbers
 * (tests/test_stats_pg.c proves the same against a real server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kupool/error.h"
#include "pg/pg_ranges.h"

#define NODE_A "00000000000000aa"
#define NODE_B "ffffffffffffffff" /* -1 as BIGINT: sorts before NODE_A */

static kp_event ev_id(const char *node, int64_t seq)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s-%lld", node, (long long)seq);
    snprintf(ev.username, sizeof(ev.username), "alice");
    return ev;
}

static void test_seq_ids(void **state)
{
    (void)state;
    int64_t node = 0, seq = 0;
    assert_true(kp_pg_seq_id("0123456789abcdef-1", &node, &seq));
    assert_int_equal(node, 0x0123456789abcdefLL);
    assert_int_equal(seq, 1);
    assert_true(kp_pg_seq_id("ffffffffffffffff-9223372036854775806", &node, &seq));
    assert_int_equal(node, -1);
    assert_int_equal(seq, KP_PG_SEQ_MAX);
    static const char *const foreign[] = {
        "0123456789ABCDEF-1",                   /* upper case: another spelling */
        "0123456789abcde-1",                    /* 15 digits */
        "0123456789abcdef0-1",                  /* 17 */
        "0123456789abcdef-0",                   /* sequences start at 1 */
        "0123456789abcdef-01",                  /* a leading zero: another spelling */
        "0123456789abcdef-",                    /* no sequence */
        "0123456789abcdef-1x",                  /* trailing junk */
        "0123456789abcdef-9223372036854775807", /* INT64_MAX: hi + 1 would overflow */
        "0123456789abcdef-99999999999999999999",
        "0123456789abcdef+1",
        "evt-1",
        "",
    };
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
        if (kp_pg_seq_id(foreign[i], &node, &seq))
            fail_msg("\"%s\" parsed as a KuPool id", foreign[i]);
}

/* Locks: distinct nodes ascending. Spans: runs of consecutive numbers. Repeats and foreign ids
 * marked. */
static void test_plan(void **state)
{
    (void)state;
    kp_event evs[] = {
        ev_id(NODE_A, 5), ev_id(NODE_A, 3), ev_id(NODE_A, 4), ev_id(NODE_B, 10),
        ev_id(NODE_A, 9), ev_id(NODE_A, 4), ev_id(NODE_A, 7),
    };
    snprintf(evs[6].event_id, sizeof(evs[6].event_id), "foreign-7");
    kp_pg_dedupe d = {0};
    assert_int_equal(kp_pg_dedupe_plan(&d, evs, 7), 0);
    assert_int_equal(d.nforeign, 1);
    assert_int_equal(d.fate[6], KP_PG_FOREIGN);
    assert_int_equal(d.fate[2], KP_PG_FRESH);
    assert_int_equal(d.fate[5], KP_PG_REPEAT); /* the second 4 */
    assert_int_equal(d.nlocks, 2);
    assert_int_equal(d.locks[0], -1);
    assert_int_equal(d.locks[1], 0xaa);
    assert_int_equal(d.nspans, 3);
    assert_true(d.spans[0].node == -1 && d.spans[0].lo == 10 && d.spans[0].hi == 10);
    assert_true(d.spans[1].node == 0xaa && d.spans[1].lo == 3 && d.spans[1].hi == 5);
    assert_true(d.spans[2].node == 0xaa && d.spans[2].lo == 9 && d.spans[2].hi == 9);
    kp_pg_dedupe_free(&d);
}

/* A batch of NODE_A's numbers lo..hi. */
static void plan_run(kp_pg_dedupe *d, kp_event *buf, int64_t lo, int64_t hi)
{
    size_t n = 0;
    for (int64_t s = lo; s <= hi; s++)
        buf[n++] = ev_id(NODE_A, s);
    assert_int_equal(kp_pg_dedupe_plan(d, buf, n), 0);
}

static size_t count_fate(const kp_pg_dedupe *d, kp_pg_fate f)
{
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++)
        k += d->fate[i] == f;
    return k;
}

static void test_resolve_cases(void **state)
{
    (void)state;
    kp_event *buf = calloc(400, sizeof(*buf));
    assert_non_null(buf);
    kp_pg_dedupe d = {0};
    const int64_t a = 0xaa;

    /* Nothing stored: one new range. */
    plan_run(&d, buf, 1, 100);
    assert_int_equal(kp_pg_dedupe_resolve(&d, NULL, 0), 0);
    assert_int_equal(count_fate(&d, KP_PG_FRESH), 100);
    assert_int_equal(d.nupserts, 1);
    assert_true(d.upserts[0].lo == 1 && d.upserts[0].hi == 100);
    assert_int_equal(d.ndeletes, 0);

    /* In order: the next batch extends the row in place (same key). */
    kp_pg_range r1 = {a, 1, 100};
    plan_run(&d, buf, 101, 200);
    assert_int_equal(kp_pg_dedupe_resolve(&d, &r1, 1), 0);
    assert_int_equal(count_fate(&d, KP_PG_FRESH), 100);
    assert_int_equal(d.nupserts, 1);
    assert_true(d.upserts[0].lo == 1 && d.upserts[0].hi == 200);
    assert_int_equal(d.ndeletes, 0);

    /* Redelivered: nothing counts, nothing is written. */
    kp_pg_range r2 = {a, 1, 200};
    plan_run(&d, buf, 50, 150);
    assert_int_equal(kp_pg_dedupe_resolve(&d, &r2, 1), 0);
    assert_int_equal(count_fate(&d, KP_PG_SEEN), 101);
    assert_int_equal(d.nupserts + d.ndeletes, 0);

    /* Half seen, half new. */
    plan_run(&d, buf, 181, 220);
    assert_int_equal(kp_pg_dedupe_resolve(&d, &r2, 1), 0);
    assert_int_equal(count_fate(&d, KP_PG_SEEN), 20);
    assert_int_equal(count_fate(&d, KP_PG_FRESH), 20);
    assert_true(d.nupserts == 1 && d.upserts[0].lo == 1 && d.upserts[0].hi == 220);

    /* A gap filled later: two rows become one; the later row is deleted. Read twice (two
     * spans reach it) is the same as once. */
    kp_pg_range gap[] = {{a, 201, 300}, {a, 1, 100}, {a, 201, 300}};
    plan_run(&d, buf, 101, 200);
    assert_int_equal(kp_pg_dedupe_resolve(&d, gap, 3), 0);
    assert_int_equal(count_fate(&d, KP_PG_FRESH), 100);
    assert_true(d.nupserts == 1 && d.upserts[0].lo == 1 && d.upserts[0].hi == 300);
    assert_true(d.ndeletes == 1 && d.deletes[0].lo == 201);

    /* Extending downward moves the key: delete the old lo, insert the new. */
    kp_pg_range later = {a, 201, 300};
    plan_run(&d, buf, 150, 200);
    assert_int_equal(kp_pg_dedupe_resolve(&d, &later, 1), 0);
    assert_true(d.nupserts == 1 && d.upserts[0].lo == 150 && d.upserts[0].hi == 300);
    assert_true(d.ndeletes == 1 && d.deletes[0].lo == 201);

    /* Not adjacent: a second row. */
    plan_run(&d, buf, 102, 110);
    assert_int_equal(kp_pg_dedupe_resolve(&d, &r1, 1), 0);
    assert_true(d.nupserts == 1 && d.upserts[0].lo == 102 && d.upserts[0].hi == 110);
    assert_int_equal(d.ndeletes, 0);

    /* Counted by v1 (the legacy per-event table): not counted again, but covered. */
    plan_run(&d, buf, 101, 110);
    kp_pg_dedupe_mark_seen(&d, a, 105);
    kp_pg_dedupe_mark_seen(&d, a, 999); /* not in the batch: ignored */
    assert_int_equal(kp_pg_dedupe_resolve(&d, &r1, 1), 0);
    assert_int_equal(count_fate(&d, KP_PG_FRESH), 9);
    assert_true(d.nupserts == 1 && d.upserts[0].lo == 1 && d.upserts[0].hi == 110);

    /* Overlapping rows (never written by this code) still hide what they cover, and merge. */
    kp_pg_range overlap[] = {{a, 1, 50}, {a, 10, 120}};
    plan_run(&d, buf, 100, 130);
    assert_int_equal(kp_pg_dedupe_resolve(&d, overlap, 2), 0);
    assert_int_equal(count_fate(&d, KP_PG_FRESH), 10);
    assert_true(d.nupserts == 1 && d.upserts[0].lo == 1 && d.upserts[0].hi == 130);
    assert_true(d.ndeletes == 1 && d.deletes[0].lo == 10);

    /* A row outside the invariants is refused rather than trusted. */
    kp_pg_range bad[] = {{a, 5, 4}, {a, 0, 3}, {a, 1, INT64_MAX}};
    for (size_t i = 0; i < 3; i++) {
        plan_run(&d, buf, 1, 2);
        assert_int_equal(kp_pg_dedupe_resolve(&d, &bad[i], 1), KP_EINVAL);
    }
    kp_pg_dedupe_free(&d);
    free(buf);
}

/* ---- a simulated table ----------------------------------------------------------------------- */

#define SIM_MAX 4096
#define UNIVERSE 3000

typedef struct sim {
    kp_pg_range rows[SIM_MAX];
    size_t n;
} sim;

/* What KP_PG_SQL_READ_RANGES returns for the plan's spans. */
static size_t sim_read(const sim *t, const kp_pg_dedupe *d, kp_pg_range *out)
{
    size_t k = 0;
    for (size_t s = 0; s < d->nspans; s++) {
        const kp_pg_range *q = &d->spans[s];
        const kp_pg_range *before = NULL;
        for (size_t i = 0; i < t->n; i++) {
            const kp_pg_range *r = &t->rows[i];
            if (r->node != q->node)
                continue;
            if (r->lo < q->lo && (!before || r->lo > before->lo))
                before = r;
            if (r->lo >= q->lo && r->lo <= q->hi + 1)
                out[k++] = *r;
        }
        if (before && before->hi >= q->lo - 1)
            out[k++] = *before;
    }
    return k;
}

static void sim_apply(sim *t, const kp_pg_dedupe *d)
{
    for (size_t k = 0; k < d->ndeletes; k++) {
        size_t i = 0;
        while (i < t->n && !(t->rows[i].node == d->deletes[k].node &&
                             t->rows[i].lo == d->deletes[k].lo))
            i++;
        assert_true(i < t->n); /* a delete names a row that exists */
        t->rows[i] = t->rows[--t->n];
    }
    for (size_t k = 0; k < d->nupserts; k++) {
        size_t i = 0;
        while (i < t->n && !(t->rows[i].node == d->upserts[k].node &&
                             t->rows[i].lo == d->upserts[k].lo))
            i++;
        if (i == t->n)
            t->n++;
        assert_true(t->n <= SIM_MAX);
        t->rows[i] = d->upserts[k];
    }
}

static size_t check_sim(const sim *t, const int *counted)
{
    size_t runs = 0;
    for (int s = 1; s <= UNIVERSE; s++) {
        assert_true(counted[s] <= 1);
        runs += counted[s] == 1 && counted[s - 1] == 0;
    }
    assert_int_equal(t->n, runs);
    for (size_t i = 0; i < t->n; i++) {
        for (int64_t s = t->rows[i].lo; s <= t->rows[i].hi; s++)
            assert_int_equal(counted[s], 1);
        assert_int_equal(counted[t->rows[i].lo - 1], 0);
        assert_int_equal(counted[t->rows[i].hi + 1], 0);
    }
    return runs;
}

/* Random batches over 1..UNIVERSE of one node: some redelivered whole, some reordered, some
 * overlapping. Each number is counted exactly once, when first delivered; the rows are disjoint,
 * never touching, and exactly the runs of the numbers delivered. */
static void test_random_deliveries(void **state)
{
    (void)state;
    static sim t;
    static kp_event buf[512];
    static kp_pg_range read[SIM_MAX];
    static int counted[UNIVERSE + 2];
    kp_pg_dedupe d = {0};
    size_t most = 0;
    srand(11);
    for (int round = 0; round < 1500; round++) {
        int64_t lo = 1 + rand() % UNIVERSE;
        int len = 1 + rand() % 16;
        size_t n = 0;
        for (int64_t s = lo; s < lo + len && s <= UNIVERSE; s++)
            buf[n++] = ev_id(NODE_A, s);
        for (size_t i = n; i > 1; i--) { /* any order inside a batch */
            size_t j = (size_t)rand() % i;
            kp_event tmp = buf[i - 1];
            buf[i - 1] = buf[j];
            buf[j] = tmp;
        }
        if (n > 2 && rand() % 4 == 0)
            buf[n++] = buf[0]; /* a repeat inside the batch */
        assert_int_equal(kp_pg_dedupe_plan(&d, buf, n), 0);
        size_t nr = sim_read(&t, &d, read);
        assert_int_equal(kp_pg_dedupe_resolve(&d, read, nr), 0);
        for (size_t i = 0; i < n; i++)
            if (d.fate[i] == KP_PG_FRESH)
                counted[d.seq[i]]++;
        sim_apply(&t, &d);
        if (round % 50 == 0) {
            size_t now = check_sim(&t, counted);
            if (now > most)
                most = now;
        }
    }
    size_t runs = check_sim(&t, counted);
    printf("random deliveries: %zu rows for %zu runs at the end, %zu at most\n", t.n, runs,
           most);
    kp_pg_dedupe_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_ids),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_resolve_cases),
        cmocka_unit_test(test_random_deliveries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
