/* Nonce set tests (SPEC §2 "Duplicate submission"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kupool/error.h"
#include "nonce_set.h"

static int add(kp_nonce_sets *sets, int64_t job_id, const char *nonce)
{
    return kp_nonce_sets_add(sets, job_id, nonce, strlen(nonce));
}

static bool has(const kp_nonce_sets *sets, int64_t job_id, const char *nonce)
{
    return kp_nonce_sets_contains(sets, job_id, nonce, strlen(nonce));
}

static void test_add_contains(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    assert_false(has(&sets, 1, "ab"));
    assert_int_equal(add(&sets, 1, "ab"), 0);
    assert_true(has(&sets, 1, "ab"));
    assert_false(has(&sets, 2, "ab")); /* keyed by job */
    assert_false(has(&sets, 1, "cd"));
    assert_int_equal(add(&sets, 1, "ab"), 0); /* adding twice is harmless */
    assert_true(has(&sets, 1, "ab"));
    kp_nonce_sets_free(&sets);
    assert_null(sets.tables);
}

static void test_exact_bytes(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    assert_int_equal(add(&sets, 7, "abcdef"), 0);
    assert_false(has(&sets, 7, "ABCDEF"));
    assert_false(has(&sets, 7, "abcde"));
    assert_false(has(&sets, 7, "abcdef0"));
    assert_false(kp_nonce_sets_contains(&sets, 7, "abcdef\0", 7));
    assert_true(kp_nonce_sets_contains(&sets, 7, "abcdefXYZ", 6));

    char longest[65];
    memset(longest, 'f', 64);
    longest[64] = '\0';
    assert_int_equal(add(&sets, 7, longest), 0);
    assert_true(has(&sets, 7, longest));
    longest[63] = 'e';
    assert_false(has(&sets, 7, longest));
    assert_int_equal(kp_nonce_sets_add(&sets, 7, "x", 65), KP_EINVAL);
    assert_false(kp_nonce_sets_contains(&sets, 7, longest, 65));
    kp_nonce_sets_free(&sets);
}

static void test_growth(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    char buf[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(buf, sizeof buf, "%x", i);
        assert_int_equal(add(&sets, 3, buf), 0);
    }
    for (int i = 0; i < 10000; i++) {
        snprintf(buf, sizeof buf, "%x", i);
        assert_true(has(&sets, 3, buf));
        snprintf(buf, sizeof buf, "%x", i + 10000);
        assert_false(has(&sets, 3, buf));
    }
    kp_nonce_sets_free(&sets);
}

/* A copy of nonce_set.c's hash, used only to prove that the pairs below really collide and to
 * pick nonces by home slot: if the hash there changes, change it here too and find new pairs: a
 * birthday search over ~1M hex strings finds several within a second, and trying the 2^36
 * 9-hex-char extensions of a nonce finds one that collides with it in under a minute. */
static uint32_t set_hash(const char *p, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)len;
    size_t i = 0;
    for (; i < len; i += 8) {
        uint64_t w = 0;
        for (size_t k = 0; k < 8 && i + k < len; k++)
            w |= (uint64_t)(unsigned char)p[i + k] << (8 * k);
        h = (h ^ w) * 0xbf58476d1ce4e5b9u;
        h ^= h >> 32;
    }
    h *= 0x94d049bb133111ebu;
    h ^= h >> 29;
    return (uint32_t)(h >> 32);
}

/* Equal 32-bit hashes, different bytes: only the byte comparison can tell them apart. */
static void test_same_hash_different_bytes(void **state)
{
    (void)state;
    const char *pairs[][2] = {
        {"bec63a588132f272", "a619b75ce73a5eee"}, /* same length */
        {"e610305478c49ec3", "ddb470f02"},        /* different lengths */
        {"0123456789abcdef", "0123456789abcdef074aebb8f"}, /* one a prefix of the other */
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const char *a = pairs[i][0], *b = pairs[i][1];
        assert_int_equal(set_hash(a, strlen(a)), set_hash(b, strlen(b)));
        kp_nonce_sets sets = {0};
        assert_int_equal(add(&sets, 1, a), 0);
        assert_true(has(&sets, 1, a));
        assert_false(has(&sets, 1, b));
        assert_int_equal(add(&sets, 1, b), 0);
        assert_true(has(&sets, 1, a));
        assert_true(has(&sets, 1, b));
        kp_nonce_sets_free(&sets);

        /* Other order, and across a rehash. */
        assert_int_equal(add(&sets, 1, b), 0);
        assert_false(has(&sets, 1, a));
        char buf[16];
        for (int n = 0; n < 100; n++) {
            snprintf(buf, sizeof buf, "%d", n);
            assert_int_equal(add(&sets, 1, buf), 0);
        }
        assert_false(has(&sets, 1, a));
        assert_int_equal(add(&sets, 1, a), 0);
        assert_true(has(&sets, 1, a));
        assert_true(has(&sets, 1, b));
        kp_nonce_sets_free(&sets);
    }
}

/* Every prefix of a 64-byte nonce is a distinct nonce, whichever of them were added. */
static void test_prefixes(void **state)
{
    (void)state;
    const char *full = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(strlen(full), 64);
    kp_nonce_sets sets = {0};
    for (size_t len = 1; len <= 64; len += 2) /* odd lengths only */
        assert_int_equal(kp_nonce_sets_add(&sets, 9, full, len), 0);
    for (size_t len = 0; len <= 64; len++)
        assert_int_equal(kp_nonce_sets_contains(&sets, 9, full, len), len % 2 == 1);
    for (size_t len = 0; len <= 64; len += 2)
        assert_int_equal(kp_nonce_sets_add(&sets, 9, full, len), 0);
    for (size_t len = 0; len <= 64; len++)
        assert_true(kp_nonce_sets_contains(&sets, 9, full, len));
    assert_false(has(&sets, 9, "123"));
    kp_nonce_sets_free(&sets);

    /* Only the middle one: neither its prefix nor its extension is there. */
    assert_int_equal(add(&sets, 9, "0123"), 0);
    assert_false(has(&sets, 9, "012"));
    assert_false(has(&sets, 9, "01234"));
    assert_true(has(&sets, 9, "0123"));
    kp_nonce_sets_free(&sets);
}

/* Nonces are bytes: the empty nonce, NUL and 0xff bytes are all stored exactly. */
static void test_odd_bytes(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    assert_int_equal(kp_nonce_sets_add(&sets, 2, "", 0), 0);
    assert_true(kp_nonce_sets_contains(&sets, 2, "", 0));
    assert_false(kp_nonce_sets_contains(&sets, 2, "\0", 1));
    assert_int_equal(kp_nonce_sets_add(&sets, 2, "\0\0", 2), 0);
    assert_false(kp_nonce_sets_contains(&sets, 2, "\0", 1));
    assert_true(kp_nonce_sets_contains(&sets, 2, "\0\0", 2));
    assert_false(kp_nonce_sets_contains(&sets, 2, "\0\0\0", 3));
    assert_int_equal(kp_nonce_sets_add(&sets, 2, "\xff\x01", 2), 0);
    assert_true(kp_nonce_sets_contains(&sets, 2, "\xff\x01", 2));
    assert_false(kp_nonce_sets_contains(&sets, 2, "\xff\x02", 2));
    assert_false(kp_nonce_sets_contains(&sets, 3, "", 0)); /* another job */
    kp_nonce_sets_free(&sets);
}

/* The (i)th nonce of a deterministic mix of lengths 1..64, including many 1- and 64-byte ones. */
static size_t mixed_nonce(unsigned i, char out[64])
{
    static const char hex[] = "0123456789abcdef";
    size_t len = i % 4 == 0 ? 64 : i % 4 == 1 ? 1 : 1 + (i * 7u) % 64;
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15u + 1;
    for (size_t k = 0; k < len; k++) {
        out[k] = hex[x & 15];
        x = x >> 4 | x << 60;
        if (k % 16 == 15)
            x ^= i; /* keep long nonces distinct past 16 chars too */
    }
    return len;
}

/* Arena and slot growth, many times over, keep every nonce findable after each add; the only
 * 1-byte nonces are the 16 hex digits, so re-adds of those must be no-ops. */
static void test_mixed_growth(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    char buf[64];
    const unsigned n = 20000;
    for (unsigned i = 0; i < n; i++) {
        size_t len = mixed_nonce(i, buf);
        assert_int_equal(kp_nonce_sets_add(&sets, 4, buf, len), 0);
        assert_true(kp_nonce_sets_contains(&sets, 4, buf, len));
        if (i < 300) { /* every earlier nonce, through the first several rehashes */
            for (unsigned j = 0; j <= i; j++) {
                len = mixed_nonce(j, buf);
                assert_true(kp_nonce_sets_contains(&sets, 4, buf, len));
            }
        }
    }
    for (unsigned i = 0; i < n; i++) {
        size_t len = mixed_nonce(i, buf);
        assert_true(kp_nonce_sets_contains(&sets, 4, buf, len));
        if (len > 1) {
            buf[len - 1] = 'x'; /* not a hex digit: never added */
            assert_false(kp_nonce_sets_contains(&sets, 4, buf, len));
        }
        assert_false(kp_nonce_sets_contains(&sets, 5, buf, len)); /* another job */
    }
    kp_nonce_sets_free(&sets);
}

/* A table that grows is replaced in the list: its neighbours stay linked and prunable. */
static void test_growth_in_middle_of_list(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    for (int64_t j = 1; j <= 5; j++)
        assert_int_equal(add(&sets, j, "aa"), 0);
    char buf[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof buf, "%08x", i);
        assert_int_equal(add(&sets, 3, buf), 0);
    }
    for (int64_t j = 1; j <= 5; j++)
        assert_true(has(&sets, j, "aa"));
    assert_false(has(&sets, 0, "aa"));
    assert_false(has(&sets, 6, "aa"));
    assert_false(has(&sets, 2, "00000000"));
    assert_true(has(&sets, 3, "000003e7"));
    kp_nonce_sets_prune(&sets, 3);
    assert_false(has(&sets, 2, "aa"));
    assert_true(has(&sets, 3, "000003e7"));
    assert_true(has(&sets, 5, "aa"));
    kp_nonce_sets_prune(&sets, 4);
    assert_false(has(&sets, 3, "000003e7"));
    assert_true(has(&sets, 4, "aa"));
    kp_nonce_sets_free(&sets);
}

static void test_prune(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    /* Out of order on purpose: the list must still prune by id, not by position. */
    const int64_t jobs[] = {2, 5, 1, 4, 3};
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++)
        assert_int_equal(add(&sets, jobs[i], "aa"), 0);
    for (int64_t j = 1; j <= 5; j++)
        assert_true(has(&sets, j, "aa"));
    kp_nonce_sets_prune(&sets, 4);
    for (int64_t j = 1; j <= 3; j++)
        assert_false(has(&sets, j, "aa"));
    assert_true(has(&sets, 4, "aa"));
    assert_true(has(&sets, 5, "aa"));
    /* A pruned job starts empty if it is ever used again. */
    assert_int_equal(add(&sets, 6, "bb"), 0);
    kp_nonce_sets_prune(&sets, 100);
    assert_null(sets.tables);
    kp_nonce_sets_prune(&sets, 100); /* pruning an empty set is fine */
    kp_nonce_sets_free(&sets);
}

/* Equal hashes have the same home at every table size: through many doublings (the rehash
 * walks the old table in order) both stay in one probe chain and apart. */
static void test_same_hash_through_many_rehashes(void **state)
{
    (void)state;
    const char *a = "bec63a588132f272", *b = "a619b75ce73a5eee";
    assert_int_equal(set_hash(a, 16), set_hash(b, 16));
    kp_nonce_sets sets = {0};
    assert_int_equal(add(&sets, 1, a), 0);
    char buf[32];
    for (int n = 0; n < 50000; n++) { /* 8 slots to 128k: 14 rehashes */
        snprintf(buf, sizeof buf, "%x", n);
        assert_int_equal(add(&sets, 1, buf), 0);
        if ((n & (n - 1)) == 0) { /* at every power of two: across each rehash */
            assert_true(has(&sets, 1, a));
            assert_false(has(&sets, 1, b));
        }
    }
    assert_int_equal(add(&sets, 1, b), 0);
    assert_true(has(&sets, 1, a));
    assert_true(has(&sets, 1, b));
    kp_nonce_sets_free(&sets);
}

/* Nonces whose home is one of the last slots at every table size up to 256: their probe chain
 * wraps past the end to slot 0 and must survive each rehash (which reinserts slot 0 first). */
static void test_chain_wrapping_past_the_end(void **state)
{
    (void)state;
    enum { N = 150 };
    static char picked[N][17];
    unsigned got = 0;
    for (unsigned i = 0; got < N; i++) {
        snprintf(picked[got], sizeof picked[got], "%016x", i);
        if (set_hash(picked[got], 16) >= 0xff000000u) /* top 8 bits set */
            got++;
    }
    kp_nonce_sets sets = {0};
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(add(&sets, 2, picked[i]), 0);
        for (unsigned j = 0; j <= i; j++)
            assert_true(has(&sets, 2, picked[j]));
        assert_false(has(&sets, 2, "fffffffffffffffff")); /* 17 chars: never picked */
    }
    /* Ordinary nonces land among the wrapped ones at the start of the table. */
    char buf[32];
    for (int n = 0; n < 500; n++) {
        snprintf(buf, sizeof buf, "x%d", n);
        assert_int_equal(add(&sets, 2, buf), 0);
    }
    for (unsigned j = 0; j < N; j++)
        assert_true(has(&sets, 2, picked[j]));
    for (int n = 0; n < 500; n++) {
        snprintf(buf, sizeof buf, "x%d", n);
        assert_true(has(&sets, 2, buf));
        snprintf(buf, sizeof buf, "y%d", n);
        assert_false(has(&sets, 2, buf));
    }
    kp_nonce_sets_free(&sets);
}

/* A prefetch is only a hint: it creates no table and changes no answer, whatever it is given. */
static void test_prefetch_changes_nothing(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    char longest[65];
    memset(longest, 'a', sizeof longest);
    kp_nonce_sets_prefetch(&sets, 1, "ab", 2); /* no tables at all */
    assert_null(sets.tables);
    assert_int_equal(add(&sets, 1, "ab"), 0);
    kp_nonce_sets_prefetch(&sets, 1, "ab", 2);   /* present */
    kp_nonce_sets_prefetch(&sets, 1, "cd", 2);   /* absent */
    kp_nonce_sets_prefetch(&sets, 2, "ab", 2);   /* another job: no table */
    kp_nonce_sets_prefetch(&sets, 0, "ab", 2);   /* an older job: no table */
    kp_nonce_sets_prefetch(&sets, 1, "", 0);     /* empty */
    kp_nonce_sets_prefetch(&sets, 1, longest, 65); /* too long */
    assert_true(has(&sets, 1, "ab"));
    assert_false(has(&sets, 1, "cd"));
    assert_false(has(&sets, 2, "ab"));
    assert_false(has(&sets, 0, "ab"));
    kp_nonce_sets_prune(&sets, 1);
    assert_non_null(sets.tables); /* job 1's table */
    kp_nonce_sets_prune(&sets, 2);
    assert_null(sets.tables); /* and no other */
    kp_nonce_sets_free(&sets);
}

/* The server's pattern with the rate limit off: each job's set grows to thousands of nonces
 * while older jobs expire and are pruned; only the still-valid jobs answer yes. */
static void test_growth_with_jobs_expiring(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    char buf[32];
    const int per_job = 3000, valid = 2; /* -expire = 2 x -interval: the current and previous */
    for (int64_t job = 1; job <= 8; job++) {
        kp_nonce_sets_prune(&sets, job - valid + 1);
        for (int n = 0; n < per_job; n++) {
            snprintf(buf, sizeof buf, "%016x", (unsigned)(n * 2654435761u));
            assert_false(has(&sets, job, buf));
            kp_nonce_sets_prefetch(&sets, job, buf, 16);
            assert_int_equal(add(&sets, job, buf), 0);
            assert_true(has(&sets, job, buf));
        }
        for (int64_t old = 1; old <= job; old++) { /* the same nonces, for every job so far */
            snprintf(buf, sizeof buf, "%016x", (unsigned)(1234 * 2654435761u));
            assert_int_equal(has(&sets, old, buf), old > job - valid);
        }
    }
    kp_nonce_sets_free(&sets);
}

static void test_free_all(void **state)
{
    (void)state;
    kp_nonce_sets sets = {0};
    kp_nonce_sets_free(&sets); /* empty */
    for (int64_t j = 1; j <= 10; j++)
        assert_int_equal(add(&sets, j, "0123"), 0);
    kp_nonce_sets_free(&sets);
    assert_null(sets.tables);
    kp_nonce_sets_free(&sets); /* twice */
    assert_false(has(&sets, 1, "0123"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_contains),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_same_hash_different_bytes),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_odd_bytes),
        cmocka_unit_test(test_mixed_growth),
        cmocka_unit_test(test_growth_in_middle_of_list),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_same_hash_through_many_rehashes),
        cmocka_unit_test(test_chain_wrapping_past_the_end),
        cmocka_unit_test(test_prefetch_changes_nothing),
        cmocka_unit_test(test_growth_with_jobs_expiring),
        cmocka_unit_test(test_free_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
