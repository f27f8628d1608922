/* The PostgreSQL store's parameter encoding on its own (src/backends/pg/pg_sql.c, pg_batch.c), no
 * database: a batch becomes text-format array literals, foreign events whole and KuPool events as
 * counts per (username, minute) and ranges, and no username can change an array's shape
 * (tests/test_stats_pg.c proves the same against a real server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pg/pg_batch.h"
#include "pg/pg_sql.h"

static kp_event make_event(const char *id, const char *user, int64_t ts_ms)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    snprintf(ev.username, sizeof(ev.username), "%s", user);
    ev.ts_ms = ts_ms;
    return ev;
}

/* A batch of the given ids (all alice at one minute unless changed). */
static void plan(kp_pg_dedupe *d, kp_event *evs, size_t n)
{
    assert_int_equal(kp_pg_dedupe_plan(d, evs, n), 0);
}

/* Foreign events travel whole; KuPool events only as their aggregated counts, and as ranges. */
static void test_write_params(void **state)
{
    (void)state;
    kp_event evs[] = {
        make_event("e\"3", "a \"b\" \\c {d,e}", 1764016260001), /* foreign, odd username */
        make_event("00000000000000aa-1", "alice", 1764016200000), /* a minute boundary */
        make_event("00000000000000aa-2", "NULL", 1764016259999),
        make_event("00000000000000aa-3", "alice", 1764016200500),
        make_event("00000000000000aa-3", "alice", 1764016200500), /* a repeat */
        make_event("00000000000000aa-4", "alice", 1764016260000), /* next minute */
    };
    evs[0].difficulty = 4;
    evs[3].difficulty = UINT64_C(1) << 53;
    kp_pg_dedupe d = {0};
    kp_pg_batch b = {0};
    plan(&d, evs, 6);
    assert_int_equal(kp_pg_batch_reads(&b, evs, &d, true), 0);
    assert_string_equal(b.locks.p, "{170}");
    assert_string_equal(b.span_nodes.p, "{170}");
    assert_string_equal(b.span_los.p, "{1}");
    assert_string_equal(b.span_his.p, "{4}");
    assert_string_equal(b.seq_ids.p, "{\"00000000000000aa-1\",\"00000000000000aa-2\","
                                     "\"00000000000000aa-3\",\"00000000000000aa-4\"}");
    kp_pg_range stored = {170, 1, 1}; /* 1 counted before */
    assert_int_equal(kp_pg_dedupe_resolve(&d, &stored, 1), 0);
    bool needed = false;
    assert_int_equal(kp_pg_batch_writes(&b, evs, &d, &needed), 0);
    assert_true(needed);
    const char *const want[KP_PG_WRITE_ARRAYS] = {
        "{\"e\\\"3\"}", "{\"a \\\"b\\\" \\\\c {d,e}\"}", "{1764016260}", "{4}", /* foreign */
        "{}", "{}",                                                     /* nothing merged away */
        "{170}", "{1}", "{4}",                                          /* the range grows */
        "{\"NULL\",\"alice\",\"alice\"}", "{1764016200,1764016200,1764016260}", "{1,1,1}",
        "{1,9007199254740992,1}",
    };
    for (size_t i = 0; i < KP_PG_WRITE_ARRAYS; i++)
        if (strcmp(b.write[i].p, want[i]) != 0)
            fail_msg("parameter $%zu: %s, want %s", i + 1, b.write[i].p, want[i]);

    /* Seen entirely before: nothing to write; the buffers are reused. */
    char *kept = b.write[9].p;
    plan(&d, evs + 1, 1);
    assert_int_equal(kp_pg_batch_reads(&b, evs + 1, &d, false), 0);
    assert_string_equal(b.seq_ids.p, "{}");
    assert_int_equal(kp_pg_dedupe_resolve(&d, &stored, 1), 0);
    assert_int_equal(kp_pg_batch_writes(&b, evs + 1, &d, &needed), 0);
    assert_false(needed);
    assert_ptr_equal(b.write[9].p, kept);
    assert_string_equal(b.write[9].p, "{}");
    kp_pg_batch_free(&b);
    assert_null(b.write[0].p);
    kp_pg_batch_free(&b); /* twice is harmless */
    kp_pg_dedupe_free(&d);
}

/* Many users and minutes aggregate to one cell each, whatever the order. */
static void test_aggregation(void **state)
{
    (void)state;
    enum { N = 4000, USERS = 37, MINUTES = 3 };
    kp_event *evs = calloc(N, sizeof(*evs));
    assert_non_null(evs);
    for (int i = 0; i < N; i++) {
        char id[48], user[16];
        snprintf(id, sizeof id, "0123456789abcdef-%d", i + 1);
        snprintf(user, sizeof user, "u%d", (i * 7) % USERS);
        evs[i] = make_event(id, user, 1764016200000 + (int64_t)(i % MINUTES) * 60000);
        evs[i].difficulty = (uint64_t)(i % 5) + 1;
    }
    kp_pg_dedupe d = {0};
    kp_pg_batch b = {0};
    plan(&d, evs, N);
    assert_int_equal(kp_pg_dedupe_resolve(&d, NULL, 0), 0);
    bool needed;
    assert_int_equal(kp_pg_batch_writes(&b, evs, &d, &needed), 0);
    size_t cells = 1;
    for (const char *p = b.write[11].p; *p; p++)
        cells += *p == ',';
    assert_int_equal(cells, USERS * MINUTES); /* 37 and 3 are coprime: every pair occurs */
    long total = 0, sum = 0;
    for (const char *p = b.write[11].p + 1; *p; p++) {
        total += strtol(p, (char **)&p, 10);
        if (*p != ',')
            break;
    }
    for (const char *p = b.write[12].p + 1; *p; p++) {
        sum += strtol(p, (char **)&p, 10);
        if (*p != ',')
            break;
    }
    assert_int_equal(total, N);
    assert_int_equal(sum, N / 5 * 15);
    kp_pg_batch_free(&b);
    kp_pg_dedupe_free(&d);
    free(evs);
}

/* The longest fields, every byte needing an escape, fit the reservation exactly. */
static void test_worst_case_fits(void **state)
{
    (void)state;
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    memset(ev.event_id, '"', sizeof(ev.event_id) - 1);
    memset(ev.username, '\\', sizeof(ev.username) - 1);
    ev.ts_ms = -1; /* before 1970: a negative minute */
    ev.difficulty = UINT64_C(1) << 53;
    kp_pg_dedupe d = {0};
    kp_pg_batch b = {0};
    plan(&d, &ev, 1);
    bool needed;
    assert_int_equal(kp_pg_batch_writes(&b, &ev, &d, &needed), 0);
    assert_int_equal(strlen(b.write[1].p), 2 * (sizeof(ev.username) - 1) + 4);
    assert_int_equal(strlen(b.write[0].p), 2 * (sizeof(ev.event_id) - 1) + 4);
    assert_string_equal(b.write[2].p, "{-60}");
    assert_string_equal(b.write[3].p, "{9007199254740992}");
    kp_pg_text t = {0};
    assert_int_equal(kp_pg_text_begin(&t, 2 * KP_PG_DOUBLE_ROOM + KP_PG_INT_ROOM), 0);
    kp_pg_text_double(&t, -1.2345678901234567e+308);
    kp_pg_text_double(&t, 0.1);
    kp_pg_text_int(&t, INT64_MIN);
    assert_string_equal(t.p, "{-1.2345678901234567e+308,0.10000000000000001,"
                             "-9223372036854775808}");
    assert_true(t.len + 2 <= t.cap);
    kp_pg_text_free(&t);
    kp_pg_batch_free(&b);
    kp_pg_dedupe_free(&d);
}

static void test_statements_are_named(void **state)
{
    (void)state;
    static const char *const names[KP_PG_RECORD_STMTS] = {
        "kp_lock", "kp_read_ranges", "kp_legacy", "kp_write",
        "kp_prune", "kp_prune_ranges", "kp_legacy_present",
    };
    for (size_t i = 0; i < KP_PG_RECORD_STMTS; i++)
        assert_string_equal(kp_pg_record_stmts[i].name, names[i]);
    assert_ptr_equal(kp_pg_record_stmts[3].sql, KP_PG_SQL_WRITE);
    assert_non_null(strstr(kp_pg_record_stmts[4].sql, "interval '" KP_PG_PRUNE_AGE "'"));
    assert_non_null(strstr(kp_pg_record_stmts[4].sql, "LIMIT 100000"));
    assert_non_null(strstr(kp_pg_record_stmts[5].sql, "interval '" KP_PG_PRUNE_AGE "'"));
    for (int i = 1; i <= KP_PG_WRITE_PARAMS; i++) {
        char p[8];
        snprintf(p, sizeof p, "$%d:", i);
        assert_non_null(strstr(KP_PG_SQL_WRITE, p));
    }
    assert_string_equal(kp_pg_query_stmts[0].name, "kp_query");
    assert_non_null(strstr(KP_PG_SQL_SCHEMA_CREATE, "pg_advisory_xact_lock(4242001)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_params),
        cmocka_unit_test(test_aggregation),
        cmocka_unit_test(test_worst_case_fits),
        cmocka_unit_test(test_statements_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
