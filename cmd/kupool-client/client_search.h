/* The search for shares (SPEC §8), one session's state: the target in force, the job being
 * searched, the shares found and waiting for a submit slot, the hashes counted, and the budget
 * that paces them (-hashrate). Pure: no libuv, no clock of its own (times come in as
 * arguments), so every rule here is unit-tested (tests/test_client_units.c). The loop-side
 * driver that hands out time slices is client_miner.c.
 *
 * The rules:
 * - Difficulty is on for a connection once the server sent `set_difficulty` on it. Before that
 *   (a server with difficulty off) every hash is a share and there is nothing to search: the
 *   modes compute one hash per submit, as before SPEC §8, and -hashrate does not apply.
 * - A set_difficulty applies to the job that follows it (the server sends it directly before
 *   that job): kc_search_announce() keeps it, kc_search_job() puts it in force.
 * - A share meets the target when its digest, as a 256-bit big-endian number, is <= T. The
 *   comparison is memcmp of the 64 lowercase hex digits of the digest against the 64 of the
 *   target the server sent: digits of equal width order exactly like the numbers they spell,
 *   and the hex is what a submit carries anyway, so no digest is converted back and forth.
 * - Found shares wait in a small FIFO for the mode's next submit slot (the server's rate limit
 *   comes first). While they wait, hashing goes on; a share found with the queue full is
 *   dropped and counted. A new job drops the shares of older jobs (counted as stale): only the
 *   current job is sure to be valid (with -expire as short as one interval the previous one may
 *   already be gone), and a stratum miner does the same on a clean job.
 * - A share's `hashes` are those tried since the previous share was found (kept or dropped),
 *   across jobs: on average D for difficulty D. */
#ifndef KC_CLIENT_SEARCH_H
#define KC_CLIENT_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client_submit.h"
#include "hasher.h"

#define KC_TARGET_HEX 64
/* SPEC §2's string for a correct hash above the target (matched as text: a server that knows
 * no difficulty never sends it). */
#define KC_LOW_DIFFICULTY "Low difficulty share"
#define KC_SEARCH_QUEUE 4 /* shares waiting for a slot: a burst of Poisson arrivals fits */

/* Hashes per second with credit for at most KC_BUCKET_BURST_S seconds (and at least 2 hashes):
 * after a loop stall the search does not race to catch up (achieved then honestly falls below
 * asked). */
#define KC_BUCKET_BURST_S 0.1

typedef struct kc_bucket {
    double rate;      /* hashes per second; 0 = unlimited */
    double credit;    /* hashes allowed now */
    uint64_t last_ns; /* last refill, 0 = never */
} kc_bucket;

void kc_bucket_init(kc_bucket *b, double rate);

/* Hashes allowed at monotonic time now_ns (UINT64_MAX when unlimited). */
uint64_t kc_bucket_available(kc_bucket *b, uint64_t now_ns);

/* Spends n hashes of the credit. */
void kc_bucket_spend(kc_bucket *b, uint64_t n);

typedef struct kc_share {
    int64_t job_id;
    uint64_t difficulty; /* in force for job_id when it was found */
    uint64_t hashes;     /* tried since the previous share */
    char nonce[KC_NONCE_HEX + 1];
    char result[KC_RESULT_HEX + 1];
} kc_share;

typedef struct kc_search {
    /* this connection */
    bool on;                           /* a set_difficulty arrived */
    bool announced;                    /* next_* wait for the next job */
    uint64_t next_difficulty;
    char next_target[KC_TARGET_HEX + 1];
    uint64_t difficulty;               /* in force for job_id */
    char target[KC_TARGET_HEX + 1];
    int64_t job_id;                    /* being searched, 0 = none */
    char server_nonce[65];
    size_t server_nonce_len;
    kc_share queue[KC_SEARCH_QUEUE];
    uint8_t head, len;
    /* the session's whole run (kept across connections) */
    kc_bucket bucket;
    uint64_t since_share;              /* hashes since the last share found */
    uint64_t hashes;                   /* every hash the search computed */
    uint64_t found;                    /* shares found (queued or dropped) */
    uint64_t dropped_full;             /* found while KC_SEARCH_QUEUE shares waited */
    uint64_t dropped_stale;            /* waiting when a newer job came */
} kc_search;

/* Zeroes everything; `hashrate` per second caps the search (0 = as fast as it goes). */
void kc_search_init(kc_search *s, double hashrate);

/* The connection ended: difficulty off, no job, no shares (they die with the connection and
 * count as stale). Counters and the budget stay. */
void kc_search_reset(kc_search *s);

/* Checks a target from set_difficulty: 64 hex digits (either case). Writes the lowercase form
 * and a NUL to out. Returns 0 or KP_EINVAL. */
int kc_target_parse(const char *hex, size_t len, char out[KC_TARGET_HEX + 1]);

/* The 64 lowercase hex digits of `target` written for difficulty 1 (all ff): every hash. */
extern const char kc_target_any[KC_TARGET_HEX + 1];

/* True when the digest (64 lowercase hex digits) is <= the target (likewise). */
static inline bool kc_meets_target(const char *result_hex, const char *target_hex)
{
    return memcmp(result_hex, target_hex, KC_TARGET_HEX) <= 0;
}

/* set_difficulty: D and its target (already checked by kc_target_parse), for the next job. */
void kc_search_announce(kc_search *s, uint64_t difficulty, const char *target);

/* A job notification: a pending announcement comes into force; queued shares of older jobs are
 * dropped. The nonce (1..64 hex digits) is copied. */
void kc_search_job(kc_search *s, int64_t job_id, const char *server_nonce);

/* Difficulty on and a job to search. */
static inline bool kc_search_active(const kc_search *s)
{
    return s->on && s->job_id != 0;
}

/* Tries up to max_hashes fresh nonces from `seq` on the current job and queues every share.
 * Returns the hashes computed (fewer only when the hasher failed, or 0 when not active);
 * *found gets the shares found by this call. */
uint64_t kc_search_run(kc_search *s, kp_hasher *h, kc_nonce_seq *seq, uint64_t max_hashes,
                       uint32_t *found);

/* The oldest share waiting, or NULL. */
static inline const kc_share *kc_search_peek(const kc_search *s)
{
    return s->len ? &s->queue[s->head] : NULL;
}

/* Removes the oldest share (after the mode sent it). */
void kc_search_pop(kc_search *s);

#endif
