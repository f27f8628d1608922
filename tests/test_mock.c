/* kupool-mock, the real binary: `srv` on an ephemeral loopback port (read back from its
 * "started" line), `cli` against it over both transports, each client printing the five
 * greetings; plus a WebSocket peer in this process that checks the frames themselves, and the
 * command-line errors (exit status 2). */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsupport.h"
#include "ws.h"

#define TIMEOUT_MS 10000

static const char FIVE[] = "hello from server\nhello from server\nhello from server\n"
                           "hello from server\nhello from server\n";

/* A child with its stdout and stderr on pipes. */
typedef struct child {
    pid_t pid;
    int out_fd, err_fd;
} child;

static void spawn(child *ch, const char *const *args)
{
    const char *const env[] = {"KUP_LOG_LEVEL", "KUP_LOG_FORMAT", NULL}; /* the defaults */
    ch->pid = kp_spawn(KP_MOCK_BIN, args, env, &ch->out_fd, &ch->err_fd);
}

/* Starts `kupool-mock srv -p PROTO -a ADDR` and returns its port, read from its log. */
static int srv_start(kp_proc *proc, const char *proto, const char *addr)
{
    memset(proc, 0, sizeof(*proc));
    const char *args[] = {"srv", "-p", proto, "-a", addr, NULL};
    child ch;
    spawn(&ch, args);
    close(ch.out_fd);
    proc->pid = ch.pid;
    proc->log_fd = ch.err_fd;
    char module[16];
    snprintf(module, sizeof(module), "%s.server", proto);
    proc->port = kp_proc_listen_port(proc, module, 5000);
    return proc->port;
}

static void srv_stop(kp_proc *proc)
{
    int status = kp_proc_stop(proc, SIGTERM, 5000);
    if (status != 0)
        fail_msg("kupool-mock srv exited with %d; log:\n%s", status, proc->log);
    assert_non_null(strstr(proc->log, " INFO stopped "));
}

/* Reads both pipes to EOF and waits for the exit; returns the exit status (fails on timeout). */
static int finish(child *ch, char *out, size_t out_cap, char *err, size_t err_cap)
{
    size_t out_len = 0, err_len = 0;
    uint64_t deadline = kp_test_now_ms() + TIMEOUT_MS;
    struct pollfd fds[2] = {{.fd = ch->out_fd, .events = POLLIN}, {.fd = ch->err_fd, .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        uint64_t now = kp_test_now_ms();
        if (now >= deadline) {
            kill(ch->pid, SIGKILL);
            waitpid(ch->pid, NULL, 0);
            fail_msg("kupool-mock did not finish; stdout:\n%.*s\nstderr:\n%.*s", (int)out_len, out,
                     (int)err_len, err);
        }
        if (poll(fds, 2, (int)(deadline - now)) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char *buf = i == 0 ? out : err;
            size_t *len = i == 0 ? &out_len : &err_len;
            size_t cap = i == 0 ? out_cap : err_cap;
            char tmp[4096];
            ssize_t n = read(fds[i].fd, tmp, sizeof(tmp));
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            size_t take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
            memcpy(buf + *len, tmp, take);
            *len += take;
        }
    }
    out[out_len] = '\0';
    err[err_len] = '\0';
    int status = 0;
    assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs `kupool-mock cli ARGS...` to its end. */
static int run_cli(const char *const *args, char *out, size_t out_cap, char *err, size_t err_cap)
{
    const char *argv[16] = {"cli"};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    child ch;
    spawn(&ch, argv);
    return finish(&ch, out, out_cap, err, err_cap);
}

/* The client prints exactly the five greetings and exits 0. */
static void expect_greeted(const char *const *args)
{
    char out[4096], err[8192];
    int status = run_cli(args, out, sizeof(out), err, sizeof(err));
    if (status != 0 || strcmp(out, FIVE) != 0)
        fail_msg("cli %s %s %s: status %d\nstdout:\n%s\nstderr:\n%s", args[0], args[1] ? args[1] : "",
                 args[1] && args[2] ? args[2] : "", status, out, err);
    assert_non_null(strstr(err, "server closed"));
    assert_non_null(strstr(err, "received=5"));
}

static kp_proc *proc_new(void)
{
    kp_proc *p = calloc(1, sizeof(*p)); /* its log buffer is large */
    assert_non_null(p);
    return p;
}

/* ---- the two transports ---- */

static void test_ws_greetings(void **state)
{
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "ws", "127.0.0.1:0");
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d", port);
    expect_greeted((const char *const[]){"-p", "ws", "-a", url, NULL});
    /* the scheme says ws; any path; the name resolves */
    snprintf(url, sizeof(url), "ws://localhost:%d/mock", port);
    expect_greeted((const char *const[]){"-a", url, NULL});
    snprintf(url, sizeof(url), "--a=ws://localhost:%d/", port);
    expect_greeted((const char *const[]){url, "--p=ws", NULL});
    srv_stop(srv);
    assert_non_null(strstr(srv->log, "served=3"));
    free(srv);
}

static void test_tcp_greetings(void **state)
{
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "tcp", "127.0.0.1:0");
    char addr[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    expect_greeted((const char *const[]){"-p", "tcp", "-a", addr, NULL});
    snprintf(addr, sizeof(addr), "localhost:%d", port);
    expect_greeted((const char *const[]){"-p", "tcp", "-a", addr, NULL});
    snprintf(addr, sizeof(addr), "tcp://localhost:%d", port);
    expect_greeted((const char *const[]){"-a", addr, NULL});
    srv_stop(srv);
    assert_non_null(strstr(srv->log, "served=3"));
    free(srv);
}

static void test_listen_any_interface(void **state)
{
    /* ":0" listens on every IPv4 interface and logs the port it got, as listen=":PORT" */
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "ws", ":0");
    char needle[64];
    snprintf(needle, sizeof(needle), "listen=\":%d\"", port);
    assert_non_null(strstr(srv->log, needle));
    char url[128];
    snprintf(url, sizeof(url), "ws://localhost:%d", port);
    expect_greeted((const char *const[]){"-p", "ws", "-a", url, NULL});
    srv_stop(srv);
    free(srv);
}

static void test_concurrent_clients(void **state)
{
    for (int t = 0; t < 2; t++) {
        const char *proto = t == 0 ? "ws" : "tcp";
        kp_proc *srv = proc_new();
        int port = srv_start(srv, proto, "127.0.0.1:0");
        char addr[128];
        snprintf(addr, sizeof(addr), t == 0 ? "ws://127.0.0.1:%d" : "tcp://127.0.0.1:%d", port);
        enum { N = 6 };
        child kids[N];
        for (int i = 0; i < N; i++)
            spawn(&kids[i], (const char *const[]){"cli", "-a", addr, NULL});
        for (int i = 0; i < N; i++) {
            char out[4096], err[8192];
            int status = finish(&kids[i], out, sizeof(out), err, sizeof(err));
            if (status != 0 || strcmp(out, FIVE) != 0)
                fail_msg("%s client %d: status %d\nstdout:\n%s\nstderr:\n%s", proto, i, status, out, err);
        }
        srv_stop(srv);
        char served[32];
        snprintf(served, sizeof(served), "served=%d", N);
        assert_non_null(strstr(srv->log, served));
        free(srv);
    }
}

/* ---- what is on the wire ---- */

typedef struct peer {
    int fd;
    kp_ws *ws;
    int opened, closed;
    uint16_t code;
    int texts;
    char last[64];
} peer;

static int peer_send(void *user, const char *data, size_t len)
{
    peer *p = user;
    return kp_try_send(p->fd, data, len);
}

static void peer_text(void *user, const char *msg, size_t len)
{
    peer *p = user;
    p->texts++;
    snprintf(p->last, sizeof(p->last), "%.*s", (int)len, msg);
    assert_string_equal(p->last, "hello from server");
}

static void peer_open(void *user) { ((peer *)user)->opened = 1; }

static void peer_close(void *user, uint16_t code, const char *why)
{
    peer *p = user;
    p->closed++;
    p->code = code;
}

static const kp_ws_callbacks peer_cb = {
    .send = peer_send, .on_text = peer_text, .on_open = peer_open, .on_close = peer_close};

/* Reads until EOF, feeding the WebSocket; returns 1 on EOF. */
static int peer_run(peer *p)
{
    uint64_t deadline = kp_test_now_ms() + TIMEOUT_MS;
    char buf[4096];
    for (;;) {
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return 0;
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t n = recv(p->fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return 1;
        kp_ws_feed(p->ws, buf, (size_t)n);
    }
}

static void test_ws_one_text_message_each(void **state)
{
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "ws", "127.0.0.1:0");
    peer p = {.fd = kp_connect(port, 0)};
    assert_int_equal(kp_ws_client_new(&peer_cb, &p, "127.0.0.1", "/", 4096, &p.ws), 0);
    assert_true(peer_run(&p));
    /* five text messages, then the server's close frame (1000), answered, then EOF */
    assert_true(p.opened);
    assert_int_equal(p.texts, 5);
    assert_int_equal(p.closed, 1);
    assert_int_equal(p.code, 1000);
    kp_ws_free(p.ws);
    kp_close(p.fd);
    srv_stop(srv);
    free(srv);
}

static void test_tcp_lines_then_eof(void **state)
{
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "tcp", "127.0.0.1:0");
    int fd = kp_connect(port, 0);
    char line[256];
    for (int i = 0; i < 5; i++) {
        kp_expect_line(fd, line, sizeof(line), TIMEOUT_MS);
        assert_string_equal(line, "hello from server");
    }
    assert_int_equal(kp_recv_line(fd, line, sizeof(line), TIMEOUT_MS), -2); /* EOF, nothing more */
    kp_close(fd);
    srv_stop(srv);
    free(srv);
}

static void test_ws_server_refuses_plain_http(void **state)
{
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "ws", "127.0.0.1:0");
    int fd = kp_connect(port, 0);
    kp_sendf(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    char line[256];
    kp_expect_line(fd, line, sizeof(line), TIMEOUT_MS);
    assert_int_equal(strncmp(line, "HTTP/1.1 400 ", 13), 0);
    assert_true(kp_wait_closed(fd, TIMEOUT_MS));
    kp_close(fd);
    srv_stop(srv);
    free(srv);
}

static void test_cli_wrong_transport_fails(void **state)
{
    /* a WebSocket client at a TCP server: the greeting is no HTTP answer */
    kp_proc *srv = proc_new();
    int port = srv_start(srv, "tcp", "127.0.0.1:0");
    char url[128], out[4096], err[8192];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d", port);
    int status = run_cli((const char *const[]){"-a", url, NULL}, out, sizeof(out), err, sizeof(err));
    assert_int_equal(status, 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "bad handshake"));
    srv_stop(srv);
    free(srv);
}

static void test_cli_cannot_connect(void **state)
{
    /* a port nobody listens on: bound once, closed again */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    int port = ntohs(sa.sin_port);
    close(s);
    for (int t = 0; t < 2; t++) {
        char addr[128], out[4096], err[8192];
        snprintf(addr, sizeof(addr), t ? "ws://127.0.0.1:%d" : "127.0.0.1:%d", port);
        const char *args[] = {"-p", t ? "ws" : "tcp", "-a", addr, NULL};
        int status = run_cli(args, out, sizeof(out), err, sizeof(err));
        assert_int_equal(status, 1);
        assert_string_equal(out, "");
        if (!strstr(err, "cannot connect"))
            fail_msg("stderr: %s", err);
    }
}

/* ---- the command line ---- */

static void test_bad_command_lines(void **state)
{
    static const char *const cases[][6] = {
        {NULL},
        {"serve", NULL},
        {"srv", "-p", "udp", NULL},
        {"srv", "-p", NULL},
        {"srv", "-x", "1", NULL},
        {"srv", "-a", "8000", NULL},
        {"srv", "-a", "localhost:99999", NULL},
        {"srv", "extra", NULL},
        {"cli", "-p", "tcp", "-a", "ws://localhost:8000", NULL},
        {"cli", "-a", "wss://localhost:8000", NULL},
        {"cli", "-a", "http://localhost:8000", NULL},
        {"cli", "-p", "tcp", "-a", "localhost", NULL},
        {"cli", "-a", "ws://local host:8000", NULL},
        {"cli", "-a", "ws://localhost:0", NULL},
        {"cli", "-p", "tcp", "-a", "tcp://localhost:8000/path", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        child ch;
        spawn(&ch, cases[i]);
        char out[4096], err[4096];
        int status = finish(&ch, out, sizeof(out), err, sizeof(err));
        if (status != 2)
            fail_msg("case %zu: status %d, stderr: %s", i, status, err);
        assert_string_equal(out, "");
        /* one line, naming the program */
        assert_int_equal(strncmp(err, "kupool-mock: ", 13), 0);
        assert_non_null(strchr(err, '\n'));
        assert_int_equal(strchr(err, '\n')[1], '\0');
    }
    /* help is not an error */
    child ch;
    spawn(&ch, (const char *const[]){"-h", NULL});
    char out[4096], err[4096];
    assert_int_equal(finish(&ch, out, sizeof(out), err, sizeof(err)), 0);
    assert_non_null(strstr(out, "usage: kupool-mock srv"));
    spawn(&ch, (const char *const[]){"cli", "--help", NULL});
    assert_int_equal(finish(&ch, out, sizeof(out), err, sizeof(err)), 0);
    assert_non_null(strstr(out, "usage: kupool-mock"));
}

static void test_srv_cannot_listen(void **state)
{
    /* the port is taken */
    kp_proc *first = proc_new();
    int port = srv_start(first, "tcp", "127.0.0.1:0");
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    child ch;
    spawn(&ch, (const char *const[]){"srv", "-p", "tcp", "-a", addr, NULL});
    char out[4096], err[4096];
    assert_int_equal(finish(&ch, out, sizeof(out), err, sizeof(err)), 1);
    assert_non_null(strstr(err, "cannot listen"));
    srv_stop(first);
    free(first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_greetings),
        cmocka_unit_test(test_tcp_greetings),
        cmocka_unit_test(test_listen_any_interface),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_ws_one_text_message_each),
        cmocka_unit_test(test_tcp_lines_then_eof),
        cmocka_unit_test(test_ws_server_refuses_plain_http),
        cmocka_unit_test(test_cli_wrong_transport_fails),
        cmocka_unit_test(test_cli_cannot_connect),
        cmocka_unit_test(test_bad_command_lines),
        cmocka_unit_test(test_srv_cannot_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
