/* See admin_source.h. Runs on the loop thread, per /metrics or /healthz request: every read here
 * is a loop-thread field or a thread-safe getter of the pipeline, the consumer or the store. */
#include "admin_source.h"

#include "outcome.h"

_Static_assert(KP_OUTCOME_COUNT <= KP_ADMIN_MAX_OUTCOMES,
               "every protocol outcome must fit in an admin snapshot");
_Static_assert(KP_DIFFICULTY_BUCKETS == KP_ADMIN_DIFFICULTY_BUCKETS,
               "the protocol's difficulty histogram and the snapshot's must have the same buckets");

static void fill_pipeline(const kp_pipeline *pl, kp_admin_pipeline_counts *out)
{
    kp_pipeline_stats ps = kp_pipeline_get_stats(pl);
    *out = (kp_admin_pipeline_counts){
        .accepted = ps.accepted,
        .published = ps.published,
        .publish_errors = ps.publish_errors,
        .spool_errors = ps.spool_errors,
        .waiting = ps.waiting,
        .spooled = ps.spooled,
        .failing = ps.failing,
    };
}

static void fill_consumer(const kp_consumer *c, kp_admin_consumer_counts *out)
{
    *out = (kp_admin_consumer_counts){0};
    if (!c)
        return; /* -consume=false */
    out->counted = kp_consumer_counted(c);
    out->errors = kp_consumer_errors(c);
    out->failing = kp_consumer_failing(c, &out->stats_side);
}

static void app_snapshot(void *ctx, kp_admin_snapshot *out)
{
    const kp_app *app = ctx;
    const kp_server *s = app->server;
    const kp_server_counters *k = &s->counters;
    const kp_session_counters *sk = &s->env.counters;
    out->shutting_down = app->shutting_down;
    out->sessions = s->authorized.count;
    out->connections = s->connections;
    out->connections_accepted = k->connections_accepted;
    out->connections_rejected = k->connections_rejected;
    out->closed = (kp_admin_closed_counts){
        .auth_timeout = k->closed_auth_timeout,
        .too_long = sk->closed_too_long,
        .slow = sk->closed_slow,
        .max_errors = sk->closed_max_errors,
        .drain_timeout = k->closed_drain_timeout,
    };
    out->jobs_issued = k->jobs_issued;
    out->job_id = s->broadcast.line_id > 0 ? (uint64_t)s->broadcast.line_id : 0;
    out->last_broadcast_us = s->broadcast.last_us;
    for (int oc = 0; oc < KP_OUTCOME_COUNT; oc++)
        out->outcomes[oc] = (kp_admin_outcome_count){
            .label = kp_outcome_label((kp_outcome)oc),
            .submits = app->protocol.submits[oc],
            .messages = app->protocol.outcomes[oc],
        };
    out->noutcomes = KP_OUTCOME_COUNT;
    const kp_protocol_difficulty *pd = &app->protocol.difficulty;
    out->shares_difficulty = (double)pd->shares_sum;
    for (int b = 0; b < KP_DIFFICULTY_BUCKETS; b++)
        out->session_difficulty[b] = pd->sessions[b];
    out->session_difficulty_sum = (double)pd->sessions_sum;
    fill_pipeline(app->pipeline, &out->pipeline);
    fill_consumer(app->consumer, &out->consumer);
    out->mq_name = app->mq->name;
    out->stats_name = app->stats->name;
    out->store_evicts = kp_stats_get_evictions(app->stats, &out->evictions) == 0;
}

kp_admin_source kp_app_admin_source(kp_app *app)
{
    return (kp_admin_source){.snapshot = app_snapshot, .ctx = app, .stats = app->stats};
}
