#include "client_summary.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kupool/error.h"

/* The per-job list in the JSON output stops after this many jobs (the newest are kept). */
#define JSON_JOBS_MAX 200

void kc_summary_init(kc_summary *sum, uint32_t sessions)
{
    memset(sum, 0, sizeof(*sum));
    sum->sessions = sessions;
}

void kc_summary_free(kc_summary *sum)
{
    free(sum->jobs);
    sum->jobs = NULL;
    sum->njobs = sum->jobs_cap = 0;
}

static kc_job_receipts *find_job(kc_summary *sum, int64_t job_id)
{
    /* Jobs arrive in order and the newest is almost always the one asked for. */
    for (size_t i = sum->njobs; i-- > 0;) {
        if (sum->jobs[i].job_id == job_id)
            return &sum->jobs[i];
        if (sum->jobs[i].job_id < job_id)
            break;
    }
    return NULL;
}

static kc_job_receipts *add_job(kc_summary *sum, int64_t job_id)
{
    if (sum->njobs == sum->jobs_cap) {
        size_t cap = sum->jobs_cap ? sum->jobs_cap * 2 : 64;
        kc_job_receipts *grown = realloc(sum->jobs, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        sum->jobs = grown;
        sum->jobs_cap = cap;
    }
    /* Keep id order: a late session may report an older job after a newer one was added. */
    size_t at = sum->njobs;
    while (at > 0 && sum->jobs[at - 1].job_id > job_id)
        at--;
    memmove(&sum->jobs[at + 1], &sum->jobs[at], (sum->njobs - at) * sizeof(*sum->jobs));
    sum->njobs++;
    kc_job_receipts *j = &sum->jobs[at];
    memset(j, 0, sizeof(*j));
    j->job_id = job_id;
    return j;
}

int kc_summary_job(kc_summary *sum, int64_t job_id, uint64_t now_ns, int broadcast)
{
    sum->job_receipts++;
    kc_job_receipts *j = find_job(sum, job_id);
    if (!j && !(j = add_job(sum, job_id)))
        return KP_ENOMEM;
    if (!broadcast)
        return 0;
    if (j->count == 0)
        j->first_ns = now_ns;
    j->last_ns = now_ns;
    j->count++;
    return 0;
}

int64_t kc_summary_newest_job(const kc_summary *sum)
{
    return sum->njobs ? sum->jobs[sum->njobs - 1].job_id : 0;
}

uint64_t kc_summary_errors(const kc_summary *sum)
{
    uint64_t e = sum->unexpected + sum->unanswered;
    for (int r = 0; r < KC_DOWN_REASON_COUNT; r++)
        if (r != KC_DOWN_STOPPED)
            e += sum->down[r];
    return e;
}

void kc_summary_spread(const kc_summary *sum, double *max_ms, double *mean_ms)
{
    double max = 0, total = 0;
    size_t n = 0;
    for (size_t i = 0; i < sum->njobs; i++) {
        const kc_job_receipts *j = &sum->jobs[i];
        if (j->count < 2)
            continue;
        double ms = (double)(j->last_ns - j->first_ns) / 1e6;
        if (ms > max)
            max = ms;
        total += ms;
        n++;
    }
    *max_ms = max;
    *mean_ms = n ? total / (double)n : 0.0;
}

double kc_summary_hashrate(const kc_summary *sum)
{
    return sum->elapsed_s > 0 ? (double)sum->hashes / sum->elapsed_s : 0.0;
}

double kc_summary_accepted_hashrate(const kc_summary *sum)
{
    return sum->elapsed_s > 0 ? sum->accepted_difficulty / sum->elapsed_s : 0.0;
}

static const char *outcome_text(int oc)
{
    return oc < KP_OUTCOME_COUNT ? kp_outcome_wire((kp_outcome)oc) : "(other)";
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

void kc_summary_print_text(const kc_summary *sum, FILE *out)
{
    uint64_t rejected = 0;
    for (int oc = 0; oc <= KP_OUTCOME_COUNT; oc++)
        rejected += sum->rejected[oc];
    double spread_max, spread_mean;
    kc_summary_spread(sum, &spread_max, &spread_mean);
    double cpu = sum->cpu_user_s + sum->cpu_sys_s;
    const kc_histogram *h = &sum->latency;

    fprintf(out, "kupool-client load summary: %u sessions over %s, %.1f s, rate %s/s, pipeline %u\n",
            sum->sessions, sum->transport ? sum->transport : "tcp", sum->elapsed_s, sum->rate_text,
            sum->pipeline);
    fprintf(out, "  sessions  %u authorized at peak, %u at the end, %llu authorizations\n",
            sum->peak_ready, sum->ready_at_end, (unsigned long long)sum->authorized);
    fprintf(out, "  lost      connect failed %llu, closed by server %llu, timeouts %llu, "
                 "protocol errors %llu, authorize rejected %llu\n",
            (unsigned long long)sum->down[KC_DOWN_CONNECT_FAILED],
            (unsigned long long)sum->down[KC_DOWN_CLOSED_BY_SERVER],
            (unsigned long long)sum->down[KC_DOWN_TIMEOUT],
            (unsigned long long)sum->down[KC_DOWN_PROTOCOL],
            (unsigned long long)sum->down[KC_DOWN_AUTH_REJECTED]);
    fprintf(out, "  submits   %llu sent, %llu accepted (%.0f/s), %llu rejected, %llu unanswered, "
                 "%llu pacing slots skipped (pipeline full)\n",
            (unsigned long long)sum->submits, (unsigned long long)sum->accepted,
            sum->elapsed_s > 0 ? (double)sum->accepted / sum->elapsed_s : 0.0,
            (unsigned long long)rejected, (unsigned long long)sum->unanswered,
            (unsigned long long)sum->pace_skipped);
    for (int oc = 0; oc <= KP_OUTCOME_COUNT; oc++)
        if (sum->rejected[oc])
            fprintf(out, "  rejected  %-24s %llu\n", outcome_text(oc),
                    (unsigned long long)sum->rejected[oc]);
    fprintf(out, "  errors    %llu (%llu rejections -mix asked for are not errors)\n",
            (unsigned long long)kc_summary_errors(sum), (unsigned long long)sum->mix_expected);
    fprintf(out, "  latency   p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms (%llu answers)\n",
            ms(kc_histogram_percentile(h, 50)), ms(kc_histogram_percentile(h, 90)),
            ms(kc_histogram_percentile(h, 99)), ms(h->max), (unsigned long long)h->count);
    fprintf(out, "  jobs      %zu seen, %llu receipts, %llu missed; broadcast spread max %.1f ms, "
                 "mean %.1f ms\n",
            sum->njobs, (unsigned long long)sum->job_receipts, (unsigned long long)sum->jobs_missed,
            spread_max, spread_mean);
    char asked[48];
    if (sum->hashrate_asked > 0)
        snprintf(asked, sizeof(asked), "%g/s per session", sum->hashrate_asked);
    else
        snprintf(asked, sizeof(asked), "max");
    fprintf(out, "  search    %llu hashes, %.0f/s (asked %s), %llu set_difficulty, difficulty "
                 "%llu..%llu at the end\n",
            (unsigned long long)sum->hashes, kc_summary_hashrate(sum), asked,
            (unsigned long long)sum->set_difficulty, (unsigned long long)sum->difficulty_min,
            (unsigned long long)sum->difficulty_max);
    fprintf(out, "  shares    %llu found, %llu dropped (queue full), %llu stale, %llu low "
                 "difficulty; accepted imply %.0f hashes/s\n",
            (unsigned long long)sum->shares_found, (unsigned long long)sum->shares_dropped_full,
            (unsigned long long)sum->shares_dropped_stale, (unsigned long long)sum->low_difficulty,
            kc_summary_accepted_hashrate(sum));
    fprintf(out, "  slices    %llu on the loop, p99 %.3f ms (CPU %.3f ms), longest %.3f ms, %.2f s "
                 "in all; loop delay p99 %.3f ms, max %.3f ms\n",
            (unsigned long long)sum->slices, sum->slice_p99_ms, sum->slice_cpu_p99_ms,
            sum->slice_max_ms,
            sum->search_busy_s, sum->loop_delay_p99_ms, sum->loop_delay_max_ms);
    fprintf(out, "  cpu       user %.2f s, system %.2f s (%.0f%% of one core)\n", sum->cpu_user_s,
            sum->cpu_sys_s, sum->elapsed_s > 0 ? 100.0 * cpu / sum->elapsed_s : 0.0);
}

static cJSON *latency_json(const kc_histogram *h)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "count", (double)h->count);
    cJSON_AddNumberToObject(o, "mean", kc_histogram_mean(h));
    cJSON_AddNumberToObject(o, "p50", (double)kc_histogram_percentile(h, 50));
    cJSON_AddNumberToObject(o, "p90", (double)kc_histogram_percentile(h, 90));
    cJSON_AddNumberToObject(o, "p99", (double)kc_histogram_percentile(h, 99));
    cJSON_AddNumberToObject(o, "p999", (double)kc_histogram_percentile(h, 99.9));
    cJSON_AddNumberToObject(o, "max", (double)h->max);
    return o;
}

static cJSON *search_json(const kc_summary *sum)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "hashes", (double)sum->hashes);
    cJSON_AddNumberToObject(o, "hashrate_asked", sum->hashrate_asked); /* per session, 0 = max */
    cJSON_AddBoolToObject(o, "hashrate_max", sum->hashrate_asked == 0);
    cJSON_AddNumberToObject(o, "hashrate", kc_summary_hashrate(sum));
    cJSON_AddNumberToObject(o, "hashrate_per_session",
                            sum->sessions ? kc_summary_hashrate(sum) / sum->sessions : 0.0);
    cJSON_AddNumberToObject(o, "set_difficulty", (double)sum->set_difficulty);
    cJSON_AddNumberToObject(o, "difficulty_min", (double)sum->difficulty_min);
    cJSON_AddNumberToObject(o, "difficulty_max", (double)sum->difficulty_max);
    cJSON_AddNumberToObject(o, "shares_found", (double)sum->shares_found);
    cJSON_AddNumberToObject(o, "shares_dropped_queue_full", (double)sum->shares_dropped_full);
    cJSON_AddNumberToObject(o, "shares_dropped_stale", (double)sum->shares_dropped_stale);
    cJSON_AddNumberToObject(o, "low_difficulty", (double)sum->low_difficulty);
    cJSON_AddNumberToObject(o, "accepted_difficulty_sum", sum->accepted_difficulty);
    cJSON_AddNumberToObject(o, "accepted_hashrate", kc_summary_accepted_hashrate(sum));
    cJSON_AddNumberToObject(o, "slices", (double)sum->slices);
    cJSON_AddNumberToObject(o, "slice_max_ms", sum->slice_max_ms);
    cJSON_AddNumberToObject(o, "slice_p99_ms", sum->slice_p99_ms);
    cJSON_AddNumberToObject(o, "slice_cpu_p99_ms", sum->slice_cpu_p99_ms);
    cJSON_AddNumberToObject(o, "loop_delay_p99_ms", sum->loop_delay_p99_ms);
    cJSON_AddNumberToObject(o, "loop_delay_max_ms", sum->loop_delay_max_ms);
    cJSON_AddNumberToObject(o, "busy_s", sum->search_busy_s);
    return o;
}

static cJSON *jobs_json(const kc_summary *sum)
{
    double spread_max, spread_mean;
    kc_summary_spread(sum, &spread_max, &spread_mean);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "seen", (double)sum->njobs);
    cJSON_AddNumberToObject(o, "receipts", (double)sum->job_receipts);
    cJSON_AddNumberToObject(o, "missed", (double)sum->jobs_missed);
    cJSON_AddNumberToObject(o, "spread_max_ms", spread_max);
    cJSON_AddNumberToObject(o, "spread_mean_ms", spread_mean);
    cJSON *list = cJSON_AddArrayToObject(o, "broadcasts");
    size_t from = sum->njobs > JSON_JOBS_MAX ? sum->njobs - JSON_JOBS_MAX : 0;
    for (size_t i = from; list && i < sum->njobs; i++) {
        const kc_job_receipts *j = &sum->jobs[i];
        if (j->count == 0) /* only seen right after authorize: not a broadcast of this run */
            continue;
        cJSON *e = cJSON_CreateObject();
        if (!e)
            break;
        cJSON_AddNumberToObject(e, "job_id", (double)j->job_id);
        cJSON_AddNumberToObject(e, "receipts", (double)j->count);
        cJSON_AddNumberToObject(e, "spread_ms",
                                j->count ? (double)(j->last_ns - j->first_ns) / 1e6 : 0.0);
        cJSON_AddItemToArray(list, e);
    }
    return o;
}

int kc_summary_print_json(const kc_summary *sum, FILE *out)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return KP_ENOMEM;
    cJSON_AddNumberToObject(root, "sessions", sum->sessions);
    cJSON_AddStringToObject(root, "transport", sum->transport ? sum->transport : "tcp");
    cJSON_AddNumberToObject(root, "rate", sum->rate);
    cJSON_AddBoolToObject(root, "rate_max", strcmp(sum->rate_text, "max") == 0);
    cJSON_AddNumberToObject(root, "pipeline", sum->pipeline);
    cJSON_AddNumberToObject(root, "elapsed_s", sum->elapsed_s);
    cJSON_AddNumberToObject(root, "connected", sum->peak_ready);
    cJSON_AddNumberToObject(root, "connected_at_end", sum->ready_at_end);
    cJSON_AddNumberToObject(root, "authorizations", (double)sum->authorized);
    cJSON_AddNumberToObject(root, "connect_failed", (double)sum->down[KC_DOWN_CONNECT_FAILED]);
    cJSON_AddNumberToObject(root, "closed_by_server", (double)sum->down[KC_DOWN_CLOSED_BY_SERVER]);
    cJSON_AddNumberToObject(root, "timeouts", (double)sum->down[KC_DOWN_TIMEOUT]);
    cJSON_AddNumberToObject(root, "protocol_errors", (double)sum->down[KC_DOWN_PROTOCOL]);
    cJSON_AddNumberToObject(root, "authorize_rejected", (double)sum->down[KC_DOWN_AUTH_REJECTED]);
    cJSON_AddNumberToObject(root, "submits", (double)sum->submits);
    cJSON_AddNumberToObject(root, "accepted", (double)sum->accepted);
    cJSON_AddNumberToObject(root, "accepted_per_s",
                            sum->elapsed_s > 0 ? (double)sum->accepted / sum->elapsed_s : 0.0);
    cJSON *rejected = cJSON_AddObjectToObject(root, "rejected");
    for (int oc = 0; rejected && oc <= KP_OUTCOME_COUNT; oc++)
        if (sum->rejected[oc])
            cJSON_AddNumberToObject(rejected, outcome_text(oc), (double)sum->rejected[oc]);
    cJSON_AddNumberToObject(root, "mix_rejections", (double)sum->mix_expected);
    cJSON_AddNumberToObject(root, "unexpected_rejections", (double)sum->unexpected);
    cJSON_AddNumberToObject(root, "unanswered", (double)sum->unanswered);
    cJSON_AddNumberToObject(root, "pace_skipped", (double)sum->pace_skipped);
    cJSON_AddNumberToObject(root, "errors", (double)kc_summary_errors(sum));
    cJSON_AddItemToObject(root, "latency_us", latency_json(&sum->latency));
    cJSON_AddItemToObject(root, "jobs", jobs_json(sum));
    cJSON_AddItemToObject(root, "search", search_json(sum));
    cJSON *cpu = cJSON_AddObjectToObject(root, "cpu_s");
    if (cpu) {
        cJSON_AddNumberToObject(cpu, "user", sum->cpu_user_s);
        cJSON_AddNumberToObject(cpu, "system", sum->cpu_sys_s);
        cJSON_AddNumberToObject(cpu, "total", sum->cpu_user_s + sum->cpu_sys_s);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return KP_ENOMEM;
    fprintf(out, "%s\n", text);
    fflush(out);
    cJSON_free(text);
    return 0;
}
