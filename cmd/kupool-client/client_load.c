#include "client_load.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kupool/error.h"
#include "kupool/event.h"
#include "client_miner.h"
#include "client_summary.h"
#include "histogram.h"
#include "log.h"

#define MODULE "client.load"
#define RAMP_TICK_MS 10u
#define PROGRESS_MS 1000u
#define DRAIN_MS 2000u
#define CONNECT_TIMEOUT_MS 10000u
#define BACKOFF_BASE_MS 500u
#define BACKOFF_MAX_MS 30000u
/* Added to -min_submit_interval for the guard: covers clock granularity at both ends. */
#define GAP_MARGIN_MS 10.0
/* Submits one pacing tick may send when a session fell behind (a loop stall). */
#define MAX_BURST 64
/* Lost connections logged one by one before only every LOG_EVERY-th is. */
#define LOG_FIRST 5u
#define LOG_EVERY 1000u
/* fds the process needs besides its sessions (stdio, epoll, signals, log). */
#define FD_RESERVE 32u

/* Per-session state of this mode, parallel to the sessions array. */
typedef struct peer {
    double next_due_ms; /* -rate: when the next submit is due */
    double last_ok_ms;  /* arrival of the last accepted answer, 0 = none */
    uint8_t dup_owed;   /* -mix duplicates drawn when none was possible, sent when one is */
    bool ready;
} peer;

typedef struct load {
    uv_loop_t *loop;
    const kc_options *opt;
    kc_client client;
    kc_session *sessions;
    peer *peers;
    uint32_t n;
    uint32_t started; /* sessions whose first connect was made (the ramp) */
    uint32_t ready;   /* authorized now */
    uv_timer_t ramp, progress, end;
    uv_signal_t sigint, sigterm;
    double start_ms;
    double period_ms; /* 1000 / -rate; 0 = no pacing (see unpaced) */
    bool unpaced;     /* -rate max: keep the pipeline full; else period_ms == 0 means idle */
    bool idle;        /* -rate 0: sessions that follow the jobs, never submit, never search */
    bool guard;       /* -rate <= 1: respect the server's -min_submit_interval */
    double gap_ms;    /* the guard's wait after an accepted answer */
    kc_miner miner;   /* SPEC §8: the search, in slices on this loop */
    kc_nonce_seq rng; /* phases and -mix draws */
    kc_summary sum;
    kc_histogram second; /* latencies since the last progress line */
    uint64_t in_flight;  /* over all sessions */
    uint64_t prev_submits, prev_accepted, prev_hashes;
    uint64_t downs_logged;
    unsigned unexpected_logged; /* bit per outcome already logged */
    bool draining, finished;
} load;

uint64_t kc_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

static uint32_t index_of(const load *L, const kc_session *s)
{
    return (uint32_t)(s - L->sessions);
}

/* ---- the end of the run ---- */

static void finish(load *L)
{
    if (L->finished)
        return;
    L->finished = true;
    L->sum.ready_at_end = L->ready;
    L->sum.elapsed_s = (kc_now_ms() - L->start_ms) / 1000.0;
    for (uint32_t i = 0; i < L->n; i++)
        kc_session_stop(&L->sessions[i]);
    kc_miner_close(&L->miner);
    uv_close((uv_handle_t *)&L->ramp, NULL);
    uv_close((uv_handle_t *)&L->progress, NULL);
    uv_close((uv_handle_t *)&L->end, NULL);
    uv_close((uv_handle_t *)&L->sigint, NULL);
    uv_close((uv_handle_t *)&L->sigterm, NULL);
}

static void on_drain_deadline(uv_timer_t *t)
{
    load *L = t->data;
    KP_WARN(MODULE, "answers still missing after the drain", KP_UINT("in_flight", L->in_flight));
    finish(L);
}

/* No new submits or connections; the run ends when every submit in flight is answered. */
static void start_drain(load *L)
{
    if (L->draining)
        return;
    L->draining = true;
    uv_timer_stop(&L->ramp);
    if (L->in_flight == 0) {
        finish(L);
        return;
    }
    uv_timer_start(&L->end, on_drain_deadline, DRAIN_MS, 0);
}

static void on_duration(uv_timer_t *t)
{
    start_drain(t->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
    load *L = h->data;
    KP_INFO(MODULE, "signal received, stopping", KP_INT("signal", signum));
    if (L->draining)
        finish(L);
    else
        start_drain(L);
}

/* ---- submitting ---- */

/* Every hash the run computed: the searches', and one per submit made with difficulty off. */
static uint64_t total_hashes(const load *L)
{
    uint64_t h = L->sum.off_hashes;
    for (uint32_t i = 0; i < L->n; i++)
        h += L->sessions[i].search.hashes;
    return h;
}

/* A valid submit: with difficulty on, the oldest share the search found (false when none
 * waits); off, a fresh nonce's result. */
static bool submit_valid(load *L, kc_session *s)
{
    if (!s->search.on) {
        if (!kc_session_submit(s, KC_SUBMIT_VALID))
            return false;
        L->sum.off_hashes++;
        return true;
    }
    const kc_share *sh = kc_search_peek(&s->search);
    if (!sh || !kc_session_submit_share(s, sh))
        return false;
    kc_search_pop(&s->search);
    return true;
}

/* One submit opportunity: a valid submit, or what -mix draws instead. A duplicate needs an
 * accepted submit for the current job; when there is none, a valid submit goes now and the
 * duplicate at the next opportunity that allows one, so short -interval runs still get their
 * share. With difficulty on, an opportunity needs a share found (the -mix kinds too, so the
 * mix stays a share of the submits). Returns false when the session could not send. */
static bool submit_one(load *L, kc_session *s)
{
    const kc_mix *mix = &L->opt->mix;
    peer *p = &L->peers[index_of(L, s)];
    if (s->search.on && !kc_search_peek(&s->search))
        return false;
    kc_submit_kind kind = KC_SUBMIT_VALID;
    bool follow = false; /* a valid submit with a too-frequent one right behind it */
    if (p->dup_owed && kc_session_can_duplicate(s)) {
        kind = KC_SUBMIT_DUPLICATE;
        p->dup_owed--;
    } else if (mix->duplicate > 0 || mix->invalid > 0 || mix->frequent > 0) {
        double u = kc_random_unit(&L->rng);
        if (u < mix->duplicate) {
            if (kc_session_can_duplicate(s))
                kind = KC_SUBMIT_DUPLICATE;
            else if (p->dup_owed < UINT8_MAX)
                p->dup_owed++;
        } else if (u < mix->duplicate + mix->invalid)
            kind = KC_SUBMIT_INVALID;
        else if (u < mix->duplicate + mix->invalid + mix->frequent)
            follow = true;
    }
    bool sent = kind == KC_SUBMIT_VALID ? submit_valid(L, s) : kc_session_submit(s, kind);
    if (!sent)
        return false;
    if (kind == KC_SUBMIT_INVALID)
        L->sum.off_hashes++; /* computed, then spoiled */
    L->sum.submits++;
    L->in_flight++;
    if (follow && kc_session_submit(s, KC_SUBMIT_FREQUENT)) {
        L->sum.off_hashes++;
        L->sum.submits++;
        L->in_flight++;
    }
    return true;
}

/* -rate max: keeps -pipeline submits in flight. */
static void fill(load *L, kc_session *s)
{
    while (!L->draining && kc_session_in_flight(s) < L->opt->pipeline && submit_one(L, s)) {
    }
}

static void on_pace(uv_timer_t *t);

static void arm(kc_session *s, double delay_ms)
{
    uv_timer_start(&s->pace, on_pace, delay_ms > 0 ? (uint64_t)ceil(delay_ms) : 0, 0);
}

/* Difficulty on, paced: the shares waiting go now, as many as the pipeline takes, unless the
 * server's rate limit says wait (then the pace timer brings them). A share does not wait for a
 * -rate slot: with jobs a second apart it would often die with its job first. */
static void send_shares(load *L, kc_session *s)
{
    peer *p = &L->peers[index_of(L, s)];
    if (L->draining || s->state != KC_STATE_READY || !kc_search_peek(&s->search))
        return;
    double now = kc_now_ms();
    if (L->gap_ms > 0 && p->last_ok_ms > 0 && now < p->last_ok_ms + L->gap_ms) {
        if (!uv_is_active((uv_handle_t *)&s->pace))
            arm(s, p->last_ok_ms + L->gap_ms - now);
        return;
    }
    while (kc_session_in_flight(s) < L->opt->pipeline && submit_one(L, s)) {
    }
}

static void on_pace(uv_timer_t *t)
{
    kc_session *s = t->data;
    load *L = s->client->mode;
    peer *p = &L->peers[index_of(L, s)];
    if (L->draining || s->state != KC_STATE_READY)
        return;
    if (s->search.on) {
        send_shares(L, s);
        return;
    }
    double now = kc_now_ms();
    if (L->guard && p->last_ok_ms > 0 && now < p->last_ok_ms + L->gap_ms) {
        arm(s, p->last_ok_ms + L->gap_ms - now);
        return;
    }
    for (int burst = 0; p->next_due_ms <= now && burst < MAX_BURST; burst++) {
        if (kc_session_in_flight(s) >= L->opt->pipeline) {
            L->sum.pace_skipped++; /* the server is slower than -rate: this slot is gone */
            break;
        }
        if (!submit_one(L, s))
            break;
        p->next_due_ms += L->period_ms;
    }
    if (p->next_due_ms <= now) /* fell behind: continue from now rather than burst to catch up */
        p->next_due_ms = now + L->period_ms;
    arm(s, p->next_due_ms - now);
}

/* ---- session events ---- */

static void on_authorized(kc_session *s)
{
    load *L = s->client->mode;
    peer *p = &L->peers[index_of(L, s)];
    p->ready = true;
    p->last_ok_ms = 0;
    L->ready++;
    L->sum.authorized++;
    if (L->ready > L->sum.peak_ready)
        L->sum.peak_ready = L->ready;
}

static void on_job(kc_session *s, int64_t prev_job_id)
{
    load *L = s->client->mode;
    kc_summary_job(&L->sum, s->job_id, uv_hrtime(), prev_job_id != 0);
    if (prev_job_id != 0 && s->job_id > prev_job_id + 1)
        L->sum.jobs_missed += (uint64_t)(s->job_id - prev_job_id - 1);
    if (L->draining)
        return;
    if (L->unpaced) {
        fill(L, s);
    } else if (s->search.on) {
        /* shares go as found (send_shares); no -rate schedule */
    } else if (prev_job_id == 0 && L->period_ms > 0) { /* first job on this connection: start at a random phase */
        peer *p = &L->peers[index_of(L, s)];
        double phase = kc_random_unit(&L->rng) * L->period_ms;
        p->next_due_ms = kc_now_ms() + phase;
        arm(s, phase);
    }
}

static bool mix_asked_for(kc_submit_kind kind, kp_outcome oc)
{
    return (kind == KC_SUBMIT_DUPLICATE && oc == KP_OUTCOME_DUPLICATE) ||
           (kind == KC_SUBMIT_INVALID && oc == KP_OUTCOME_INVALID_RESULT) ||
           (kind == KC_SUBMIT_FREQUENT && oc == KP_OUTCOME_TOO_FREQUENT);
}

static void on_answer(kc_session *s, const kc_answer *a)
{
    load *L = s->client->mode;
    L->in_flight--;
    kc_histogram_record(&L->sum.latency, a->latency_us);
    kc_histogram_record(&L->second, a->latency_us);
    if (a->outcome == KP_OUTCOME_OK) {
        L->sum.accepted++;
        L->sum.accepted_difficulty += (double)a->difficulty;
        L->peers[index_of(L, s)].last_ok_ms = kc_now_ms();
    } else {
        if (a->error && strcmp(a->error, KC_LOW_DIFFICULTY) == 0)
            L->sum.low_difficulty++;
        L->sum.rejected[a->outcome]++; /* KP_OUTCOME_COUNT: a string this client does not know */
        if (mix_asked_for(a->kind, a->outcome)) {
            L->sum.mix_expected++;
        } else {
            L->sum.unexpected++;
            unsigned bit = 1u << a->outcome;
            if (!(L->unexpected_logged & bit)) { /* once per error string */
                L->unexpected_logged |= bit;
                KP_WARN(MODULE, "unexpected rejection", KP_QSTR("error", a->error),
                        KP_INT("job_id", a->job_id), KP_QSTR("username", s->username));
            }
        }
    }
    if (L->draining) {
        if (L->in_flight == 0)
            finish(L);
        return;
    }
    if (L->unpaced)
        fill(L, s);
    else if (s->search.on)
        send_shares(L, s);
}

static void on_down(kc_session *s, kc_down_reason why, const char *detail, uint32_t lost,
                    uint64_t retry_ms)
{
    load *L = s->client->mode;
    peer *p = &L->peers[index_of(L, s)];
    if (p->ready) {
        p->ready = false;
        L->ready--;
    }
    L->in_flight -= lost;
    L->sum.unanswered += lost;
    if (why != KC_DOWN_STOPPED) {
        L->sum.down[why]++;
        L->downs_logged++;
        if (L->downs_logged <= LOG_FIRST || L->downs_logged % LOG_EVERY == 0)
            KP_WARN(MODULE, "connection lost", KP_QSTR("username", s->username),
                    KP_QSTR("reason", kc_down_reason_name(why)), KP_QSTR("detail", detail),
                    KP_UINT("unanswered", lost), KP_UINT("retry_ms", retry_ms),
                    KP_UINT("lost_so_far", L->downs_logged));
    }
    if (L->draining && !L->finished && L->in_flight == 0)
        finish(L);
}

/* The search queued a share: it goes now, within the rate limit (-rate max: the pipeline). */
static void on_share(kc_session *s)
{
    load *L = s->client->mode;
    if (L->draining)
        return;
    if (L->unpaced)
        fill(L, s);
    else
        send_shares(L, s);
}

static void on_difficulty(kc_session *s, uint64_t difficulty)
{
    load *L = s->client->mode;
    L->sum.set_difficulty++;
}

static const kc_session_events load_events = {
    .on_authorized = on_authorized,
    .on_job = on_job,
    .on_answer = on_answer,
    .on_difficulty = on_difficulty,
    .on_down = on_down,
};

/* ---- ramp and progress ---- */

/* A non-negative duration rounded to a whole number, as "%.0f" wrote it. */
static uint64_t whole(double x)
{
    return x > 0 ? (uint64_t)(x + 0.5) : 0;
}

static void on_ramp(uv_timer_t *t)
{
    load *L = t->data;
    double elapsed = kc_now_ms() - L->start_ms;
    double allowed = 1.0 + (double)L->opt->connect_rate * elapsed / 1000.0;
    uint32_t target = allowed >= (double)L->n ? L->n : (uint32_t)allowed;
    while (L->started < target && !L->draining)
        kc_session_connect(&L->sessions[L->started++]);
    if (L->started == L->n) {
        uv_timer_stop(&L->ramp);
        KP_INFO(MODULE, "ramp done", KP_UINT("sessions", L->n), KP_UINT("ready", L->ready),
                KP_UINT("elapsed_ms", whole(elapsed)));
    }
}

static void on_progress(uv_timer_t *t)
{
    load *L = t->data;
    const kc_histogram *h = &L->second;
    uint64_t rejected = 0;
    for (int oc = 0; oc <= KP_OUTCOME_COUNT; oc++)
        rejected += L->sum.rejected[oc];
    uint64_t hashes = total_hashes(L);
    /* Microseconds / 1000 renders with at most three decimals (KP_FLOAT writes the shortest
     * form: 0.06, not 0.060). */
    KP_INFO(MODULE, "progress", KP_UINT("elapsed_s", whole((kc_now_ms() - L->start_ms) / 1000.0)),
            KP_UINT("ready", L->ready), KP_UINT("started", L->started),
            KP_UINT("submits_per_s", L->sum.submits - L->prev_submits),
            KP_UINT("accepted_per_s", L->sum.accepted - L->prev_accepted),
            KP_UINT("accepted", L->sum.accepted), KP_UINT("rejected", rejected),
            KP_UINT("in_flight", L->in_flight),
            KP_FLOAT("p50_ms", (double)kc_histogram_percentile(h, 50) / 1000.0),
            KP_FLOAT("p99_ms", (double)kc_histogram_percentile(h, 99) / 1000.0),
            KP_FLOAT("max_ms", (double)h->max / 1000.0), KP_UINT("jobs", L->sum.njobs),
            KP_UINT("errors", kc_summary_errors(&L->sum)),
            KP_UINT("hashes_per_s", hashes - L->prev_hashes));
    L->prev_submits = L->sum.submits;
    L->prev_accepted = L->sum.accepted;
    L->prev_hashes = hashes;
    kc_histogram_reset(&L->second);
}

/* ---- setup ---- */

/* The summary on stdout, with the process's CPU time and the searches' figures. */
static void report(load *L)
{
    kc_summary *sum = &L->sum;
    sum->hashes = total_hashes(L);
    for (uint32_t i = 0; i < L->n; i++) {
        const kc_search *sr = &L->sessions[i].search;
        sum->shares_found += sr->found;
        sum->shares_dropped_full += sr->dropped_full;
        sum->shares_dropped_stale += sr->dropped_stale;
    }
    for (uint32_t i = 0; i < L->n; i++) {
        uint64_t d = L->sessions[i].search.difficulty;
        if (d && (sum->difficulty_min == 0 || d < sum->difficulty_min))
            sum->difficulty_min = d;
        if (d > sum->difficulty_max)
            sum->difficulty_max = d;
    }
    sum->slices = L->miner.slices;
    sum->slice_max_ms = (double)L->miner.slice_max_ns / 1e6;
    sum->slice_p99_ms = (double)kc_histogram_percentile(&L->miner.slice_us, 99) / 1000.0;
    sum->slice_cpu_p99_ms = (double)kc_histogram_percentile(&L->miner.slice_cpu_us, 99) / 1000.0;
    sum->loop_delay_p99_ms = (double)kc_histogram_percentile(&L->miner.tick_late_us, 99) / 1000.0;
    sum->loop_delay_max_ms = (double)L->miner.tick_late_us.max / 1000.0;
    sum->search_busy_s = (double)L->miner.busy_ns / 1e9;
    uv_rusage_t ru;
    if (uv_getrusage(&ru) == 0) {
        L->sum.cpu_user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
        L->sum.cpu_sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    if (L->opt->json)
        kc_summary_print_json(&L->sum, stdout);
    else
        kc_summary_print_text(&L->sum, stdout);
    fflush(stdout);
}

static int init_sessions(load *L)
{
    const kc_options *o = L->opt;
    L->sessions = calloc(L->n, sizeof(*L->sessions));
    L->peers = calloc(L->n, sizeof(*L->peers));
    if (!L->sessions || !L->peers)
        return KP_ENOMEM;
    char name[300];
    for (uint32_t i = 0; i < L->n; i++) {
        snprintf(name, sizeof(name), "%s-%" PRIu32, o->username, i);
        /* The suffix may push a 250-byte -username past the protocol's 255. */
        if (strlen(name) > KP_USERNAME_MAX)
            snprintf(name, sizeof(name), "%.240s-%" PRIu32, o->username, i);
        int rc = kc_session_init(&L->sessions[i], &L->client, name);
        if (rc != 0) {
            L->n = i; /* only these have handles to close */
            return rc;
        }
    }
    return 0;
}

static void check_limits(load *L)
{
    uint64_t nofile = kc_raise_nofile();
    KP_INFO(MODULE, "file descriptor limit", KP_UINT("nofile", nofile), KP_UINT("sessions", L->n));
    if ((uint64_t)L->n + FD_RESERVE > nofile)
        KP_WARN(MODULE, "more sessions than file descriptors: some will fail to connect",
                KP_UINT("nofile", nofile), KP_UINT("sessions", L->n));
    /* One source address reaches one server port through about 28k ephemeral ports. */
    uint32_t sources = L->opt->has_src ? kc_src_range_count(&L->opt->src) : 1;
    if ((uint64_t)L->n > (uint64_t)sources * 28000u)
        KP_WARN(MODULE, "more sessions than ephemeral ports: widen -src",
                KP_UINT("sources", sources), KP_UINT("sessions", L->n));
}

/* Ramp, -duration, drain, report. Returns the exit status. */
static int run(load *L, const kc_target *target)
{
    const kc_options *opt = L->opt;
    uv_loop_t *loop = L->loop;
    uv_timer_init(loop, &L->ramp);
    uv_timer_init(loop, &L->progress);
    uv_timer_init(loop, &L->end);
    uv_signal_init(loop, &L->sigint);
    uv_signal_init(loop, &L->sigterm);
    L->ramp.data = L->progress.data = L->end.data = L->sigint.data = L->sigterm.data = L;
    uv_signal_start(&L->sigint, on_signal, SIGINT);
    uv_signal_start(&L->sigterm, on_signal, SIGTERM);

    /* Idle sessions (-rate 0) neither submit nor search: the miner gets none of them. */
    kc_miner_start(&L->miner, loop, L->sessions, L->idle ? 0 : L->n, opt->hashrate == 0,
                   on_share);
    KP_INFO(MODULE, "starting", KP_QSTR("addr", target->url), KP_UINT("sessions", L->n),
            KP_UINT("duration_ms", opt->duration_ms), KP_STR("rate", L->sum.rate_text),
            KP_UINT("pipeline", opt->pipeline), KP_UINT("connect_rate", opt->connect_rate),
            KP_UINT("sources", opt->has_src ? kc_src_range_count(&opt->src) : 0),
            KP_FLOAT("hashrate", opt->hashrate));
    L->start_ms = kc_now_ms();
    uv_timer_start(&L->ramp, on_ramp, 0, RAMP_TICK_MS);
    uv_timer_start(&L->progress, on_progress, PROGRESS_MS, PROGRESS_MS);
    if (opt->duration_ms)
        uv_timer_start(&L->end, on_duration, opt->duration_ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    report(L);
    return L->sum.authorized > 0 ? 0 : 1;
}

int kc_load_run(uv_loop_t *loop, const kc_options *opt, const kc_target *target)
{
    load *L = calloc(1, sizeof(*L)); /* two histograms: too big for the stack */
    if (!L) {
        KP_ERROR(MODULE, "out of memory");
        return 1;
    }
    L->loop = loop;
    L->opt = opt;
    L->n = opt->sessions;
    L->unpaced = opt->rate_max;
    L->idle = !opt->rate_max && opt->rate == 0;
    L->period_ms = opt->rate > 0 ? 1000.0 / opt->rate : 0;
    L->guard = opt->rate > 0 && opt->rate <= 1.0 && opt->min_submit_interval_ms > 0;
    if (opt->min_submit_interval_ms)
        L->gap_ms = (double)opt->min_submit_interval_ms + GAP_MARGIN_MS;
    kc_summary_init(&L->sum, opt->sessions);
    L->sum.transport = kc_scheme_name(opt->addr.scheme);
    L->sum.rate = opt->rate;
    if (opt->rate_max)
        snprintf(L->sum.rate_text, sizeof(L->sum.rate_text), "max");
    else
        snprintf(L->sum.rate_text, sizeof(L->sum.rate_text), "%g", opt->rate);
    L->sum.pipeline = opt->pipeline;
    L->sum.hashrate_asked = opt->hashrate;
    check_limits(L);

    kc_client *c = &L->client;
    kc_client_setup(c, loop, opt, target);
    c->events = &load_events;
    c->mode = L;
    c->max_in_flight = opt->pipeline;
    c->connect_timeout_ms = CONNECT_TIMEOUT_MS;
    c->backoff_base_ms = BACKOFF_BASE_MS;
    c->backoff_max_ms = BACKOFF_MAX_MS;
    c->hashrate = opt->hashrate;
    int status = 1;
    if (kc_client_init(c) != 0 || kc_nonce_seq_seed(&L->rng) != 0) {
        KP_ERROR(MODULE, "out of memory");
    } else if (init_sessions(L) != 0) {
        KP_ERROR(MODULE, "out of memory for the sessions", KP_UINT("sessions", opt->sessions));
        for (uint32_t i = 0; i < L->n; i++) /* close the timers of those made */
            kc_session_stop(&L->sessions[i]);
        uv_run(loop, UV_RUN_DEFAULT);
    } else {
        status = run(L, target);
    }
    for (uint32_t i = 0; L->sessions && i < L->n; i++)
        kc_session_free(&L->sessions[i]);
    free(L->sessions);
    free(L->peers);
    kc_summary_free(&L->sum);
    kc_client_free(c);
    free(L);
    return status;
}
