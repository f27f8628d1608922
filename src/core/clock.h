/* The process's clocks, in one place: a monotonic clock for deadlines and durations, the wall
 * clock for timestamps people read. Code on the loop thread that wants loop time keeps uv_now():
 * that is the loop's cached clock, not a helper. */
#ifndef KP_CLOCK_H
#define KP_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC (the clock libuv's uv_hrtime() reads) in nanoseconds and milliseconds. */
uint64_t kp_clock_mono_ns(void);
uint64_t kp_clock_mono_ms(void);

/* CLOCK_REALTIME in milliseconds since the Unix epoch. */
int64_t kp_clock_wall_ms(void);

/* The CLOCK_MONOTONIC instant `ms` from now, as pthread_cond_timedwait() wants it for a
 * condition variable created with pthread_condattr_setclock(CLOCK_MONOTONIC). */
struct timespec kp_clock_mono_deadline(uint64_t ms);

#endif
