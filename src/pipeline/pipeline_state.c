#include "pipeline_state.h"

static bool is_draining(kp_pipeline_phase phase)
{
    return phase == KP_PIPELINE_DRAINING || phase == KP_PIPELINE_DRAIN_TO_SPOOL;
}

kp_pipeline_phase kp_pipeline_phase_after(kp_pipeline_phase phase, kp_pipeline_event ev,
                                          kp_pipeline_facts facts)
{
    if (ev == KP_PIPELINE_CLOSE || phase == KP_PIPELINE_CLOSED)
        return KP_PIPELINE_CLOSED;
    if (ev == KP_PIPELINE_DRAIN_FINISHED || phase == KP_PIPELINE_DRAINED)
        return KP_PIPELINE_DRAINED; /* a job that outlived the drain changes nothing */
    switch (ev) {
    case KP_PIPELINE_DRAIN_STARTED:
        if (phase == KP_PIPELINE_DRAIN_TO_SPOOL)
            return phase;
        /* The mq is already failing: spool now rather than wait for it through the timeout. */
        return facts.mq_failing && facts.have_spool ? KP_PIPELINE_DRAIN_TO_SPOOL
                                                    : KP_PIPELINE_DRAINING;
    case KP_PIPELINE_DRAIN_DEADLINE:
        if (!is_draining(phase))
            return phase; /* the drain timer runs only while draining */
        return facts.have_spool ? KP_PIPELINE_DRAIN_TO_SPOOL : KP_PIPELINE_DRAINED;
    case KP_PIPELINE_PUBLISH_FAILED:
        /* Shutting down: spool the rest now rather than retry a failing mq until the deadline. */
        if (phase == KP_PIPELINE_DRAINING && facts.have_spool)
            return KP_PIPELINE_DRAIN_TO_SPOOL;
        return phase;
    case KP_PIPELINE_APPEND_FAILED:
        /* Serving, the events stay in memory (over the bound) and the disk is tried again later;
         * draining, nothing else could hold them. */
        return is_draining(phase) ? KP_PIPELINE_DRAINED : phase;
    case KP_PIPELINE_DRAIN_FINISHED:
    case KP_PIPELINE_CLOSE:
        break; /* handled above */
    }
    return phase;
}

bool kp_pipeline_retries(kp_pipeline_phase phase)
{
    return phase != KP_PIPELINE_DRAINED && phase != KP_PIPELINE_CLOSED;
}

static size_t at_most(uint64_t n, size_t cap) { return n < cap ? (size_t)n : cap; }

kp_pipeline_action kp_pipeline_next(kp_pipeline_phase phase, const kp_pipeline_inputs *in)
{
    kp_pipeline_action wait = {.kind = KP_PIPELINE_WAIT};
    if (in->job_running || !(phase == KP_PIPELINE_SERVING || is_draining(phase)))
        return wait;
    bool to_spool = phase == KP_PIPELINE_DRAIN_TO_SPOOL;
    size_t job_max = in->job_max ? in->job_max : KP_PIPELINE_BATCH_MAX;
    if (job_max > KP_PIPELINE_JOB_MAX)
        job_max = KP_PIPELINE_JOB_MAX;
    size_t n = in->in_memory;
    if (is_draining(phase) && n == 0 && (in->spooled == 0 || to_spool))
        return (kp_pipeline_action){.kind = KP_PIPELINE_FINISH_DRAIN};

    bool over = n > in->memory_bound || (to_spool && n > 0);
    bool want_append = in->have_spool && over && !in->spool_paused;
    bool can_publish = !in->backing_off && !to_spool && (in->spooled > 0 || n > 0);
    /* Appends and publishes take turns while both are due: under a sustained overload with a
     * healthy mq, appends alone would keep winning and nothing would ever be published. Memory
     * then overshoots its bound by at most what arrives during one publish. */
    if (want_append && !(can_publish && in->appended_last)) {
        size_t excess = to_spool ? n : n - in->memory_bound;
        return (kp_pipeline_action){.kind = KP_PIPELINE_SPOOL_APPEND,
                                    .count = at_most(excess, job_max)};
    }
    if (!can_publish)
        return wait;
    if (in->spooled > 0)
        return (kp_pipeline_action){.kind = KP_PIPELINE_PUBLISH_SPOOL};
    return (kp_pipeline_action){.kind = KP_PIPELINE_PUBLISH_MEMORY,
                                .count = at_most(n, job_max)};
}

const char *kp_pipeline_phase_name(kp_pipeline_phase phase)
{
    static const char *const names[] = {
        [KP_PIPELINE_SERVING] = "serving",
        [KP_PIPELINE_DRAINING] = "draining",
        [KP_PIPELINE_DRAIN_TO_SPOOL] = "drain_to_spool",
        [KP_PIPELINE_DRAINED] = "drained",
        [KP_PIPELINE_CLOSED] = "closed",
    };
    unsigned i = (unsigned)phase;
    return i < sizeof(names) / sizeof(names[0]) && names[i] ? names[i] : "?";
}

const char *kp_pipeline_action_name(kp_pipeline_action_kind kind)
{
    static const char *const names[] = {
        [KP_PIPELINE_WAIT] = "wait",
        [KP_PIPELINE_PUBLISH_MEMORY] = "publish_memory",
        [KP_PIPELINE_PUBLISH_SPOOL] = "publish_spool",
        [KP_PIPELINE_SPOOL_APPEND] = "spool_append",
        [KP_PIPELINE_FINISH_DRAIN] = "finish_drain",
    };
    unsigned i = (unsigned)kind;
    return i < sizeof(names) / sizeof(names[0]) && names[i] ? names[i] : "?";
}
