/* One record()'s parameters: the array literals each statement of pg_sql.h takes, built from
 * the batch and its dedupe plan (pg_ranges.h), with the KuPool events' counts aggregated per
 * (username, minute) here in C, so the database upserts one row per pair rather than sorting and
 * grouping thousands of events. Pure: tests/test_pg_sql.c. Kept between batches so the steady
 * state allocates nothing. */
#ifndef KP_PG_BATCH_H
#define KP_PG_BATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "kupool/event.h"
#include "pg_ranges.h"
#include "pg_sql.h"

typedef struct kp_pg_cell kp_pg_cell;

typedef struct kp_pg_batch {
    /* Before the ranges are read: KP_PG_SQL_LOCK, KP_PG_SQL_READ_RANGES, KP_PG_SQL_LEGACY. */
    kp_pg_text locks, span_nodes, span_los, span_his, seq_ids;
    /* After: the KP_PG_WRITE_ARRAYS array parameters of KP_PG_SQL_WRITE, in order. */
    kp_pg_text write[KP_PG_WRITE_ARRAYS];

    kp_pg_cell *cells; /* the aggregation table: open addressing, a power of two */
    size_t ncells;
    uint32_t *used; /* the cells filled, in order of first appearance */
    size_t nused;
} kp_pg_batch;

/* The read statements' parameters for plan `d` of events[0..d->n). `seq_ids` (the KuPool ids,
 * for the legacy probe) only when `legacy`. Returns 0 or KP_ENOMEM. */
int kp_pg_batch_reads(kp_pg_batch *b, const kp_event *events, const kp_pg_dedupe *d,
                      bool legacy);

/* The write's parameters once `d` is resolved: the foreign events, the range rows to delete and
 * upsert, and the FRESH events' counts and difficulty sums per (username, minute).
 * `*needed` is false when the write would change nothing (a batch seen entirely before).
 * Returns 0 or KP_ENOMEM. */
int kp_pg_batch_writes(kp_pg_batch *b, const kp_event *events, const kp_pg_dedupe *d,
                       bool *needed);

void kp_pg_batch_free(kp_pg_batch *b);

#endif
