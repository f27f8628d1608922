/* The statistics-store backend vtable: per (username, UTC minute) submit counts (SPEC §3).
 *
 * An implementation embeds `kp_stats` as its first member and is built by a constructor of the
 * form `int kp_stats_NAME_open(const kp_config *cfg, kp_stats **out)`; src/backends.c maps
 * `-store NAME` to it.
 *
 * Threads: `record` runs on the consumer thread only; `query` may run on any thread, concurrently
 * with `record`; `free` runs after the consumer has stopped. */
#ifndef KUPOOL_STATS_H
#define KUPOOL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "kupool/event.h"

#define KP_STATS_VERSION 1

typedef struct kp_minute_count {
    int64_t minute; /* Unix seconds of the UTC minute's start */
    int64_t count;
} kp_minute_count;

typedef struct kp_stats kp_stats;

struct kp_stats {
    unsigned version; /* KP_STATS_VERSION */
    const char *name; /* "memory", "pg", ... */

    /* Counts each event once in (username, kp_event_minute(ev)), all or nothing. An event whose
     * event_id was already counted is skipped, so a redelivered batch is harmless. Returns 0
     * (committed), KP_EIO (nothing counted: retry later) or KP_ENOMEM. Events are borrowed. */
    int (*record)(kp_stats *st, const kp_event *events, size_t n);

    /* The counts of `username`, oldest minute first. On success `*out` is a malloc'd array the
     * caller frees with free() (NULL when `*n` is 0). */
    int (*query)(kp_stats *st, const char *username, kp_minute_count **out, size_t *n);

    /* Releases everything. Mandatory. */
    void (*free)(kp_stats *st);
};

static inline int kp_stats_record(kp_stats *st, const kp_event *events, size_t n)
{
    return st->record(st, events, n);
}

static inline int kp_stats_query(kp_stats *st, const char *username, kp_minute_count **out,
                                 size_t *n)
{
    return st->query(st, username, out, n);
}

static inline void kp_stats_free(kp_stats *st)
{
    if (st)
        st->free(st);
}

#endif
