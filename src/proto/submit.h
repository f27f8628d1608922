/* Submit checks (SPEC §2): the one place that decides whether a submit is accepted.
 *
 * The order is the contract: authorized -> params -> job exists -> job not expired -> rate ->
 * duplicate -> result. First failure wins. Only an accepted submit changes the peer (its
 * last-accept time and its nonce set for the job). */
#ifndef KP_SUBMIT_H
#define KP_SUBMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "hasher.h"
#include "job_book.h"
#include "nonce_set.h"
#include "outcome.h"

/* The protocol state of one session, whatever its transport. */
typedef struct kp_peer {
    char *username;          /* NULL until authorized; owned */
    uint64_t last_accept_ms; /* monotonic time of the last accepted submit */
    bool has_accepted;       /* false until the first accepted submit */
    uint32_t errors_in_row;  /* malformed messages since the last well-formed one */
    kp_nonce_sets nonces;    /* accepted client nonces per still-valid job */
} kp_peer;

/* Releases what the peer owns. */
void kp_peer_free(kp_peer *peer);

/* What a submit check needs besides the peer. */
typedef struct kp_submit_env {
    const kp_job_book *jobs;
    kp_hasher *hasher;
    uint64_t mono_ms;         /* now, monotonic */
    uint64_t min_interval_ms; /* -min_submit_interval; 0 = no rate limit */
} kp_submit_env;

/* Runs every check on a parsed submit request. On KP_OUTCOME_OK the peer has recorded the
 * submit and *params points into `req` (for the event). When the nonce cannot be recorded for
 * lack of memory, *oom is set and the outcome is not OK: the caller closes the session rather
 * than accept a submit it could not deduplicate. */
kp_outcome kp_submit_check(kp_peer *peer, const kp_request *req, const kp_submit_env *env,
                           kp_submit_params *params, bool *oom);

#endif
