/* The difficulty each job was sent to a session at (SPEC §8): steps recorded only on a change,
 * looked up by job, pruned with expired jobs, no heap while the difficulty stays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "job_difficulty.h"

static void test_no_change_no_heap(void **state)
{
    (void)state;
    kp_job_difficulty h = {0};
    assert_int_equal(kp_job_difficulty_of(&h, 5, 64), 64); /* nothing sent: current */
    for (int64_t job = 5; job < 100; job++)
        assert_int_equal(kp_job_difficulty_record(&h, job, 64, 64), 0);
    assert_null(h.older);
    assert_int_equal(h.current_from, 5);
    assert_int_equal(kp_job_difficulty_of(&h, 7, 64), 64);
    assert_int_equal(kp_job_difficulty_of(&h, 4, 64), 64); /* never sent: current */
    kp_job_difficulty_free(&h);
}

static void test_steps_lookup_and_prune(void **state)
{
    (void)state;
    kp_job_difficulty h = {0};
    /* jobs 10, 11 at 100; 12 at 400; 13 at 400; 14 at 1600; 15 at 400 */
    assert_int_equal(kp_job_difficulty_record(&h, 10, 100, 100), 0);
    assert_int_equal(kp_job_difficulty_record(&h, 11, 100, 100), 0);
    assert_int_equal(kp_job_difficulty_record(&h, 12, 400, 100), 0);
    assert_int_equal(kp_job_difficulty_record(&h, 13, 400, 400), 0);
    assert_int_equal(kp_job_difficulty_record(&h, 14, 1600, 400), 0);
    assert_int_equal(kp_job_difficulty_record(&h, 15, 400, 1600), 0);
    uint64_t cur = 400;
    static const uint64_t want[] = {[10] = 100, [11] = 100, [12] = 400, [13] = 400, [14] = 1600,
                                    [15] = 400};
    for (int64_t job = 10; job <= 15; job++)
        assert_int_equal(kp_job_difficulty_of(&h, job, cur), want[job]);
    assert_int_equal(kp_job_difficulty_of(&h, 9, cur), cur);  /* never sent */
    assert_int_equal(kp_job_difficulty_of(&h, 16, cur), cur); /* not yet sent */
    assert_int_equal(h.n, 3);

    kp_job_difficulty_prune(&h, 12); /* the step of jobs 10..11 is dead */
    assert_int_equal(h.n, 2);
    for (int64_t job = 12; job <= 15; job++)
        assert_int_equal(kp_job_difficulty_of(&h, job, cur), want[job]);
    kp_job_difficulty_prune(&h, 13); /* 12..13 still needs its step */
    assert_int_equal(h.n, 2);
    kp_job_difficulty_prune(&h, 15); /* only the current step covers 15.. */
    assert_int_equal(h.n, 0);
    assert_null(h.older);
    assert_int_equal(kp_job_difficulty_of(&h, 15, cur), 400);
    kp_job_difficulty_free(&h);
    assert_int_equal(h.current_from, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_change_no_heap),
        cmocka_unit_test(test_steps_lookup_and_prune),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
