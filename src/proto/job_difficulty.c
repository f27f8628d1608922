/* See job_difficulty.h. An array, not a list: it holds one older step nearly always, and only for
 * the -expire after a change, so one small block with no per-step pointer is both the smallest
 * and the fastest form. */
#include "job_difficulty.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define INITIAL_STEPS 2

int kp_job_difficulty_record(kp_job_difficulty *h, int64_t job_id, uint64_t next, uint64_t current)
{
    if (h->current_from == 0) {
        h->current_from = job_id; /* the first job: its difficulty is the current one */
        return 0;
    }
    if (next == current)
        return 0;
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? 2 * h->cap : INITIAL_STEPS;
        kp_difficulty_step *grown = realloc(h->older, (size_t)cap * sizeof *grown);
        if (!grown)
            return KP_ENOMEM;
        h->older = grown;
        h->cap = cap;
    }
    h->older[h->n++] = (kp_difficulty_step){.from_job = h->current_from, .difficulty = current};
    h->current_from = job_id;
    return 0;
}

uint64_t kp_job_difficulty_of(const kp_job_difficulty *h, int64_t job_id, uint64_t current)
{
    if (h->current_from == 0 || job_id >= h->current_from)
        return current;
    for (uint32_t i = h->n; i-- > 0;)
        if (h->older[i].from_job <= job_id)
            return h->older[i].difficulty;
    return current;
}

void kp_job_difficulty_prune(kp_job_difficulty *h, int64_t oldest_valid_id)
{
    /* Step i covers jobs from_job .. (the next step's from_job) - 1: dead once that end is too
     * old. The current step is never dead. */
    uint32_t dead = 0;
    while (dead < h->n &&
           (dead + 1 < h->n ? h->older[dead + 1].from_job : h->current_from) <= oldest_valid_id)
        dead++;
    if (dead == 0)
        return;
    if (dead == h->n) {
        free(h->older);
        h->older = NULL;
        h->n = h->cap = 0;
        return;
    }
    memmove(h->older, h->older + dead, (size_t)(h->n - dead) * sizeof *h->older);
    h->n -= dead;
}

void kp_job_difficulty_free(kp_job_difficulty *h)
{
    free(h->older);
    *h = (kp_job_difficulty){0};
}
