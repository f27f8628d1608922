/* The event: one accepted submit, as it travels loop -> mq -> consumer -> stats (SPEC §3).
 *
 * A fixed-size value type: batches are plain arrays that one owner hands to the next, so no
 * event ever shares memory with a session. */
#ifndef KUPOOL_EVENT_H
#define KUPOOL_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define KP_EVENT_ID_MAX 47 /* "<16 hex node id>-<decimal sequence>" fits easily */
#define KP_USERNAME_MAX 255 /* SPEC: the one username limit (codec, admin, client, events) */
#define KP_CLIENT_NONCE_MAX 64

/* Room kp_event_to_json() needs for any event the server makes (a validated UTF-8 username
 * escapes to at most 2 bytes per byte; ids and nonces are plain ASCII), NUL included. */
#define KP_EVENT_JSON_MAX (KP_USERNAME_MAX * 6 + 256)

typedef struct kp_event {
    char event_id[KP_EVENT_ID_MAX + 1];         /* unique per accepted submit; dedupe key */
    char username[KP_USERNAME_MAX + 1];         /* valid UTF-8, no control characters */
    int64_t job_id;
    char client_nonce[KP_CLIENT_NONCE_MAX + 1]; /* as the client sent it */
    int64_t ts_ms;                              /* wall clock at acceptance, Unix milliseconds */
    uint64_t difficulty; /* SPEC §8: what the share was checked against, 1..2^53 (1 when off);
                          * 0 is read as 1 (kp_event_difficulty), so zeroed events stay valid */
} kp_event;

#define KP_DIFFICULTY_MAX (UINT64_C(1) << 53) /* SPEC §8: integers exact in a double */

/* The difficulty an event counts with: its field, or 1 when the field was never set. */
static inline uint64_t kp_event_difficulty(const kp_event *ev)
{
    return ev->difficulty ? ev->difficulty : 1;
}

/* The UTC minute an event is counted in, as Unix seconds (a multiple of 60). */
int64_t kp_event_minute(const kp_event *ev);

/* Writes the SPEC §3 JSON object (no newline) and a NUL into buf. Returns its length (without
 * the NUL), or KP_EINVAL when cap is too small or ts_ms falls outside the years 0000-9999. */
int kp_event_to_json(const kp_event *ev, char *buf, size_t cap);

/* Parses what kp_event_to_json() wrote. Returns 0 or KP_EINVAL (missing field, wrong type, too
 * long). `ev` is fully overwritten on success. `difficulty` is optional (a v1 event has none and
 * counts as 1); when present it is an integer 1..KP_DIFFICULTY_MAX. */
int kp_event_from_json(const char *json, size_t len, kp_event *ev);

#endif
