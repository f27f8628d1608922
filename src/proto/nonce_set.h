/* The client nonces a session had accepted, per job (SPEC §2 "Duplicate submission").
 *
 * Entries are keyed by job, so when a job leaves the job book its whole set is dropped with
 * kp_nonce_sets_prune(): memory stays bounded by the jobs still valid. Empty until the first
 * accepted submit, so an idle session pays only the struct. */
#ifndef KP_NONCE_SET_H
#define KP_NONCE_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kp_nonce_table kp_nonce_table; /* one job's set; private to nonce_set.c */

typedef struct kp_nonce_sets {
    kp_nonce_table *tables; /* singly linked, newest job first */
} kp_nonce_sets;

/* True when `nonce` (exact bytes) was added for `job_id`. */
bool kp_nonce_sets_contains(const kp_nonce_sets *sets, int64_t job_id, const char *nonce,
                            size_t len);

/* Starts loading the memory that contains() and add() will read for `nonce`, and returns at once:
 * call it, do other work (the SHA-256 check), then look up. Only a hint: it changes nothing. */
void kp_nonce_sets_prefetch(const kp_nonce_sets *sets, int64_t job_id, const char *nonce,
                            size_t len);

/* Adds `nonce` for `job_id`. Returns 0 or KP_ENOMEM. len <= 64. */
int kp_nonce_sets_add(kp_nonce_sets *sets, int64_t job_id, const char *nonce, size_t len);

/* Drops the sets of every job whose id is < oldest_valid_id. */
void kp_nonce_sets_prune(kp_nonce_sets *sets, int64_t oldest_valid_id);

/* Drops everything. */
void kp_nonce_sets_free(kp_nonce_sets *sets);

#endif
