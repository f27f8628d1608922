/* The admin endpoint's answers from hand-made inputs, with no server and no loop: the exact
 * /metrics exposition of a small snapshot (the same families, names, labels and HELP texts the
 * server has always printed), every outcome label, and the one health rule behind /healthz and
 * the kupool_backend_up gauge. Links only kp_admin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "metrics.h"
#include "testsupport.h"

/* A snapshot in which every number differs from its neighbours, so a swapped field shows. */
static kp_admin_snapshot small_snapshot(void)
{
    return (kp_admin_snapshot){
        .sessions = 3,
        .connections = 5,
        .connections_accepted = 7,
        .connections_rejected = 2,
        .closed = {.auth_timeout = 11, .too_long = 12, .slow = 13, .max_errors = 14,
                   .drain_timeout = 15},
        .jobs_issued = 42,
        .job_id = 41,
        .last_broadcast_us = 1500,
        .outcomes = {{.label = "ok", .submits = 9, .messages = 10},
                     {.label = "duplicate", .submits = 1, .messages = 1}},
        .noutcomes = 2,
        .pipeline = {.accepted = 9, .published = 8, .publish_errors = 1, .spool_errors = 0,
                     .waiting = 1, .spooled = 0, .failing = true},
        .consumer = {.counted = 8, .errors = 2},
        /* one session at 1, two at 256, one at 2^53: the sum as a double holds it (to an even number) */
        .shares_difficulty = 2304,
        .session_difficulty = {[0] = 1, [4] = 2, [KP_ADMIN_DIFFICULTY_BUCKETS - 1] = 1},
        .session_difficulty_sum = 9007199254741504.0,
        .mq_name = "rabbit",
        .stats_name = "pg",
        .store_evicts = true,
        .evictions = {.expired = 4, .capped = 6},
    };
}

static const kp_admin_endpoint_stats small_endpoint = {
    .connections = 1, .queries_queued = 2, .queries_refused = 3, .queries_dropped = 4};
static const kp_process_gauges small_process = {
    .rss_bytes = 1048576, .open_fds = 15, .max_fds = -1};

static char *render(const kp_admin_snapshot *s)
{
    kp_textbuf tb = {0};
    kp_admin_render_metrics(s, &small_endpoint, &small_process, &tb);
    assert_false(tb.oom);
    assert_non_null(tb.data);
    return tb.data;
}

/* Built from the server's own /metrics before the admin endpoint took a snapshot, values
 * replaced: any change to a family, a name, a label or a HELP text fails here. */
static const char small_exposition[] =
    "# HELP kupool_sessions Authorized sessions.\n"
    "# TYPE kupool_sessions gauge\n"
    "kupool_sessions 3\n"
    "# HELP kupool_connections Open miner connections (authorized or not).\n"
    "# TYPE kupool_connections gauge\n"
    "kupool_connections 5\n"
    "# HELP kupool_connections_accepted_total Miner connections accepted.\n"
    "# TYPE kupool_connections_accepted_total counter\n"
    "kupool_connections_accepted_total 7\n"
    "# HELP kupool_connections_rejected_total Miner connections closed at accept because -max_conns was reached.\n"
    "# TYPE kupool_connections_rejected_total counter\n"
    "kupool_connections_rejected_total 2\n"
    "# HELP kupool_sessions_closed_total Sessions closed by the server, by reason.\n"
    "# TYPE kupool_sessions_closed_total counter\n"
    "kupool_sessions_closed_total{reason=\"auth_timeout\"} 11\n"
    "kupool_sessions_closed_total{reason=\"too_long\"} 12\n"
    "kupool_sessions_closed_total{reason=\"slow\"} 13\n"
    "kupool_sessions_closed_total{reason=\"max_errors\"} 14\n"
    "kupool_sessions_closed_total{reason=\"drain_timeout\"} 15\n"
    "# HELP kupool_jobs_issued_total Jobs issued.\n"
    "# TYPE kupool_jobs_issued_total counter\n"
    "kupool_jobs_issued_total 42\n"
    "# HELP kupool_job_id Id of the current job.\n"
    "# TYPE kupool_job_id gauge\n"
    "kupool_job_id 41\n"
    "# HELP kupool_broadcast_duration_seconds Duration of the last completed job broadcast to every session.\n"
    "# TYPE kupool_broadcast_duration_seconds gauge\n"
    "kupool_broadcast_duration_seconds 0.001500\n"
    "# HELP kupool_submits_total Responses to submit requests, by outcome.\n"
    "# TYPE kupool_submits_total counter\n"
    "kupool_submits_total{outcome=\"ok\"} 9\n"
    "kupool_submits_total{outcome=\"duplicate\"} 1\n"
    "# HELP kupool_messages_total Responses to every protocol message (authorize, submit, malformed), by outcome.\n"
    "# TYPE kupool_messages_total counter\n"
    "kupool_messages_total{outcome=\"ok\"} 10\n"
    "kupool_messages_total{outcome=\"duplicate\"} 1\n"
    "# HELP kupool_shares_difficulty_total Sum of the difficulties of accepted shares (expected hashes they represent).\n"
    "# TYPE kupool_shares_difficulty_total counter\n"
    "kupool_shares_difficulty_total 2304\n"
    "# HELP kupool_session_difficulty Current share difficulty of the open authorized sessions.\n"
    "# TYPE kupool_session_difficulty histogram\n"
    "kupool_session_difficulty_bucket{le=\"1\"} 1\n"
    "kupool_session_difficulty_bucket{le=\"4\"} 1\n"
    "kupool_session_difficulty_bucket{le=\"16\"} 1\n"
    "kupool_session_difficulty_bucket{le=\"64\"} 1\n"
    "kupool_session_difficulty_bucket{le=\"256\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"1024\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"4096\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"16384\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"65536\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"262144\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"1048576\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"4194304\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"16777216\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"67108864\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"268435456\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"1073741824\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"4294967296\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"17179869184\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"68719476736\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"274877906944\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"1099511627776\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"4398046511104\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"17592186044416\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"70368744177664\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"281474976710656\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"1125899906842624\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"4503599627370496\"} 3\n"
    "kupool_session_difficulty_bucket{le=\"+Inf\"} 4\n"
    "kupool_session_difficulty_sum 9007199254741504\n"
    "kupool_session_difficulty_count 4\n"
    "# HELP kupool_events_accepted_total Accepted submits handed to the event pipeline.\n"
    "# TYPE kupool_events_accepted_total counter\n"
    "kupool_events_accepted_total 9\n"
    "# HELP kupool_events_published_total Events the message queue confirmed.\n"
    "# TYPE kupool_events_published_total counter\n"
    "kupool_events_published_total 8\n"
    "# HELP kupool_events_counted_total Events the consumer counted in the stats store and acknowledged (0 with -consume=false).\n"
    "# TYPE kupool_events_counted_total counter\n"
    "kupool_events_counted_total 8\n"
    "# HELP kupool_events_pending Events accepted and not yet confirmed by the message queue.\n"
    "# TYPE kupool_events_pending gauge\n"
    "kupool_events_pending 1\n"
    "# HELP kupool_events_spooled Of the pending events, those in the -data_dir spool file.\n"
    "# TYPE kupool_events_spooled gauge\n"
    "kupool_events_spooled 0\n"
    "# HELP kupool_backend_errors_total Backend failures: failed publish calls (mq), failed consume or stats writes (stats), failed spool writes or reads (spool).\n"
    "# TYPE kupool_backend_errors_total counter\n"
    "kupool_backend_errors_total{backend=\"mq\"} 1\n"
    "kupool_backend_errors_total{backend=\"spool\"} 0\n"
    "kupool_backend_errors_total{backend=\"stats\"} 2\n"
    "# HELP kupool_backend_up 1 when the backend's last operation succeeded, 0 while it is failing.\n"
    "# TYPE kupool_backend_up gauge\n"
    "kupool_backend_up{backend=\"mq\"} 0\n"
    "kupool_backend_up{backend=\"stats\"} 1\n"
    "# HELP kupool_admin_connections Open admin HTTP connections.\n"
    "# TYPE kupool_admin_connections gauge\n"
    "kupool_admin_connections 1\n"
    "# HELP kupool_admin_connections_evicted_total Admin connections closed to make room for a new one: the oldest still sending its request head, or lingering after its response.\n"
    "# TYPE kupool_admin_connections_evicted_total counter\n"
    "kupool_admin_connections_evicted_total 0\n"
    "# HELP kupool_admin_connections_refused_total Admin connections closed at accept: every slot was waiting for a query or a write.\n"
    "# TYPE kupool_admin_connections_refused_total counter\n"
    "kupool_admin_connections_refused_total 0\n"
    "# HELP kupool_stats_queries_queued /stats queries waiting for the query worker.\n"
    "# TYPE kupool_stats_queries_queued gauge\n"
    "kupool_stats_queries_queued 2\n"
    "# HELP kupool_stats_queries_refused_total /stats requests answered 503 because the query queue was full.\n"
    "# TYPE kupool_stats_queries_refused_total counter\n"
    "kupool_stats_queries_refused_total 3\n"
    "# HELP kupool_stats_queries_dropped_total /stats queries dropped before they ran: the client went away or timed out.\n"
    "# TYPE kupool_stats_queries_dropped_total counter\n"
    "kupool_stats_queries_dropped_total 4\n"
    "# HELP kupool_stats_memory_evictions_total (username, minute) entries the memory stats store dropped: older than its retention (expired) or oldest beyond its caps (capped).\n"
    "# TYPE kupool_stats_memory_evictions_total counter\n"
    "kupool_stats_memory_evictions_total{reason=\"expired\"} 4\n"
    "kupool_stats_memory_evictions_total{reason=\"capped\"} 6\n"
    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
    "# TYPE process_resident_memory_bytes gauge\n"
    "process_resident_memory_bytes 1048576\n"
    "# HELP process_open_fds Open file descriptors: those open at start plus the miner and admin connections open now.\n"
    "# TYPE process_open_fds gauge\n"
    "process_open_fds 15\n"
    "# HELP process_max_fds Maximum number of open file descriptors.\n"
    "# TYPE process_max_fds gauge\n"
    "process_max_fds -1\n"
    ;

static void test_exact_exposition(void **state)
{
    kp_admin_snapshot s = small_snapshot();
    char *text = render(&s);
    /* Line by line first, so a failure names the line. */
    const char *got = text, *want = small_exposition;
    for (int lineno = 1; *got || *want; lineno++) {
        size_t gl = strcspn(got, "\n"), wl = strcspn(want, "\n");
        if (gl != wl || memcmp(got, want, gl) != 0)
            fail_msg("line %d: got '%.*s', want '%.*s'", lineno, (int)gl, got, (int)wl, want);
        got += gl + (got[gl] == '\n');
        want += wl + (want[wl] == '\n');
    }
    assert_string_equal(text, small_exposition);
    free(text);
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static void test_every_outcome_label(void **state)
{
    static const char *const labels[] = {
        "ok", "invalid_json", "invalid_request", "unknown_method", "invalid_username",
        "already_authorized", "unauthorized", "invalid_params", "task_not_exist",
        "task_expired", "too_frequent", "duplicate", "invalid_result", "low_difficulty"};
    enum { N = sizeof(labels) / sizeof(labels[0]) };
    kp_admin_snapshot s = small_snapshot();
    s.noutcomes = N;
    for (size_t i = 0; i < N; i++)
        s.outcomes[i] = (kp_admin_outcome_count){
            .label = labels[i], .submits = 100 + i, .messages = 200 + i};
    char *text = render(&s);
    for (size_t i = 0; i < N; i++) {
        char line[128];
        snprintf(line, sizeof(line), "kupool_submits_total{outcome=\"%s\"} %zu", labels[i],
                 100 + i);
        if (!has_line(text, line))
            fail_msg("missing: %s", line);
        snprintf(line, sizeof(line), "kupool_messages_total{outcome=\"%s\"} %zu", labels[i],
                 200 + i);
        if (!has_line(text, line))
            fail_msg("missing: %s", line);
    }
    free(text);
}

static void test_evictions_only_from_a_bounded_store(void **state)
{
    kp_admin_snapshot s = small_snapshot();
    s.store_evicts = false;
    char *text = render(&s);
    assert_null(strstr(text, "kupool_stats_memory_evictions_total"));
    assert_true(has_line(text, "kupool_stats_queries_dropped_total 4"));
    assert_true(has_line(text, "# HELP process_resident_memory_bytes Resident memory size in bytes."));
    free(text);
}

static void test_broadcast_duration_in_seconds(void **state)
{
    kp_admin_snapshot s = small_snapshot();
    s.last_broadcast_us = 2345678;
    char *text = render(&s);
    assert_true(has_line(text, "kupool_broadcast_duration_seconds 2.345678"));
    free(text);
}

/* One row of the health table: the inputs, then what /healthz and the gauges must say. */
typedef struct health_case {
    const char *name;
    bool shutting_down, pipeline_failing, consumer_failing, stats_side;
    unsigned status;
    const char *body;
    bool mq_up, stats_up;
} health_case;

static void test_health_rule(void **state)
{
    static const health_case cases[] = {
        {"all up", false, false, false, false, 200, "ok\n", true, true},
        {"mq down (publish)", false, true, false, false, 503, "mq failing: rabbit\n", false, true},
        {"mq down (consume)", false, false, true, false, 503, "mq failing: rabbit\n", false, true},
        {"stats down", false, false, true, true, 503, "stats failing: pg\n", true, false},
        {"both down", false, true, true, true, 503, "mq failing: rabbit\nstats failing: pg\n",
         false, false},
        {"shutting down", true, false, false, false, 503, "shutting down\n", true, true},
        /* Shutting down wins in /healthz; the gauges still say which backend fails. */
        {"shutting down, mq down", true, true, false, false, 503, "shutting down\n", false, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const health_case *c = &cases[i];
        kp_admin_snapshot s = small_snapshot();
        s.shutting_down = c->shutting_down;
        s.pipeline.failing = c->pipeline_failing;
        s.consumer.failing = c->consumer_failing;
        s.consumer.stats_side = c->stats_side;

        kp_health_answer a;
        kp_admin_healthz(&s, &a);
        if (a.status != c->status || a.len != strlen(c->body) || strcmp(a.body, c->body) != 0)
            fail_msg("%s: got %u '%s'", c->name, a.status, a.body);

        kp_backend_health h = kp_admin_backend_health(&s);
        if (h.mq_up != c->mq_up || h.stats_up != c->stats_up)
            fail_msg("%s: mq_up %d stats_up %d", c->name, h.mq_up, h.stats_up);

        /* /metrics prints the same rule. */
        char *text = render(&s);
        char line[64];
        snprintf(line, sizeof(line), "kupool_backend_up{backend=\"mq\"} %d", c->mq_up);
        if (!has_line(text, line))
            fail_msg("%s: missing %s", c->name, line);
        snprintf(line, sizeof(line), "kupool_backend_up{backend=\"stats\"} %d", c->stats_up);
        if (!has_line(text, line))
            fail_msg("%s: missing %s", c->name, line);
        free(text);
    }
}

/* A backend name longer than the answer is cut, never written past the body. */
static void test_health_long_names(void **state)
{
    char name[600];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    kp_admin_snapshot s = small_snapshot();
    s.mq_name = name;
    s.stats_name = name;
    s.consumer.failing = true;
    s.consumer.stats_side = true;
    kp_health_answer a;
    kp_admin_healthz(&s, &a);
    assert_int_equal(a.status, 503);
    assert_true(a.len < sizeof(a.body));
    assert_int_equal(strlen(a.body), a.len);
    assert_memory_equal(a.body, "mq failing: xxx", 15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_exposition),
        cmocka_unit_test(test_every_outcome_label),
        cmocka_unit_test(test_evictions_only_from_a_bounded_store),
        cmocka_unit_test(test_broadcast_duration_in_seconds),
        cmocka_unit_test(test_health_rule),
        cmocka_unit_test(test_health_long_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
