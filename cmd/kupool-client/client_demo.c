#include "client_demo.h"

#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "client.demo"
/* Never two submits within a second; the margin covers clock granularity at both ends. */
#define MIN_GAP_MS 1010.0
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
    bool draining;
    bool finished;
    int status;
    uint64_t accepted, rejected;
} demo;

static void finish(demo *d)
{
    if (d->finished)
        return;
    d->finished = true;
    kc_session_stop(&d->session);
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
    if (kc_session_submit(s, KC_SUBMIT_VALID)) {
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
    double due = d->answered_job == s->job_id ? d->last_send_ms + KEEPALIVE_MS : now;
    if (d->last_send_ms > 0 && due < d->last_send_ms + MIN_GAP_MS)
        due = d->last_send_ms + MIN_GAP_MS;
    if (d->last_ok_ms > 0 && due < d->last_ok_ms + MIN_GAP_MS)
        due = d->last_ok_ms + MIN_GAP_MS;
    double delay = due > now ? due - now + 0.999 : 0; /* round up: never early */
    uv_timer_start(&s->pace, on_pace, (uint64_t)delay, 0);
}

static void on_authorized(kc_session *s)
{
    KP_INFO(MODULE, "authorized", KP_QSTR("username", s->username));
}

static void on_job(kc_session *s, int64_t prev_job_id)
{
    demo *d = s->client->mode;
    KP_INFO(MODULE, "job", KP_INT("job_id", s->job_id), KP_STR("nonce", s->server_nonce));
    schedule(d);
}

static void on_answer(kc_session *s, const kc_answer *a)
{
    demo *d = s->client->mode;
    double ms = (double)a->latency_us / 1000.0;
    if (a->outcome == KP_OUTCOME_OK) {
        d->accepted++;
        d->last_ok_ms = kc_now_ms();
        KP_INFO(MODULE, "submit accepted", KP_INT("job_id", a->job_id),
                KP_STR("client_nonce", a->client_nonce), KP_FLOAT("latency_ms", ms));
    } else {
        d->rejected++;
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
    .on_down = on_down,
};

int kc_demo_run(uv_loop_t *loop, const kc_options *opt, const kc_target *target)
{
    demo d = {.loop = loop, .opt = opt};
    kc_client *c = &d.client;
    kc_client_setup(c, loop, opt, target);
    c->events = &demo_events;
    c->mode = &d;
    c->max_in_flight = 1;
    c->connect_timeout_ms = CONNECT_TIMEOUT_MS;
    c->backoff_base_ms = BACKOFF_BASE_MS;
    c->backoff_max_ms = BACKOFF_MAX_MS;
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

    KP_INFO(MODULE, "connecting", KP_QSTR("addr", target->url), KP_QSTR("username", opt->username));
    kc_session_connect(&d.session);
    uv_run(loop, UV_RUN_DEFAULT);

    KP_INFO(MODULE, "stopped", KP_UINT("accepted", d.accepted), KP_UINT("rejected", d.rejected));
    kc_session_free(&d.session);
    kc_client_free(c);
    return d.status;
}
