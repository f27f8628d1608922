/* See job_difficulty.h. An array, not a list: it holds one or two steps nearly always, so one
 * small block with no per-step pointer is both the smallest and the fastest form. */
#include "job_difficulty.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define INITIAL_STEPS 2

int kp_job_difficulty_record(kp_job_difficulty *h, int64_t job_id, uint64_t d)
{
    if (h->n > 0 && h->steps[h->n - 1].difficulty == d)
        return 0;
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? 2 * h->cap : INITIAL_STEPS;
        kp_difficulty_step *grown = realloc(h->steps, (size_t)cap * sizeof *grown);
        if (!grown)
            return KP_ENOMEM;
        h->steps = grown;
        h->cap = cap;
    }
    h->steps[h->n++] = (kp_difficulty_step){.from_job = job_id, .difficulty = d};
    return 0;
}

uint64_t kp_job_difficulty_of(const kp_job_difficulty *h, int64_t job_id, uint64_t current)
{
    for (uint32_t i = h->n; i-- > 0;)
        if (h->steps[i].from_job <= job_id)
            return h->steps[i].difficulty;
    return current;
}

void kp_job_difficulty_prune(kp_job_difficulty *h, int64_t oldest_valid_id)
{
    /* Step i covers jobs from_job .. steps[i+1].from_job - 1: dead once that end is too old. */
    uint32_t dead = 0;
    while (dead + 1 < h->n && h->steps[dead + 1].from_job <= oldest_valid_id)
        dead++;
    if (dead == 0)
        return;
    memmove(h->steps, h->steps + dead, (size_t)(h->n - dead) * sizeof *h->steps);
    h->n -= dead;
}

void kp_job_difficulty_free(kp_job_difficulty *h)
{
    free(h->steps);
    *h = (kp_job_difficulty){0};
}
