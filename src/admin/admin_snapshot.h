/* What the admin endpoint reports about the rest of the process, as plain numbers and strings.
 *
 * This is the whole interface between the admin layer and the layers it reports on: the admin
 * code never sees a server, a session, a pipeline or a backend registry, only a snapshot filled
 * on demand by a source (kp_admin_source). So /metrics and /healthz can be rendered, and tested,
 * from a hand-made snapshot, and a new thing to report is one field here, one line in the
 * provider (src/app/admin_source.c) and one in metrics.c.
 *
 * Strings in a snapshot are borrowed from the provider and valid only until the callback that
 * asked for the snapshot returns: the endpoint renders its answer before it yields the loop. */
#ifndef KP_ADMIN_SNAPSHOT_H
#define KP_ADMIN_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kupool/stats.h"

/* Room for every protocol outcome; the provider asserts at compile time that they fit. */
#define KP_ADMIN_MAX_OUTCOMES 32

/* Buckets of the session difficulty histogram (SPEC §8): bucket k < 27 counts the sessions whose
 * difficulty d has 4^(k-1) < d <= 4^k (k = 0: d = 1), the last one those above 4^26. The provider
 * asserts that the protocol keeps the same buckets. */
#define KP_ADMIN_DIFFICULTY_BUCKETS 28

/* Responses for one protocol outcome, under its metrics label ("ok", "duplicate", ...). */
typedef struct kp_admin_outcome_count {
    const char *label;
    uint64_t submits;  /* responses to submit requests */
    uint64_t messages; /* responses to every protocol message (authorize, submit, malformed) */
} kp_admin_outcome_count;

/* Sessions the server closed, by reason (the `reason` label of kupool_sessions_closed_total). */
typedef struct kp_admin_closed_counts {
    uint64_t auth_timeout;
    uint64_t too_long;
    uint64_t slow;
    uint64_t max_errors;
    uint64_t drain_timeout;
} kp_admin_closed_counts;

typedef struct kp_admin_pipeline_counts {
    uint64_t accepted;       /* accepted submits handed to the pipeline */
    uint64_t published;      /* events the mq confirmed */
    uint64_t publish_errors; /* failed publish calls */
    uint64_t spool_errors;   /* failed spool writes or reads */
    uint64_t waiting;        /* accepted and not yet confirmed (spooled included) */
    uint64_t spooled;        /* of those, the ones in the spool file */
    bool failing;            /* the last publish failed: the mq is down */
} kp_admin_pipeline_counts;

/* All zero and false when the server runs without a consumer (-consume=false). */
typedef struct kp_admin_consumer_counts {
    uint64_t counted; /* events counted in the stats store and acknowledged */
    uint64_t errors;  /* failed consumes and stats writes */
    bool failing;     /* the last consume or stats write failed and has not succeeded since */
    bool stats_side;  /* with `failing`: it was the stats store (else the mq) */
} kp_admin_consumer_counts;

typedef struct kp_admin_snapshot {
    bool shutting_down;

    uint64_t sessions;    /* authorized sessions */
    uint64_t connections; /* open miner connections, authorized or not */
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* closed at accept: -max_conns reached */
    kp_admin_closed_counts closed;

    uint64_t jobs_issued;
    uint64_t job_id;            /* the current job, 0 before the first */
    uint64_t last_broadcast_us; /* duration of the last completed broadcast */

    kp_admin_outcome_count outcomes[KP_ADMIN_MAX_OUTCOMES]; /* in the protocol's order */
    size_t noutcomes;

    kp_admin_pipeline_counts pipeline;
    kp_admin_consumer_counts consumer;

    /* SPEC §8. Sums as doubles: Prometheus values are doubles, and a sum of difficulties up to
     * 2^53 each outgrows 64-bit integers. */
    double shares_difficulty; /* sum of the difficulties of accepted shares */
    uint64_t session_difficulty[KP_ADMIN_DIFFICULTY_BUCKETS]; /* authorized sessions per bucket,
                                                                  not cumulative */
    double session_difficulty_sum; /* sum of their current difficulties */

    const char *mq_name;    /* "memory", "rabbit", ... */
    const char *stats_name; /* "memory", "pg", ... */

    /* What a bounded stats store dropped; `store_evicts` false for a store that keeps
     * everything (the family is then left out of /metrics). */
    bool store_evicts;
    kp_stats_evictions evictions;
} kp_admin_snapshot;

/* Where the endpoint gets what it reports. Copied by kp_admin_open; `ctx` and `stats` are
 * borrowed and must outlive the endpoint. */
typedef struct kp_admin_source {
    /* Fills every field of `out` (which the caller zeroed). Runs on the loop thread, once per
     * /metrics or /healthz request, so it must be cheap and must not block. */
    void (*snapshot)(void *ctx, kp_admin_snapshot *out);
    void *ctx;
    /* The store /stats queries run against, on the endpoint's query thread (admin_query.h). */
    kp_stats *stats;
} kp_admin_source;

#endif
