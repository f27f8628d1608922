#include "submit.h"

#include <stdlib.h>

#include "difficulty.h"
#include "kupool/error.h"

void kp_peer_free(kp_peer *peer)
{
    free(peer->username);
    peer->username = NULL;
    kp_nonce_sets_free(&peer->nonces);
    kp_job_difficulty_free(&peer->job_difficulty);
}

void kp_peer_prune(kp_peer *peer, int64_t oldest_valid_id)
{
    kp_nonce_sets_prune(&peer->nonces, oldest_valid_id);
    kp_job_difficulty_prune(&peer->job_difficulty, oldest_valid_id);
}

static bool too_frequent(const kp_peer *peer, const kp_submit_env *env)
{
    return env->min_interval_ms > 0 && peer->has_accepted &&
           env->mono_ms - peer->last_accept_ms < env->min_interval_ms;
}

kp_outcome kp_submit_check(kp_peer *peer, const kp_request *req, const kp_submit_env *env,
                           kp_submit_params *params, uint64_t *difficulty, bool *oom)
{
    *oom = false;
    *difficulty = 1;
    if (!peer->username)
        return KP_OUTCOME_UNAUTHORIZED;

    kp_outcome oc = kp_submit_params_get(req, params);
    if (oc != KP_OUTCOME_OK)
        return oc;

    const kp_job *job = NULL;
    oc = kp_job_book_lookup(env->jobs, params->job_id, env->mono_ms, &job);
    if (oc != KP_OUTCOME_OK)
        return oc;

    if (too_frequent(peer, env))
        return KP_OUTCOME_TOO_FREQUENT;

    /* The result is computed before the duplicate check but only reported after it, so the
     * outcome keeps the SPEC order. Why: with the rate limit off a job's set outgrows the caches
     * and its probe is a miss to memory; started here, that load overlaps the SHA-256 instead of
     * stalling the loop. A duplicate now costs one hash it did not need; a client can make the
     * server hash just as well with fresh nonces, so that buys an attacker nothing. */
    kp_nonce_sets_prefetch(&peer->nonces, job->id, params->client_nonce,
                           params->client_nonce_len);
    unsigned char digest[KP_DIGEST_LEN];
    bool result_ok = kp_hasher_check_digest(env->hasher, job->server_nonce, KP_SERVER_NONCE_HEX,
                                            params->client_nonce, params->client_nonce_len,
                                            params->result, params->result_len, digest);

    if (kp_nonce_sets_contains(&peer->nonces, job->id, params->client_nonce,
                               params->client_nonce_len))
        return KP_OUTCOME_DUPLICATE;

    if (!result_ok)
        return KP_OUTCOME_INVALID_RESULT;

    /* SPEC §8, last: the digest the result check computed, against the job's target. With
     * difficulty off (1) this is one compare. */
    uint64_t d = env->fixed_difficulty
                     ? env->fixed_difficulty
                     : kp_job_difficulty_of(&peer->job_difficulty, job->id, peer->difficulty);
    if (d > 1 && !kp_difficulty_met(digest, d))
        return KP_OUTCOME_LOW_DIFFICULTY;

    if (kp_nonce_sets_add(&peer->nonces, job->id, params->client_nonce,
                          params->client_nonce_len) != 0) {
        *oom = true;
        return KP_OUTCOME_INVALID_RESULT;
    }
    peer->last_accept_ms = env->mono_ms;
    peer->has_accepted = true;
    *difficulty = d;
    return KP_OUTCOME_OK;
}
