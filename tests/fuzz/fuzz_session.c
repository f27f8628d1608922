/* libFuzzer harness: the TCP line framer and the protocol, fed arbitrary chunkings through the
 * real session code (src/session.c on a real kp_server, memory backends).
 *
 * The session code is tied to libuv streams, so the harness runs one kp_server in-process on
 * 127.0.0.1:0 (started once in LLVMFuzzerInitialize, its spool in a mkdtemp directory removed
 * at exit) and, per input, connects a loopback socket, writes the payload in chunks whose sizes
 * come from the input's first bytes, runs the loop until the server has handled every byte (or
 * closed the session), then resets the connection and runs the loop until the session is gone.
 * A fake clock is not possible until the connection seam (issue 10) exists: timers run on the
 * real clock, so -auth_timeout and -interval are an hour and never fire during a run.
 *
 * Input layout: byte 0 gives n = 1 + (byte & 7) chunk-size bytes that follow; each is a chunk
 * size, 1 + (b & 0x7f), times 512 when its top bit is set (up to 64 KiB, one read buffer); the
 * sizes are used in turn, round and round, over the rest of the input (the payload). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "kupool/config.h"
#include "log.h"
#include "app.h"
#include "conn_tcp.h"
#include "session.h"

/* A session that neither finishes nor closes within this many loop iterations is a hang. */
#define MAX_SPINS 200000

static uv_loop_t loop;
static kp_config cfg;
static kp_app *app;
#define server (app->server)
static char spool_dir[] = "/tmp/kp-fuzz-session.XXXXXX";

static void remove_spool_dir(void)
{
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spool_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_session: could not remove %s\n", spool_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(spool_dir))
        abort();
    atexit(remove_spool_dir);
    char *args[] = {"fuzz_session", "-addr", "127.0.0.1:0", "-data_dir", spool_dir,
                    "-auth_timeout", "1h", "-interval", "1h", "-min_submit_interval", "0",
                    "-max_errors", "64", NULL};
    int n = (int)(sizeof(args) / sizeof(args[0])) - 1;
    if (kp_config_parse(&cfg, n, args, stdout, stderr) != KP_CONFIG_RUN)
        abort();
    kp_log_options lo = {.level = KP_LOG_ERROR, .format = cfg.log_format, .keep = 1};
    if (kp_log_open(&lo) != 0)
        abort();
    uv_loop_init(&loop);
    if (kp_app_open(&loop, &cfg, &app) != 0)
        abort();
    return 0;
}

/* The one session of the current input, NULL once it is closing. */
static kp_session *current_session(void)
{
    if (server->unauthorized.head)
        return server->unauthorized.head;
    if (server->authorized.head)
        return server->authorized.head;
    return server->draining.head;
}

/* True once the server has read and handled every byte sent so far, or the session is gone. */
static bool server_caught_up(void)
{
    kp_session *sess = current_session();
    if (!sess)
        return true;
    if (sess->resuming || sess->draining)
        return false;
    uv_os_fd_t fd;
    int unread = 0;
    if (uv_fileno((uv_handle_t *)&((kp_conn_tcp *)sess->conn)->tcp, &fd) != 0 || ioctl(fd, FIONREAD, &unread) != 0)
        return true;
    return unread == 0;
}

/* Reads and drops the server's answers, so it never sees a slow reader. */
static void drain_answers(int fd)
{
    char buf[65536];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
}

static bool session_gone(void)
{
    return server->connections == 0;
}

static bool session_accepted(void)
{
    return server->connections > 0;
}

static void spin_until(int fd, bool (*done)(void))
{
    for (int i = 0; !done(); i++) {
        if (i == MAX_SPINS)
            __builtin_trap();
        uv_run(&loop, UV_RUN_NOWAIT);
        if (fd >= 0)
            drain_answers(fd);
    }
}

/* A loopback connect can fail for a moment on a busy machine (a local port still being
 * released, the accept queue momentarily full): the harness's own trouble, not the server's, so
 * it retries while the loop runs instead of reporting a crash. */
static int connect_to_server(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 0; attempt < 1000; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            abort();
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        int err = errno;
        close(fd);
        if (attempt == 999) {
            fprintf(stderr, "fuzz_session: connect: %s\n", strerror(err));
            abort();
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    abort();
}

static size_t chunk_size(uint8_t b)
{
    size_t n = 1u + (b & 0x7fu);
    return b & 0x80u ? n * 512u : n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t nsizes = 1u + (data[0] & 7u);
    if (size < 1 + nsizes)
        return 0;
    const uint8_t *sizes = data + 1;
    const uint8_t *payload = data + 1 + nsizes;
    size_t len = size - 1 - nsizes;

    int fd = connect_to_server();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    spin_until(fd, session_accepted);

    size_t off = 0;
    for (size_t i = 0; off < len && !session_gone(); i++) {
        size_t n = chunk_size(sizes[i % nsizes]);
        if (n > len - off)
            n = len - off;
        ssize_t w = send(fd, payload + off, n, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server closed the connection (an over-long line, max errors) */
        off += (size_t)w;
        spin_until(fd, server_caught_up);
    }

    /* A reset, not a FIN: neither side keeps a TIME_WAIT socket per input. */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(fd);
    spin_until(-1, session_gone);
    return 0;
}
