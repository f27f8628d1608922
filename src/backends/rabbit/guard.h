/* The guard: a deadline watchdog for blocking calls on sockets (issue 10; used by mq_rabbit.c).
 *
 * Some client libraries wait in poll() with no deadline of their own (rabbitmq-c while a send
 * does not fit, e.g. a broker under a memory alarm that stops reading), so a socket timeout
 * cannot bound a call. The guard does: the caller arms a slot with its socket and a deadline
 * before the call and disarms it after. A thread waits for the earliest deadline; when one passes
 * with the slot still armed, it shutdown(2)s that socket (SHUT_RDWR, never close(2): the fd stays
 * the caller's), which wakes the blocked call with an error and makes every later send or recv on
 * it fail, and marks the slot tripped.
 *
 * Rules for the caller: one slot per thread that makes calls (slots are not shared); disarm
 * before closing the socket, so the guard never shuts down a descriptor that was reused; a
 * tripped socket cannot be used again (shutdown is final), so drop the connection.
 *
 * Deadlines are CLOCK_MONOTONIC milliseconds (kp_guard_now_ms, which is kp_clock_mono_ms). All
 * calls are thread-safe. */
#ifndef KP_GUARD_H
#define KP_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kp_guard kp_guard;

/* Starts the guard thread with `slots` slots, all disarmed. Returns 0, KP_EINVAL (no slots) or
 * KP_ENOMEM (no memory, or the thread cannot start). */
int kp_guard_start(size_t slots, kp_guard **out);

/* Stops and joins the thread and frees the guard. Armed slots are dropped untouched. */
void kp_guard_stop(kp_guard *g);

/* Watches `fd` until `deadline_ms`, replacing what the slot watched before; a negative fd
 * disarms. */
void kp_guard_arm(kp_guard *g, size_t slot, int fd, uint64_t deadline_ms);

/* Stops watching; returns true when the deadline passed since the slot was armed (the socket has
 * been shut down). */
bool kp_guard_disarm(kp_guard *g, size_t slot);

/* Now, on the clock deadlines are measured with. */
uint64_t kp_guard_now_ms(void);

#endif
