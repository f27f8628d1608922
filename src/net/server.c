#include "server.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "admin.h"
#include "admin_source.h"
#include "backends.h"
#include "codec.h"
#include "kupool/error.h"
#include "log.h"
#include "net_addr.h"
#include "session.h"

#define MODULE_TCP "tcp.server"
#define MODULE_JOBS "app.coordinator"
#define MODULE_APP "app.server"

#define IO_BUF_SIZE (64u * 1024u)
/* Sessions sent the job per loop iteration: ~256 writes of 7-9 us keep each slice near 2 ms,
 * so submits that arrive during a broadcast of 19k sessions wait milliseconds, not 190 ms. */
#define BROADCAST_CHUNK 256
/* File descriptors kept back from -max_conns for logs, backends and the admin endpoint. */
#define FD_RESERVE 64
#define LISTEN_BACKLOG 4096

void kp_shared_line_release(kp_shared_line *line)
{
    if (line && --line->refs == 0)
        free(line);
}

/* ---- session lists ---- */

void kp_session_list_append(kp_session_list *list, kp_session *sess)
{
    /* A closing session is freed by its close callback: in a list it would dangle. */
    assert(!sess->closing);
    sess->list = list;
    sess->next = NULL;
    sess->prev = list->tail;
    if (list->tail)
        list->tail->next = sess;
    else
        list->head = sess;
    list->tail = sess;
    list->count++;
}

void kp_session_list_remove(kp_server *s, kp_session *sess)
{
    kp_session_list *list = sess->list;
    if (!list)
        return;
    if (s->broadcast_next == sess) /* the broadcast resumes at the one after it */
        s->broadcast_next = sess->next;
    if (sess->prev)
        sess->prev->next = sess->next;
    else
        list->head = sess->next;
    if (sess->next)
        sess->next->prev = sess->prev;
    else
        list->tail = sess->prev;
    list->count--;
    sess->prev = sess->next = NULL;
    sess->list = NULL;
}

/* ---- jobs and broadcast ---- */

static void broadcast_step(uv_idle_t *idle)
{
    kp_server *s = idle->data;
    int64_t oldest = kp_job_book_oldest_id(&s->jobs);
    for (int i = 0; i < BROADCAST_CHUNK && s->broadcast_next; i++) {
        kp_session *sess = s->broadcast_next;
        s->broadcast_next = sess->next;
        /* Nonce sets of expired jobs die here, so no extra pass over sessions is needed. */
        kp_nonce_sets_prune(&sess->peer.nonces, oldest);
        kp_session_send_job(sess, s->job_line, s->job_line_id);
    }
    if (!s->broadcast_next) {
        uv_idle_stop(&s->broadcast_idle);
        s->counters.last_broadcast_us = (uv_hrtime() - s->broadcast_start_ns) / 1000u;
        KP_DEBUG(MODULE_JOBS, "broadcast done", KP_INT("job_id", s->job_line_id),
                 KP_UINT("duration_us", s->counters.last_broadcast_us));
    }
}

static int issue_job(kp_server *s)
{
    const kp_job *job = NULL;
    uint64_t unix_ms = (uint64_t)uv_now(s->loop); /* replaced below for scale-out */
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) == 0)
        unix_ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    int rc = kp_job_book_rotate(&s->jobs, uv_now(s->loop), unix_ms, &job);
    if (rc != 0) {
        KP_ERROR(MODULE_JOBS, "cannot issue a job", KP_QSTR("error", kp_strerror(rc)));
        return rc;
    }
    if (job->id == s->job_line_id)
        return 0;
    kp_shared_line *line = malloc(sizeof(*line) + 160);
    if (!line)
        return KP_ENOMEM;
    line->refs = 1;
    line->len = (uint32_t)kp_format_job(line->data, 160, job->id, job->server_nonce);
    kp_shared_line_release(s->job_line);
    s->job_line = line;
    s->job_line_id = job->id;
    s->counters.jobs_issued++;
    KP_INFO(MODULE_JOBS, "broadcast job", KP_INT("job_id", job->id),
            KP_STR("nonce", job->server_nonce), KP_UINT("sessions", s->authorized.count));

    /* A broadcast still running when the next job comes simply continues with the new line:
     * every session it has not reached yet gets the newest job. */
    s->broadcast_next = s->authorized.head;
    s->broadcast_start_ns = uv_hrtime();
    if (s->broadcast_next)
        uv_idle_start(&s->broadcast_idle, broadcast_step);
    return 0;
}

static void on_job_timer(uv_timer_t *t)
{
    kp_server *s = t->data;
    issue_job(s);
    if (s->cfg->job_secret[0]) {
        /* Scale-out jobs change on wall-clock boundaries: re-aim at the next one each time. */
        uv_timeval64_t tv;
        uv_gettimeofday(&tv);
        uint64_t unix_ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
        uv_timer_start(&s->job_timer, on_job_timer, kp_job_book_ms_to_boundary(&s->jobs, unix_ms) + 1,
                       0);
    }
}

/* ---- authorization deadline ---- */

static void on_auth_timer(uv_timer_t *t)
{
    kp_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    while (s->unauthorized.head && now - s->unauthorized.head->accepted_ms >= s->cfg->auth_timeout_ms) {
        s->counters.closed_auth_timeout++;
        kp_session_close(s->unauthorized.head, "no authorize within -auth_timeout");
    }
}

/* ---- read budgets: one round per loop iteration ---- */

static void on_resume_idle(uv_idle_t *idle)
{
    (void)idle; /* only there to keep the poll from blocking while sessions wait */
}

/* Runs right before the loop polls for I/O: a new round of read budgets begins, and sessions
 * deferred in the last one get theirs first. */
static void on_round(uv_prepare_t *tick)
{
    kp_server *s = tick->data;
    s->round++;
    if (s->resume_head)
        kp_session_resume_step(s);
    if (!s->resume_head && uv_is_active((uv_handle_t *)&s->resume_idle))
        uv_idle_stop(&s->resume_idle);
}

void kp_server_resume_pending(kp_server *s)
{
    if (!s->shutting_down && !uv_is_active((uv_handle_t *)&s->resume_idle))
        uv_idle_start(&s->resume_idle, on_resume_idle);
}

/* ---- drain deadline ---- */

/* One timer for every draining session: they all have the same deadline, so the list is in
 * deadline order and the timer only ever waits for its head. */
static void on_drain_timer(uv_timer_t *t)
{
    kp_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    kp_session *head;
    while ((head = s->draining.head) && now - head->drain_start_ms >= KP_DRAIN_TIMEOUT_MS) {
        s->counters.closed_drain_timeout++;
        kp_session_abort(head, "closing output not read within the drain deadline");
    }
    if (head)
        uv_timer_start(t, on_drain_timer, KP_DRAIN_TIMEOUT_MS - (now - head->drain_start_ms), 0);
}

void kp_server_watch_drain(kp_server *s, kp_session *sess)
{
    kp_session_list_remove(s, sess);
    kp_session_list_append(&s->draining, sess);
    /* A session that drains in time leaves the list early; the timer then finds a later head
     * and waits again for what is left of its deadline. */
    if (!s->shutting_down && !uv_is_active((uv_handle_t *)&s->drain_timer))
        uv_timer_start(&s->drain_timer, on_drain_timer, KP_DRAIN_TIMEOUT_MS, 0);
}

/* ---- listener ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    kp_server *s = listener->data;
    if (status < 0) {
        KP_WARN(MODULE_TCP, "accept failed", KP_QSTR("error", uv_strerror(status)));
        return;
    }
    kp_session_accept(s, listener, listener == (uv_stream_t *)&s->ws_listener);
}

/* Binds and listens on `addr`; logs "started listen=..." under `module` and returns the port. */
static int start_listener(kp_server *s, uv_tcp_t *listener, const char *flag, const char *addr,
                          const char *module, int *port_out)
{
    char host[256];
    int port = 0;
    struct sockaddr_storage sa;
    if (kp_split_host_port(addr, host, sizeof(host), &port) != 0 || kp_resolve_listen(host, port, &sa) != 0) {
        KP_ERROR(module, "cannot resolve address", KP_STR("flag", flag), KP_QSTR("addr", addr));
        return KP_EINVAL;
    }
    uv_tcp_init(s->loop, listener);
    listener->data = s;
    int rc = uv_tcp_bind(listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        KP_ERROR(module, "cannot listen", KP_STR("flag", flag), KP_QSTR("addr", addr),
                 KP_QSTR("error", uv_strerror(rc)));
        return KP_EIO;
    }
    int len = sizeof(sa);
    uv_tcp_getsockname(listener, (struct sockaddr *)&sa, &len);
    char shown[300];
    *port_out = kp_format_sockaddr((const struct sockaddr *)&sa, shown, sizeof(shown));
    KP_INFO(module, "started", KP_QSTR("listen", shown), KP_UINT("max_conns", s->max_connections));
    return 0;
}

/* Raises the fd limit to its hard maximum and derives the connection bound from it. */
static size_t connection_bound(const kp_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    size_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (size_t)rl.rlim_cur : 1024;
    size_t bound = fds > 2 * FD_RESERVE ? fds - FD_RESERVE : fds / 2;
    if (cfg->max_conns && cfg->max_conns < bound)
        bound = cfg->max_conns;
    else if (cfg->max_conns > bound)
        KP_WARN(MODULE_TCP, "-max_conns exceeds the fd limit; lowered",
                KP_UINT("max_conns", cfg->max_conns), KP_UINT("fd_limit", fds));
    return bound;
}

/* ---- signals and shutdown ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    kp_server *s = h->data;
    if (s->shutting_down) {
        KP_WARN(MODULE_APP, "signal during shutdown; still flushing", KP_INT("signal", signum));
        return;
    }
    KP_INFO(MODULE_APP, "signal received", KP_INT("signal", signum));
    kp_server_shutdown(s);
}

static void close_list(kp_session_list *list)
{
    while (list->head)
        kp_session_close(list->head, "server shutting down");
}

static void on_drained(int status, void *arg)
{
    kp_server *s = arg;
    kp_pipeline_stats ps = kp_pipeline_get_stats(s->pipeline);
    if (status == 0)
        KP_INFO(MODULE_APP, "events flushed", KP_UINT("published", ps.published),
                KP_UINT("spooled", ps.spooled));
    else
        KP_ERROR(MODULE_APP, "shutdown: events neither published nor spooled",
                 KP_UINT("lost", (uint64_t)ps.waiting - ps.spooled), KP_STR("mq", s->mq->name));
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

void kp_server_shutdown(kp_server *s)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->shutdown_start_ns = uv_hrtime();
    KP_INFO(MODULE_APP, "shutting down", KP_UINT("sessions", s->authorized.count),
            KP_UINT("connections", s->connections),
            KP_UINT("waiting", kp_pipeline_get_stats(s->pipeline).waiting));
    uv_close((uv_handle_t *)&s->listener, NULL);
    if (s->ws_listener.loop)
        uv_close((uv_handle_t *)&s->ws_listener, NULL);
    if (s->admin) {
        kp_admin_close(s->admin);
        s->admin = NULL;
    }
    uv_close((uv_handle_t *)&s->job_timer, NULL);
    uv_close((uv_handle_t *)&s->auth_timer, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    uv_close((uv_handle_t *)&s->broadcast_idle, NULL);
    uv_close((uv_handle_t *)&s->round_tick, NULL);
    uv_close((uv_handle_t *)&s->resume_idle, NULL);
    close_list(&s->unauthorized);
    close_list(&s->authorized);
    close_list(&s->draining);
    kp_pipeline_drain(s->pipeline, s->cfg->shutdown_timeout_ms, on_drained, s);
}

/* ---- lifecycle ---- */

/* The protocol's event sink: accepted submits go into the pipeline. */
static int push_event(void *pipeline, const kp_event *ev)
{
    return kp_pipeline_push(pipeline, ev);
}

static int open_parts(kp_server *s)
{
    const kp_config *cfg = s->cfg;
    int rc = kp_mq_open(cfg, &s->mq);
    if (rc != 0) {
        KP_ERROR(MODULE_APP, "cannot open mq backend", KP_STR("mq", cfg->mq),
                 KP_QSTR("error", rc == KP_EINVAL ? "invalid configuration (the line above says why)"
                                                  : kp_strerror(rc)));
        return rc;
    }
    rc = kp_stats_open(cfg, &s->stats);
    if (rc != 0) {
        KP_ERROR(MODULE_APP, "cannot open stats backend", KP_STR("store", cfg->store),
                 KP_QSTR("error", rc == KP_EINVAL ? "invalid configuration (the line above says why)"
                                                  : kp_strerror(rc)));
        return rc;
    }
    kp_pipeline_options po = {.spool_dir = cfg->data_dir};
    if ((rc = kp_pipeline_open(s->loop, s->mq, &po, &s->pipeline)) != 0)
        return rc;
    if ((rc = kp_job_book_init(&s->jobs, cfg->interval_ms, cfg->expire_ms, cfg->job_secret)) != 0)
        return rc;
    kp_event_sink sink = {.push = push_event, .ctx = s->pipeline};
    if ((rc = kp_protocol_init(&s->protocol, &s->jobs, sink, cfg->min_submit_interval_ms,
                               cfg->max_errors)) != 0)
        return rc;
    if (cfg->consume && (rc = kp_consumer_start(s->mq, s->stats, &s->consumer)) != 0)
        return rc;
    s->read_buf_size = IO_BUF_SIZE;
    s->read_buf = malloc(IO_BUF_SIZE);
    s->out_buf = malloc(IO_BUF_SIZE);
    return s->read_buf && s->out_buf ? 0 : KP_ENOMEM;
}

/* Before any "started" line: a supervisor (or a test) that sends SIGTERM as soon as it reads
 * one must get the graceful shutdown, not the default action. */
static void watch_signals(kp_server *s)
{
    uv_signal_init(s->loop, &s->sigint);
    s->sigint.data = s;
    uv_signal_init(s->loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
}

static void start_timers(kp_server *s)
{
    uv_timer_init(s->loop, &s->job_timer);
    s->job_timer.data = s;
    uv_timer_init(s->loop, &s->auth_timer);
    s->auth_timer.data = s;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_idle_init(s->loop, &s->broadcast_idle);
    s->broadcast_idle.data = s;
    uv_idle_init(s->loop, &s->resume_idle);
    s->resume_idle.data = s;
    uv_prepare_init(s->loop, &s->round_tick);
    s->round_tick.data = s;
    uv_prepare_start(&s->round_tick, on_round);
    uv_unref((uv_handle_t *)&s->round_tick); /* it never keeps the loop alive by itself */

    issue_job(s);
    if (s->cfg->job_secret[0]) {
        on_job_timer(&s->job_timer); /* arms the boundary-aligned timer */
    } else {
        uv_timer_start(&s->job_timer, on_job_timer, s->cfg->interval_ms, s->cfg->interval_ms);
    }
    uint64_t tick = s->cfg->auth_timeout_ms / 4;
    tick = tick < 10 ? 10 : tick > 250 ? 250 : tick;
    uv_timer_start(&s->auth_timer, on_auth_timer, tick, tick);
}

int kp_server_open(uv_loop_t *loop, const kp_config *cfg, kp_server **out)
{
    kp_server *s = calloc(1, sizeof(*s));
    if (!s)
        return KP_ENOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->max_connections = connection_bound(cfg);
    int rc = open_parts(s);
    if (rc == 0) {
        watch_signals(s);
        rc = start_listener(s, &s->listener, "-addr", cfg->addr, MODULE_TCP, &s->port);
    }
    if (rc == 0 && cfg->ws_addr[0])
        rc = start_listener(s, &s->ws_listener, "-ws_addr", cfg->ws_addr, "ws.server", &s->ws_port);
    if (rc == 0 && cfg->http_addr[0]) {
        kp_admin_source source = kp_server_admin_source(s);
        rc = kp_admin_open(loop, cfg->http_addr, &source, &s->admin);
    }
    if (rc != 0) {
        if (s->listener.loop)
            uv_close((uv_handle_t *)&s->listener, NULL);
        if (s->ws_listener.loop)
            uv_close((uv_handle_t *)&s->ws_listener, NULL);
        if (s->sigint.loop) {
            uv_close((uv_handle_t *)&s->sigint, NULL);
            uv_close((uv_handle_t *)&s->sigterm, NULL);
        }
        kp_admin_close(s->admin);
        s->admin = NULL;
        kp_pipeline_close(s->pipeline);
        s->pipeline = NULL;
        uv_run(loop, UV_RUN_DEFAULT); /* lets the closed handles finish */
        kp_server_free(s);
        return rc;
    }
    start_timers(s);
    *out = s;
    return 0;
}

int kp_server_free(kp_server *s)
{
    if (!s)
        return 0;
    uint64_t counted = 0;
    if (s->consumer) {
        /* The drain and the consumer share one -shutdown_timeout (SPEC §6). What is still
         * queued then waits in the broker for the next consumer (-mq rabbit); an in-process
         * queue (-mq memory) loses it, as it would after any full timeout. */
        uint64_t left_ms = s->cfg->shutdown_timeout_ms;
        if (s->shutting_down) {
            uint64_t spent_ms = (uv_hrtime() - s->shutdown_start_ns) / 1000000u;
            left_ms = spent_ms < left_ms ? left_ms - spent_ms : 0;
        }
        counted = kp_consumer_stop(s->consumer, left_ms);
        s->consumer = NULL;
    }
    if (s->pipeline) {
        kp_pipeline_stats ps = kp_pipeline_get_stats(s->pipeline);
        int64_t left = kp_mq_pending(s->mq);
        KP_INFO(MODULE_APP, "stopped", KP_UINT("accepted", ps.accepted),
                KP_UINT("published", ps.published), KP_UINT("counted", counted),
                KP_UINT("unpublished", ps.waiting), KP_UINT("spooled", ps.spooled),
                KP_INT("queued", left));
        kp_pipeline_close(s->pipeline);
        uv_run(s->loop, UV_RUN_DEFAULT);
    }
    kp_shared_line_release(s->job_line);
    kp_protocol_free(&s->protocol);
    kp_job_book_free(&s->jobs);
    kp_stats_free(s->stats);
    kp_mq_free(s->mq);
    free(s->read_buf);
    free(s->out_buf);
    int status = s->exit_status;
    free(s);
    return status;
}
