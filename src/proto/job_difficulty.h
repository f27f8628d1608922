/* The difficulty each job was sent to one session at (SPEC §8: a submit for job J is judged at the
 * difficulty in force when J was sent to that session).
 *
 * Difficulty only changes when a job is sent, so a session's history is a list of steps "from job
 * J on, D": the difficulty of job J is the one of the last step at or before J. The current step
 * is implicit (its first job here, its difficulty the session's current one); only the older
 * steps still covering a valid job are kept, in a small array that is allocated at the first
 * change and freed once pruning empties it. A session whose difficulty has not changed during
 * the last -expire therefore holds no heap at all. Pruned with the session's nonce sets
 * (kp_peer_prune), so they die together. Loop thread only, like the session. */
#ifndef KP_JOB_DIFFICULTY_H
#define KP_JOB_DIFFICULTY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kp_difficulty_step {
    int64_t from_job;
    uint64_t difficulty;
} kp_difficulty_step;

typedef struct kp_job_difficulty {
    kp_difficulty_step *older; /* owned; oldest first; NULL while empty */
    uint32_t n, cap;
    int64_t current_from;      /* first job sent at the current difficulty; 0 before any job */
} kp_job_difficulty;

/* Job `job_id` (newer than every job recorded) is being sent at `next`, while the session's
 * difficulty so far is `current`. Returns 0, or KP_ENOMEM when a change could not be recorded:
 * then nothing changed and the job must be sent at `current`. */
int kp_job_difficulty_record(kp_job_difficulty *h, int64_t job_id, uint64_t next, uint64_t current);

/* The difficulty job `job_id` was sent at, given the session's current one; `current` too for a
 * job never sent to the session (older than every step). */
uint64_t kp_job_difficulty_of(const kp_job_difficulty *h, int64_t job_id, uint64_t current);

/* Drops the steps that cover no job >= oldest_valid_id. */
void kp_job_difficulty_prune(kp_job_difficulty *h, int64_t oldest_valid_id);

void kp_job_difficulty_free(kp_job_difficulty *h);

#endif
