/* The guard on its own (src/backends/rabbit/guard.c): a call blocked on a socket whose deadline
 * passes is woken by the guard's shutdown(2), and disarm says so; a call that ends in time is
 * left alone and its socket stays usable; slots are independent. Socket pairs stand in for the
 * broker: nobody ever writes to them, so a read blocks until the guard acts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "kupool/error.h"
#include "rabbit/guard.h"

static void make_pair(int fds[2]) { assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }

static void test_overdue_read_is_woken(void **state)
{
    (void)state;
    kp_guard *g = NULL;
    assert_int_equal(kp_guard_start(1, &g), 0);
    int fds[2];
    make_pair(fds);
    uint64_t start = kp_guard_now_ms();
    kp_guard_arm(g, 0, fds[0], start + 150);
    char c;
    ssize_t n = read(fds[0], &c, 1); /* blocks: only the guard can end it */
    uint64_t took = kp_guard_now_ms() - start;
    assert_int_equal(n, 0); /* shut down for reading: end of stream */
    assert_true(took >= 150);
    assert_true(took < 2000);
    assert_true(kp_guard_disarm(g, 0));
    /* Shut down for good: writes fail too, and the fd is still ours to close. */
    assert_int_equal(send(fds[0], "x", 1, MSG_NOSIGNAL), -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(close(fds[0]), 0);
    close(fds[1]);
    kp_guard_stop(g);
}

static void test_call_in_time_is_left_alone(void **state)
{
    (void)state;
    kp_guard *g = NULL;
    assert_int_equal(kp_guard_start(1, &g), 0);
    int fds[2];
    make_pair(fds);
    kp_guard_arm(g, 0, fds[0], kp_guard_now_ms() + 100);
    assert_int_equal(write(fds[1], "y", 1), 1);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_false(kp_guard_disarm(g, 0));
    usleep(250 * 1000); /* past the old deadline: a disarmed slot is not tripped later */
    assert_int_equal(send(fds[0], "z", 1, MSG_NOSIGNAL), 1);
    assert_int_equal(read(fds[1], &c, 1), 1);
    assert_int_equal(c, 'z');
    /* Arming again with a later deadline replaces the earlier one. */
    kp_guard_arm(g, 0, fds[0], kp_guard_now_ms() + 50);
    kp_guard_arm(g, 0, fds[0], kp_guard_now_ms() + 60000);
    usleep(200 * 1000);
    assert_false(kp_guard_disarm(g, 0));
    assert_int_equal(send(fds[0], "w", 1, MSG_NOSIGNAL), 1);
    close(fds[0]);
    close(fds[1]);
    kp_guard_stop(g);
}

/* Two slots, two deadlines: only the overdue one is shut down, and the earlier deadline armed
 * after a later one is still honoured (the thread is woken to re-plan). */
static void test_slots_are_independent(void **state)
{
    (void)state;
    kp_guard *g = NULL;
    assert_int_equal(kp_guard_start(2, &g), 0);
    int a[2], b[2];
    make_pair(a);
    make_pair(b);
    uint64_t start = kp_guard_now_ms();
    kp_guard_arm(g, 1, b[0], start + 60000);
    kp_guard_arm(g, 0, a[0], start + 100);
    char c;
    assert_int_equal(read(a[0], &c, 1), 0);
    assert_true(kp_guard_now_ms() - start < 2000);
    assert_true(kp_guard_disarm(g, 0));
    assert_false(kp_guard_disarm(g, 1));
    assert_int_equal(send(b[0], "v", 1, MSG_NOSIGNAL), 1);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    kp_guard_stop(g); /* with nothing armed: the thread waits without a deadline */
}

static void test_start_needs_a_slot(void **state)
{
    (void)state;
    kp_guard *g = NULL;
    assert_int_equal(kp_guard_start(0, &g), KP_EINVAL);
    assert_null(g);
    kp_guard_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overdue_read_is_woken),
        cmocka_unit_test(test_call_in_time_is_left_alone),
        cmocka_unit_test(test_slots_are_independent),
        cmocka_unit_test(test_start_needs_a_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
