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
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_free_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
