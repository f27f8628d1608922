/* The PostgreSQL store's parameter encoding on its own (src/backends/pg/pg_sql.c), no database:
 * a batch becomes three text-format array literals, one element per event, and no username can
 * change an array's shape (tests/test_stats_pg.c proves the same against a real server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

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

static void test_batch_as_array_literals(void **state)
{
    (void)state;
    kp_event evs[] = {
        make_event("e1", "alice", 1764016200000),          /* a minute boundary */
        make_event("e2", "NULL", 1764016259999),            /* same minute */
        make_event("e\"3", "a \"b\" \\c {d,e}", 1764016260001), /* next minute */
    };
    kp_pg_arrays a = {0};
    assert_int_equal(kp_pg_arrays_build(&a, evs, 3), 0);
    assert_string_equal(a.ids.p, "{\"e1\",\"e2\",\"e\\\"3\"}");
    assert_string_equal(a.users.p, "{\"alice\",\"NULL\",\"a \\\"b\\\" \\\\c {d,e}\"}");
    assert_string_equal(a.minutes.p, "{1764016200,1764016200,1764016260}");

    /* The buffers are reused: a smaller batch overwrites, and nothing of the last one remains. */
    char *kept = a.users.p;
    assert_int_equal(kp_pg_arrays_build(&a, evs, 1), 0);
    assert_ptr_equal(a.users.p, kept);
    assert_string_equal(a.ids.p, "{\"e1\"}");
    assert_string_equal(a.users.p, "{\"alice\"}");
    assert_string_equal(a.minutes.p, "{1764016200}");
    kp_pg_arrays_free(&a);
    assert_null(a.ids.p);
    kp_pg_arrays_free(&a); /* twice is harmless */
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
    kp_pg_arrays a = {0};
    assert_int_equal(kp_pg_arrays_build(&a, &ev, 1), 0);
    assert_int_equal(strlen(a.users.p), 2 * (sizeof(ev.username) - 1) + 4);
    assert_int_equal(strlen(a.ids.p), 2 * (sizeof(ev.event_id) - 1) + 4);
    assert_string_equal(a.minutes.p, "{-60}");
    kp_pg_arrays_free(&a);
}

static void test_statements_are_named(void **state)
{
    (void)state;
    assert_string_equal(kp_pg_record_stmts[0].name, "kp_record");
    assert_ptr_equal(kp_pg_record_stmts[0].sql, KP_PG_SQL_RECORD);
    assert_string_equal(kp_pg_record_stmts[1].name, "kp_prune");
    assert_non_null(strstr(kp_pg_record_stmts[1].sql, "interval '" KP_PG_PRUNE_AGE "'"));
    assert_non_null(strstr(kp_pg_record_stmts[1].sql, "LIMIT 100000"));
    assert_string_equal(kp_pg_query_stmts[0].name, "kp_query");
    assert_non_null(strstr(KP_PG_SQL_SCHEMA_CREATE, "pg_advisory_xact_lock(4242001)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_as_array_literals),
        cmocka_unit_test(test_worst_case_fits),
        cmocka_unit_test(test_statements_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
