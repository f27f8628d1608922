/* The daemon's wiring, the top layer: it opens the mq and stats backends, the event pipeline,
 * the job book and the protocol (whose event sink is the pipeline), the consumer, the miner
 * server (net) and the admin endpoint, watches the signals, and runs the graceful shutdown in
 * its order (SPEC §6). Nothing below it knows the others exist. Loop thread only. */
#ifndef KP_APP_H
#define KP_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "admin_snapshot.h"
#include "consumer.h"
#include "job_book.h"
#include "kupool/config.h"
#include "kupool/mq.h"
#include "kupool/stats.h"
#include "pipeline.h"
#include "protocol.h"
#include "server.h"

typedef struct kp_admin kp_admin;

typedef struct kp_app {
    uv_loop_t *loop;
    const kp_config *cfg; /* borrowed; outlives the app */
    kp_job_book jobs;
    kp_protocol protocol;
    kp_mq *mq;
    kp_stats *stats;
    kp_pipeline *pipeline;
    kp_consumer *consumer; /* NULL with -consume=false */
    kp_server *server;     /* the miner-facing listeners and sessions */
    kp_admin *admin;       /* NULL without -http_addr */
    kp_admin_source admin_source; /* what the admin endpoint reads (app/admin_source.c) */
    uv_signal_t sigint, sigterm;
    uv_signal_t sighup; /* reloads the TLS certificate and key; .loop NULL without TLS */
    bool shutting_down;
    uint64_t shutdown_start_ns; /* uv_hrtime() when the shutdown began */
    int exit_status;
} kp_app;

/* Sets up backends, binds -addr (and -ws_addr, -http_addr), issues the first job and starts
 * serving on `loop`. Returns 0, KP_EINVAL (bad settings: exit 2) or another KP_E* (exit 1);
 * one log line says why. */
int kp_app_open(uv_loop_t *loop, const kp_config *cfg, kp_app **out);

/* Starts the graceful shutdown (SPEC §6); idempotent. uv_run() returns when it is done. */
void kp_app_shutdown(kp_app *app);

/* After uv_run() returned: stops the consumer (draining the queue within what is left of
 * -shutdown_timeout), logs the final counts and frees everything. Returns the exit status. */
int kp_app_free(kp_app *app);

#endif
