/* Tests for src/core/clock.c: the monotonic clock never goes back and agrees with itself across
 * units, a condvar deadline is normalized and in the future, the wall clock is the epoch's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"

static void test_monotonic(void **state)
{
    (void)state;
    uint64_t prev = kp_clock_mono_ns();
    for (int i = 0; i < 1000; i++) {
        uint64_t now = kp_clock_mono_ns();
        assert_true(now >= prev);
        prev = now;
    }
    uint64_t ms = kp_clock_mono_ms();
    uint64_t ns = kp_clock_mono_ns();
    assert_true(ns / 1000000u >= ms && ns / 1000000u - ms < 1000);
}

static void test_deadline(void **state)
{
    (void)state;
    static const uint64_t waits[] = {0, 1, 999, 1000, 1500, 86400000};
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
        uint64_t before = kp_clock_mono_ns();
        struct timespec t = kp_clock_mono_deadline(waits[i]);
        assert_true(t.tv_nsec >= 0 && t.tv_nsec < 1000000000L);
        uint64_t at = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
        assert_true(at >= before + waits[i] * 1000000u);
        assert_true(at - (before + waits[i] * 1000000u) < 1000000000u);
    }
}

static void test_wall(void **state)
{
    (void)state;
    int64_t ms = kp_clock_wall_ms();
    int64_t s = (int64_t)time(NULL);
    assert_true(ms / 1000 >= s - 1 && ms / 1000 <= s + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_wall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
