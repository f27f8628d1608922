/* The statistics-store backend vtable: per (username, UTC minute) submit counts and difficulty
 * sums (SPEC §3, §8).
 *
 * An implementation embeds `kp_stats` as its first member and is built by a constructor of the
 * form `int kp_stats_NAME_open(const kp_config *cfg, kp_stats **out)`; src/backends/backends.c
 * maps `-store NAME` to it and refuses (KP_EINVAL) a vtable whose version is not
 * KP_STATS_VERSION or whose mandatory slot is NULL: `name`, `record`, `query` and `free` are
 * mandatory, `evictions` is not.
 *
 * Threads: `record` runs on the consumer thread only; `query` may run on any thread, concurrently
 * with `record`; `free` runs after the consumer has stopped. */
#ifndef KUPOOL_STATS_H
#define KUPOOL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "kupool/error.h"
#include "kupool/event.h"

/* Still 1 after SPEC §8 added `difficulty_sum`: no slot's signature changed, and the version
 * guards the slots, not the structs they pass. Every store is compiled into the same binary as
 * its callers (static libraries, a built-in registry), so the struct's layout cannot differ
 * between a store and the admin code; what did change is the contract, written beside each slot
 * below: `record` sums difficulties, `query` returns them. */
#define KP_STATS_VERSION 1

typedef struct kp_minute_count {
    int64_t minute; /* Unix seconds of the UTC minute's start */
    int64_t count;
    /* The sum of kp_event_difficulty() over the `count` events: equal to `count` with difficulty
     * off. A double as in PostgreSQL's DOUBLE PRECISION column: exact while the sum stays below
     * 2^53 (a minute of 150 TH/s), rounded to 53 bits beyond. */
    double difficulty_sum;
} kp_minute_count;

/* What a bounded store dropped since it was opened, in (username, minute) entries. */
typedef struct kp_stats_evictions {
    uint64_t expired; /* older than the store's retention window */
    uint64_t capped;  /* dropped, oldest first, to stay within the store's size caps */
} kp_stats_evictions;

typedef struct kp_stats kp_stats;

struct kp_stats {
    unsigned version; /* KP_STATS_VERSION */
    const char *name; /* "memory", "pg", ... */

    /* Counts each event once in (username, kp_event_minute(ev)), adding kp_event_difficulty(ev)
     * to that minute's difficulty_sum in the same step, all or nothing. An event whose
     * event_id was already counted is skipped, so a redelivered batch is harmless. Returns 0
     * (committed), KP_EIO (nothing counted: retry later) or KP_ENOMEM. Events are borrowed. */
    int (*record)(kp_stats *st, const kp_event *events, size_t n);

    /* The counts and difficulty sums of `username`, oldest minute first. On success `*out` is a
     * malloc'd array the caller frees with free() (NULL when `*n` is 0). The admin endpoint runs
     * queries one at a time on one thread, so a store that can block bounds its query time (KP_ETIMEDOUT/KP_EIO). */
    int (*query)(kp_stats *st, const char *username, kp_minute_count **out, size_t *n);

    /* Releases everything. Mandatory. */
    void (*free)(kp_stats *st);

    /* Optional: NULL for a store that keeps what it is given (PostgreSQL). Fills `out`; any
     * thread. Last, so an implementation that predates it (designated initializers) leaves it
     * NULL and stays valid under the same KP_STATS_VERSION. */
    void (*evictions)(kp_stats *st, kp_stats_evictions *out);
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

/* KP_ENOTSUP (and `out` zeroed) when the store does not evict. */
static inline int kp_stats_get_evictions(kp_stats *st, kp_stats_evictions *out)
{
    if (!st->evictions) {
        out->expired = out->capped = 0;
        return KP_ENOTSUP;
    }
    st->evictions(st, out);
    return 0;
}

static inline void kp_stats_free(kp_stats *st)
{
    if (st)
        st->free(st);
}

#endif
