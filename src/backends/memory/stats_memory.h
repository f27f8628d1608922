/* The memory stats store's bounds (issue 9: it used to keep every username it ever saw, so one
 * client authorizing fresh names could grow it by gigabytes an hour). docs/observability.md. */
#ifndef KP_STATS_MEMORY_H
#define KP_STATS_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "kupool/stats.h"

/* Minutes more than this before the newest minute counted are forgotten. The window is anchored
 * on the data, not the wall clock: events are stamped at acceptance, so while they flow the
 * newest minute is now, and the store stays deterministic (and a test replaying a fixed date
 * keeps its counts). */
#define KP_STATS_MEMORY_RETENTION_S (24 * 3600)
#define KP_STATS_MEMORY_MAX_USERS 100000        /* least recently counted users go first */
#define KP_STATS_MEMORY_MAX_ENTRIES 1000000     /* (username, minute) entries over all users */

typedef struct kp_stats_memory_limits {
    int64_t retention_s;
    size_t max_users;
    size_t max_entries;
} kp_stats_memory_limits;

/* kp_stats_memory_open() with explicit bounds (kp_stats_memory_open uses the defaults above).
 * Returns 0, KP_EINVAL (a zero bound) or KP_ENOMEM. */
int kp_stats_memory_open_limits(const kp_stats_memory_limits *lim, kp_stats **out);

#endif
