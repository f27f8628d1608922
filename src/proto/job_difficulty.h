/* The difficulty each job was sent to one session at (SPEC §8: a submit for job J is judged at the
 * difficulty in force when J was sent to that session).
 *
 * Difficulty only changes when a job is sent, so a session's history is a list of steps "from job
 * J on, D": the difficulty of job J is the one of the last step at or before J. A step is
 * recorded only when the difficulty changes, and pruned with the session's nonce sets
 * (kp_peer_prune) once a newer step covers the oldest valid job, so the list holds at most one
 * step per valid job and usually one. Used with vardiff only: a fixed difficulty needs no
 * history, and then nothing is allocated. Loop thread only, like the session. */
#ifndef KP_JOB_DIFFICULTY_H
#define KP_JOB_DIFFICULTY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kp_difficulty_step {
    int64_t from_job;
    uint64_t difficulty;
} kp_difficulty_step;

typedef struct kp_job_difficulty {
    kp_difficulty_step *steps; /* owned; oldest first; NULL while empty */
    uint32_t n, cap;
} kp_job_difficulty;

/* Records that job `job_id` (newer than every recorded step) is sent at `d`; a step is added only
 * when d differs from the last one. Returns 0 or KP_ENOMEM (nothing changed). */
int kp_job_difficulty_record(kp_job_difficulty *h, int64_t job_id, uint64_t d);

/* The difficulty job `job_id` was sent at, or `current` when it was never sent (older than the
 * first step, or nothing recorded). */
uint64_t kp_job_difficulty_of(const kp_job_difficulty *h, int64_t job_id, uint64_t current);

/* Drops the steps that cover no job >= oldest_valid_id. */
void kp_job_difficulty_prune(kp_job_difficulty *h, int64_t oldest_valid_id);

void kp_job_difficulty_free(kp_job_difficulty *h);

#endif
