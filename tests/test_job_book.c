/* Job book tests (SPEC §2 Jobs). Time is a fake clock: the tests pass mono_ms/unix_ms directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "job_book.h"
#include "kupool/error.h"

static int is_lower_hex(const char *s, size_t len)
{
    if (strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static const kp_job *rotate(kp_job_book *book, uint64_t mono_ms, uint64_t unix_ms)
{
    const kp_job *job = NULL;
    assert_int_equal(kp_job_book_rotate(book, mono_ms, unix_ms, &job), 0);
    assert_non_null(job);
    assert_ptr_equal(job, kp_job_book_current(book));
    return job;
}

static void test_init_rejects_bad_config(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 0, 10, NULL), KP_EINVAL);
    kp_job_book_free(&book);

    char long_secret[258];
    memset(long_secret, 's', sizeof long_secret - 1);
    long_secret[sizeof long_secret - 1] = '\0';
    assert_int_equal(kp_job_book_init(&book, 10, 20, long_secret), KP_EINVAL);
    kp_job_book_free(&book);

    assert_int_equal(kp_job_book_init(&book, 10, 20, ""), 0);
    assert_int_equal(book.secret_len, 0);
    assert_null(kp_job_book_current(&book));
    assert_int_equal(kp_job_book_oldest_id(&book), 0);
    kp_job_book_free(&book);
}

static void test_local_ids_and_nonces(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 1000, 2000, NULL), 0);
    char seen[8][KP_SERVER_NONCE_HEX + 1];
    for (int i = 0; i < 8; i++) {
        const kp_job *job = rotate(&book, (uint64_t)i * 1000, 0);
        assert_int_equal(job->id, i + 1);
        assert_true(is_lower_hex(job->server_nonce, KP_SERVER_NONCE_HEX));
        assert_int_equal(job->issued_mono_ms, (uint64_t)i * 1000);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[j], job->server_nonce);
        memcpy(seen[i], job->server_nonce, sizeof seen[i]);
    }
    kp_job_book_free(&book);
}

static void test_current_always_valid(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 10, 20, NULL), 0);
    const kp_job *cur = rotate(&book, 100, 0);
    const kp_job *found = NULL;
    assert_int_equal(kp_job_book_lookup(&book, 1, 100, &found), KP_OUTCOME_OK);
    assert_ptr_equal(found, cur);
    assert_int_equal(kp_job_book_lookup(&book, 1, 100 + 1000000000u, &found), KP_OUTCOME_OK);
    assert_ptr_equal(found, cur);
    /* A late rotate keeps only the new job; it is valid however late we ask. */
    cur = rotate(&book, 5000, 0);
    assert_int_equal(kp_job_book_lookup(&book, 2, UINT64_MAX, &found), KP_OUTCOME_OK);
    assert_ptr_equal(found, cur);
    assert_int_equal(book.count, 1);
    kp_job_book_free(&book);
}

static void test_older_job_expiry_boundary(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 10, 20, NULL), 0);
    rotate(&book, 0, 0);
    rotate(&book, 10, 0);
    const kp_job *found = NULL;
    assert_int_equal(kp_job_book_lookup(&book, 1, 20, &found), KP_OUTCOME_OK);
    assert_non_null(found);
    assert_int_equal(found->id, 1);
    assert_int_equal(kp_job_book_lookup(&book, 1, 21, &found), KP_OUTCOME_TASK_EXPIRED);
    assert_null(found);
    assert_int_equal(kp_job_book_lookup(&book, 1, 21, NULL), KP_OUTCOME_TASK_EXPIRED);
    assert_int_equal(kp_job_book_lookup(&book, 2, 21, NULL), KP_OUTCOME_OK);
    kp_job_book_free(&book);
}

static void test_not_exist(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 10, 20, NULL), 0);
    assert_int_equal(kp_job_book_lookup(&book, 1, 0, NULL), KP_OUTCOME_TASK_NOT_EXIST);
    rotate(&book, 0, 0);
    rotate(&book, 10, 0);
    kp_job dummy = {0};
    const kp_job *found = &dummy; /* lookup must reset it */
    assert_int_equal(kp_job_book_lookup(&book, 0, 10, &found), KP_OUTCOME_TASK_NOT_EXIST);
    assert_null(found);
    assert_int_equal(kp_job_book_lookup(&book, -1, 10, NULL), KP_OUTCOME_TASK_NOT_EXIST);
    assert_int_equal(kp_job_book_lookup(&book, INT64_MIN, 10, NULL), KP_OUTCOME_TASK_NOT_EXIST);
    assert_int_equal(kp_job_book_lookup(&book, 3, 10, NULL), KP_OUTCOME_TASK_NOT_EXIST);
    assert_int_equal(kp_job_book_lookup(&book, INT64_MAX, 10, NULL), KP_OUTCOME_TASK_NOT_EXIST);
    kp_job_book_free(&book);
}

static void test_dropped_jobs_expired(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 10, 20, NULL), 0);
    for (uint64_t t = 0; t <= 30; t += 10)
        rotate(&book, t, 0);
    /* At 30, job 1 (issued at 0) is 30 > 20 old: gone from the book. */
    assert_int_equal(kp_job_book_oldest_id(&book), 2);
    assert_int_equal(book.count, 3);
    assert_int_equal(kp_job_book_lookup(&book, 1, 30, NULL), KP_OUTCOME_TASK_EXPIRED);
    assert_int_equal(kp_job_book_lookup(&book, 2, 30, NULL), KP_OUTCOME_OK);
    assert_int_equal(kp_job_book_lookup(&book, 3, 30, NULL), KP_OUTCOME_OK);
    assert_int_equal(kp_job_book_lookup(&book, 4, 30, NULL), KP_OUTCOME_OK);
    kp_job_book_free(&book);
}

static void test_memory_bounded(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 10, 20, NULL), 0);
    for (uint64_t i = 0; i < 10000; i++) {
        const kp_job *job = rotate(&book, i * 10, 0);
        assert_int_equal(job->id, (int64_t)i + 1);
        assert_true(book.count <= 3);
    }
    assert_true(book.cap <= 4);
    assert_int_equal(kp_job_book_oldest_id(&book), 9998);
    kp_job_book_free(&book);
}

/* Rotations faster than the interval make the ring grow; grow once the head has wrapped, so the
 * re-linearization is exercised, then check every job is still found in order. */
static void test_growth_keeps_order(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 10, 20, NULL), 0);
    for (uint64_t t = 0; t <= 50; t += 10)
        rotate(&book, t, 0);
    assert_true(book.head != 0);
    size_t cap_before = book.cap;
    for (int i = 0; i < 20; i++)
        rotate(&book, 50, 0);
    assert_true(book.cap > cap_before);
    assert_int_equal(book.count, 23);
    assert_int_equal(kp_job_book_oldest_id(&book), 4);
    for (int64_t id = 4; id <= 26; id++) {
        const kp_job *found = NULL;
        assert_int_equal(kp_job_book_lookup(&book, id, 50, &found), KP_OUTCOME_OK);
        assert_int_equal(found->id, id);
    }
    assert_int_equal(kp_job_book_lookup(&book, 3, 50, NULL), KP_OUTCOME_TASK_EXPIRED);
    /* Once time moves on, the burst expires again and only the current job is left. */
    rotate(&book, 1000, 0);
    assert_int_equal(book.count, 1);
    assert_int_equal(kp_job_book_current(&book)->id, 27);
    kp_job_book_free(&book);
}

static void test_scale_out_deterministic(void **state)
{
    (void)state;
    kp_job_book a, b;
    assert_int_equal(kp_job_book_init(&a, 1000, 2000, "secret"), 0);
    assert_int_equal(kp_job_book_init(&b, 1000, 2000, "secret"), 0);
    const kp_job *ja = rotate(&a, 5, 12345);
    const kp_job *jb = rotate(&b, 777777, 12001);
    assert_int_equal(ja->id, 12);
    assert_int_equal(jb->id, 12);
    assert_string_equal(ja->server_nonce, jb->server_nonce);
    /* printf '%s' 12 | openssl dgst -sha256 -hmac secret, first 32 hex chars */
    assert_string_equal(ja->server_nonce, "f416753299f2f548826f19245f0ea43e");

    kp_job_book other;
    assert_int_equal(kp_job_book_init(&other, 1000, 2000, "other"), 0);
    const kp_job *jo = rotate(&other, 5, 12345);
    assert_int_equal(jo->id, 12);
    assert_string_not_equal(jo->server_nonce, ja->server_nonce);

    kp_job_book_free(&a);
    kp_job_book_free(&b);
    kp_job_book_free(&other);
}

static void test_scale_out_early_timer(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 1000, 2000, "secret"), 0);
    const kp_job *first = rotate(&book, 0, 12000);
    char nonce[KP_SERVER_NONCE_HEX + 1];
    memcpy(nonce, first->server_nonce, sizeof nonce);
    /* The timer fires 1 ms before the boundary: same job, nothing new issued. */
    const kp_job *again = rotate(&book, 999, 12999);
    assert_int_equal(again->id, 12);
    assert_string_equal(again->server_nonce, nonce);
    assert_int_equal(again->issued_mono_ms, 0);
    assert_int_equal(book.count, 1);
    assert_int_equal(book.last_id, 12);
    const kp_job *next = rotate(&book, 1000, 13000);
    assert_int_equal(next->id, 13);
    assert_int_equal(book.count, 2);
    assert_int_equal(kp_job_book_lookup(&book, 12, 1000, NULL), KP_OUTCOME_OK);
    assert_int_equal(kp_job_book_lookup(&book, 14, 1000, NULL), KP_OUTCOME_TASK_NOT_EXIST);
    kp_job_book_free(&book);
}

static void test_ms_to_boundary(void **state)
{
    (void)state;
    kp_job_book book;
    assert_int_equal(kp_job_book_init(&book, 1000, 2000, "secret"), 0);
    assert_int_equal(kp_job_book_ms_to_boundary(&book, 12345), 655);
    assert_int_equal(kp_job_book_ms_to_boundary(&book, 12000), 1000);
    assert_int_equal(kp_job_book_ms_to_boundary(&book, 12999), 1);
    kp_job_book_free(&book);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_config),
        cmocka_unit_test(test_local_ids_and_nonces),
        cmocka_unit_test(test_current_always_valid),
        cmocka_unit_test(test_older_job_expiry_boundary),
        cmocka_unit_test(test_not_exist),
        cmocka_unit_test(test_dropped_jobs_expired),
        cmocka_unit_test(test_memory_bounded),
        cmocka_unit_test(test_growth_keeps_order),
        cmocka_unit_test(test_scale_out_deterministic),
        cmocka_unit_test(test_scale_out_early_timer),
        cmocka_unit_test(test_ms_to_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
