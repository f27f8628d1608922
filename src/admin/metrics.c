/* See metrics.h. The order of the families is the order /metrics has always printed them in:
 * miners, jobs, protocol outcomes, the event pipeline, backends, the admin endpoint, the
 * process. */
#include "metrics.h"

#include <inttypes.h>

#include "health.h"

static void family(kp_textbuf *tb, const char *name, const char *type, const char *help)
{
    kp_textbuf_printf(tb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_u64(kp_textbuf *tb, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    family(tb, name, type, help);
    kp_textbuf_printf(tb, "%s %" PRIu64 "\n", name, v);
}

static void labelled_u64(kp_textbuf *tb, const char *name, const char *label, const char *value,
                         uint64_t v)
{
    kp_textbuf_printf(tb, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, value, v);
}

static void render_miners(const kp_admin_snapshot *s, kp_textbuf *tb)
{
    metric_u64(tb, "kupool_sessions", "gauge", "Authorized sessions.", s->sessions);
    metric_u64(tb, "kupool_connections", "gauge", "Open miner connections (authorized or not).",
               s->connections);
    metric_u64(tb, "kupool_connections_accepted_total", "counter",
               "Miner connections accepted.", s->connections_accepted);
    metric_u64(tb, "kupool_connections_rejected_total", "counter",
               "Miner connections closed at accept because -max_conns was reached.",
               s->connections_rejected);

    static const char closed_name[] = "kupool_sessions_closed_total";
    family(tb, closed_name, "counter", "Sessions closed by the server, by reason.");
    labelled_u64(tb, closed_name, "reason", "auth_timeout", s->closed.auth_timeout);
    labelled_u64(tb, closed_name, "reason", "too_long", s->closed.too_long);
    labelled_u64(tb, closed_name, "reason", "slow", s->closed.slow);
    labelled_u64(tb, closed_name, "reason", "max_errors", s->closed.max_errors);
    labelled_u64(tb, closed_name, "reason", "drain_timeout", s->closed.drain_timeout);
}

static void render_jobs(const kp_admin_snapshot *s, kp_textbuf *tb)
{
    metric_u64(tb, "kupool_jobs_issued_total", "counter", "Jobs issued.", s->jobs_issued);
    metric_u64(tb, "kupool_job_id", "gauge", "Id of the current job.", s->job_id);
    family(tb, "kupool_broadcast_duration_seconds", "gauge",
           "Duration of the last completed job broadcast to every session.");
    kp_textbuf_printf(tb, "kupool_broadcast_duration_seconds %.6f\n",
                      (double)s->last_broadcast_us / 1e6);
}

static void render_outcomes(const kp_admin_snapshot *s, kp_textbuf *tb)
{
    family(tb, "kupool_submits_total", "counter", "Responses to submit requests, by outcome.");
    for (size_t i = 0; i < s->noutcomes; i++)
        labelled_u64(tb, "kupool_submits_total", "outcome", s->outcomes[i].label,
                     s->outcomes[i].submits);
    family(tb, "kupool_messages_total", "counter",
           "Responses to every protocol message (authorize, submit, malformed), by outcome.");
    for (size_t i = 0; i < s->noutcomes; i++)
        labelled_u64(tb, "kupool_messages_total", "outcome", s->outcomes[i].label,
                     s->outcomes[i].messages);
}

/* SPEC §8: the work the accepted shares represent, and the sessions' current difficulties as a
 * histogram with power-of-4 buckets (cumulative on the wire, as Prometheus wants). */
static void render_difficulty(const kp_admin_snapshot *s, kp_textbuf *tb)
{
    family(tb, "kupool_shares_difficulty_total", "counter",
           "Sum of the difficulties of accepted shares (expected hashes they represent).");
    kp_textbuf_printf(tb, "kupool_shares_difficulty_total %.17g\n", s->shares_difficulty);

    static const char name[] = "kupool_session_difficulty";
    family(tb, name, "histogram", "Current share difficulty of the open authorized sessions.");
    uint64_t cumulative = 0, le = 1;
    for (int k = 0; k < KP_ADMIN_DIFFICULTY_BUCKETS - 1; k++, le *= 4) {
        cumulative += s->session_difficulty[k];
        kp_textbuf_printf(tb, "%s_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n", name, le, cumulative);
    }
    cumulative += s->session_difficulty[KP_ADMIN_DIFFICULTY_BUCKETS - 1];
    kp_textbuf_printf(tb, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative);
    kp_textbuf_printf(tb, "%s_sum %.17g\n", name, s->session_difficulty_sum);
    kp_textbuf_printf(tb, "%s_count %" PRIu64 "\n", name, cumulative);
}

static void render_pipeline(const kp_admin_snapshot *s, kp_textbuf *tb)
{
    metric_u64(tb, "kupool_events_accepted_total", "counter",
               "Accepted submits handed to the event pipeline.", s->pipeline.accepted);
    metric_u64(tb, "kupool_events_published_total", "counter",
               "Events the message queue confirmed.", s->pipeline.published);
    metric_u64(tb, "kupool_events_counted_total", "counter",
               "Events the consumer counted in the stats store and acknowledged (0 with -consume=false).",
               s->consumer.counted);
    metric_u64(tb, "kupool_events_pending", "gauge",
               "Events accepted and not yet confirmed by the message queue.", s->pipeline.waiting);
    metric_u64(tb, "kupool_events_spooled", "gauge",
               "Of the pending events, those in the -data_dir spool file.", s->pipeline.spooled);
}

static void render_backends(const kp_admin_snapshot *s, kp_textbuf *tb)
{
    static const char errors[] = "kupool_backend_errors_total";
    family(tb, errors, "counter",
           "Backend failures: failed publish calls (mq), failed consume or stats writes (stats), "
           "failed spool writes or reads (spool).");
    labelled_u64(tb, errors, "backend", "mq", s->pipeline.publish_errors);
    labelled_u64(tb, errors, "backend", "spool", s->pipeline.spool_errors);
    labelled_u64(tb, errors, "backend", "stats", s->consumer.errors);

    kp_backend_health h = kp_admin_backend_health(s);
    static const char up[] = "kupool_backend_up";
    family(tb, up, "gauge", "1 when the backend's last operation succeeded, 0 while it is failing.");
    labelled_u64(tb, up, "backend", "mq", h.mq_up ? 1 : 0);
    labelled_u64(tb, up, "backend", "stats", h.stats_up ? 1 : 0);
}

/* The endpoint's own bounds: connections, evictions, the /stats query queue, and what a bounded
 * stats store dropped. */
static void render_endpoint(const kp_admin_snapshot *s, const kp_admin_endpoint_stats *e,
                            kp_textbuf *tb)
{
    metric_u64(tb, "kupool_admin_connections", "gauge", "Open admin HTTP connections.",
               e->connections);
    metric_u64(tb, "kupool_admin_connections_evicted_total", "counter",
               "Admin connections closed to make room for a new one: the oldest still sending "
               "its request head, or lingering after its response.",
               e->evicted);
    metric_u64(tb, "kupool_admin_connections_refused_total", "counter",
               "Admin connections closed at accept: every slot was waiting for a query or a write.",
               e->refused);
    metric_u64(tb, "kupool_stats_queries_queued", "gauge",
               "/stats queries waiting for the query worker.", e->queries_queued);
    metric_u64(tb, "kupool_stats_queries_refused_total", "counter",
               "/stats requests answered 503 because the query queue was full.",
               e->queries_refused);
    metric_u64(tb, "kupool_stats_queries_dropped_total", "counter",
               "/stats queries dropped before they ran: the client went away or timed out.",
               e->queries_dropped);
    if (s->store_evicts) {
        static const char evictions[] = "kupool_stats_memory_evictions_total";
        family(tb, evictions, "counter",
               "(username, minute) entries the memory stats store dropped: older than its "
               "retention (expired) or oldest beyond its caps (capped).");
        labelled_u64(tb, evictions, "reason", "expired", s->evictions.expired);
        labelled_u64(tb, evictions, "reason", "capped", s->evictions.capped);
    }
}

static void render_process(const kp_process_gauges *p, kp_textbuf *tb)
{
    family(tb, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    kp_textbuf_printf(tb, "process_resident_memory_bytes %" PRId64 "\n", p->rss_bytes);
    family(tb, "process_open_fds", "gauge",
           "Open file descriptors: those open at start plus the miner and admin connections "
           "open now.");
    kp_textbuf_printf(tb, "process_open_fds %" PRId64 "\n", p->open_fds);
    family(tb, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    kp_textbuf_printf(tb, "process_max_fds %" PRId64 "\n", p->max_fds);
}

void kp_admin_render_metrics(const kp_admin_snapshot *s, const kp_admin_endpoint_stats *e,
                             const kp_process_gauges *p, kp_textbuf *tb)
{
    render_miners(s, tb);
    render_jobs(s, tb);
    render_outcomes(s, tb);
    render_difficulty(s, tb);
    render_pipeline(s, tb);
    render_backends(s, tb);
    render_endpoint(s, e, tb);
    render_process(p, tb);
}
