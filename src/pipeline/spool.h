/* The spool: an append-only file of events waiting for the mq, under -data_dir (issue 4; batches
 * issue 12).
 *
 * The pipeline's queue is the spool file (oldest) followed by its memory array (newest). Events
 * move to the spool when memory passes its bound, or at shutdown when the mq is down; they are
 * published from the spool before anything in memory, and a spool left by the previous run is
 * replayed first at the next start.
 *
 * Format: DIR/spool.jsonl holds lines of two kinds:
 *   - an event: its SPEC §3 JSON (the only kind a v1 spool, and a spool written at -mq_batch 1,
 *     holds; such events are not in a batch yet);
 *   - a batch marker {"kupool_batch":"<batch id>","events":N}: the N event lines after it are
 *     one batch with that id (SPEC §3 v1.1: a batch that was handed to the mq keeps its id and
 *     its events through the spool and a restart).
 * DIR/spool.offset holds the byte offset of the first line not yet published (absent = 0),
 * replaced atomically by rename. A crash between a publish and the offset update republishes a
 * few batches, which the stats store deduplicates by event_id; a torn last line, and a batch
 * whose lines stop before N (crash mid-append), are cut off at open (they were never counted as
 * spooled).
 *
 * Reading: batches are returned whole with their recorded id; a batch that lost lines (a corrupt
 * disk) keeps only its good events and gets the id of what is left (kp_batch_id), so an id never
 * names other events. Runs of events outside any batch (a v1 spool) are cut into fresh batches
 * of the caller's size.
 *
 * Threads: kp_spool_open runs on the loop thread before serving; every other call runs on the
 * pipeline's worker, one at a time, so the spool needs no lock. */
#ifndef KP_SPOOL_H
#define KP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "kupool/event.h"
#include "kupool/mq.h"

typedef struct kp_spool kp_spool;

/* Prepares a spool in `dir` without creating anything; if a spool file exists, counts the
 * events after the committed offset into *events. Returns 0, KP_ENOMEM or KP_EIO (an existing
 * spool cannot be read). */
int kp_spool_open(const char *dir, kp_spool **out, uint64_t *events);

/* Appends the batches (a marker before each one with an id) and flushes them to disk
 * (fdatasync). Creates the directory and file on first use. Returns 0 or KP_EIO (nothing is
 * counted as spooled then). */
int kp_spool_append(kp_spool *sp, const kp_mq_batch *batches, size_t n);

/* One read: the caller's buffers in, what was found out. */
typedef struct kp_spool_chunk {
    kp_event *events;     /* in: room for `cap` events */
    size_t cap;           /* in: at least KP_MQ_BATCH_MAX, or a batch may never fit */
    kp_mq_batch *batches; /* in: room for `cap` batches; they point into `events` */
    size_t per;           /* in: events per fresh batch for events outside a batch (<= 1: v1) */
    size_t n;             /* out: events */
    size_t nbatches;      /* out: batches */
    size_t skipped;       /* out: event lines that do not parse (they were counted as spooled) */
    size_t bad_markers;   /* out: marker lines that do not parse, or name too many events */
} kp_spool_chunk;

/* Reads whole batches, up to `cap` events, starting at the committed offset (0 events at the
 * end). Returns 0 or KP_EIO. */
int kp_spool_read(kp_spool *sp, kp_spool_chunk *c);

/* Marks everything the last kp_spool_read returned as published: persists the new offset, and
 * empties the file once every event is consumed. Returns 0 or KP_EIO. */
int kp_spool_commit(kp_spool *sp);

void kp_spool_close(kp_spool *sp);

#endif
