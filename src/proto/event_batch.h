/* Batches of events on the queue (SPEC §3 v1.1, issue 12): the batch id and the NDJSON body.
 *
 * A batch is up to KP_MQ_BATCH_MAX events published as one message. Its id is
 * "<first event_id>+<event count>", e.g. "5f1e9c0a7b3d2e41-1000+256": event ids are unique per
 * node boot and a node's events are batched in acceptance order, so an id names exactly one set
 * of events, and the same events always get the same id — a republish, the spool record and a
 * replay after a restart cannot disagree. The pipeline fixes a batch's bounds once (see
 * pipeline.c), so the same id is never re-formed with other events.
 *
 * Body: each event's SPEC §3 JSON followed by "\n", oldest first (content_type
 * application/x-ndjson). Pure functions: no allocation, no I/O. */
#ifndef KP_EVENT_BATCH_H
#define KP_EVENT_BATCH_H

#include <stddef.h>

#include "kupool/event.h"
#include "kupool/mq.h"

/* Writes the id of the batch events[0..n) into `out` (KP_BATCH_ID_MAX + 1 bytes suffice).
 * Returns its length, or KP_EINVAL when n is 0 or the id does not fit. */
int kp_batch_id(const kp_event *first, size_t n, char *out, size_t cap);

/* Cuts events[0..n) into batches of `per` events (the last may be shorter), each with its id,
 * into out[0..cap); with per <= 1, into one v1 batch (id "": one message per event). The
 * batches point into `events`. Returns how many, or 0 when n is 0 or cap is too small. */
size_t kp_batch_seal(const kp_event *events, size_t n, size_t per, kp_mq_batch *out, size_t cap);

/* Room kp_batch_encode needs for n events in the worst case. */
#define KP_BATCH_BODY_MAX(n) ((size_t)(n) * (KP_EVENT_JSON_MAX + 1))

/* Writes the NDJSON body of events[0..n) into buf. Returns 0 and sets *len, or KP_EINVAL (an
 * event cannot be encoded, or cap is too small). */
int kp_batch_encode(const kp_event *events, size_t n, char *buf, size_t cap, size_t *len);

/* What kp_batch_decode found. */
typedef struct kp_batch_decoded {
    size_t events;    /* events written to out */
    size_t bad;       /* non-blank lines that are not events (skipped) */
    size_t first_bad; /* byte offset of the first bad line, when bad > 0 */
} kp_batch_decoded;

/* Parses an NDJSON body: every line that is not blank is one event; a missing "\n" after the
 * last line and a "\r" before a "\n" are accepted (other producers). A line that does not parse
 * is counted in ->bad and skipped, so one bad line does not cost the good ones. Returns 0, or
 * KP_EINVAL when the body holds more than `cap` lines with content (nothing is trusted then). */
int kp_batch_decode(const char *body, size_t len, kp_event *out, size_t cap,
                    kp_batch_decoded *res);

#endif
