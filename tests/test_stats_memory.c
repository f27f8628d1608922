/* The memory stats store: counting, and the bounds of issue 9 (it used to keep every username
 * for ever): the retention window, the user and entry caps, and the eviction counters. The
 * window ends at the newest minute counted, so time moves by counting a later event and nothing
 * here waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "stats_memory.h"
#include "testsupport.h"

#define T0 1796000040 /* a minute boundary (Unix seconds) */

static kp_event event_at(const char *user, int64_t unix_s, unsigned seq)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "test-%u", seq);
    snprintf(ev.username, sizeof(ev.username), "%s", user);
    ev.job_id = 1;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%x", seq);
    ev.ts_ms = unix_s * 1000 + 123;
    return ev;
}

static kp_stats *open_store(int64_t retention_s, size_t max_users, size_t max_entries)
{
    const kp_stats_memory_limits lim = {.retention_s = retention_s, .max_users = max_users,
                                        .max_entries = max_entries};
    kp_stats *st = NULL;
    assert_int_equal(kp_stats_memory_open_limits(&lim, &st), 0);
    assert_non_null(st);
    return st;
}

static void record_one(kp_stats *st, const char *user, int64_t unix_s)
{
    static unsigned seq;
    kp_event ev = event_at(user, unix_s, seq++);
    assert_int_equal(kp_stats_record(st, &ev, 1), 0);
}

/* The number of minutes stored for `user` (0 when unknown); their counts add up to *total. */
static size_t minutes_of(kp_stats *st, const char *user, int64_t *total)
{
    kp_minute_count *m = NULL;
    size_t n = 0;
    assert_int_equal(kp_stats_query(st, user, &m, &n), 0);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += m[i].count;
        if (i > 0)
            assert_true(m[i - 1].minute < m[i].minute);
    }
    free(m);
    if (total)
        *total = sum;
    return n;
}

static kp_stats_evictions evictions(kp_stats *st)
{
    kp_stats_evictions ev;
    assert_int_equal(kp_stats_get_evictions(st, &ev), 0);
    return ev;
}

static void test_counts(void **state)
{
    kp_stats *st = open_store(3600, 10, 100);
    kp_event batch[4] = {event_at("alice", T0 - 120, 1), event_at("alice", T0 - 60, 2),
                         event_at("alice", T0 - 59, 3), event_at("bob", T0 - 1, 4)};
    assert_int_equal(kp_stats_record(st, batch, 4), 0);
    int64_t total = 0;
    assert_int_equal(minutes_of(st, "alice", &total), 2);
    assert_int_equal(total, 3);
    assert_int_equal(minutes_of(st, "bob", &total), 1);
    assert_int_equal(minutes_of(st, "carol", NULL), 0);
    kp_stats_evictions ev = evictions(st);
    assert_int_equal(ev.expired, 0);
    assert_int_equal(ev.capped, 0);
    kp_stats_free(st);
}

/* Each minute sums the difficulties of its events in the same step as the count: a zeroed
 * difficulty (a v1 event) counts as 1, so with difficulty off the sum equals the count; large
 * difficulties add exactly while the sum stays below 2^53. */
static void test_difficulty_sums(void **state)
{
    (void)state;
    kp_stats *st = open_store(3600, 10, 100);
    kp_event batch[5] = {event_at("alice", T0, 1), event_at("alice", T0 + 1, 2),
                         event_at("alice", T0 + 2, 3), event_at("alice", T0 + 60, 4),
                         event_at("bob", T0, 5)};
    batch[1].difficulty = 1; /* explicit 1 and left at 0 are the same */
    batch[2].difficulty = 256;
    batch[3].difficulty = (UINT64_C(1) << 52);
    batch[4].difficulty = 7;
    assert_int_equal(kp_stats_record(st, batch, 5), 0);
    kp_event more = event_at("alice", T0 + 61, 6);
    more.difficulty = (UINT64_C(1) << 52) - 1;
    assert_int_equal(kp_stats_record(st, &more, 1), 0);

    kp_minute_count *m = NULL;
    size_t n = 0;
    assert_int_equal(kp_stats_query(st, "alice", &m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].minute, T0);
    assert_int_equal(m[0].count, 3);
    assert_true(m[0].difficulty_sum == 258.0);
    assert_int_equal(m[1].count, 2);
    assert_true(m[1].difficulty_sum == 9007199254740991.0); /* 2^53 - 1: every unit kept */
    free(m);
    assert_int_equal(kp_stats_query(st, "bob", &m, &n), 0);
    assert_int_equal(n, 1);
    assert_true(m[0].difficulty_sum == 7.0);
    free(m);

    /* Defaults: a thousand difficulty-off events sum to their count. */
    kp_event plain[1000];
    for (unsigned i = 0; i < 1000; i++)
        plain[i] = event_at("carol", T0 + (int64_t)(i % 120), 100 + i);
    assert_int_equal(kp_stats_record(st, plain, 1000), 0);
    assert_int_equal(kp_stats_query(st, "carol", &m, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_true(m[i].difficulty_sum == (double)m[i].count);
    free(m);
    kp_stats_free(st);
}

/* Minutes older than the window are not returned, are dropped when the clock moves on, and a
 * user whose every minute aged out is forgotten. */
static void test_retention(void **state)
{
    kp_stats *st = open_store(600, 1000, 100000); /* ten minutes */
    for (int i = 0; i < 5; i++)
        record_one(st, "old", T0 - 300 + i * 60); /* five minutes, T0-300 .. T0-60 */
    record_one(st, "busy", T0);
    assert_int_equal(minutes_of(st, "old", NULL), 5);

    /* Seven minutes later the window starts at T0-180: the two oldest of "old" are outside.
     * "old" was not counted, so they are still stored, but the query hides them. */
    record_one(st, "busy", T0 + 420);
    assert_int_equal(minutes_of(st, "old", NULL), 3);
    assert_int_equal(evictions(st).expired, 0);

    /* Twenty minutes later every minute of "old" is outside: counting anyone drops it. */
    record_one(st, "busy", T0 + 1200);
    assert_int_equal(minutes_of(st, "old", NULL), 0);
    kp_stats_evictions ev = evictions(st);
    assert_int_equal(ev.expired, 5 + 2); /* old's five, and busy's first two minutes */
    assert_int_equal(ev.capped, 0);
    assert_int_equal(minutes_of(st, "busy", NULL), 1);

    /* An event that is already outside the window (a late replay) is not stored. */
    record_one(st, "late", T0);
    assert_int_equal(minutes_of(st, "late", NULL), 0);
    assert_int_equal(evictions(st).expired, 8);
    kp_stats_free(st);
}

/* Issue 9's attack: a flood of fresh usernames. The store keeps at most max_users, dropping the
 * users counted least recently, and counts what it dropped. */
static void test_user_cap(void **state)
{
    kp_stats *st = open_store(86400, 100, 1000000);
    record_one(st, "regular", T0);
    for (int i = 0; i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "flood-%d", i);
        record_one(st, name, T0);
        if (i % 10 == 0)
            record_one(st, "regular", T0); /* stays recent, so it is never the oldest */
    }
    assert_int_equal(minutes_of(st, "regular", NULL), 1);
    assert_int_equal(minutes_of(st, "flood-0", NULL), 0);
    assert_int_equal(minutes_of(st, "flood-999", NULL), 1);
    size_t kept = 0;
    for (int i = 0; i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "flood-%d", i);
        kept += minutes_of(st, name, NULL);
    }
    assert_int_equal(kept, 99); /* 100 users, "regular" one of them */
    kp_stats_evictions ev = evictions(st);
    assert_int_equal(ev.capped, 1000 - 99);
    assert_int_equal(ev.expired, 0);
    kp_stats_free(st);
}

/* The entry cap: one (user, minute) entry per user per minute, whole users dropped oldest
 * first until the total fits. */
static void test_entry_cap(void **state)
{
    kp_stats *st = open_store(86400, 1000, 50);
    for (int u = 0; u < 10; u++) {
        char name[32];
        snprintf(name, sizeof(name), "u%d", u);
        for (int m = 0; m < 10; m++)
            record_one(st, name, T0 - 6000 + m * 60);
    }
    /* 100 entries asked, at most 50 kept: u0..u4 went, u5..u9 stayed. */
    size_t total = 0;
    for (int u = 0; u < 10; u++) {
        char name[32];
        snprintf(name, sizeof(name), "u%d", u);
        size_t n = minutes_of(st, name, NULL);
        assert_int_equal(n, u < 5 ? 0 : 10);
        total += n;
    }
    assert_int_equal(total, 50);
    assert_int_equal(evictions(st).capped, 50);
    kp_stats_free(st);
}

/* The eviction slot is optional: a store without it reports KP_ENOTSUP and zeros. */
static void test_evictions_slot_optional(void **state)
{
    kp_stats bare = {.version = KP_STATS_VERSION, .name = "bare"};
    kp_stats_evictions ev = {.expired = 7, .capped = 7};
    assert_int_equal(kp_stats_get_evictions(&bare, &ev), KP_ENOTSUP);
    assert_int_equal(ev.expired, 0);
    assert_int_equal(ev.capped, 0);
    const kp_stats_memory_limits zero = {.retention_s = 0, .max_users = 1, .max_entries = 1};
    kp_stats *st = NULL;
    assert_int_equal(kp_stats_memory_open_limits(&zero, &st), KP_EINVAL);
    assert_null(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_difficulty_sums),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_user_cap),
        cmocka_unit_test(test_entry_cap),
        cmocka_unit_test(test_evictions_slot_optional),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
