/* Tests for src/net/address_book.c with a fake clock: the per-address limit (IPv6 per /64,
 * IPv4-mapped as IPv4), junk bans, the invalid-share window (exactly at the threshold, the
 * oldest judgement leaving it, history kept across reconnects), exemptions, ban expiry, the
 * bounded ban table evicting its oldest, idle histories dropped, and the outcome table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "address_book.h"
#include "outcome.h"

static kp_ip ip(const char *text)
{
    kp_ip out;
    assert_int_equal(kp_ip_parse(text, &out), 0);
    return out;
}

static kp_addr_book *book(uint32_t per_ip, uint64_t ban_ms, uint32_t check, uint32_t pct,
                          const char *exempt)
{
    kp_addr_book_config cfg = {.max_conns_per_ip = per_ip, .ban_time_ms = ban_ms,
                               .ban_check = check, .ban_invalid_percent = pct};
    assert_int_equal(kp_cidr_list_parse(exempt ? exempt : "", &cfg.exempt), 0);
    kp_addr_book *b;
    assert_int_equal(kp_addr_book_new(&cfg, 42, &b), 0);
    return b;
}

static kp_addr_entry *admit_ok(kp_addr_book *b, const char *addr, uint64_t now)
{
    kp_ip a = ip(addr);
    kp_addr_entry *e = NULL;
    assert_int_equal(kp_addr_book_admit(b, &a, now, &e), KP_ADMIT_OK);
    assert_non_null(e);
    return e;
}

static kp_admit admit(kp_addr_book *b, const char *addr, uint64_t now)
{
    kp_ip a = ip(addr);
    kp_addr_entry *e = NULL;
    kp_admit r = kp_addr_book_admit(b, &a, now, &e);
    return r;
}

static void test_per_ip_limit(void **state)
{
    (void)state;
    kp_addr_book *b = book(2, 0, 100, 50, NULL);
    kp_addr_entry *a1 = admit_ok(b, "203.0.113.7", 0);
    kp_addr_entry *a2 = admit_ok(b, "203.0.113.7", 0);
    assert_ptr_equal(a1, a2);
    assert_int_equal(admit(b, "203.0.113.7", 0), KP_ADMIT_PER_IP);
    assert_int_equal(admit(b, "::ffff:203.0.113.7", 0), KP_ADMIT_PER_IP); /* the same client */
    admit_ok(b, "203.0.113.8", 0);
    kp_addr_book_release(b, a1, 1);
    kp_addr_entry *a3 = admit_ok(b, "203.0.113.7", 1);
    /* IPv6: one /64 is one client, the next /64 another. */
    kp_addr_entry *v1 = admit_ok(b, "2001:db8:1:2::1", 0);
    admit_ok(b, "2001:db8:1:2:ffff:ffff:ffff:ffff", 0);
    assert_int_equal(admit(b, "2001:db8:1:2::99", 0), KP_ADMIT_PER_IP);
    admit_ok(b, "2001:db8:1:3::1", 0);
    /* Every connection given back: nothing stays behind without bans. */
    kp_addr_book_release(b, a2, 2);
    kp_addr_book_release(b, a3, 2);
    assert_int_equal(kp_addr_book_get_stats(b).entries, 3); /* .8, the two /64s */
    (void)v1;
    kp_addr_book_free(b);

    /* 0 = no limit. */
    b = book(0, 0, 100, 50, NULL);
    for (int i = 0; i < 1000; i++)
        admit_ok(b, "198.51.100.1", 0);
    kp_addr_book_free(b);
}

static void test_junk_ban_and_expiry(void **state)
{
    (void)state;
    kp_addr_book *b = book(0, 60000, 100, 50, NULL);
    kp_addr_entry *e = admit_ok(b, "203.0.113.7", 1000);
    kp_addr_entry *other = admit_ok(b, "203.0.113.7", 1000);
    assert_ptr_equal(e, other);
    assert_true(kp_addr_book_junk(b, e, 1000));
    assert_true(kp_addr_entry_banned(e)); /* its other connection is to be closed */
    assert_false(kp_addr_book_junk(b, e, 1001)); /* banned once */
    assert_int_equal(admit(b, "203.0.113.7", 2000), KP_ADMIT_BANNED);
    assert_int_equal(admit(b, "203.0.113.6", 2000), KP_ADMIT_OK);
    kp_addr_book_release(b, e, 2000);
    kp_addr_book_release(b, other, 2000);
    kp_addr_book_stats st = kp_addr_book_get_stats(b);
    assert_int_equal(st.bans_total[KP_BAN_JUNK], 1);
    assert_int_equal(st.bans_active, 1);
    /* The ban lasts -ban_time from its start, to the millisecond. */
    assert_int_equal(admit(b, "203.0.113.7", 60999), KP_ADMIT_BANNED);
    assert_int_equal(kp_addr_book_expire(b, 60999), 1);
    assert_int_equal(kp_addr_book_expire(b, 61000), 0);
    admit_ok(b, "203.0.113.7", 61000);
    kp_addr_book_free(b);

    /* Bans off: junk never bans. */
    b = book(0, 0, 100, 50, NULL);
    e = admit_ok(b, "203.0.113.7", 0);
    assert_false(kp_addr_book_junk(b, e, 0));
    kp_addr_book_free(b);
}

static void test_invalid_share_window(void **state)
{
    (void)state;
    kp_addr_book *b = book(0, 60000, 10, 50, NULL);
    kp_addr_entry *e = admit_ok(b, "203.0.113.7", 0);
    /* Fewer than N judged: never a ban, however bad. */
    for (int i = 0; i < 9; i++)
        assert_false(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0));
    /* Not judged answers do not count. */
    assert_false(kp_addr_book_judged(b, e, KP_JUDGE_NONE, 0));
    /* The 10th: 9 of 10 invalid. */
    assert_true(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0));
    assert_true(kp_addr_entry_banned(e));
    assert_int_equal(kp_addr_book_get_stats(b).bans_total[KP_BAN_INVALID_SHARES], 1);
    kp_addr_book_release(b, e, 0);
    kp_addr_book_free(b);

    /* Exactly P% of the last N bans; one fewer does not; the oldest leaves the window. */
    b = book(0, 60000, 10, 50, NULL);
    e = admit_ok(b, "203.0.113.8", 0);
    for (int i = 0; i < 4; i++)
        assert_false(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0));
    for (int i = 0; i < 6; i++)
        assert_false(kp_addr_book_judged(b, e, KP_JUDGE_VALID, 0)); /* 4/10 */
    /* Oldest first the window is I I I I V V V V V V. Four more invalid ones each push out an
     * invalid one (still 4 of 10); the fifth pushes out a valid one: 5 of 10, 50%. */
    for (int i = 0; i < 4; i++)
        assert_false(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0));
    assert_true(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0));
    kp_addr_book_free(b);
}

static void test_history_survives_reconnect(void **state)
{
    (void)state;
    kp_addr_book *b = book(0, 60000, 10, 50, NULL);
    /* One connection per judged submit: the history is the address's, not the session's. */
    bool banned = false;
    for (int i = 0; i < 10; i++) {
        kp_addr_entry *e = admit_ok(b, "2001:db8:1:2::1", (uint64_t)i);
        banned = kp_addr_book_judged(b, e, KP_JUDGE_INVALID, (uint64_t)i);
        kp_addr_book_release(b, e, (uint64_t)i);
    }
    assert_true(banned);
    assert_int_equal(admit(b, "2001:db8:1:2::2", 20), KP_ADMIT_BANNED); /* the whole /64 */
    kp_addr_book_free(b);

    /* An idle history is dropped after KP_ADDR_IDLE_KEEP_MS. */
    b = book(0, 60000, 10, 50, NULL);
    kp_addr_entry *e = admit_ok(b, "203.0.113.7", 0);
    for (int i = 0; i < 9; i++)
        kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0);
    kp_addr_book_release(b, e, 0);
    assert_int_equal(kp_addr_book_get_stats(b).entries, 1);
    kp_addr_book_expire(b, KP_ADDR_IDLE_KEEP_MS);
    assert_int_equal(kp_addr_book_get_stats(b).entries, 0);
    e = admit_ok(b, "203.0.113.7", KP_ADDR_IDLE_KEEP_MS);
    assert_false(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, KP_ADDR_IDLE_KEEP_MS));
    kp_addr_book_free(b);
}

static void test_exempt(void **state)
{
    (void)state;
    kp_addr_book *b = book(1, 60000, 2, 50, "10.0.0.0/8,2001:db8::/32");
    kp_addr_entry *e = admit_ok(b, "10.1.2.3", 0);
    assert_false(kp_addr_book_junk(b, e, 0));
    for (int i = 0; i < 10; i++)
        assert_false(kp_addr_book_judged(b, e, KP_JUDGE_INVALID, 0));
    assert_false(kp_addr_entry_banned(e));
    /* Exempt from bans, not from the connection limit (SPEC §9 says bans; docs say so too). */
    assert_int_equal(admit(b, "10.1.2.3", 0), KP_ADMIT_PER_IP);
    kp_addr_entry *v6 = admit_ok(b, "2001:db8:9::1", 0);
    assert_false(kp_addr_book_junk(b, v6, 0));
    kp_addr_entry *out = admit_ok(b, "11.0.0.1", 0);
    assert_true(kp_addr_book_junk(b, out, 0));
    kp_addr_book_free(b);
}

typedef struct ban_seen {
    int n;
    char first[128];
} ban_seen;

static void each_ban(void *arg, const kp_ip *key, kp_ban_reason r, uint64_t until)
{
    ban_seen *seen = arg;
    if (seen->n++ == 0) {
        char a[48];
        kp_addr_key_format(key, a, sizeof(a));
        snprintf(seen->first, sizeof(seen->first), "%s %s %llu", a, kp_ban_reason_label(r),
                 (unsigned long long)until);
    }
}

static void test_ban_table_bounded(void **state)
{
    (void)state;
    kp_addr_book_config cfg = {.ban_time_ms = 1000000, .ban_check = 100,
                               .ban_invalid_percent = 50, .max_bans = 4};
    kp_addr_book *b;
    assert_int_equal(kp_addr_book_new(&cfg, 7, &b), 0);
    char addr[32];
    for (int i = 0; i < 6; i++) {
        snprintf(addr, sizeof(addr), "198.51.100.%d", i);
        kp_addr_entry *e = admit_ok(b, addr, (uint64_t)i);
        assert_true(kp_addr_book_junk(b, e, (uint64_t)i));
        kp_addr_book_release(b, e, (uint64_t)i);
    }
    kp_addr_book_stats st = kp_addr_book_get_stats(b);
    assert_int_equal(st.bans_active, 4);
    assert_int_equal(st.bans_total[KP_BAN_JUNK], 6);
    assert_int_equal(st.entries, 4);
    /* The two oldest were evicted. */
    assert_int_equal(admit(b, "198.51.100.0", 10), KP_ADMIT_OK);
    assert_int_equal(admit(b, "198.51.100.1", 10), KP_ADMIT_OK);
    assert_int_equal(admit(b, "198.51.100.2", 10), KP_ADMIT_BANNED);
    assert_int_equal(admit(b, "198.51.100.5", 10), KP_ADMIT_BANNED);

    /* Listing: oldest first, keys formatted for /bans. */
    ban_seen seen = {0};
    kp_addr_book_each_ban(b, each_ban, &seen);
    assert_int_equal(seen.n, 4);
    assert_string_equal(seen.first, "198.51.100.2 junk 1000002");
    kp_addr_book_free(b);
}

static void test_many_addresses(void **state)
{
    (void)state;
    /* The table grows past its first size and finds every entry again. */
    kp_addr_book *b = book(1, 0, 100, 50, NULL);
    static kp_addr_entry *entries[5000];
    char addr[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(addr, sizeof(addr), "2001:db8:%x:%x::1", i / 256, i % 256);
        entries[i] = admit_ok(b, addr, 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(addr, sizeof(addr), "2001:db8:%x:%x::2", i / 256, i % 256);
        assert_int_equal(admit(b, addr, 0), KP_ADMIT_PER_IP);
    }
    assert_int_equal(kp_addr_book_get_stats(b).entries, 5000);
    for (int i = 0; i < 5000; i++)
        kp_addr_book_release(b, entries[i], 0);
    assert_int_equal(kp_addr_book_get_stats(b).entries, 0);
    kp_addr_book_free(b);
}

static void test_judge_outcomes(void **state)
{
    (void)state;
    kp_addr_book *b = book(0, 1000, 100, 50, NULL);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_OK, false), KP_JUDGE_VALID);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_OK, true), KP_JUDGE_NONE);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_INVALID_RESULT, false), KP_JUDGE_INVALID);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_DUPLICATE, false), KP_JUDGE_INVALID);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_TASK_NOT_EXIST, false), KP_JUDGE_INVALID);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_TASK_EXPIRED, false), KP_JUDGE_NONE);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_TOO_FREQUENT, false), KP_JUDGE_NONE);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_INVALID_PARAMS, false), KP_JUDGE_NONE);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_INVALID_JSON, false), KP_JUDGE_NONE);
    assert_int_equal(kp_addr_book_judge(b, KP_OUTCOME_LOW_DIFFICULTY, false), KP_JUDGE_INVALID);
    kp_addr_book_free(b);

    kp_addr_book_config bad = {.ban_time_ms = 1, .ban_check = 0, .ban_invalid_percent = 50};
    assert_int_equal(kp_addr_book_new(&bad, 1, &b), -2);
    bad.ban_check = KP_ADDR_MAX_BAN_CHECK + 1;
    assert_int_equal(kp_addr_book_new(&bad, 1, &b), -2);
    bad.ban_check = 100;
    bad.ban_invalid_percent = 101;
    assert_int_equal(kp_addr_book_new(&bad, 1, &b), -2);
}

static void test_key_format(void **state)
{
    (void)state;
    char buf[64];
    kp_ip a = ip("2001:db8:1:2::"), c = ip("203.0.113.7");
    kp_addr_key_format(&a, buf, sizeof(buf));
    assert_string_equal(buf, "2001:db8:1:2::/64");
    kp_addr_key_format(&c, buf, sizeof(buf));
    assert_string_equal(buf, "203.0.113.7");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_ip_limit),        cmocka_unit_test(test_junk_ban_and_expiry),
        cmocka_unit_test(test_invalid_share_window), cmocka_unit_test(test_history_survives_reconnect),
        cmocka_unit_test(test_exempt),              cmocka_unit_test(test_ban_table_bounded),
        cmocka_unit_test(test_many_addresses),      cmocka_unit_test(test_judge_outcomes),
        cmocka_unit_test(test_key_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
