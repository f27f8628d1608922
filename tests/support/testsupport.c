#include "testsupport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KP_MAX_FDS 65536
#define KP_LINEBUF 65536

/* Per-fd receive buffers: bytes read past the last returned line. */
typedef struct linebuf {
    char data[KP_LINEBUF];
    size_t len;
} linebuf;
static linebuf *bufs[KP_MAX_FDS];

uint64_t kp_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int proc_read_some(kp_proc *proc, int timeout_ms)
{
    struct pollfd p = {.fd = proc->log_fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    size_t room = sizeof(proc->log) - 1 - proc->log_len;
    if (room == 0) { /* keep the newest half: tests look for recent lines */
        size_t half = sizeof(proc->log) / 2;
        memmove(proc->log, proc->log + half, proc->log_len - half);
        proc->log_len -= half;
        room = sizeof(proc->log) - 1 - proc->log_len;
    }
    ssize_t n = read(proc->log_fd, proc->log + proc->log_len, room);
    if (n <= 0)
        return -1;
    proc->log_len += (size_t)n;
    proc->log[proc->log_len] = '\0';
    return 1;
}

int kp_proc_wait_log(kp_proc *proc, const char *needle, int timeout_ms)
{
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (strstr(proc->log, needle))
            return 1;
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return 0;
        if (proc_read_some(proc, (int)(deadline - now)) < 0 && !strstr(proc->log, needle))
            return 0;
    }
}

/* The port after the last ':' of the quoted listen="..." value (text format) or "listen":"..."
 * member (JSON format) in line[0..len), or -1. */
static int listen_port_of(const char *line, size_t len)
{
    const char *start = NULL;
    const char *key = memmem(line, len, "listen=\"", 8);
    if (key)
        start = key + 8;
    else if ((key = memmem(line, len, "\"listen\":\"", 10)))
        start = key + 10;
    if (!start)
        return -1;
    const char *end = memchr(start, '"', len - (size_t)(start - line));
    const char *colon = NULL;
    for (const char *p = start; end && p < end; p++)
        if (*p == ':')
            colon = p;
    if (!colon)
        return -1;
    int port = atoi(colon + 1);
    return port > 0 ? port : -1;
}

int kp_proc_listen_port(kp_proc *proc, const char *module, int timeout_ms)
{
    char tag[128], json_tag[128];
    snprintf(tag, sizeof(tag), " module=%s", module);
    snprintf(json_tag, sizeof(json_tag), "\"module\":\"%s\"", module);
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        for (const char *line = proc->log; *line;) {
            const char *eol = strchr(line, '\n');
            size_t len = eol ? (size_t)(eol - line) : strlen(line);
            bool text = memmem(line, len, " started ", 9) && memmem(line, len, tag, strlen(tag));
            bool json = memmem(line, len, "\"msg\":\"started\"", 15) &&
                        memmem(line, len, json_tag, strlen(json_tag));
            if (eol && (text || json)) {
                int port = listen_port_of(line, len);
                if (port > 0)
                    return port;
            }
            line += len + (eol ? 1 : 0);
        }
        uint64_t now = kp_test_now_ms();
        if (now >= deadline || proc_read_some(proc, (int)(deadline - now)) < 0)
            break;
    }
    fail_msg("no \"started\" line with listen= for module=%s; log:\n%s", module, proc->log);
    return -1;
}

/* Redirects `fd` to the write end of `p` in a child. */
static void child_stream(int p[2], int fd)
{
    dup2(p[1], fd);
    close(p[0]);
    close(p[1]);
}

pid_t kp_spawn(const char *bin, const char *const *args, const char *const *env, int *out_fd,
               int *err_fd)
{
    const char *argv[64];
    size_t argc = 0;
    argv[argc++] = bin;
    for (size_t i = 0; args && args[i] && argc < 63; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int out[2], err[2];
    if (out_fd)
        assert_int_equal(pipe(out), 0);
    if (err_fd)
        assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (out_fd)
            child_stream(out, STDOUT_FILENO);
        if (err_fd)
            child_stream(err, STDERR_FILENO);
        for (size_t i = 0; env && env[i]; i++) {
            if (strchr(env[i], '='))
                putenv((char *)env[i]);
            else
                unsetenv(env[i]);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    if (out_fd) {
        close(out[1]);
        *out_fd = out[0];
    }
    if (err_fd) {
        close(err[1]);
        *err_fd = err[0];
    }
    return pid;
}

void kp_proc_start(kp_proc *proc, const char *const *args, const char *const *env)
{
    memset(proc, 0, sizeof(*proc));
    const char *all[64] = {"-addr", "127.0.0.1:0"};
    size_t n = 2;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        all[n++] = args[i];
    all[n] = NULL;
    proc->pid = kp_spawn(KP_SERVER_BIN, all, env, NULL, &proc->log_fd);
    /* "tcp.server" matches both log formats: module=tcp.server and "module":"tcp.server". */
    if (!kp_proc_wait_log(proc, "tcp.server", 10000)) {
        fprintf(stderr, "server did not start; log:\n%s\n", proc->log);
        kill(proc->pid, SIGKILL);
        fail();
    }
    proc->port = kp_proc_listen_port(proc, "tcp.server", 1000);
}

int kp_proc_stop(kp_proc *proc, int sig, int timeout_ms)
{
    int status = 0;
    if (sig)
        kill(proc->pid, sig);
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(proc->pid, &status, WNOHANG);
        if (r == proc->pid)
            break;
        if (kp_test_now_ms() >= deadline) {
            kill(proc->pid, SIGKILL);
            waitpid(proc->pid, &status, 0);
            while (proc_read_some(proc, 100) > 0) {
            }
            close(proc->log_fd);
            return -1;
        }
        proc_read_some(proc, 20);
    }
    while (proc_read_some(proc, 100) > 0) {
    }
    close(proc->log_fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void kp_proc_abandon(kp_proc *proc)
{
    if (proc->pid <= 0)
        return;
    kp_proc_wait_log(proc, "\x01never\x01", 200); /* what it logged since the last read */
    fprintf(stderr, "---- server log (pid %d) ----\n%s\n----\n", (int)proc->pid, proc->log);
    kill(proc->pid, SIGKILL);
    waitpid(proc->pid, NULL, 0);
    close(proc->log_fd);
    proc->pid = 0;
}

int kp_connect(int port, int may_fail)
{
    return kp_connect_from(NULL, port, may_fail);
}

int kp_connect_from(const char *src, int port, int may_fail)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0 && fd < KP_MAX_FDS);
    if (src) {
        struct sockaddr_in from = {.sin_family = AF_INET};
        assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
        if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0)
            fail_msg("bind %s: %s", src, strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        if (may_fail)
            return -1;
        fail_msg("connect: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!bufs[fd])
        bufs[fd] = calloc(1, sizeof(linebuf));
    assert_non_null(bufs[fd]);
    bufs[fd]->len = 0;
    return fd;
}

int kp_try_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

void kp_send(int fd, const char *data, size_t len)
{
    assert_int_equal(kp_try_send(fd, data, len), 0);
}

void kp_sendf(int fd, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    kp_send(fd, buf, (size_t)n);
}

int kp_recv_line(int fd, char *out, size_t cap, int timeout_ms)
{
    linebuf *b = bufs[fd];
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = memchr(b->data, '\n', b->len);
        if (nl) {
            size_t n = (size_t)(nl - b->data);
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(out, b->data, copy);
            out[copy] = '\0';
            memmove(b->data, nl + 1, b->len - n - 1);
            b->len -= n + 1;
            return (int)copy;
        }
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r <= 0)
            continue;
        if (b->len == sizeof(b->data))
            return -2;
        ssize_t n = recv(fd, b->data + b->len, sizeof(b->data) - b->len, 0);
        if (n <= 0)
            return -2;
        b->len += (size_t)n;
    }
}

void kp_expect_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    int n = kp_recv_line(fd, buf, cap, timeout_ms);
    if (n < 0)
        fail_msg("expected a line on fd %d, got %s", fd, n == -1 ? "timeout" : "EOF");
}

int kp_wait_closed(int fd, int timeout_ms)
{
    char tmp[8192];
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return 0;
        int n = kp_recv_line(fd, tmp, sizeof(tmp), (int)(deadline - now));
        if (n == -2)
            return 1;
        if (n == -1)
            return 0;
    }
}

void kp_close(int fd)
{
    if (fd >= 0 && fd < KP_MAX_FDS && bufs[fd])
        bufs[fd]->len = 0;
    close(fd);
}

void kp_test_result(const char *a, const char *b, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, a, strlen(a));
    EVP_DigestUpdate(ctx, b, strlen(b));
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

char *kp_http_get(int port, const char *path, int *status)
{
    int fd = kp_connect(port, 0);
    kp_sendf(fd, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    size_t cap = 1 << 18, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 15000) != 1)
            fail_msg("GET %s: no answer within 15 s", path);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len >= cap - 1)
            fail_msg("GET %s: answer over %zu bytes", path, cap);
    }
    buf[len] = '\0';
    kp_close(fd);
    int code = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &code) != 1)
        fail_msg("GET %s: not an HTTP answer: %.200s", path, buf);
    if (status)
        *status = code;
    char *body = strstr(buf, "\r\n\r\n");
    if (!body)
        fail_msg("GET %s: no end of head", path);
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

double kp_metric(int port, const char *series)
{
    char *m = kp_http_get(port, "/metrics", NULL);
    size_t n = strlen(series);
    for (const char *line = m; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            double v = strtod(line + n + 1, NULL);
            free(m);
            return v;
        }
    }
    fail_msg("no series %s in /metrics", series);
    free(m);
    return 0;
}
