/* Submit checks (SPEC §2, §8): the one place that decides whether a submit is accepted.
 *
 * The order is the contract: authorized -> params -> job exists -> job not expired -> rate ->
 * duplicate -> result -> difficulty. First failure wins. Only an accepted submit changes the peer
 * (its last-accept time and its nonce set for the job). */
#ifndef KP_SUBMIT_H
#define KP_SUBMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "hasher.h"
#include "job_difficulty.h"
#include "job_book.h"
#include "nonce_set.h"
#include "outcome.h"
#include "vardiff.h"

/* The protocol state of one session, whatever its transport. */
typedef struct kp_peer {
    char *username;          /* NULL until authorized; owned */
    uint64_t last_accept_ms; /* monotonic time of the last accepted submit */
    bool has_accepted;       /* false until the first accepted submit */
    bool difficulty_told;    /* a set_difficulty was sent (SPEC §8: always before the first job) */
    uint32_t errors_in_row;  /* malformed messages since the last well-formed one */
    kp_nonce_sets nonces;    /* accepted client nonces per still-valid job */
    /* SPEC §8 (56 bytes): the current difficulty (set at authorize; 1 with difficulty off), and
     * with vardiff the retarget window and the difficulty each valid job was sent at. */
    uint64_t difficulty;
    kp_vardiff vardiff;
    kp_job_difficulty job_difficulty;
} kp_peer;

/* Releases what the peer owns. */
void kp_peer_free(kp_peer *peer);

/* Drops what the peer keeps for jobs older than oldest_valid_id: the nonce sets and the job
 * difficulties die together. */
void kp_peer_prune(kp_peer *peer, int64_t oldest_valid_id);

/* What a submit check needs besides the peer. */
typedef struct kp_submit_env {
    const kp_job_book *jobs;
    kp_hasher *hasher;
    uint64_t mono_ms;         /* now, monotonic */
    uint64_t min_interval_ms; /* -min_submit_interval; 0 = no rate limit */
    /* The difficulty every job is judged at (1 with difficulty off: no target check), or 0 with
     * vardiff: then the difficulty the job was sent to this peer at (peer->job_difficulty). */
    uint64_t fixed_difficulty;
} kp_submit_env;

/* Runs every check on a parsed submit request. On KP_OUTCOME_OK the peer has recorded the
 * submit, *params points into `req` (for the event) and *difficulty is the difficulty the share
 * was judged at. When the nonce cannot be recorded for lack of memory, *oom is set and the
 * outcome is not OK: the caller closes the session rather than accept a submit it could not
 * deduplicate. */
kp_outcome kp_submit_check(kp_peer *peer, const kp_request *req, const kp_submit_env *env,
                           kp_submit_params *params, uint64_t *difficulty, bool *oom);

#endif
