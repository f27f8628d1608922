#include "client_demo.h"

#include <math.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#include "kupool/error.h"
#include "log.h"

#include "client_miner.h"

#define MODULE "client.demo"
/* Added to -min_submit_interval: covers clock granularity at both ends. */
#define GAP_MARGIN_MS 10.0
/* The log calls the difficulty steady once it stayed within a factor STEADY_BAND of where it last
 * jumped for this many jobs and accepted shares: a pool judges a share rate by a dozen or more
 * shares (KuPool's rule, src/proto/vardiff.h, waits for 16), so fewer would call a pause in the
 * climb "steady"; and the small steps a pool takes after a quiet spell (5% down) are not a climb. */
#define STEADY_JOBS 3
#define STEADY_SHARES 16
#define STEADY_BAND 2.0
/* Without a new job, the current one is answered again this long after the last submit. */
#define KEEPALIVE_MS 60000.0
#define CONNECT_TIMEOUT_MS 10000u
#define BACKOFF_BASE_MS 500u
#define BACKOFF_MAX_MS 30000u
/* After -duration or a signal, the answer to a submit in flight is awaited this long. */
#define DRAIN_MS 2000u

typedef struct demo {
    uv_loop_t *loop;
    const kc_options *opt;
    kc_client client;
    kc_session session;
    uv_signal_t sigint, sigterm;
    uv_timer_t end; /* -duration, then the drain deadline */
    double last_send_ms;  /* 0 = nothing sent on this connection yet */
    double last_ok_ms;    /* arrival of the last accepted answer */
    int64_t answered_job; /* the newest job a submit was sent for */
    double gap_ms;        /* no two submits closer: -min_submit_interval + margin */
    bool draining;
    bool finished;
    int status;
    uint64_t accepted, rejected;
    /* SPEC §8: the search and what it showed */
    kc_miner miner;
    double start_ms;
    uint64_t difficulty;       /* the last one announced, 0 = none yet */
    uint64_t steady_from;      /* the difficulty after the last jump (a change beyond STEADY_BAND) */
    uint32_t jobs_unchanged;   /* jobs since that jump */
    uint32_t shares_unchanged; /* accepted shares since, within STEADY_BAND of steady_from */
    bool steady_logged;        /* "difficulty steady" said since that jump */
    uint64_t job_hashes;       /* search.hashes at the previous job */
    double job_ms;             /* and when it came */
    double last_share_ms;      /* arrival of the last accepted share's answer, 0 = none */
    uint64_t low_difficulty;   /* "Low difficulty share" answers */
    uint64_t off_hashes;       /* hashes of submits made with difficulty off (one each) */
    double difficulty_sum;     /* of the accepted shares */
} demo;

static void finish(demo *d)
{
    if (d->finished)
        return;
    d->finished = true;
    kc_session_stop(&d->session);
    kc_miner_close(&d->miner);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->end, NULL);
}

static void on_drain_deadline(uv_timer_t *t)
{
    finish(t->data);
}

/* Stops submitting; ends once the submit in flight (if any) is answered. */
static void start_drain(demo *d)
{
    if (d->draining)
        return;
    d->draining = true;
    uv_timer_stop(&d->session.pace);
    if (kc_session_in_flight(&d->session) == 0) {
        finish(d);
        return;
    }
    uv_timer_start(&d->end, on_drain_deadline, DRAIN_MS, 0);
}

static void on_duration(uv_timer_t *t)
{
    start_drain(t->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
    demo *d = h->data;
    KP_INFO(MODULE, "signal received, stopping", KP_INT("signal", signum));
    if (d->draining)
        finish(d); /* a second signal does not wait */
    else
        start_drain(d);
}

static void schedule(demo *d);

static void on_pace(uv_timer_t *t)
{
    kc_session *s = t->data;
    demo *d = s->client->mode;
    if (d->draining)
        return;
    if (s->search.on) {
        const kc_share *sh = kc_search_peek(&s->search);
        if (sh && kc_session_submit_share(s, sh)) {
            kc_search_pop(&s->search);
            d->last_send_ms = kc_now_ms();
        }
    } else if (kc_session_submit(s, KC_SUBMIT_VALID)) {
        d->off_hashes++;
        d->last_send_ms = kc_now_ms();
        d->answered_job = s->job_id;
    }
    schedule(d);
}

/* Arms the pace timer for the next submit: a job not answered yet is due now, else the
 * keepalive; either way no sooner than MIN_GAP_MS after the last send and the last acceptance. */
static void schedule(demo *d)
{
    kc_session *s = &d->session;
    if (d->draining || s->state != KC_STATE_READY || s->job_id == 0)
        return;
    double now = kc_now_ms();
    double due;
    if (s->search.on) { /* a share found is due, and nothing else: no keepalive */
        if (!kc_search_peek(&s->search) || kc_session_in_flight(s) > 0)
            return; /* on_share or the answer calls again */
        due = now;
    } else {
        due = d->answered_job == s->job_id ? d->last_send_ms + KEEPALIVE_MS : now;
    }
    if (d->last_send_ms > 0 && due < d->last_send_ms + d->gap_ms)
        due = d->last_send_ms + d->gap_ms;
    if (d->last_ok_ms > 0 && due < d->last_ok_ms + d->gap_ms)
        due = d->last_ok_ms + d->gap_ms;
    double delay = due > now ? due - now + 0.999 : 0; /* round up: never early */
    uv_timer_start(&s->pace, on_pace, (uint64_t)delay, 0);
}

static void on_authorized(kc_session *s)
{
    KP_INFO(MODULE, "authorized", KP_QSTR("username", s->username));
}

/* Seconds and rates in the log: to the millisecond, not to the double's last digit. */
static double round3(double x)
{
    return floor(x * 1000.0 + 0.5) / 1000.0;
}

/* Hashes per second since the previous job, 0 for the first. */
static double job_hashrate(demo *d, const kc_search *sr)
{
    double now = kc_now_ms();
    double rate = d->job_ms > 0 && now > d->job_ms
                      ? (double)(sr->hashes - d->job_hashes) * 1000.0 / (now - d->job_ms)
                      : 0;
    d->job_hashes = sr->hashes;
    d->job_ms = now;
    return rate;
}

static void on_job(kc_session *s, int64_t prev_job_id)
{
    demo *d = s->client->mode;
    const kc_search *sr = &s->search;
    if (!sr->on) {
        KP_INFO(MODULE, "job", KP_INT("job_id", s->job_id), KP_STR("nonce", s->server_nonce));
        schedule(d);
        return;
    }
    double rate = job_hashrate(d, sr);
    KP_INFO(MODULE, "job", KP_INT("job_id", s->job_id), KP_STR("nonce", s->server_nonce),
            KP_UINT("difficulty", sr->difficulty), KP_UINT("hashrate", (uint64_t)rate));
    d->jobs_unchanged++;
    if (!d->steady_logged && d->jobs_unchanged >= STEADY_JOBS &&
        d->shares_unchanged >= STEADY_SHARES) {
        d->steady_logged = true;
        KP_INFO(MODULE, "difficulty steady", KP_UINT("difficulty", sr->difficulty),
                KP_UINT("jobs", d->jobs_unchanged), KP_UINT("shares", d->shares_unchanged),
                KP_UINT("hashrate", (uint64_t)rate),
                KP_FLOAT("mean_share_interval_s",
                         rate > 0 ? round3((double)sr->difficulty / rate) : 0));
    }
    schedule(d);
}

static bool within_band(uint64_t d, uint64_t from)
{
    return from != 0 && (double)d <= (double)from * STEADY_BAND &&
           (double)d * STEADY_BAND >= (double)from;
}

/* The log says plainly which way the difficulty went, and what it means at this hashrate. */
static void on_difficulty(kc_session *s, uint64_t difficulty)
{
    demo *d = s->client->mode;
    double elapsed = kc_now_ms() - d->start_ms;
    double rate = elapsed > 0 ? (double)s->search.hashes * 1000.0 / elapsed : 0;
    if (d->job_ms > 0 && kc_now_ms() > d->job_ms) /* the rate since the last job is fresher */
        rate = (double)(s->search.hashes - d->job_hashes) * 1000.0 / (kc_now_ms() - d->job_ms);
    const char *what = d->difficulty == 0         ? "difficulty set"
                       : difficulty > d->difficulty ? "difficulty raised"
                       : difficulty < d->difficulty ? "difficulty lowered"
                                                    : "difficulty repeated";
    double factor = d->difficulty ? (double)difficulty / (double)d->difficulty : 0;
    KP_INFO(MODULE, what, KP_UINT("difficulty", difficulty), KP_UINT("previous", d->difficulty),
            KP_FLOAT("factor", round3(factor)), KP_UINT("hashrate", (uint64_t)rate),
            KP_FLOAT("mean_share_interval_s", rate > 0 ? round3((double)difficulty / rate) : 0));
    d->difficulty = difficulty;
    if (!within_band(difficulty, d->steady_from)) { /* a jump: the steadiness count restarts */
        d->steady_from = difficulty;
        d->jobs_unchanged = 0;
        d->shares_unchanged = 0;
        d->steady_logged = false;
    }
}

static void on_share(kc_session *s)
{
    demo *d = s->client->mode;
    if (!uv_is_active((uv_handle_t *)&s->pace))
        schedule(d);
}

static void on_answer(kc_session *s, const kc_answer *a)
{
    demo *d = s->client->mode;
    double ms = (double)a->latency_us / 1000.0;
    bool on = s->search.on;
    if (a->outcome == KP_OUTCOME_OK) {
        d->accepted++;
        d->last_ok_ms = kc_now_ms();
        d->difficulty_sum += (double)a->difficulty;
        if (on && within_band(a->difficulty, d->steady_from))
            d->shares_unchanged++;
        if (on) {
            double gap = d->last_share_ms > 0 ? (d->last_ok_ms - d->last_share_ms) / 1000.0 : 0;
            d->last_share_ms = d->last_ok_ms;
            KP_INFO(MODULE, "submit accepted", KP_INT("job_id", a->job_id),
                    KP_STR("client_nonce", a->client_nonce), KP_UINT("difficulty", a->difficulty),
                    KP_UINT("hashes", a->hashes), KP_FLOAT("interval_s", round3(gap)),
                    KP_FLOAT("latency_ms", ms));
        } else {
            KP_INFO(MODULE, "submit accepted", KP_INT("job_id", a->job_id),
                    KP_STR("client_nonce", a->client_nonce), KP_FLOAT("latency_ms", ms));
        }
    } else {
        d->rejected++;
        if (a->error && strcmp(a->error, KC_LOW_DIFFICULTY) == 0)
            d->low_difficulty++;
        if (on)
            KP_WARN(MODULE, "submit rejected", KP_INT("job_id", a->job_id),
                    KP_STR("client_nonce", a->client_nonce), KP_QSTR("error", a->error),
                    KP_UINT("difficulty", a->difficulty), KP_FLOAT("latency_ms", ms));
        else
            KP_WARN(MODULE, "submit rejected", KP_INT("job_id", a->job_id),
                    KP_STR("client_nonce", a->client_nonce), KP_QSTR("error", a->error),
                    KP_FLOAT("latency_ms", ms));
    }
    if (d->draining) {
        if (kc_session_in_flight(s) == 0)
            finish(d);
        return;
    }
    schedule(d); /* an acceptance may move the earliest next submit */
}

static void on_down(kc_session *s, kc_down_reason why, const char *detail, uint32_t lost,
                    uint64_t retry_ms)
{
    demo *d = s->client->mode;
    d->last_send_ms = 0;
    d->last_ok_ms = 0;
    d->answered_job = 0;
    d->difficulty = 0; /* a new connection announces its own */
    d->steady_from = 0;
    d->last_share_ms = 0;
    d->job_ms = 0;
    if (why == KC_DOWN_STOPPED)
        return;
    if (why == KC_DOWN_AUTH_REJECTED) {
        KP_ERROR(MODULE, "authorize rejected", KP_QSTR("username", s->username),
                 KP_QSTR("error", detail));
        d->status = 1;
        finish(d);
        return;
    }
    KP_WARN(MODULE, why == KC_DOWN_CONNECT_FAILED ? "connect failed" : "connection lost",
            KP_QSTR("reason", kc_down_reason_name(why)), KP_QSTR("detail", detail),
            KP_UINT("unanswered", lost), KP_UINT("retry_ms", retry_ms));
    if (d->draining) /* nothing more will be answered */
        finish(d);
}

static const kc_session_events demo_events = {
    .on_authorized = on_authorized,
    .on_job = on_job,
    .on_answer = on_answer,
    .on_difficulty = on_difficulty,
    .on_down = on_down,
};

int kc_demo_run(uv_loop_t *loop, const kc_options *opt, const kc_target *target)
{
    demo d = {.loop = loop, .opt = opt};
    if (opt->min_submit_interval_ms)
        d.gap_ms = (double)opt->min_submit_interval_ms + GAP_MARGIN_MS;
    kc_client *c = &d.client;
    kc_client_setup(c, loop, opt, target);
    c->events = &demo_events;
    c->mode = &d;
    c->max_in_flight = 1;
    c->connect_timeout_ms = CONNECT_TIMEOUT_MS;
    c->backoff_base_ms = BACKOFF_BASE_MS;
    c->backoff_max_ms = BACKOFF_MAX_MS;
    c->hashrate = opt->hashrate;
    if (kc_client_init(c) != 0 || kc_session_init(&d.session, c, opt->username) != 0) {
        KP_ERROR(MODULE, "out of memory");
        kc_client_free(c);
        return 1;
    }

    uv_signal_init(loop, &d.sigint);
    uv_signal_init(loop, &d.sigterm);
    uv_timer_init(loop, &d.end);
    d.sigint.data = d.sigterm.data = d.end.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    if (opt->duration_ms)
        uv_timer_start(&d.end, on_duration, opt->duration_ms, 0);

    kc_miner_start(&d.miner, loop, &d.session, 1, opt->hashrate == 0, on_share);

    KP_INFO(MODULE, "connecting", KP_QSTR("addr", target->url), KP_QSTR("username", opt->username));
    d.start_ms = kc_now_ms();
    kc_session_connect(&d.session);
    uv_run(loop, UV_RUN_DEFAULT);

    const kc_search *sr = &d.session.search;
    if (sr->hashes == 0) { /* difficulty was never on: the log line of old */
        KP_INFO(MODULE, "stopped", KP_UINT("accepted", d.accepted), KP_UINT("rejected", d.rejected));
    } else {
        double secs = (kc_now_ms() - d.start_ms) / 1000.0;
        uint64_t hashes = sr->hashes + d.off_hashes;
        KP_INFO(MODULE, "stopped", KP_UINT("accepted", d.accepted), KP_UINT("rejected", d.rejected),
                KP_UINT("low_difficulty", d.low_difficulty), KP_UINT("hashes", hashes),
                KP_FLOAT("hashrate_asked", opt->hashrate),
                KP_UINT("hashrate", secs > 0 ? (uint64_t)((double)hashes / secs) : 0),
                KP_UINT("shares_found", sr->found), KP_UINT("dropped_queue_full", sr->dropped_full),
                KP_UINT("dropped_stale", sr->dropped_stale),
                KP_UINT("accepted_hashrate", secs > 0 ? (uint64_t)(d.difficulty_sum / secs) : 0),
                KP_FLOAT("slice_p99_ms",
                         (double)kc_histogram_percentile(&d.miner.slice_us, 99) / 1000.0),
                KP_FLOAT("slice_cpu_p99_ms",
                         (double)kc_histogram_percentile(&d.miner.slice_cpu_us, 99) / 1000.0),
                KP_FLOAT("slice_max_ms", round3((double)d.miner.slice_max_ns / 1e6)),
                KP_FLOAT("loop_delay_p99_ms",
                         (double)kc_histogram_percentile(&d.miner.tick_late_us, 99) / 1000.0));
    }
    kc_session_free(&d.session);
    kc_client_free(c);
    return d.status;
}
