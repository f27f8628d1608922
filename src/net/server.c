#include "server.h"

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "clock.h"
#include "kupool/error.h"
#include "log.h"
#include "net_addr.h"
#include "tls_context.h"

#define MODULE_TCP "tcp.server"
#define MODULE_JOBS "app.coordinator"

#define IO_BUF_SIZE (64u * 1024u)
/* File descriptors kept back from -max_conns for logs, backends and the admin endpoint. */
#define FD_RESERVE 64
#define LISTEN_BACKLOG 4096
/* A peer that lets this much output pile up unread is too slow to follow the broadcast; it is
 * dropped rather than allowed to grow the server's memory. */
#define MAX_QUEUED_BYTES (256u * 1024u)
/* The kernel's share of the same output: SO_SNDBUF is capped at accept (Linux doubles the value
 * for its bookkeeping, so the kernel holds at most 256 KiB per socket, payload and overhead).
 * Left to autotuning it grows to tcp_wmem's maximum, about 3-4 MB per socket on loopback,
 * which MAX_QUEUED_BYTES never sees. 256 KiB is still far more than a line protocol keeps in
 * flight: a job line is ~100 bytes and a response ~50. */
#define KERNEL_SNDBUF_BYTES (128 * 1024)

/* ---- session lists ---- */

static void list_append(kp_session_list *list, kp_session *sess)
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

static void list_remove(kp_server *s, kp_session *sess)
{
    kp_session_list *list = sess->list;
    if (!list)
        return;
    if (list == &s->authorized)
        kp_broadcast_leaving(&s->broadcast, sess);
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

static void list_move(kp_server *s, kp_session *sess, kp_session_list *to)
{
    list_remove(s, sess);
    list_append(to, sess);
}

/* ---- jobs ---- */

static int issue_job(kp_server *s)
{
    const kp_job *job = NULL;
    int rc = kp_job_book_rotate(s->jobs, uv_now(s->loop), (uint64_t)kp_clock_wall_ms(), &job);
    if (rc != 0) {
        KP_ERROR(MODULE_JOBS, "cannot issue a job", KP_QSTR("error", kp_strerror(rc)));
        return rc;
    }
    if (job->id == s->broadcast.line_id)
        return 0;
    if ((rc = kp_broadcast_job(&s->broadcast, job)) != 0)
        return rc;
    s->counters.jobs_issued++;
    KP_INFO(MODULE_JOBS, "broadcast job", KP_INT("job_id", job->id),
            KP_STR("nonce", job->server_nonce), KP_UINT("sessions", s->authorized.count));
    return 0;
}

static void on_job_timer(uv_timer_t *t)
{
    kp_server *s = t->data;
    issue_job(s);
    if (s->cfg->job_secret[0]) {
        /* Scale-out jobs change on wall-clock boundaries: re-aim at the next one each time. */
        uint64_t unix_ms = (uint64_t)kp_clock_wall_ms();
        uv_timer_start(&s->job_timer, on_job_timer, kp_job_book_ms_to_boundary(s->jobs, unix_ms) + 1,
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
    s->env.round++;
    if (s->door.sweep_pending)
        kp_front_door_sweep(s); /* before any session reads again */
    if (s->env.resume_head)
        kp_session_resume_step(&s->env);
    if (!s->env.resume_head && uv_is_active((uv_handle_t *)&s->resume_idle))
        uv_idle_stop(&s->resume_idle);
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

/* ---- what sessions tell the server (kp_session_hooks) ---- */

static uint64_t hook_now_ms(void *ctx)
{
    return uv_now(((kp_server *)ctx)->loop);
}

static const kp_shared_line *hook_authorized(void *ctx, kp_session *sess, int64_t *job_id)
{
    kp_server *s = ctx;
    list_move(s, sess, &s->authorized);
    if (kp_log_enabled(KP_LOG_DEBUG)) {
        /* The client's address: behind a trusted proxy, the one its PROXY header carried. */
        struct sockaddr_storage sa;
        char addr[300] = "";
        if (kp_conn_peer_address(sess->conn, &sa) == 0)
            kp_format_sockaddr((const struct sockaddr *)&sa, addr, sizeof(addr));
        KP_DEBUG("app.acceptor", "authorized", KP_QSTR("username", sess->peer.username),
                 KP_STR("addr", addr), KP_UINT("sessions", s->authorized.count));
    }
    *job_id = s->broadcast.line_id;
    return s->broadcast.line;
}

static void hook_draining(void *ctx, kp_session *sess)
{
    kp_server *s = ctx;
    sess->drain_start_ms = uv_now(s->loop);
    list_move(s, sess, &s->draining);
    /* A session that drains in time leaves the list early; the timer then finds a later head
     * and waits again for what is left of its deadline. */
    if (!s->shutting_down && !uv_is_active((uv_handle_t *)&s->drain_timer))
        uv_timer_start(&s->drain_timer, on_drain_timer, KP_DRAIN_TIMEOUT_MS, 0);
}

static void hook_deferred(void *ctx)
{
    kp_server *s = ctx;
    if (!s->shutting_down && !uv_is_active((uv_handle_t *)&s->resume_idle))
        uv_idle_start(&s->resume_idle, on_resume_idle);
}

static void hook_closing(void *ctx, kp_session *sess)
{
    kp_server *s = ctx;
    list_remove(s, sess);
    if (s->door.book)
        kp_front_door_closing(s, sess);
}

static void hook_closed(void *ctx)
{
    ((kp_server *)ctx)->connections--;
}

static const kp_session_hooks session_hooks = {
    .now_ms = hook_now_ms,
    .authorized = hook_authorized,
    .draining = hook_draining,
    .deferred = hook_deferred,
    .closing = hook_closing,
    .closed = hook_closed,
};

/* ---- accept ---- */

/* The session's connection lives in the session's own allocation: the TCP conn (with the front
 * door's per-address slot when it is on, front_door.h), and on a TLS listener the TLS conn after
 * it. A trusted proxy's PROXY reader has an allocation of its own and goes between the two, so
 * the order is TCP -> PROXY -> TLS -> session (docs/architecture.md, "Transports"). */
typedef struct listener_kind {
    bool websocket;
    bool tls;
} listener_kind;

static size_t tls_room_offset(const kp_server *s)
{
    size_t align = alignof(max_align_t);
    return (s->conn_room + align - 1) / align * align;
}

static void accept_session(kp_server *s, uv_stream_t *listener, listener_kind kind)
{
    void *room;
    size_t room_size = kind.tls ? tls_room_offset(s) + sizeof(kp_conn_tls) : s->conn_room;
    kp_session *sess = kp_session_new(&s->env, room_size, &room);
    if (!sess) {
        KP_ERROR(MODULE_TCP, "out of memory accepting a connection");
        return;
    }
    kp_conn_tcp *tcp = room;
    kp_session_attach(sess, &tcp->base);
    s->connections++;
    if (kp_conn_tcp_accept(tcp, listener, &s->read_buf, MAX_QUEUED_BYTES) != 0)
        return; /* closing: on_closed frees the session */
    if (s->connections > s->max_connections || s->shutting_down) {
        s->counters.connections_rejected++;
        if (s->counters.connections_rejected == 1 || s->counters.connections_rejected % 1000 == 0)
            KP_WARN(MODULE_TCP, "connection refused: -max_conns reached",
                    KP_UINT("max_conns", s->max_connections),
                    KP_UINT("rejected", s->counters.connections_rejected));
        kp_session_discard(sess);
        return;
    }
    /* SPEC §9: a PROXY reader for a trusted proxy's connection, else the per-address checks. */
    kp_conn *top = &tcp->base;
    if (s->door.on && kp_front_door_accept(s, sess, &top) != 0)
        return; /* refused: closing */
    if (kind.tls) {
        kp_conn_tls *tls = (kp_conn_tls *)((char *)room + tls_room_offset(s));
        kp_conn_tls_init(tls, top, s->tls_ctx, &s->tls_io, MAX_QUEUED_BYTES);
        top = &tls->base;
    }
    if (top != &tcp->base)
        kp_session_attach(sess, top);
    s->counters.connections_accepted++;
    kp_conn_tcp_tune(tcp, KERNEL_SNDBUF_BYTES);
    sess->accepted_ms = uv_now(s->loop);
    list_append(&s->unauthorized, sess);
    kp_session_start(sess, kind.websocket); /* on failure the session is closing */
}

static void on_connection(uv_stream_t *listener, int status)
{
    kp_server *s = listener->data;
    if (status < 0) {
        KP_WARN(MODULE_TCP, "accept failed", KP_QSTR("error", uv_strerror(status)));
        return;
    }
    listener_kind kind = {
        .websocket = listener == (uv_stream_t *)&s->ws_listener ||
                     listener == (uv_stream_t *)&s->wss_listener,
        .tls = listener == (uv_stream_t *)&s->tls_listener ||
               listener == (uv_stream_t *)&s->wss_listener,
    };
    accept_session(s, listener, kind);
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

/* The TLS listeners: the context first, so a bad certificate or key stops the start. */
static int listen_tls(kp_server *s)
{
    const kp_config *cfg = s->cfg;
    if (!cfg->tls_addr[0] && !cfg->wss_addr[0])
        return 0;
    int rc = kp_tls_context_new(cfg->tls_cert, cfg->tls_key, &s->tls_ctx);
    if (rc == 0 && cfg->tls_addr[0])
        rc = start_listener(s, &s->tls_listener, "-tls_addr", cfg->tls_addr, "tls.server",
                            &s->tls_port);
    if (rc == 0 && cfg->wss_addr[0])
        rc = start_listener(s, &s->wss_listener, "-wss_addr", cfg->wss_addr, "wss.server",
                            &s->wss_port);
    return rc;
}

int kp_server_reload_tls(kp_server *s)
{
    if (!s->tls_ctx)
        return 0;
    return kp_tls_context_reload(s->cfg->tls_cert, s->cfg->tls_key, &s->tls_ctx);
}

int kp_server_listen(kp_server *s)
{
    int rc = start_listener(s, &s->listener, "-addr", s->cfg->addr, MODULE_TCP, &s->port);
    if (rc == 0 && s->cfg->ws_addr[0])
        rc = start_listener(s, &s->ws_listener, "-ws_addr", s->cfg->ws_addr, "ws.server",
                            &s->ws_port);
    if (rc == 0)
        rc = listen_tls(s);
    return rc;
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

/* ---- lifecycle ---- */

int kp_server_new(uv_loop_t *loop, const kp_config *cfg, kp_job_book *jobs,
                  kp_protocol *protocol, kp_server **out)
{
    kp_server *s = calloc(1, sizeof(*s));
    if (!s)
        return KP_ENOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->jobs = jobs;
    s->max_connections = connection_bound(cfg);
    s->read_buf = (kp_read_buf){.data = malloc(IO_BUF_SIZE), .size = IO_BUF_SIZE};
    s->batch = (kp_out_batch){.buf = malloc(IO_BUF_SIZE), .cap = IO_BUF_SIZE};
    s->hooks = session_hooks;
    s->env = (kp_session_env){
        .protocol = protocol,
        .max_msg = cfg->max_msg,
        .hooks = &s->hooks,
        .ctx = s,
        .batch = &s->batch,
    };
    if (!s->read_buf.data || !s->batch.buf || kp_tls_io_init(&s->tls_io, IO_BUF_SIZE) != 0) {
        kp_server_free(s);
        return KP_ENOMEM;
    }
    int rc = kp_front_door_init(s);
    if (rc != 0) {
        kp_server_free(s);
        return rc;
    }
    s->conn_room = kp_front_door_room(s);
    *out = s;
    return 0;
}

void kp_server_start(kp_server *s)
{
    uv_timer_init(s->loop, &s->job_timer);
    s->job_timer.data = s;
    uv_timer_init(s->loop, &s->auth_timer);
    s->auth_timer.data = s;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    kp_broadcast_init(&s->broadcast, s->loop, &s->authorized, s->jobs);
    uv_idle_init(s->loop, &s->resume_idle);
    s->resume_idle.data = s;
    uv_prepare_init(s->loop, &s->round_tick);
    s->round_tick.data = s;
    uv_prepare_start(&s->round_tick, on_round);
    uv_unref((uv_handle_t *)&s->round_tick); /* it never keeps the loop alive by itself */
    s->started = true;

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

static void close_list(kp_session_list *list)
{
    while (list->head)
        kp_session_close(list->head, "server shutting down");
}

void kp_server_close(kp_server *s)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    if (s->listener.loop)
        uv_close((uv_handle_t *)&s->listener, NULL);
    if (s->ws_listener.loop)
        uv_close((uv_handle_t *)&s->ws_listener, NULL);
    if (s->tls_listener.loop)
        uv_close((uv_handle_t *)&s->tls_listener, NULL);
    if (s->wss_listener.loop)
        uv_close((uv_handle_t *)&s->wss_listener, NULL);
    if (s->started) {
        uv_close((uv_handle_t *)&s->job_timer, NULL);
        uv_close((uv_handle_t *)&s->auth_timer, NULL);
        uv_close((uv_handle_t *)&s->drain_timer, NULL);
        kp_broadcast_close(&s->broadcast);
        uv_close((uv_handle_t *)&s->round_tick, NULL);
        uv_close((uv_handle_t *)&s->resume_idle, NULL);
    }
    close_list(&s->unauthorized);
    close_list(&s->authorized);
    close_list(&s->draining);
}

void kp_server_free(kp_server *s)
{
    if (!s)
        return;
    kp_broadcast_free(&s->broadcast);
    kp_front_door_free(s);
    SSL_CTX_free(s->tls_ctx); /* open connections are gone: this was the last reference */
    kp_tls_io_free(&s->tls_io);
    free(s->read_buf.data);
    free(s->batch.buf);
    free(s);
}
