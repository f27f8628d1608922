/* The PostgreSQL store's exactly-once bookkeeping, the part that needs no database: which events
 * of a batch to count, given the ranges of sequence numbers already counted, and how those ranges
 * change (SPEC §3 v1.1; the design and its failure analysis: docs/architecture.md, "Exactly
 * once: ranges of sequence numbers").
 *
 * KuPool's event ids are "<node boot id: 16 lowercase hex>-<sequence: decimal from 1>"
 * (src/proto/protocol.c). For those the store keeps, per node boot, disjoint ranges
 * kupool_processed_ranges(node, lo, hi) of the sequence numbers it counted; in-order delivery
 * keeps one row per boot, because every batch extends the range before it. Ids of any other
 * shape (foreign producers) are not planned here: they keep the per-event table.
 *
 * One batch: kp_pg_dedupe_plan() parses and sorts the ids, and says which nodes to lock and
 * which spans of sequence numbers to read; the store reads the ranges overlapping or touching
 * those spans (under the nodes' locks), kp_pg_dedupe_mark_seen() marks ids the legacy per-event
 * table already holds, and kp_pg_dedupe_resolve() marks every event FRESH or not and computes
 * the rows to delete and to upsert so that the ranges stay disjoint and coalesced. Pure: tested
 * in tests/test_pg_ranges.c. */
#ifndef KP_PG_RANGES_H
#define KP_PG_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kupool/event.h"

/* The largest sequence number kept in a range: one less than INT64_MAX, so `hi + 1` (adjacency)
 * never overflows, here or in SQL. A larger one makes the id foreign. */
#define KP_PG_SEQ_MAX (INT64_MAX - 1)

/* Parses a KuPool event id: exactly 16 lowercase hex digits, '-', and a decimal 1..KP_PG_SEQ_MAX
 * without leading zeros (so that every counted id has one spelling). `*node` is the 64 bits of
 * the boot id as PostgreSQL's BIGINT stores them (two's complement). False for any other id. */
bool kp_pg_seq_id(const char *id, int64_t *node, int64_t *seq);

typedef enum kp_pg_fate {
    KP_PG_FOREIGN, /* not a KuPool id: the per-event table decides */
    KP_PG_REPEAT,  /* the same id appeared earlier in this batch */
    KP_PG_SEEN,    /* already counted: inside a range, or in the legacy per-event table */
    KP_PG_FRESH,   /* count it */
} kp_pg_fate;

typedef struct kp_pg_range {
    int64_t node, lo, hi; /* lo <= hi, both 1..KP_PG_SEQ_MAX */
} kp_pg_range;

/* One batch's plan and outcome; kept between batches so the steady state allocates nothing.
 * Zero-initialise; release with kp_pg_dedupe_free(). */
typedef struct kp_pg_dedupe {
    size_t n, cap;
    uint8_t *fate; /* kp_pg_fate per event */
    int64_t *node, *seq; /* per event, when not FOREIGN */
    uint32_t *order;     /* the non-foreign events by (node, seq, index) */
    size_t nordered, nforeign;

    int64_t *locks; /* the distinct nodes, ascending: lock them in this order */
    size_t nlocks;
    kp_pg_range *spans; /* runs of consecutive sequence numbers per node: what to read */
    size_t nspans;

    kp_pg_range *upserts; /* ranges to write (insert, or update `hi` of the row at lo) */
    size_t nupserts;
    kp_pg_range *deletes; /* rows (node, lo) merged into an upsert; `hi` unused */
    size_t ndeletes;
    kp_pg_range *existing; /* scratch: the ranges read, sorted */
    size_t existing_cap;
} kp_pg_dedupe;

/* Plans events[0..n): every event FOREIGN, REPEAT, or (provisionally) FRESH. Returns 0,
 * KP_ENOMEM, or KP_EINVAL when n does not fit in 32 bits. */
int kp_pg_dedupe_plan(kp_pg_dedupe *d, const kp_event *events, size_t n);

/* Marks (node, seq) as counted before (the legacy per-event table holds its id). Unknown ids
 * are ignored. Call between plan and resolve. */
void kp_pg_dedupe_mark_seen(kp_pg_dedupe *d, int64_t node, int64_t seq);

/* With the ranges read for the plan's spans (any order; the same row twice is fine): marks the
 * events inside them SEEN and fills upserts/deletes. Seen-before events outside every range are
 * added to the ranges too, so they never leave a hole; rows that overlap or touch are coalesced
 * whenever the batch reaches them. Returns 0, KP_ENOMEM, or KP_EINVAL for a row outside the
 * table's invariants (lo > hi, or outside 1..KP_PG_SEQ_MAX), which this code never writes. */
int kp_pg_dedupe_resolve(kp_pg_dedupe *d, const kp_pg_range *read, size_t nread);

void kp_pg_dedupe_free(kp_pg_dedupe *d);

#endif
