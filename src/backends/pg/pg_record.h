/* One record() as one PostgreSQL transaction on a given connection: the batch's node boots
 * locked and their ranges read (round trip 1), the dedupe resolved in C (pg_ranges.c), then the
 * one write (round trip 2), all pipelined in libpq's pipeline mode and committed by its sync.
 * The statements and why this counts each event once: pg_sql.h, docs/architecture.md
 * ("Exactly once: ranges of sequence numbers"). Connections, retries and logs stay in
 * stats_pg.c. */
#ifndef KP_PG_RECORD_H
#define KP_PG_RECORD_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kupool/event.h"
#include "pg_batch.h"
#include "pg_ranges.h"

/* What one transaction needs between calls, so the steady state allocates nothing.
 * Zero-initialise; release with kp_pg_recorder_free(). */
typedef struct kp_pg_recorder {
    kp_pg_dedupe dedupe;
    kp_pg_batch batch;
    kp_pg_range *read; /* the ranges read */
    size_t read_cap;
    /* The range this recorder wrote last, when its batch had one node boot: a next batch that
     * starts right after it takes the fast path (one round trip, no read), guarded in SQL. */
    bool have_tail;
    kp_pg_range tail;
    uint64_t fast, fast_missed; /* batches that took the fast path; guards that failed */
} kp_pg_recorder;

/* Why a transaction failed, for the log. */
typedef struct kp_pg_failure {
    char msg[512];
    bool fatal; /* the server ended the session (FATAL): the connection is as good as lost */
} kp_pg_failure;

/* Counts events[0..n) on `c` (idle, statements of kp_pg_record_stmts prepared), probing the
 * per-event table for KuPool ids when `legacy`. Returns 0 (committed), KP_ENOMEM / KP_EINVAL
 * (nothing sent, or the transaction left open) or KP_EIO with `f` filled. On any failure the
 * connection may be mid-pipeline: the caller drops it, which rolls the transaction back. */
int kp_pg_record_txn(kp_pg_recorder *r, PGconn *c, bool legacy, const kp_event *events, size_t n,
                     kp_pg_failure *f);

void kp_pg_recorder_free(kp_pg_recorder *r);

#endif
