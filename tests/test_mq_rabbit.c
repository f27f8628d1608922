/* The RabbitMQ mq against a real broker (tests/services/rabbit.sh, ctest fixture `rabbit`).
 *
 * The fixture passes KUP_TEST_MQ_URL and, for the restart test, KUP_TEST_RABBIT_SCRIPT,
 * KUP_TEST_RABBIT_DIR and KUP_TEST_RABBIT_PORT. Without them the tests fail: a suite that silently
 * skips its broker tests proves nothing. Each test works on a queue of its own
 * (kupool_test_<test>_<pid>), deletes it before and after, and checks the queue through its own
 * AMQP connection, never only through the backend. Where a test has to cut a connection or make
 * the broker go silent, a small TCP relay in the test stands between the backend and the broker.
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends.h"
#include "kupool/error.h"
#include "event_batch.h"
#include "testsupport.h"

/* 2025-11-24T20:31:00Z */
#define BASE_MS INT64_C(1764016260000)
#define CONSUME_WAIT_MS 10000 /* longest a test waits for events it expects */

/* Usernames that would break a carelessly built JSON body. */
static const char *const USERS[] = {"alice", "b\"o\"b \\ c", "ユーザー名"};
#define NUSERS (sizeof(USERS) / sizeof(USERS[0]))

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set: run this test through ctest (fixture rabbit)", name);
    return v;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

static void queue_name(char *buf, size_t cap, const char *test)
{
    snprintf(buf, cap, "kupool_test_%s_%d", test, (int)getpid());
}

/* Event `seq` of stream `prefix`: every field differs between events. */
static kp_event make_event(const char *prefix, int seq)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s-%d", prefix, seq);
    snprintf(ev.username, sizeof(ev.username), "%s", USERS[(size_t)seq % NUSERS]);
    ev.job_id = 1000 + seq / 7;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%08x", (unsigned)seq * 2654435761u);
    ev.ts_ms = BASE_MS + (int64_t)seq * 37;
    return ev;
}

static void expect_event(const kp_event *got, const char *prefix, int seq)
{
    kp_event want = make_event(prefix, seq);
    assert_string_equal(got->event_id, want.event_id);
    assert_string_equal(got->username, want.username);
    assert_int_equal(got->job_id, want.job_id);
    assert_string_equal(got->client_nonce, want.client_nonce);
    assert_int_equal(got->ts_ms, want.ts_ms);
}

static kp_mq *open_mq(const char *url, const char *queue)
{
    kp_config cfg;
    kp_config_defaults(&cfg);
    snprintf(cfg.mq, sizeof(cfg.mq), "rabbit");
    snprintf(cfg.mq_url, sizeof(cfg.mq_url), "%s", url);
    snprintf(cfg.mq_queue, sizeof(cfg.mq_queue), "%s", queue);
    kp_mq *mq = NULL;
    assert_int_equal(kp_mq_open(&cfg, &mq), 0);
    assert_non_null(mq);
    assert_int_equal(mq->version, KP_MQ_VERSION);
    assert_string_equal(mq->name, "rabbit");
    return mq;
}

/* Publishes events first .. first+n-1 of `prefix` in one call; returns its status. */
static int publish_range(kp_mq *mq, const char *prefix, int first, int n)
{
    kp_event *events = malloc((size_t)n * sizeof(*events));
    assert_non_null(events);
    for (int i = 0; i < n; i++)
        events[i] = make_event(prefix, first + i);
    kp_mq_batch b = kp_mq_v1_batch(events, (size_t)n);
    int rc = kp_mq_publish(mq, &b, 1);
    free(events);
    return rc;
}

/* Consumes exactly events first .. first+n-1 of `prefix`, in order, `cap` at most per call,
 * acknowledging after each call when `ack` is set. Failed calls (KP_EIO) are retried, as the
 * consumer thread does, until CONSUME_WAIT_MS pass. */
static void consume_expect(kp_mq *mq, const char *prefix, int first, int n, size_t cap, bool ack)
{
    kp_event *buf = malloc(cap * sizeof(*buf));
    assert_non_null(buf);
    uint64_t deadline = kp_test_now_ms() + CONSUME_WAIT_MS;
    int got = 0;
    while (got < n) {
        if (kp_test_now_ms() > deadline)
            fail_msg("%s: got %d of %d events", prefix, got, n);
        size_t want = (size_t)(n - got) < cap ? (size_t)(n - got) : cap;
        size_t k = 0;
        int rc = kp_mq_consume(mq, buf, want, &k, 500);
        if (rc == KP_EIO) {
            sleep_ms(100);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_true(k <= want);
        for (size_t i = 0; i < k; i++)
            expect_event(&buf[i], prefix, first + got + (int)i);
        got += (int)k;
        if (ack && k)
            assert_int_equal(kp_mq_ack(mq), 0);
    }
    free(buf);
}

/* Nothing more arrives within `wait_ms`. */
static void expect_nothing(kp_mq *mq, int wait_ms)
{
    kp_event ev;
    size_t k = 1;
    assert_int_equal(kp_mq_consume(mq, &ev, 1, &k, wait_ms), 0);
    if (k)
        fail_msg("unexpected event %s", ev.event_id);
}

/* ---- the test's own broker connection ------------------------------------------------------ */

typedef struct admin {
    amqp_connection_state_t conn;
    amqp_channel_t ch; /* a channel the broker closed is replaced by the next number */
} admin;

static void url_host_port(char *host, size_t cap, int *port)
{
    char *copy = strdup(env_or_fail("KUP_TEST_MQ_URL"));
    assert_non_null(copy);
    struct amqp_connection_info info;
    assert_int_equal(amqp_parse_url(copy, &info), AMQP_STATUS_OK);
    snprintf(host, cap, "%s", info.host);
    *port = info.port;
    free(copy);
}

static void reply_ok(amqp_connection_state_t conn, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        fail_msg("%s: reply type %d, library error %s", what, (int)r.reply_type,
                 amqp_error_string2(r.library_error));
}

static void admin_channel(admin *a)
{
    a->ch++;
    amqp_channel_open(a->conn, a->ch);
    reply_ok(a->conn, "channel.open");
}

static admin admin_open(void)
{
    char host[256];
    int port;
    url_host_port(host, sizeof(host), &port);
    admin a = {.conn = amqp_new_connection()};
    amqp_socket_t *sock = amqp_tcp_socket_new(a.conn);
    assert_non_null(sock);
    struct timeval tv = {.tv_sec = 5};
    assert_int_equal(amqp_socket_open_noblock(sock, host, port, &tv), AMQP_STATUS_OK);
    amqp_set_rpc_timeout(a.conn, &tv);
    amqp_rpc_reply_t r = amqp_login(a.conn, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                                    AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
    admin_channel(&a);
    return a;
}

static void admin_close(admin *a)
{
    amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(a->conn);
    a->conn = NULL;
}

/* After the broker closed the channel (a failed passive declare, a precondition): close-ok and
 * a fresh channel. Returns the reply code the broker gave. */
static int admin_recover(admin *a)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(a->conn);
    assert_int_equal(r.reply_type, AMQP_RESPONSE_SERVER_EXCEPTION);
    assert_int_equal(r.reply.id, AMQP_CHANNEL_CLOSE_METHOD);
    int code = ((amqp_channel_close_t *)r.reply.decoded)->reply_code;
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(a->conn, a->ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    admin_channel(a);
    return code;
}

/* Ready messages in `queue`, or -1 when there is no such queue. */
static int64_t admin_count(admin *a, const char *queue)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(a->conn, a->ch, amqp_cstring_bytes(queue),
                                                     1, 0, 0, 0, amqp_empty_table);
    if (!ok) {
        assert_int_equal(admin_recover(a), 404);
        return -1;
    }
    amqp_maybe_release_buffers(a->conn);
    return ok->message_count;
}

static void admin_delete(admin *a, const char *queue)
{
    amqp_queue_delete(a->conn, a->ch, amqp_cstring_bytes(queue), 0, 0);
    reply_ok(a->conn, "queue.delete");
    amqp_maybe_release_buffers(a->conn);
}

static void admin_publish_raw(admin *a, const char *queue, const char *body)
{
    amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                     .delivery_mode = AMQP_DELIVERY_PERSISTENT};
    assert_int_equal(amqp_basic_publish(a->conn, a->ch, amqp_empty_bytes,
                                        amqp_cstring_bytes(queue), 0, 0, &props,
                                        amqp_cstring_bytes(body)),
                     AMQP_STATUS_OK);
}

/* The ready count of `queue` reaches `want` within a few seconds (the broker settles acks and
 * requeues asynchronously). */
static void admin_expect_count(admin *a, const char *queue, int64_t want)
{
    uint64_t deadline = kp_test_now_ms() + 5000;
    int64_t n;
    while ((n = admin_count(a, queue)) != want && kp_test_now_ms() < deadline)
        sleep_ms(50);
    if (n != want)
        fail_msg("queue %s holds %" PRId64 " ready messages, want %" PRId64, queue, n, want);
}

/* ---- a TCP relay between the backend and the broker ----------------------------------------- */

enum { RELAY_PAIRS = 8 };
enum relay_req { REQ_NONE = 0, REQ_CUT, REQ_HOLD, REQ_FORWARD, REQ_STOP };

typedef struct relay {
    int listen_fd, port, upstream_port;
    int wake[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t done;
    enum relay_req req;
    bool holding;            /* new and open connections get no bytes through: a silent broker */
    int pair[RELAY_PAIRS][2]; /* backend side, broker side (-1: none); both -1 when free */
    char url[128];
    char buf[65536]; /* the relay thread's */
} relay;

static void hard_close(int fd)
{
    if (fd < 0)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* RST: the peer sees a lost connection */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void relay_drop(relay *r, int i)
{
    hard_close(r->pair[i][0]);
    hard_close(r->pair[i][1]);
    r->pair[i][0] = r->pair[i][1] = -1;
}

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void relay_accept(relay *r)
{
    int c = accept(r->listen_fd, NULL, NULL);
    if (c < 0)
        return;
    int u = r->holding ? -1 : connect_upstream(r->upstream_port);
    if (!r->holding && u < 0) {
        hard_close(c);
        return;
    }
    for (int i = 0; i < RELAY_PAIRS; i++)
        if (r->pair[i][0] < 0) {
            r->pair[i][0] = c;
            r->pair[i][1] = u;
            return;
        }
    hard_close(c);
    hard_close(u);
}

static void relay_handle(relay *r, enum relay_req req)
{
    switch (req) {
    case REQ_CUT:
    case REQ_STOP:
        for (int i = 0; i < RELAY_PAIRS; i++)
            relay_drop(r, i);
        break;
    case REQ_HOLD:
        r->holding = true;
        break;
    case REQ_FORWARD:
        r->holding = false;
        break;
    case REQ_NONE:
        break;
    }
}

static void *relay_run(void *arg)
{
    relay *r = arg;
    for (;;) {
        struct pollfd p[2 + 2 * RELAY_PAIRS];
        int idx[2 + 2 * RELAY_PAIRS][2];
        int n = 0;
        p[n++] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        p[n++] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        for (int i = 0; i < RELAY_PAIRS && !r->holding; i++)
            for (int side = 0; side < 2; side++)
                if (r->pair[i][0] >= 0 && r->pair[i][1] >= 0) {
                    idx[n][0] = i;
                    idx[n][1] = side;
                    p[n++] = (struct pollfd){.fd = r->pair[i][side], .events = POLLIN};
                }
        if (poll(p, (nfds_t)n, -1) < 0)
            continue;
        if (p[0].revents) {
            char c;
            (void)read(r->wake[0], &c, 1);
            pthread_mutex_lock(&r->mu);
            enum relay_req req = r->req;
            relay_handle(r, req);
            r->req = REQ_NONE;
            pthread_cond_broadcast(&r->done);
            pthread_mutex_unlock(&r->mu);
            if (req == REQ_STOP)
                return NULL;
            continue; /* the pair list may have changed */
        }
        if (p[1].revents)
            relay_accept(r);
        for (int k = 2; k < n; k++) {
            if (!p[k].revents)
                continue;
            int i = idx[k][0], side = idx[k][1];
            if (r->pair[i][side] < 0)
                continue;
            ssize_t got = recv(r->pair[i][side], r->buf, sizeof(r->buf), 0);
            if (got <= 0 || !write_all(r->pair[i][!side], r->buf, (size_t)got))
                relay_drop(r, i);
        }
    }
}

static void relay_start(relay *r)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < RELAY_PAIRS; i++)
        r->pair[i][0] = r->pair[i][1] = -1;
    r->upstream_port = atoi(env_or_fail("KUP_TEST_RABBIT_PORT"));
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(r->listen_fd, 8), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(r->listen_fd, (struct sockaddr *)&sa, &len), 0);
    r->port = ntohs(sa.sin_port);
    snprintf(r->url, sizeof(r->url), "amqp://guest:guest@127.0.0.1:%d/", r->port);
    assert_int_equal(pipe(r->wake), 0);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->done, NULL);
    assert_int_equal(pthread_create(&r->thread, NULL, relay_run, r), 0);
}

/* Asks the relay thread for `req` and waits until it is done. */
static void relay_request(relay *r, enum relay_req req)
{
    pthread_mutex_lock(&r->mu);
    r->req = req;
    assert_int_equal(write(r->wake[1], "x", 1), 1);
    while (r->req != REQ_NONE)
        pthread_cond_wait(&r->done, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void relay_stop(relay *r)
{
    relay_request(r, REQ_STOP);
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
    close(r->wake[0]);
    close(r->wake[1]);
    pthread_cond_destroy(&r->done);
    pthread_mutex_destroy(&r->mu);
}

/* ---- helpers for stderr and the server binary ----------------------------------------------- */

typedef struct captured {
    char path[64];
    int fd, saved;
} captured;

static void capture_stderr(captured *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/kupool-test-rabbit-log-XXXXXX");
    c->fd = mkstemp(c->path);
    assert_true(c->fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    dup2(c->fd, 2);
}

/* Restores stderr and returns what was written meanwhile (malloc'd). */
static char *captured_text(captured *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    char *text = calloc(1, 65536);
    assert_non_null(text);
    ssize_t got = pread(c->fd, text, 65535, 0);
    assert_true(got >= 0);
    close(c->fd);
    unlink(c->path);
    fputs(text, stderr); /* still shown in the test's output */
    return text;
}

/* Runs kupool-server with `args` and returns its exit status; its stderr goes to `log`. The
 * server is killed (and the test fails) if it has not exited after timeout_ms. */
static int run_server(const char *const *args, char *log, size_t cap, int timeout_ms)
{
    char path[] = "/tmp/kupool-test-rabbit-srv-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *argv[32];
    size_t argc = 0;
    argv[argc++] = KP_SERVER_BIN;
    for (size_t i = 0; args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        execv(KP_SERVER_BIN, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (kp_test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("kupool-server did not exit within %d ms", timeout_ms);
        }
        sleep_ms(20);
    }
    ssize_t got = pread(fd, log, cap - 1, 0);
    log[got > 0 ? got : 0] = '\0';
    close(fd);
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A loopback TCP port nothing listens on (bound, then released). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void rabbit_script(const char *cmd)
{
    char line[4096];
    snprintf(line, sizeof(line), "'%s' %s '%s' '%s'", env_or_fail("KUP_TEST_RABBIT_SCRIPT"), cmd,
             env_or_fail("KUP_TEST_RABBIT_DIR"), env_or_fail("KUP_TEST_RABBIT_PORT"));
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(system(line), 0);
    printf("rabbit.sh %s took %" PRIu64 " ms\n", cmd, kp_test_now_ms() - t0);
}

/* ---- tests --------------------------------------------------------------------------------- */

/* A URL the backend cannot use is KP_EINVAL at open, logged naming -mq_url without the
 * password; so is a queue name AMQP cannot carry. */
static void test_bad_url_is_einval(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "http://guest:s3cret@localhost:5672/",
        "amqp://guest:s3cret@localhost:notaport/",
        "amqp://guest:s3cret@localhost:99999/",
        "amqps://guest:s3cret@localhost/",
        "guest:s3cret@localhost",
        "amqp://guest:s3cret@localhost:0/",
        "",
    };
    captured cap;
    capture_stderr(&cap);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kp_config cfg;
        kp_config_defaults(&cfg);
        snprintf(cfg.mq, sizeof(cfg.mq), "rabbit");
        snprintf(cfg.mq_url, sizeof(cfg.mq_url), "%s", bad[i]);
        snprintf(cfg.mq_queue, sizeof(cfg.mq_queue), "kupool_test_bad");
        kp_mq *mq = NULL;
        int rc = kp_mq_open(&cfg, &mq);
        if (rc != KP_EINVAL) {
            kp_mq_free(mq);
            char *log = captured_text(&cap);
            free(log);
            fail_msg("url \"%s\": open gave %d, want KP_EINVAL", bad[i], rc);
        }
        assert_null(mq);
    }
    kp_config cfg;
    kp_config_defaults(&cfg);
    snprintf(cfg.mq, sizeof(cfg.mq), "rabbit");
    snprintf(cfg.mq_url, sizeof(cfg.mq_url), "amqp://guest:s3cret@localhost/");
    cfg.mq_queue[0] = '\0';
    kp_mq *mq = NULL;
    assert_int_equal(kp_mq_open(&cfg, &mq), KP_EINVAL);
    assert_null(mq);
    char *log = captured_text(&cap);
    assert_non_null(strstr(log, "-mq_url"));
    assert_non_null(strstr(log, "-mq_queue"));
    assert_null(strstr(log, "s3cret"));
    free(log);
}

/* The server exits with status 2 on a bad -mq_url, before it listens. */
static void test_server_exits_2_on_bad_url(void **state)
{
    (void)state;
    static char log[65536];
    const char *const args[] = {"-addr", "127.0.0.1:0", "-mq", "rabbit", "-mq_url",
                                "amqp://guest:s3cret@localhost:notaport/", NULL};
    assert_int_equal(run_server(args, log, sizeof(log), 10000), 2);
    assert_non_null(strstr(log, "-mq_url"));
    assert_null(strstr(log, "s3cret"));
    assert_null(strstr(log, "module=tcp.server")); /* never started listening */
}

/* Open never connects: with nothing listening, open succeeds, pending is unknown (-1), and
 * publish and consume fail with KP_EIO at once, again and again, without a stuck state. The
 * server starts too, and stops cleanly. */
static void test_broker_down_at_open(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d/", closed_port());
    kp_mq *mq = open_mq(url, "kupool_test_down");
    assert_int_equal(kp_mq_pending(mq), -1);
    kp_event ev = make_event("down", 1);
    uint64_t t0 = kp_test_now_ms();
    for (int i = 0; i < 3; i++) {
        kp_mq_batch one = kp_mq_v1_batch(&ev, 1);
        assert_int_equal(kp_mq_publish(mq, &one, 1), KP_EIO);
        size_t n = 1;
        assert_int_equal(kp_mq_consume(mq, &ev, 1, &n, 100), KP_EIO);
        assert_int_equal(n, 0);
        assert_int_equal(kp_mq_ack(mq), 0); /* nothing was consumed */
    }
    uint64_t took = kp_test_now_ms() - t0;
    printf("broker down: 3 x (publish, consume) gave KP_EIO in %" PRIu64 " ms\n", took);
    assert_true(took < 3000);
    assert_int_equal(kp_mq_pending(mq), -1);
    kp_mq_free(mq);

    static kp_proc proc;
    char data_dir[] = "/tmp/kupool-test-rabbit-data-XXXXXX";
    assert_non_null(mkdtemp(data_dir));
    const char *const args[] = {"-mq", "rabbit", "-mq_url", url, "-data_dir", data_dir,
                                "-shutdown_timeout", "1s", NULL};
    kp_proc_start(&proc, args, NULL);
    /* The first job is issued after the signal handlers are set; "started" comes before them. */
    assert_true(kp_proc_wait_log(&proc, "broadcast job", 5000));
    assert_int_equal(kp_proc_stop(&proc, SIGTERM, 10000), 0);
    assert_non_null(strstr(proc.log, "module=mq.rabbit"));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", data_dir);
    assert_int_equal(system(cmd), 0);
}

/* One message per event on the default exchange, routed by the queue's name: persistent,
 * application/json, message_id = event_id, the SPEC §3 JSON as the body; the queue is durable. */
static void test_message_format(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "format");
    admin a = admin_open();
    admin_delete(&a, q);
    kp_mq *mq = open_mq(env_or_fail("KUP_TEST_MQ_URL"), q);
    assert_int_equal(publish_range(mq, "fmt", 0, 3), 0);
    admin_expect_count(&a, q, 3);
    for (int i = 0; i < 3; i++) {
        amqp_basic_get(a.conn, a.ch, amqp_cstring_bytes(q), 0);
        amqp_rpc_reply_t r = amqp_get_rpc_reply(a.conn);
        assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
        assert_int_equal(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        amqp_basic_get_ok_t *ok = r.reply.decoded;
        assert_int_equal(ok->exchange.len, 0);
        assert_int_equal(ok->routing_key.len, strlen(q));
        assert_memory_equal(ok->routing_key.bytes, q, strlen(q));
        uint64_t tag = ok->delivery_tag;
        amqp_message_t msg;
        assert_int_equal(amqp_read_message(a.conn, a.ch, &msg, 0).reply_type,
                         AMQP_RESPONSE_NORMAL);
        kp_event want = make_event("fmt", i);
        char json[KP_EVENT_JSON_MAX];
        int len = kp_event_to_json(&want, json, sizeof(json));
        assert_true(len > 0);
        assert_int_equal(msg.body.len, (size_t)len);
        assert_memory_equal(msg.body.bytes, json, (size_t)len);
        amqp_basic_properties_t *p = &msg.properties;
        assert_true(p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
        assert_int_equal(p->delivery_mode, AMQP_DELIVERY_PERSISTENT);
        assert_true(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
        assert_int_equal(p->content_type.len, strlen("application/json"));
        assert_memory_equal(p->content_type.bytes, "application/json", p->content_type.len);
        assert_true(p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
        assert_int_equal(p->message_id.len, strlen(want.event_id));
        assert_memory_equal(p->message_id.bytes, want.event_id, p->message_id.len);
        amqp_destroy_message(&msg);
        assert_int_equal(amqp_basic_ack(a.conn, a.ch, tag, 0), AMQP_STATUS_OK);
    }
    /* Declaring it non-durable is refused: the backend made it durable. */
    assert_null(amqp_queue_declare(a.conn, a.ch, amqp_cstring_bytes(q), 0, 0, 0, 0,
                                   amqp_empty_table));
    assert_int_equal(admin_recover(&a), 406);
    kp_mq_free(mq);
    admin_delete(&a, q);
    admin_close(&a);
}

/* A batch published in several calls comes back in order with every field, across several
 * consume calls with an ack after each; then the queue is empty, pending says so, and nothing
 * comes back once the consumer has gone (so the acks reached the broker). */
static void test_publish_consume_ack(void **state)
{
    (void)state;
    enum { N = 1000, PER_CALL = 100 };
    char q[128];
    queue_name(q, sizeof(q), "roundtrip");
    admin a = admin_open();
    admin_delete(&a, q);
    const char *url = env_or_fail("KUP_TEST_MQ_URL");
    kp_mq *pub = open_mq(url, q);
    kp_mq *con = open_mq(url, q);
    for (int i = 0; i < N; i += PER_CALL)
        assert_int_equal(publish_range(pub, "rt", i, PER_CALL), 0);
    admin_expect_count(&a, q, N);
    consume_expect(con, "rt", 0, N, 64, true);
    expect_nothing(con, 200);

    uint64_t deadline = kp_test_now_ms() + 5000;
    while (kp_mq_pending(con) != 0 && kp_test_now_ms() < deadline)
        expect_nothing(con, 200); /* each call refreshes the count at most once a second */
    assert_int_equal(kp_mq_pending(con), 0);
    assert_int_equal(kp_mq_pending(pub), 0); /* one number per mq, whichever side read it */
    kp_mq_free(con);
    kp_mq_free(pub);
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

/* pending counts what is published and not yet delivered, refreshed within about a second. */
static void test_pending_counts_ready(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "pending");
    admin a = admin_open();
    admin_delete(&a, q);
    kp_mq *pub = open_mq(env_or_fail("KUP_TEST_MQ_URL"), q);
    assert_int_equal(kp_mq_pending(pub), -1); /* nothing known before the first connection */
    assert_int_equal(publish_range(pub, "pend", 0, 10), 0);
    assert_true(kp_mq_pending(pub) >= 0);
    uint64_t deadline = kp_test_now_ms() + 5000;
    int k = 10;
    while (kp_mq_pending(pub) != k && kp_test_now_ms() < deadline) {
        sleep_ms(300);
        assert_int_equal(publish_range(pub, "pend", k, 1), 0);
        k++;
    }
    /* The count read after a publish includes the batch just confirmed (minus nothing: no
     * consumer), so it is at least what was published before that batch. */
    int64_t p = kp_mq_pending(pub);
    assert_true(p >= k - 1 && p <= k);
    kp_mq_free(pub);
    admin_delete(&a, q);
    admin_close(&a);
}

/* Events consumed and never acknowledged come back, in order, to the next consumer after the
 * first one is freed. */
static void test_redelivery_after_free(void **state)
{
    (void)state;
    enum { N = 200 };
    char q[128];
    queue_name(q, sizeof(q), "redeliver");
    admin a = admin_open();
    admin_delete(&a, q);
    const char *url = env_or_fail("KUP_TEST_MQ_URL");
    kp_mq *pub = open_mq(url, q);
    assert_int_equal(publish_range(pub, "rd", 0, N), 0);
    kp_mq *first = open_mq(url, q);
    consume_expect(first, "rd", 0, N, 64, false);
    admin_expect_count(&a, q, 0); /* all delivered, none acknowledged */
    kp_mq_free(first);
    admin_expect_count(&a, q, N); /* back in the queue */

    kp_mq *second = open_mq(url, q);
    consume_expect(second, "rd", 0, N, 1024, true);
    expect_nothing(second, 200);
    kp_mq_free(second);
    kp_mq_free(pub);
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

/* The consumer's connection is cut (RST) between consume and ack: the ack fails, and the same
 * mq reconnects and gets the same events again; acking those empties the queue. */
static void test_redelivery_after_connection_loss(void **state)
{
    (void)state;
    enum { N = 50 };
    char q[128];
    queue_name(q, sizeof(q), "cut");
    admin a = admin_open();
    admin_delete(&a, q);
    static relay r; /* holds a 64 KiB buffer: not on the stack */
    relay_start(&r);
    kp_mq *pub = open_mq(env_or_fail("KUP_TEST_MQ_URL"), q);
    assert_int_equal(publish_range(pub, "cut", 0, N), 0);
    kp_mq *con = open_mq(r.url, q);
    consume_expect(con, "cut", 0, N, 1024, false);
    relay_request(&r, REQ_CUT);
    sleep_ms(50);
    assert_int_equal(kp_mq_ack(con), KP_EIO);
    consume_expect(con, "cut", 0, N, 1024, true);
    expect_nothing(con, 200);
    kp_mq_free(con);
    kp_mq_free(pub);
    admin_expect_count(&a, q, 0);
    relay_stop(&r);
    admin_delete(&a, q);
    admin_close(&a);
}

/* A message that is not an event is rejected without requeue (it would block the queue
 * forever); the events around it arrive. */
static void test_undecodable_message_rejected(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "poison");
    admin a = admin_open();
    admin_delete(&a, q);
    kp_mq *mq = open_mq(env_or_fail("KUP_TEST_MQ_URL"), q);
    assert_int_equal(publish_range(mq, "ok", 0, 1), 0);
    admin_publish_raw(&a, q, "not json at all \"\\\n");
    admin_publish_raw(&a, q, "{\"event_id\":1}");
    assert_int_equal(publish_range(mq, "ok", 1, 1), 0);
    admin_expect_count(&a, q, 4);
    consume_expect(mq, "ok", 0, 2, 16, true);
    expect_nothing(mq, 200);
    kp_mq_free(mq);
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

/* Someone deletes the queue under a running publisher and consumer. The publisher's next batch
 * is not dropped in silence (the broker would confirm messages no queue took): they come back
 * unroutable and publish fails; the retry declares the queue again and goes through. The
 * consumer hears basic.cancel and follows to the new queue. */
static void test_queue_deleted_under_backend(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "deleted");
    admin a = admin_open();
    admin_delete(&a, q);
    const char *url = env_or_fail("KUP_TEST_MQ_URL");
    kp_mq *pub = open_mq(url, q);
    kp_mq *con = open_mq(url, q);
    assert_int_equal(publish_range(pub, "del", 0, 10), 0);
    consume_expect(con, "del", 0, 10, 16, true);
    captured cap;
    capture_stderr(&cap);
    admin_delete(&a, q);
    assert_int_equal(admin_count(&a, q), -1);
    int rc = publish_range(pub, "del", 10, 5);
    int again = publish_range(pub, "del", 10, 5);
    consume_expect(con, "del", 10, 5, 16, true);
    expect_nothing(con, 200);
    char *log = captured_text(&cap);
    assert_int_equal(rc, KP_EIO);
    assert_int_equal(again, 0);
    assert_non_null(strstr(log, "unroutable"));
    assert_non_null(strstr(log, "cancelled the consumer"));
    free(log);
    kp_mq_free(con);
    kp_mq_free(pub);
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

/* A broker that accepted the connection and then says nothing more: publish gives up with
 * KP_EIO after its deadline instead of hanging; consume returns after its own timeout; once the
 * broker answers again the next publish goes through. */
static void test_silent_broker_is_bounded(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "silent");
    admin a = admin_open();
    admin_delete(&a, q);
    static relay r; /* holds a 64 KiB buffer: not on the stack */
    relay_start(&r);
    kp_mq *mq = open_mq(r.url, q);
    assert_int_equal(publish_range(mq, "sil", 0, 1), 0);
    relay_request(&r, REQ_HOLD);
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(publish_range(mq, "sil", 1, 1), KP_EIO);
    uint64_t took = kp_test_now_ms() - t0;
    printf("silent broker: publish gave KP_EIO after %" PRIu64 " ms\n", took);
    assert_true(took >= 1000 && took < 8000);

    kp_mq *con = open_mq(r.url, q); /* its connect is swallowed by the relay */
    kp_event ev;
    size_t n = 1;
    t0 = kp_test_now_ms();
    assert_int_equal(kp_mq_consume(con, &ev, 1, &n, 100), KP_EIO);
    took = kp_test_now_ms() - t0;
    printf("silent broker: consume's connect gave KP_EIO after %" PRIu64 " ms\n", took);
    assert_true(took < 8000);

    relay_request(&r, REQ_FORWARD);
    relay_request(&r, REQ_CUT);
    assert_int_equal(publish_range(mq, "sil", 1, 1), 0);
    consume_expect(con, "sil", 0, 2, 16, true);
    kp_mq_free(con);
    kp_mq_free(mq);
    relay_stop(&r);
    admin_delete(&a, q);
    admin_close(&a);
}

/* The broker stops and starts again. While it is down, publish fails with KP_EIO at once, the
 * consumer's ack and consume fail, and a new mq opens fine. Once it is back, the first publish
 * succeeds, the persistent messages published before the stop are all still there (those that
 * were delivered and not acknowledged too), in order, and the mq opened while it was down works.
 * Then a plain restart: the idle connections are noticed and replaced within the next call. */
static void test_broker_restart(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "restart");
    admin a = admin_open();
    admin_delete(&a, q);
    const char *url = env_or_fail("KUP_TEST_MQ_URL");
    kp_mq *pub = open_mq(url, q);
    kp_mq *con = open_mq(url, q);
    assert_int_equal(publish_range(pub, "rs", 0, 100), 0);
    consume_expect(con, "rs", 0, 10, 10, false); /* delivered, unacknowledged */
    admin_close(&a);

    rabbit_script("stop");
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(publish_range(pub, "rs", 100, 50), KP_EIO);
    assert_int_equal(publish_range(pub, "rs", 100, 50), KP_EIO);
    uint64_t took = kp_test_now_ms() - t0;
    printf("broker stopped: two publishes gave KP_EIO in %" PRIu64 " ms\n", took);
    assert_true(took < 3000);
    assert_int_equal(kp_mq_ack(con), KP_EIO);
    kp_event ev;
    size_t n = 1;
    assert_int_equal(kp_mq_consume(con, &ev, 1, &n, 100), KP_EIO);
    assert_int_equal(n, 0);
    kp_mq *late = open_mq(url, q);
    rabbit_script("start");

    assert_int_equal(publish_range(pub, "rs", 100, 50), 0);
    assert_int_equal(publish_range(late, "rs", 150, 10), 0);
    consume_expect(con, "rs", 0, 160, 64, true);
    expect_nothing(con, 200);

    rabbit_script("restart");
    t0 = kp_test_now_ms();
    assert_int_equal(publish_range(pub, "rs", 160, 20), 0); /* first call after the restart */
    printf("after restart: first publish took %" PRIu64 " ms\n", kp_test_now_ms() - t0);
    consume_expect(con, "rs", 160, 20, 64, true);
    expect_nothing(con, 200);

    kp_mq_free(late);
    kp_mq_free(con);
    kp_mq_free(pub);
    a = admin_open();
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

/* 5000 events in one publish call: confirmed in batches within the call; all come back. */
static void test_large_publish(void **state)
{
    (void)state;
    enum { N = 5000 };
    char q[128];
    queue_name(q, sizeof(q), "large");
    admin a = admin_open();
    admin_delete(&a, q);
    const char *url = env_or_fail("KUP_TEST_MQ_URL");
    kp_mq *pub = open_mq(url, q);
    kp_mq *con = open_mq(url, q);
    assert_int_equal(publish_range(pub, "warm", 0, 1), 0); /* connect outside the timing */
    consume_expect(con, "warm", 0, 1, 1, true);

    kp_event *events = malloc(N * sizeof(*events));
    assert_non_null(events);
    for (int i = 0; i < N; i++)
        events[i] = make_event("big", i);
    uint64_t t0 = kp_test_now_ms();
    kp_mq_batch all = kp_mq_v1_batch(events, N);
    assert_int_equal(kp_mq_publish(pub, &all, 1), 0);
    uint64_t pub_ms = kp_test_now_ms() - t0;
    t0 = kp_test_now_ms();
    consume_expect(con, "big", 0, N, 1024, true);
    uint64_t con_ms = kp_test_now_ms() - t0;
    printf("rabbit: one publish of %d events confirmed in %" PRIu64 " ms;"
           " consumed and acked in %" PRIu64 " ms\n",
           N, pub_ms, con_ms);
    free(events);
    kp_mq_free(con);
    kp_mq_free(pub);
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

/* ---- batches (issue 12, SPEC §3 v1.1) --------------------------------------------------- */

static kp_mq *open_mq_batched(const char *queue, unsigned publishers)
{
    kp_config cfg;
    kp_config_defaults(&cfg);
    snprintf(cfg.mq, sizeof(cfg.mq), "rabbit");
    snprintf(cfg.mq_url, sizeof(cfg.mq_url), "%s", env_or_fail("KUP_TEST_MQ_URL"));
    snprintf(cfg.mq_queue, sizeof(cfg.mq_queue), "%s", queue);
    cfg.mq_batch = 64;
    cfg.mq_publishers = publishers;
    kp_mq *mq = NULL;
    assert_int_equal(kp_mq_open(&cfg, &mq), 0);
    return mq;
}

/* Publishes events first .. first+n-1 of `prefix` cut into batches of `per`. */
static int publish_batches(kp_mq *mq, const char *prefix, int first, int n, size_t per)
{
    kp_event *events = malloc((size_t)n * sizeof(*events));
    kp_mq_batch *b = calloc((size_t)n, sizeof(*b));
    assert_true(events && b);
    for (int i = 0; i < n; i++)
        events[i] = make_event(prefix, first + i);
    size_t nb = kp_batch_seal(events, (size_t)n, per, b, (size_t)n);
    assert_true(nb > 0);
    int rc = kp_mq_publish(mq, b, nb);
    free(b);
    free(events);
    return rc;
}

static void admin_publish_typed(admin *a, const char *queue, const char *type, const char *body)
{
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG,
        .delivery_mode = AMQP_DELIVERY_PERSISTENT,
        .content_type = amqp_cstring_bytes(type),
    };
    assert_int_equal(amqp_basic_publish(a->conn, a->ch, amqp_empty_bytes,
                                        amqp_cstring_bytes(queue), 0, 0, &props,
                                        amqp_cstring_bytes(body)),
                     AMQP_STATUS_OK);
}

/* One message per batch, as docs/queue.md says: NDJSON body of the batch's events in order,
 * content_type application/x-ndjson, message_id = the batch id, header kupool-events. */
static void test_batch_message_format(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "batchfmt");
    admin a = admin_open();
    admin_delete(&a, q);
    kp_mq *mq = open_mq_batched(q, 1);
    assert_int_equal(publish_batches(mq, "bf", 0, 5, 3), 0); /* bf-0+3, bf-3+2 */
    admin_expect_count(&a, q, 2);
    for (int m = 0; m < 2; m++) {
        amqp_basic_get(a.conn, a.ch, amqp_cstring_bytes(q), 0);
        amqp_rpc_reply_t r = amqp_get_rpc_reply(a.conn);
        assert_int_equal(r.reply.id, AMQP_BASIC_GET_OK_METHOD);
        uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        amqp_message_t msg;
        assert_int_equal(amqp_read_message(a.conn, a.ch, &msg, 0).reply_type,
                         AMQP_RESPONSE_NORMAL);
        int first = m * 3, n = m == 0 ? 3 : 2;
        char body[4 * KP_EVENT_JSON_MAX];
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            kp_event ev = make_event("bf", first + i);
            len += (size_t)kp_event_to_json(&ev, body + len, sizeof(body) - len - 1);
            body[len++] = '\n';
        }
        assert_int_equal(msg.body.len, len);
        assert_memory_equal(msg.body.bytes, body, len);
        amqp_basic_properties_t *p = &msg.properties;
        assert_int_equal(p->delivery_mode, AMQP_DELIVERY_PERSISTENT);
        assert_int_equal(p->content_type.len, strlen(KP_MQ_NDJSON));
        assert_memory_equal(p->content_type.bytes, KP_MQ_NDJSON, p->content_type.len);
        char id[64];
        snprintf(id, sizeof(id), "bf-%d+%d", first, n);
        assert_int_equal(p->message_id.len, strlen(id));
        assert_memory_equal(p->message_id.bytes, id, p->message_id.len);
        assert_true(p->_flags & AMQP_BASIC_HEADERS_FLAG);
        assert_int_equal(p->headers.num_entries, 1);
        assert_int_equal(p->headers.entries[0].key.len, strlen("kupool-events"));
        assert_memory_equal(p->headers.entries[0].key.bytes, "kupool-events", 13);
        assert_int_equal(p->headers.entries[0].value.value.i32, n);
        amqp_destroy_message(&msg);
        assert_int_equal(amqp_basic_ack(a.conn, a.ch, tag, 0), AMQP_STATUS_OK);
    }
    kp_mq_free(mq);
    admin_delete(&a, q);
    admin_close(&a);
}

/* The consumer side of batches: v1 messages and batches from the same queue, in one consume
 * (a mixed queue, counted exactly); a batch never split across calls even when the caller's
 * buffer ends inside it (it waits in the stash and is not acknowledged with the first call);
 * a batch with a bad line gives its good events; a batch with no event is rejected. Batches
 * over 4 publishing connections all arrive. */
static void test_batches_consumed(void **state)
{
    (void)state;
    char q[128];
    queue_name(q, sizeof(q), "batchcon");
    admin a = admin_open();
    admin_delete(&a, q);
    kp_mq *v1 = open_mq(env_or_fail("KUP_TEST_MQ_URL"), q);
    kp_mq *mq = open_mq_batched(q, 4);
    assert_int_equal(publish_range(v1, "mx", 0, 2), 0);
    assert_int_equal(publish_batches(mq, "mx", 2, 10, 5), 0); /* two batches of 5 */
    admin_expect_count(&a, q, 4);

    kp_event out[KP_MQ_BATCH_MAX];
    size_t n = 0;
    /* cap 4: the two v1 events, then the first batch does not fit and waits. */
    assert_int_equal(kp_mq_consume(mq, out, 4, &n, 2000), 0);
    assert_int_equal(n, 2);
    expect_event(&out[0], "mx", 0);
    expect_event(&out[1], "mx", 1);
    assert_int_equal(kp_mq_ack(mq), 0);
    kp_mq_free(mq); /* the stashed batch was not acknowledged: the broker has it again */
    mq = open_mq_batched(q, 4);
    admin_expect_count(&a, q, 2);
    int seen = 0;
    uint64_t deadline = kp_test_now_ms() + 5000;
    while (seen < 10 && kp_test_now_ms() < deadline) {
        assert_int_equal(kp_mq_consume(mq, out, 5, &n, 500), 0); /* one batch per call */
        assert_true(n == 0 || n == 5);
        for (size_t i = 0; i < n; i++)
            expect_event(&out[i], "mx", 2 + seen++);
        assert_int_equal(kp_mq_ack(mq), 0);
    }
    assert_int_equal(seen, 10);

    /* A bad line inside a batch costs only itself; a batch of nothing but bad lines is
     * rejected, so nothing of it comes back. */
    kp_event good = make_event("mx", 20);
    char json[KP_EVENT_JSON_MAX], body[3 * KP_EVENT_JSON_MAX];
    assert_true(kp_event_to_json(&good, json, sizeof(json)) > 0);
    snprintf(body, sizeof(body), "{\"event_id\":\n%s\n", json);
    admin_publish_typed(&a, q, KP_MQ_NDJSON, body);
    admin_publish_typed(&a, q, KP_MQ_NDJSON, "garbage\nmore garbage\n");
    n = 0;
    size_t total = 0;
    deadline = kp_test_now_ms() + 5000;
    while (total == 0 && kp_test_now_ms() < deadline) {
        assert_int_equal(kp_mq_consume(mq, out, KP_MQ_BATCH_MAX, &n, 500), 0);
        if (n)
            expect_event(&out[0], "mx", 20);
        total += n;
    }
    assert_int_equal(total, 1);
    assert_int_equal(kp_mq_ack(mq), 0);
    expect_nothing(mq, 300);
    kp_mq_free(mq);
    kp_mq_free(v1);
    admin_expect_count(&a, q, 0);
    admin_delete(&a, q);
    admin_close(&a);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_url_is_einval),
        cmocka_unit_test(test_server_exits_2_on_bad_url),
        cmocka_unit_test(test_broker_down_at_open),
        cmocka_unit_test(test_message_format),
        cmocka_unit_test(test_publish_consume_ack),
        cmocka_unit_test(test_pending_counts_ready),
        cmocka_unit_test(test_redelivery_after_free),
        cmocka_unit_test(test_redelivery_after_connection_loss),
        cmocka_unit_test(test_undecodable_message_rejected),
        cmocka_unit_test(test_queue_deleted_under_backend),
        cmocka_unit_test(test_silent_broker_is_bounded),
        cmocka_unit_test(test_large_publish),
        cmocka_unit_test(test_broker_restart),
        cmocka_unit_test(test_batch_message_format),
        cmocka_unit_test(test_batches_consumed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
