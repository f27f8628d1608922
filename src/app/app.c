#include "app.h"

#include <stdlib.h>

#include "admin.h"
#include "admin_source.h"
#include "backends.h"
#include "kupool/error.h"
#include "log.h"

#define MODULE "app.server"

/* ---- signals and shutdown ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    kp_app *app = h->data;
    if (app->shutting_down) {
        KP_WARN(MODULE, "signal during shutdown; still flushing", KP_INT("signal", signum));
        return;
    }
    KP_INFO(MODULE, "signal received", KP_INT("signal", signum));
    kp_app_shutdown(app);
}

static void on_drained(int status, void *arg)
{
    kp_app *app = arg;
    kp_pipeline_stats ps = kp_pipeline_get_stats(app->pipeline);
    if (status == 0)
        KP_INFO(MODULE, "events flushed", KP_UINT("published", ps.published),
                KP_UINT("spooled", ps.spooled));
    else
        KP_ERROR(MODULE, "shutdown: events neither published nor spooled",
                 KP_UINT("lost", (uint64_t)ps.waiting - ps.spooled), KP_STR("mq", app->mq->name));
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
}

/* The order of SPEC §6: stop taking connections and close the sessions (no new events), close
 * the admin endpoint, then drain the pipeline; the consumer stops in kp_app_free. */
void kp_app_shutdown(kp_app *app)
{
    if (app->shutting_down)
        return;
    app->shutting_down = true;
    app->shutdown_start_ns = uv_hrtime();
    KP_INFO(MODULE, "shutting down", KP_UINT("sessions", app->server->authorized.count),
            KP_UINT("connections", app->server->connections),
            KP_UINT("waiting", kp_pipeline_get_stats(app->pipeline).waiting));
    kp_server_close(app->server);
    if (app->admin) {
        kp_admin_close(app->admin);
        app->admin = NULL;
    }
    kp_pipeline_drain(app->pipeline, app->cfg->shutdown_timeout_ms, on_drained, app);
}

/* ---- lifecycle ---- */

/* The protocol's event sink: accepted submits go into the pipeline. */
static int push_event(void *pipeline, const kp_event *ev)
{
    return kp_pipeline_push(pipeline, ev);
}

static int open_backend_failed(const char *what, const char *key, const char *name, int rc)
{
    KP_ERROR(MODULE, what, KP_STR(key, name),
             KP_QSTR("error", rc == KP_EINVAL ? "invalid configuration (the line above says why)"
                                              : kp_strerror(rc)));
    return rc;
}

static int open_parts(kp_app *app)
{
    const kp_config *cfg = app->cfg;
    int rc = kp_mq_open(cfg, &app->mq);
    if (rc != 0)
        return open_backend_failed("cannot open mq backend", "mq", cfg->mq, rc);
    rc = kp_stats_open(cfg, &app->stats);
    if (rc != 0)
        return open_backend_failed("cannot open stats backend", "store", cfg->store, rc);
    kp_pipeline_options po = {.spool_dir = cfg->data_dir};
    if ((rc = kp_pipeline_open(app->loop, app->mq, &po, &app->pipeline)) != 0)
        return rc;
    if ((rc = kp_job_book_init(&app->jobs, cfg->interval_ms, cfg->expire_ms, cfg->job_secret)) != 0)
        return rc;
    kp_event_sink sink = {.push = push_event, .ctx = app->pipeline};
    if ((rc = kp_protocol_init(&app->protocol, &app->jobs, sink, cfg->min_submit_interval_ms,
                               cfg->max_errors)) != 0)
        return rc;
    kp_protocol_set_difficulty(&app->protocol, cfg->difficulty,
                               (kp_vardiff_params){.target_ms = cfg->vardiff_target_ms,
                                                   .min = cfg->vardiff_min,
                                                   .max = cfg->vardiff_max});
    if (cfg->consume && (rc = kp_consumer_start(app->mq, app->stats, &app->consumer)) != 0)
        return rc;
    return 0;
}

/* Before any "started" line: a supervisor (or a test) that sends SIGTERM as soon as it reads
 * one must get the graceful shutdown, not the default action. */
static void watch_signals(kp_app *app)
{
    uv_signal_init(app->loop, &app->sigint);
    app->sigint.data = app;
    uv_signal_init(app->loop, &app->sigterm);
    app->sigterm.data = app;
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
}

int kp_app_open(uv_loop_t *loop, const kp_config *cfg, kp_app **out)
{
    kp_app *app = calloc(1, sizeof(*app));
    if (!app)
        return KP_ENOMEM;
    app->loop = loop;
    app->cfg = cfg;
    int rc = kp_server_new(loop, cfg, &app->jobs, &app->protocol, &app->server);
    if (rc == 0)
        rc = open_parts(app);
    if (rc == 0) {
        watch_signals(app);
        rc = kp_server_listen(app->server);
    }
    if (rc == 0 && cfg->http_addr[0]) {
        app->admin_source = kp_app_admin_source(app);
        rc = kp_admin_open(loop, cfg->http_addr, &app->admin_source, &app->admin);
    }
    if (rc != 0) {
        if (app->server)
            kp_server_close(app->server);
        if (app->sigint.loop) {
            uv_close((uv_handle_t *)&app->sigint, NULL);
            uv_close((uv_handle_t *)&app->sigterm, NULL);
        }
        kp_admin_close(app->admin);
        app->admin = NULL;
        kp_pipeline_close(app->pipeline);
        app->pipeline = NULL;
        uv_run(loop, UV_RUN_DEFAULT); /* lets the closed handles finish */
        kp_app_free(app);
        return rc;
    }
    kp_server_start(app->server);
    *out = app;
    return 0;
}

int kp_app_free(kp_app *app)
{
    if (!app)
        return 0;
    uint64_t counted = 0;
    if (app->consumer) {
        /* The drain and the consumer share one -shutdown_timeout (SPEC §6). What is still
         * queued then waits in the broker for the next consumer (-mq rabbit); an in-process
         * queue (-mq memory) loses it, as it would after any full timeout. */
        uint64_t left_ms = app->cfg->shutdown_timeout_ms;
        if (app->shutting_down) {
            uint64_t spent_ms = (uv_hrtime() - app->shutdown_start_ns) / 1000000u;
            left_ms = spent_ms < left_ms ? left_ms - spent_ms : 0;
        }
        counted = kp_consumer_stop(app->consumer, left_ms);
        app->consumer = NULL;
    }
    if (app->pipeline) {
        kp_pipeline_stats ps = kp_pipeline_get_stats(app->pipeline);
        int64_t left = kp_mq_pending(app->mq);
        KP_INFO(MODULE, "stopped", KP_UINT("accepted", ps.accepted),
                KP_UINT("published", ps.published), KP_UINT("counted", counted),
                KP_UINT("unpublished", ps.waiting), KP_UINT("spooled", ps.spooled),
                KP_INT("queued", left));
        kp_pipeline_close(app->pipeline);
        uv_run(app->loop, UV_RUN_DEFAULT);
    }
    kp_server_free(app->server);
    kp_protocol_free(&app->protocol);
    kp_job_book_free(&app->jobs);
    kp_stats_free(app->stats);
    kp_mq_free(app->mq);
    int status = app->exit_status;
    free(app);
    return status;
}
