/* The spool: an append-only file of events waiting for the mq, under -data_dir (issue 4).
 *
 * The pipeline's queue is the spool file (oldest) followed by its memory array (newest). Events
 * move to the spool when memory passes its bound, or at shutdown when the mq is down; they are
 * published from the spool before anything in memory, so order is kept, and a spool left by the
 * previous run is replayed first at the next start.
 *
 * Format: DIR/spool.jsonl holds one SPEC §3 event JSON per line; DIR/spool.offset holds the
 * byte offset of the first event not yet published (absent = 0), replaced atomically by
 * rename. A crash between a publish and the offset update republishes a few events, which
 * the stats store deduplicates by event_id; a torn last line (crash mid-append) is ignored.
 *
 * Threads: kp_spool_open runs on the loop thread before serving; every other call runs on the
 * pipeline's worker, one at a time, so the spool needs no lock. */
#ifndef KP_SPOOL_H
#define KP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "kupool/event.h"

typedef struct kp_spool kp_spool;

/* Prepares a spool in `dir` without creating anything; if a spool file exists, counts the
 * events after the committed offset into *events. Returns 0, KP_ENOMEM or KP_EIO (an existing
 * spool cannot be read). */
int kp_spool_open(const char *dir, kp_spool **out, uint64_t *events);

/* Appends events and flushes them to disk (fdatasync). Creates the directory and file on first
 * use. Returns 0 or KP_EIO (nothing is counted as spooled then). */
int kp_spool_append(kp_spool *sp, const kp_event *events, size_t n);

/* Reads up to `cap` events starting at the committed offset; sets *n (0 at the end). Lines that
 * do not parse are skipped and counted in *skipped. Returns 0 or KP_EIO. */
int kp_spool_read(kp_spool *sp, kp_event *out, size_t cap, size_t *n, size_t *skipped);

/* Marks everything the last kp_spool_read returned as published: persists the new offset, and
 * empties the file once every event is consumed. Returns 0 or KP_EIO. */
int kp_spool_commit(kp_spool *sp);

void kp_spool_close(kp_spool *sp);

#endif
