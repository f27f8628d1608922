/* The real kupool-server with -tls_addr against OpenSSL's own client (`openssl s_client`): it
 * verifies the chain against the test CA, authorizes, gets the job, submits and is accepted.
 * Then the handshake deadline (-auth_timeout: silence and a half handshake are both closed, the
 * half one counted failed in /metrics), SIGHUP reloading the certificate (new connections get the
 * new one, an open one keeps working, a bad new file keeps the current one) and the start-up
 * errors that name -tls_cert or -tls_key (exit 2).
 *
 * Certificates: tests/services/tls_certs.sh (fixture tls_certs), in $KUP_TEST_TLS_DIR. */
#include <ctype.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsupport.h"

static const char *cert_path(const char *name)
{
    static char paths[8][512];
    static int next;
    const char *dir = getenv("KUP_TEST_TLS_DIR");
    if (!dir)
        fail_msg("KUP_TEST_TLS_DIR is not set (run through ctest: fixture tls_certs)");
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

/* A stream read line by line (testsupport's reader knows only the sockets it connected). */
typedef struct line_io {
    int fd;
    char buf[64 * 1024];
    size_t len;
} line_io;

/* One line without its "\n" into out; its length, -1 on timeout, -2 on EOF. */
static int read_line(line_io *io, char *out, size_t cap, int timeout_ms)
{
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = memchr(io->buf, '\n', io->len);
        if (nl) {
            size_t n = (size_t)(nl - io->buf);
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(out, io->buf, copy);
            out[copy] = '\0';
            memmove(io->buf, nl + 1, io->len - n - 1);
            io->len -= n + 1;
            return (int)copy;
        }
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return -1;
        struct pollfd pfd = {.fd = io->fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t n = read(io->fd, io->buf + io->len, sizeof(io->buf) - io->len);
        if (n <= 0)
            return -2;
        io->len += (size_t)n;
    }
}

/* `openssl s_client` with its stdin and stdout on one end of a socket pair (so the test reads
 * and writes it like a socket); its stderr (the verification lines) in a pipe. */
typedef struct s_client {
    pid_t pid;
    line_io *io; /* the client's stdin/stdout */
    int err_fd;  /* its stderr */
} s_client;

static s_client s_client_start(int port, bool quiet)
{
    int sv[2], ev[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(ev), 0);
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        dup2(ev[1], 2);
        close(sv[0]);
        close(ev[0]);
        execlp("openssl", "openssl", "s_client", "-connect", connect, "-servername", "localhost",
               "-verify_hostname", "localhost", "-CAfile", cert_path("ca.pem"),
               "-verify_return_error", quiet ? "-quiet" : "-ign_eof", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    close(ev[1]);
    line_io *io = calloc(1, sizeof(*io));
    assert_non_null(io);
    io->fd = sv[0];
    return (s_client){.pid = pid, .io = io, .err_fd = ev[0]};
}

static void s_client_stop(s_client *c)
{
    close(c->io->fd);
    free(c->io);
    close(c->err_fd);
    kill(c->pid, SIGTERM);
    waitpid(c->pid, NULL, 0);
}

/* Reads lines until one contains `needle`; fails on timeout or EOF. */
static void expect_containing(line_io *io, const char *needle, char *buf, size_t cap)
{
    for (;;) {
        int n = read_line(io, buf, cap, 5000);
        if (n < 0)
            fail_msg("no line with [%s] (%s)", needle, n == -1 ? "timeout" : "EOF");
        if (strstr(buf, needle))
            return;
    }
}

static void field(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(line, pat);
    assert_non_null(p);
    p += strlen(pat);
    if (*p == '"')
        p++;
    size_t n = 0;
    while (p[n] && p[n] != '"' && p[n] != ',' && p[n] != '}' && n + 1 < cap)
        n++;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* authorize, the job, a valid submit accepted; returns nothing, fails the test otherwise. */
static void mine_once(line_io *fd, const char *user, const char *client_nonce)
{
    char line[4096], job_id[32], nonce[128], result[65];
    kp_sendf(fd->fd, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"%s\"}}\n", user);
    expect_containing(fd, "\"id\":1,\"result\":true", line, sizeof(line));
    expect_containing(fd, "\"method\":\"job\"", line, sizeof(line));
    field(line, "job_id", job_id, sizeof(job_id));
    field(line, "server_nonce", nonce, sizeof(nonce));
    kp_test_result(nonce, client_nonce, result);
    kp_sendf(fd->fd,
             "{\"id\":2,\"method\":\"submit\",\"params\":{\"job_id\":%s,\"client_nonce\":\"%s\","
             "\"result\":\"%s\"}}\n",
             job_id, client_nonce, result);
    expect_containing(fd, "\"id\":2", line, sizeof(line));
    if (!strstr(line, "\"result\":true"))
        fail_msg("submit not accepted: %s", line);
}

/* The server of the test running now, for teardown. */
static kp_proc *running;

static void start_tls_server(kp_proc *p, const char *cert, const char *key, const char *extra)
{
    const char *args[] = {"-tls_addr", "127.0.0.1:0", "-tls_cert", cert, "-tls_key", key,
                          "-http_addr", "127.0.0.1:0", "-min_submit_interval", "0",
                          "-data_dir", "/tmp/kp_test_tls_server", extra ? "-auth_timeout" : NULL,
                          extra, NULL};
    kp_proc_start(p, args, NULL);
}

static void test_s_client_mines(void **state)
{
    (void)state;
    kp_proc *p = running = calloc(1, sizeof(*p));
    start_tls_server(p, cert_path("chain.pem"), cert_path("server.key"), NULL);
    int port = kp_proc_listen_port(p, "tls.server", 5000);
    s_client c = s_client_start(port, true);
    mine_once(c.io, "alice", "00ab");
    s_client_stop(&c);
    /* The plaintext listener is untouched. */
    line_io *plain = calloc(1, sizeof(*plain));
    plain->fd = kp_connect(p->port, 0);
    mine_once(plain, "bob", "00cd");
    kp_close(plain->fd);
    free(plain);
    assert_int_equal(kp_proc_stop(p, SIGTERM, 10000), 0);
    assert_non_null(strstr(p->log, "accepted=2"));
    free(p);
    running = NULL;
}

/* GET /metrics and the value of one sample line. */
static long metric(int http_port, const char *sample)
{
    return (long)kp_metric(http_port, sample);
}

static void test_handshake_deadline(void **state)
{
    (void)state;
    kp_proc *p = running = calloc(1, sizeof(*p));
    start_tls_server(p, cert_path("chain.pem"), cert_path("server.key"), "300ms");
    int port = kp_proc_listen_port(p, "tls.server", 5000);
    int http = kp_proc_listen_port(p, "http.admin", 5000);
    /* Silence, and the first bytes of a ClientHello: both closed by the -auth_timeout clock. */
    uint64_t t0 = kp_test_now_ms();
    int quiet = kp_connect(port, 0);
    int half = kp_connect(port, 0);
    kp_send(half, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    assert_true(kp_wait_closed(quiet, 3000));
    assert_true(kp_wait_closed(half, 3000));
    uint64_t took = kp_test_now_ms() - t0;
    assert_true(took >= 250 && took < 3000);
    kp_close(quiet);
    kp_close(half);
    /* One connection sent handshake bytes and never finished: one failed handshake. */
    assert_int_equal(metric(http, "kupool_sessions_closed_total{reason=\"auth_timeout\"}"), 2);
    assert_int_equal(metric(http, "kupool_tls_handshakes_total{result=\"failed\"}"), 1);
    assert_int_equal(metric(http, "kupool_tls_handshakes_total{result=\"ok\"}"), 0);
    s_client c = s_client_start(port, true);
    mine_once(c.io, "alice", "00ab");
    s_client_stop(&c);
    assert_int_equal(metric(http, "kupool_tls_handshakes_total{result=\"ok\"}"), 1);
    assert_int_equal(kp_proc_stop(p, SIGTERM, 10000), 0);
    free(p);
    running = NULL;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* The subject s_client printed for the server certificate ("subject=CN = ..."). */
static void expect_subject(int port, const char *cn)
{
    s_client c = s_client_start(port, false);
    char line[4096], want[256];
    snprintf(want, sizeof(want), "subject=CN = %s", cn);
    for (;;) {
        int n = read_line(c.io, line, sizeof(line), 5000);
        if (n < 0)
            fail_msg("s_client never printed [%s]", want);
        if (strncmp(line, "subject=", 8) == 0) {
            assert_string_equal(line, want);
            break;
        }
    }
    s_client_stop(&c);
}

static void test_sighup_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp_test_tls_reloadXXXXXX";
    assert_non_null(mkdtemp(dir));
    char cert[600], key[600];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    copy_file(cert_path("chain.pem"), cert);
    copy_file(cert_path("server.key"), key);
    kp_proc *p = running = calloc(1, sizeof(*p));
    start_tls_server(p, cert, key, NULL);
    int port = kp_proc_listen_port(p, "tls.server", 5000);
    expect_subject(port, "localhost");
    /* An open session across the reload. */
    s_client open = s_client_start(port, true);
    char line[4096];
    kp_sendf(open.io->fd, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"carol\"}}\n");
    expect_containing(open.io, "\"result\":true", line, sizeof(line));

    copy_file(cert_path("server2.pem"), cert);
    copy_file(cert_path("server2.key"), key);
    kill(p->pid, SIGHUP);
    assert_true(kp_proc_wait_log(p, "certificate reloaded", 5000));
    expect_subject(port, "localhost reloaded");
    kp_sendf(open.io->fd, "{\"id\":3,\"method\":\"authorize\",\"params\":{\"username\":\"carol\"}}\n");
    expect_containing(open.io, "\"id\":3", line, sizeof(line));

    /* A key that does not match: an error, and the current certificate stays. */
    copy_file(cert_path("other.key"), key);
    kill(p->pid, SIGHUP);
    assert_true(kp_proc_wait_log(p, "reload failed", 5000));
    assert_non_null(strstr(p->log, "flag=-tls_key"));
    expect_subject(port, "localhost reloaded");
    s_client_stop(&open);
    assert_int_equal(kp_proc_stop(p, SIGTERM, 10000), 0);
    free(p);
    running = NULL;
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Starts the server expecting it to exit at once; returns the status and its stderr. */
static int start_fails(const char *const *args, char *log, size_t cap)
{
    int err_fd;
    pid_t pid = kp_spawn(KP_SERVER_BIN, args, NULL, NULL, &err_fd);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(err_fd, log + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    log[len] = '\0';
    close(err_fd);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_start_errors(void **state)
{
    (void)state;
    char log[8192];
    const char *mismatch[] = {"-addr", "127.0.0.1:0", "-tls_addr", "127.0.0.1:0", "-tls_cert",
                              cert_path("server.pem"), "-tls_key", cert_path("other.key"),
                              "-data_dir", "/tmp/kp_test_tls_server", NULL};
    assert_int_equal(start_fails(mismatch, log, sizeof(log)), 2);
    assert_non_null(strstr(log, "flag=-tls_key"));
    assert_non_null(strstr(log, "mismatch"));
    const char *missing[] = {"-wss_addr", "127.0.0.1:0", "-tls_cert", "/nonexistent/cert.pem",
                             "-tls_key", cert_path("server.key"), NULL};
    assert_int_equal(start_fails(missing, log, sizeof(log)), 2);
    assert_non_null(strstr(log, "-tls_cert"));
    const char *not_pem[] = {"-addr", "127.0.0.1:0", "-tls_addr", "127.0.0.1:0", "-tls_cert",
                             cert_path("server.key"), "-tls_key", cert_path("server.key"),
                             "-data_dir", "/tmp/kp_test_tls_server", NULL};
    assert_int_equal(start_fails(not_pem, log, sizeof(log)), 2);
    assert_non_null(strstr(log, "flag=-tls_cert"));
}

/* A test that failed with its server running leaves it to be killed here (its stderr would
 * otherwise keep ctest waiting). */

static int teardown(void **state)
{
    (void)state;
    if (running) {
        kp_proc_abandon(running);
        free(running);
        running = NULL;
    }
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_s_client_mines, teardown),
        cmocka_unit_test_teardown(test_handshake_deadline, teardown),
        cmocka_unit_test_teardown(test_sighup_reload, teardown),
        cmocka_unit_test_teardown(test_start_errors, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
