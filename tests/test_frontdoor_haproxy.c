/* End to end behind a real HAProxy (SPEC §9, issue 13): HAProxy in TCP mode with send-proxy-v2
 * in front of two kupool-server nodes that share the test RabbitMQ and PostgreSQL and a
 * -job_secret, so both issue the same jobs. kupool-client (load mode, from 127.0.0.2..5) goes
 * through HAProxy (at 127.0.0.1, the nodes' only trusted proxy). Checked:
 *   - the nodes' logs show the clients' own addresses, never HAProxy's;
 *   - a junk client (127.0.0.9) gets banned and the node's /bans lists its own address;
 *   - one node SIGTERMed mid-run: its clients reconnect through HAProxy to the other, and the
 *     run ends with every session connected and nothing lost: PostgreSQL counts exactly what
 *     the two nodes accepted, which covers what the client was told was accepted.
 * The scenario is one function over a listener kind, run twice: on the nodes' -addr, and on
 * their -tls_addr with HAProxy passing TLS through untouched (TCP mode), so each node reads
 * the PROXY v2 header in clear and then the client's TLS. There kupool-client connects with
 * tls:// and -tls_ca (the test CA; the server certificate names 127.0.0.1, the address it
 * dials) and the junk client is a real OpenSSL client: the junk is inside TLS.
 *
 * Environment from ctest: KUP_TEST_PG_DSN, KUP_TEST_MQ_URL, KUP_TEST_HAPROXY_SCRIPT,
 * KUP_TEST_HAPROXY_PORT, KUP_TEST_TLS_DIR. HAProxy is started by the test and must start, or
 * the test fails. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "testsupport.h"

#define SESSIONS 40
#define RUN_S 14
#define STOP_AT_MS 6000
#define REPLY_MS 5000
#define STOP_MS 60000
#define COUNT_MS 60000

typedef struct fixture {
    kp_proc node[2];
    int admin[2];
    bool stopped[2];
    char data[2][64];
    char hap_dir[64];
    bool hap_started;
    pid_t client;
    char queue[64];
    char user[32];
} fixture;

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set: run through ctest (labels e2e, pg, rabbit)", name);
    return v;
}

static int run_script(const char *const *args)
{
    pid_t pid = kp_spawn(env_or_fail("KUP_TEST_HAPROXY_SCRIPT"), args, NULL, NULL, NULL);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    for (int i = 0; i < 2; i++) {
        snprintf(fx->data[i], sizeof(fx->data[i]), "/tmp/kp_hap_node%d.XXXXXX", i);
        if (!mkdtemp(fx->data[i]))
            return -1;
    }
    snprintf(fx->hap_dir, sizeof(fx->hap_dir), "/tmp/kp_hap.XXXXXX");
    if (!mkdtemp(fx->hap_dir))
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx->client > 0) {
        kill(fx->client, SIGKILL);
        waitpid(fx->client, NULL, 0);
    }
    if (fx->hap_started) {
        const char *args[] = {"stop", fx->hap_dir, NULL};
        run_script(args);
    }
    for (int i = 0; i < 2; i++)
        kp_proc_abandon(&fx->node[i]);
    free(fx);
    return 0;
}

/* Reads both nodes' logs for `ms` (their stderr pipes must not fill up). */
static void pump(fixture *fx, int ms)
{
    uint64_t end = kp_test_now_ms() + (uint64_t)ms;
    while (kp_test_now_ms() < end)
        for (int i = 0; i < 2; i++)
            if (!fx->stopped[i])
                kp_proc_wait_log(&fx->node[i], "\x01 never", 25);
}

static char *http_get(int port, const char *path)
{
    return kp_http_get(port, path, NULL);
}

static unsigned long long metric(int port, const char *series)
{
    return (unsigned long long)kp_metric(port, series);
}

static unsigned long long stop_node(fixture *fx, int i)
{
    int status = kp_proc_stop(&fx->node[i], SIGTERM, STOP_MS);
    fx->node[i].pid = 0;
    fx->stopped[i] = true;
    if (status != 0)
        fail_msg("node %d exit %d; log:\n%s", i, status, fx->node[i].log);
    const char *line = strstr(fx->node[i].log, "stopped accepted=");
    assert_non_null(line);
    return strtoull(line + strlen("stopped accepted="), NULL, 10);
}

static unsigned long long pg_count(PGconn *c, const char *user)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "%s-%%", user);
    const char *params[] = {pattern};
    PGresult *r = PQexecParams(c, "SELECT COALESCE(sum(submission_count), 0) FROM submissions "
                                  "WHERE username LIKE $1", 1, NULL, params, NULL, NULL, 0);
    unsigned long long n = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        n = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

/* The listener HAProxy points at: `-addr`, or `-tls_addr` (TLS passed through). */
typedef enum listener_kind { LISTENER_TCP, LISTENER_TLS } listener_kind;

static const char *cert_path(const char *name)
{
    static char paths[4][512];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof(paths[0]), "%s/%s", env_or_fail("KUP_TEST_TLS_DIR"), name);
    return p;
}

/* The port of node i that HAProxy balances to. */
static int start_node(fixture *fx, int i, listener_kind kind)
{
    const char *args[] = {
        "-store", "pg", "-pg_dsn", env_or_fail("KUP_TEST_PG_DSN"),
        "-mq", "rabbit", "-mq_url", env_or_fail("KUP_TEST_MQ_URL"), "-mq_queue", fx->queue,
        "-job_secret", "frontdoor-e2e", "-interval", "1s", "-data_dir", fx->data[i],
        "-http_addr", "127.0.0.1:0", "-proxy_from", "127.0.0.1",
        "-max_conns_per_ip", "50", "-ban_time", "1m", "-max_errors", "4",
        /* the TCP variant's list ends here */
        kind == LISTENER_TLS ? "-tls_addr" : NULL, "127.0.0.1:0",
        "-tls_cert", cert_path("chain.pem"), "-tls_key", cert_path("server.key"),
        NULL};
    static const char *const env[] = {"KUP_LOG_LEVEL=debug", NULL};
    kp_proc_start(&fx->node[i], args, env);
    fx->admin[i] = kp_proc_listen_port(&fx->node[i], "http.admin", 10000);
    return kind == LISTENER_TLS ? kp_proc_listen_port(&fx->node[i], "tls.server", 10000)
                                : fx->node[i].port;
}

/* Four malformed lines (-max_errors 4) from 127.0.0.9 through HAProxy, inside TLS for the TLS
 * variant (a real handshake, verified against the test CA); returns once the node closed. */
static void send_junk(int front_port, listener_kind kind)
{
    static const char junk[] = "x\nx\nx\nx\n";
    int fd = kp_connect_from("127.0.0.9", front_port, 0);
    if (kind == LISTENER_TCP) {
        kp_send(fd, junk, sizeof(junk) - 1);
        assert_int_equal(kp_wait_closed(fd, REPLY_MS), 1);
        kp_close(fd);
        return;
    }
    struct timeval tv = {.tv_sec = REPLY_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, cert_path("ca.pem"), NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) != 1)
        fail_msg("TLS handshake through HAProxy failed");
    size_t n = 0;
    assert_int_equal(SSL_write_ex(ssl, junk, sizeof(junk) - 1, &n), 1);
    /* The answers (Invalid JSON), then the end: EOF or a reset, not a timeout. */
    char buf[4096];
    while (SSL_read_ex(ssl, buf, sizeof(buf), &n) == 1)
        ;
    assert_int_not_equal(SSL_get_error(ssl, 0), SSL_ERROR_WANT_READ);
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    kp_close(fd);
}

static void behind_haproxy(fixture *fx, listener_kind kind)
{
    /* Each variant its own users and queue: PostgreSQL's count is per variant. */
    const char *tag = kind == LISTENER_TLS ? "tls" : "tcp";
    snprintf(fx->queue, sizeof(fx->queue), "kupool_hap_%d_%s", (int)getpid(), tag);
    snprintf(fx->user, sizeof(fx->user), "hap%d%s", (int)getpid(), tag);
    int port0 = start_node(fx, 0, kind);
    int port1 = start_node(fx, 1, kind);
    char front[16], p0[16], p1[16];
    snprintf(front, sizeof(front), "%s", env_or_fail("KUP_TEST_HAPROXY_PORT"));
    snprintf(p0, sizeof(p0), "%d", port0);
    snprintf(p1, sizeof(p1), "%d", port1);
    const char *hap[] = {"start", fx->hap_dir, front, p0, p1, NULL};
    assert_int_equal(run_script(hap), 0);
    fx->hap_started = true;
    int front_port = atoi(front);

    /* The load: 40 sessions from four addresses of their own, through HAProxy. */
    char addr[32], n[8], dur[8];
    snprintf(addr, sizeof(addr), "%s127.0.0.1:%d", kind == LISTENER_TLS ? "tls://" : "", front_port);
    snprintf(n, sizeof(n), "%d", SESSIONS);
    snprintf(dur, sizeof(dur), "%ds", RUN_S);
    const char *cargs[] = {"-addr", addr, "-n", n, "-duration", dur, "-src", "127.0.0.2-127.0.0.5",
                           "-username", fx->user, "-connect_rate", "200", "-json",
                           kind == LISTENER_TLS ? "-tls_ca" : NULL, /* TCP: the end */
                           cert_path("ca.pem"), NULL};
    int out_fd = -1;
    fx->client = kp_spawn(KP_CLIENT_BIN, cargs, NULL, &out_fd, NULL);
    uint64_t t0 = kp_test_now_ms();
    pump(fx, 3000);

    /* Both nodes serve, and log the clients' addresses, not HAProxy's. */
    for (int i = 0; i < 2; i++) {
        const char *log = fx->node[i].log;
        if (!strstr(log, "authorized username=") || strstr(log, "addr=127.0.0.1:"))
            fail_msg("node %d log without the clients' own addresses:\n%s", i, log);
        int seen = 0;
        for (int a = 2; a <= 5; a++) {
            char want[32];
            snprintf(want, sizeof(want), "addr=127.0.0.%d:", a);
            seen += strstr(log, want) != NULL;
        }
        assert_true(seen >= 2);
    }

    /* A junk client through HAProxy: banned by the node it reached, under its own address. */
    send_junk(front_port, kind);
    int banned_on = -1;
    for (int i = 0; i < 2; i++) {
        char *bans = http_get(fx->admin[i], "/bans");
        if (strstr(bans, "{\"addr\":\"127.0.0.9\",\"reason\":\"junk\",\"until\":\""))
            banned_on = i;
        assert_null(strstr(bans, "127.0.0.1\""));
        free(bans);
    }
    assert_true(banned_on >= 0);

    /* One node goes away mid-run. */
    uint64_t elapsed = kp_test_now_ms() - t0;
    if (elapsed < STOP_AT_MS)
        pump(fx, (int)(STOP_AT_MS - elapsed));
    unsigned long long accepted0 = stop_node(fx, 0);
    assert_true(accepted0 > 0);

    /* The client runs to its end; its sessions found node 1 through HAProxy. */
    char out[1 << 16];
    size_t out_len = 0;
    for (;;) {
        pump(fx, 200);
        struct pollfd p = {.fd = out_fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) {
            ssize_t r = read(out_fd, out + out_len, sizeof(out) - out_len - 1);
            if (r <= 0)
                break;
            out_len += (size_t)r;
        }
        assert_true(kp_test_now_ms() - t0 < (RUN_S + 30) * 1000ull);
    }
    out[out_len] = '\0';
    close(out_fd);
    int status = 0;
    waitpid(fx->client, &status, 0);
    fx->client = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cJSON *sum = cJSON_Parse(out);
    if (!sum)
        fail_msg("client summary is not JSON: %s", out);
    double c_accepted = cJSON_GetNumberValue(cJSON_GetObjectItem(sum, "accepted"));
    double c_unanswered = cJSON_GetNumberValue(cJSON_GetObjectItem(sum, "unanswered"));
    double c_at_end = cJSON_GetNumberValue(cJSON_GetObjectItem(sum, "connected_at_end"));
    double c_unexpected = cJSON_GetNumberValue(cJSON_GetObjectItem(sum, "unexpected_rejections"));
    fprintf(stderr, "client: %s\n", out);
    assert_true(c_at_end == SESSIONS);
    assert_true(c_unexpected == 0);
    cJSON_Delete(sum);

    /* Every accepted submit counted exactly once: PostgreSQL holds what the two nodes accepted. */
    unsigned long long accepted1 = metric(fx->admin[1], "kupool_events_accepted_total");
    unsigned long long want = accepted0 + accepted1, got = 0;
    PGconn *c = PQconnectdb(env_or_fail("KUP_TEST_PG_DSN"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    uint64_t deadline = kp_test_now_ms() + COUNT_MS;
    while ((got = pg_count(c, fx->user)) < want && kp_test_now_ms() < deadline)
        pump(fx, 250);
    pump(fx, 1000);
    got = pg_count(c, fx->user); /* and no more than that after a while */
    PQfinish(c);
    fprintf(stderr, "node0 accepted %llu, node1 %llu, pg %llu, client accepted %.0f unanswered %.0f\n",
            accepted0, accepted1, got, c_accepted, c_unanswered);
    assert_true(got == want);
    assert_true(c_accepted <= (double)got && (double)got <= c_accepted + c_unanswered);
    if (kind == LISTENER_TLS) {
        /* Node 1 spoke TLS behind the headers; HAProxy's checks (a LOCAL header, no TLS
         * bytes) and the sessions it took over are no failed handshakes. */
        assert_true(metric(fx->admin[1], "kupool_tls_handshakes_total{result=\"ok\"}") >= SESSIONS / 2);
        assert_true(metric(fx->admin[1], "kupool_tls_handshakes_total{result=\"failed\"}") == 0);
    }
    assert_true(stop_node(fx, 1) == accepted1);
}

static void test_tcp_behind_haproxy(void **state)
{
    behind_haproxy(*state, LISTENER_TCP);
}

static void test_tls_behind_haproxy(void **state)
{
    behind_haproxy(*state, LISTENER_TLS);
}

int main(void)
{
    /* A TLS write to a connection the node closed must fail, not kill the test (the children
     * inherit this, and ignore SIGPIPE themselves anyway). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tcp_behind_haproxy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_behind_haproxy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
