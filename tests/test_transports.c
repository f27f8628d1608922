/* The same protocol scenarios over TCP and over WebSocket, against the real kupool-server: the
 * transports only frame, one code path decides. Plus the WebSocket-only edges: binary frames,
 * frames over -max_msg, fragmented messages. */
#include <signal.h>
#include <errno.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"
#include "ws.h"

#define MAX_MSG 512
#define TIMEOUT_MS 5000

typedef struct conn {
    int fd;
    kp_ws *ws; /* NULL for TCP */
    /* WebSocket messages received and not yet taken, "\n"-separated. */
    char inbox[1 << 16];
    size_t inbox_len;
    int closed;       /* the WebSocket closed (close frame or error) */
    uint16_t close_code;
    int open;
} conn;

static int ws_send_cb(void *user, const char *data, size_t len)
{
    conn *c = user;
    /* The server may already have gone (it closes right after its close frame), so a failed
     * send ends this connection rather than the test. */
    return kp_try_send(c->fd, data, len);
}

static void ws_text_cb(void *user, const char *msg, size_t len)
{
    conn *c = user;
    assert_true(c->inbox_len + len + 1 <= sizeof(c->inbox));
    memcpy(c->inbox + c->inbox_len, msg, len);
    c->inbox_len += len;
    c->inbox[c->inbox_len++] = '\n';
}

static void ws_open_cb(void *user) { ((conn *)user)->open = 1; }

static void ws_close_cb(void *user, uint16_t code, const char *why)
{
    conn *c = user;
    c->closed = 1;
    c->close_code = code;
}

static const kp_ws_callbacks client_cb = {
    .send = ws_send_cb, .on_text = ws_text_cb, .on_open = ws_open_cb, .on_close = ws_close_cb};

/* Reads what the socket has (waiting up to timeout_ms) into the WebSocket. Returns -2 on EOF. */
static int ws_pump(conn *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    char buf[8192];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n <= 0)
        return -2;
    kp_ws_feed(c->ws, buf, (size_t)n);
    return 0;
}

static void conn_open(conn *c, kp_proc *p, int websocket)
{
    memset(c, 0, sizeof(*c));
    if (!websocket) {
        c->fd = kp_connect(p->port, 0);
        return;
    }
    c->fd = kp_connect(kp_proc_listen_port(p, "ws.server", 5000), 0);
    assert_int_equal(kp_ws_client_new(&client_cb, c, "127.0.0.1", "/kupool", 1 << 16, &c->ws), 0);
    uint64_t deadline = kp_test_now_ms() + TIMEOUT_MS;
    while (!c->open && !c->closed && kp_test_now_ms() < deadline)
        if (ws_pump(c, 100) == -2)
            break;
    assert_true(c->open);
}

static void conn_send(conn *c, const char *msg)
{
    if (c->ws)
        assert_int_equal(kp_ws_send_text(c->ws, msg, strlen(msg)), 0);
    else
        kp_sendf(c->fd, "%s\n", msg);
}

/* The next message, or -1 on timeout, -2 when the connection ended. */
static int conn_recv(conn *c, char *out, size_t cap, int timeout_ms)
{
    if (!c->ws)
        return kp_recv_line(c->fd, out, cap, timeout_ms);
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = memchr(c->inbox, '\n', c->inbox_len);
        if (nl) {
            size_t n = (size_t)(nl - c->inbox);
            assert_true(n < cap);
            memcpy(out, c->inbox, n);
            out[n] = '\0';
            memmove(c->inbox, nl + 1, c->inbox_len - n - 1);
            c->inbox_len -= n + 1;
            return (int)n;
        }
        if (c->closed)
            return -2;
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return -1;
        if (ws_pump(c, (int)(deadline - now)) == -2)
            return -2;
    }
}

static int conn_closed(conn *c, int timeout_ms)
{
    char buf[4096];
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = kp_test_now_ms();
        if (now >= deadline)
            return 0;
        int n = conn_recv(c, buf, sizeof(buf), (int)(deadline - now));
        if (n == -2)
            return 1;
        if (n == -1)
            return 0;
    }
}

static void conn_close(conn *c)
{
    kp_ws_free(c->ws);
    kp_close(c->fd);
}

static void expect(conn *c, const char *want)
{
    char buf[4096];
    int n = conn_recv(c, buf, sizeof(buf), TIMEOUT_MS);
    if (n < 0)
        fail_msg("expected %s, got %s", want, n == -1 ? "timeout" : "close");
    assert_string_equal(buf, want);
}

/* Reads the job notification; returns its id and copies the nonce. */
static int64_t expect_job(conn *c, char nonce[33])
{
    char buf[4096];
    assert_true(conn_recv(c, buf, sizeof(buf), TIMEOUT_MS) > 0);
    long long id = 0;
    assert_int_equal(sscanf(buf, "{\"id\":null,\"method\":\"job\",\"params\":{\"job_id\":%lld,\"server_nonce\":\"%32[0-9a-f]\"}}",
                            &id, nonce), 2);
    return id;
}

static kp_proc *start_server(void)
{
    static kp_proc proc;
    const char *args[] = {"-ws_addr", "127.0.0.1:0", "-max_msg", "512", "-interval", "30s",
                          "-min_submit_interval", "0", "-max_errors", "3", NULL};
    kp_proc_start(&proc, args, NULL);
    return &proc;
}

/* One scenario, run once per transport. */
static void scenario(kp_proc *p, int websocket)
{
    conn c;
    conn_open(&c, p, websocket);
    conn_send(&c, "{\"id\":1,\"method\":\"submit\",\"params\":{}}"); /* before authorize */
    expect(&c, "{\"id\":1,\"result\":false,\"error\":\"Unauthorized\"}");
    assert_true(conn_closed(&c, TIMEOUT_MS));
    conn_close(&c);

    conn_open(&c, p, websocket);
    conn_send(&c, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"alice\"}}");
    expect(&c, "{\"id\":1,\"result\":true}");
    char nonce[33];
    int64_t job = expect_job(&c, nonce);
    assert_true(job >= 1);
    char result[65], msg[512];
    kp_test_result(nonce, "c0ffee", result);
    snprintf(msg, sizeof(msg),
             "{\"id\":2,\"method\":\"submit\",\"params\":{\"job_id\":%" PRId64
             ",\"client_nonce\":\"c0ffee\",\"result\":\"%s\"}}",
             job, result);
    conn_send(&c, msg);
    expect(&c, "{\"id\":2,\"result\":true}");
    conn_send(&c, msg);
    expect(&c, "{\"id\":2,\"result\":false,\"error\":\"Duplicate submission\"}");
    conn_send(&c, "{\"id\":3,\"method\":\"authorize\",\"params\":{\"username\":\"alice\"}}");
    expect(&c, "{\"id\":3,\"result\":false,\"error\":\"Already authorized\"}");
    snprintf(msg, sizeof(msg),
             "{\"id\":4,\"method\":\"submit\",\"params\":{\"job_id\":%" PRId64
             ",\"client_nonce\":\"c0ffef\",\"result\":\"00\"}}",
             job);
    conn_send(&c, msg);
    expect(&c, "{\"id\":4,\"result\":false,\"error\":\"Invalid result\"}");
    conn_send(&c, "{\"id\":5,\"method\":\"submit\",\"params\":{\"job_id\":99,\"client_nonce\":\"ab\",\"result\":\"00\"}}");
    expect(&c, "{\"id\":5,\"result\":false,\"error\":\"Task does not exist\"}");
    conn_send(&c, "{\"id\":6,\"method\":\"mine\",\"params\":{}}");
    expect(&c, "{\"id\":6,\"result\":false,\"error\":\"Unknown method\"}");
    conn_send(&c, "nope");
    expect(&c, "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}");
    conn_send(&c, "{\"id\":7}");
    expect(&c, "{\"id\":7,\"result\":false,\"error\":\"Invalid request\"}");
    /* three malformed in a row (-max_errors 3) close the session */
    assert_true(conn_closed(&c, TIMEOUT_MS));
    conn_close(&c);

    /* a message over -max_msg closes the connection without an answer */
    conn_open(&c, p, websocket);
    char big[MAX_MSG + 64];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "{\"id\":1}", 8);
    conn_send(&c, big);
    assert_true(conn_closed(&c, TIMEOUT_MS));
    conn_close(&c);
}

static void test_same_scenarios_over_tcp_and_websocket(void **state)
{
    kp_proc *p = start_server();
    scenario(p, 0);
    scenario(p, 1);
    assert_int_equal(kp_proc_stop(p, SIGTERM, 15000), 0);
    assert_non_null(strstr(p->log, "stopped accepted=2 "));
}

/* Raw frames the client library would never send. */
static void send_raw_frame(int fd, unsigned char opcode_fin, const char *payload, size_t len)
{
    unsigned char hdr[8] = {opcode_fin, (unsigned char)(0x80 | len), 1, 2, 3, 4};
    assert_true(len < 126);
    kp_send(fd, (const char *)hdr, 6);
    char masked[128];
    for (size_t i = 0; i < len; i++)
        masked[i] = (char)(payload[i] ^ hdr[2 + (i % 4)]);
    kp_send(fd, masked, len);
}

static void test_websocket_edges(void **state)
{
    kp_proc *p = start_server();

    /* A fragmented authorize (text + continuation + final continuation) is one message. */
    conn c;
    conn_open(&c, p, 1);
    const char *msg = "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"frag\"}}";
    size_t len = strlen(msg);
    send_raw_frame(c.fd, 0x01, msg, 10);            /* text, FIN=0 */
    send_raw_frame(c.fd, 0x00, msg + 10, 20);       /* continuation, FIN=0 */
    send_raw_frame(c.fd, 0x80, msg + 30, len - 30); /* continuation, FIN=1 */
    expect(&c, "{\"id\":1,\"result\":true}");
    char nonce[33];
    assert_true(expect_job(&c, nonce) >= 1);
    /* A ping in between is answered and costs the session nothing. */
    send_raw_frame(c.fd, 0x89, "hi", 2);
    conn_send(&c, "{\"id\":2,\"method\":\"authorize\",\"params\":{\"username\":\"frag\"}}");
    expect(&c, "{\"id\":2,\"result\":false,\"error\":\"Already authorized\"}");
    /* A binary frame is a protocol error: the server closes. */
    send_raw_frame(c.fd, 0x82, "{}", 2);
    assert_true(conn_closed(&c, TIMEOUT_MS));
    conn_close(&c);

    /* Not a WebSocket upgrade at all: an HTTP error, then close. */
    int fd = kp_connect(kp_proc_listen_port(p, "ws.server", 5000), 0);
    kp_sendf(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    char line[512];
    assert_true(kp_recv_line(fd, line, sizeof(line), TIMEOUT_MS) > 0);
    assert_non_null(strstr(line, "HTTP/1.1 4"));
    assert_true(kp_wait_closed(fd, TIMEOUT_MS));
    kp_close(fd);

    /* The server still serves. */
    conn_open(&c, p, 1);
    conn_send(&c, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"after\"}}");
    expect(&c, "{\"id\":1,\"result\":true}");
    conn_close(&c);
    assert_int_equal(kp_proc_stop(p, SIGTERM, 15000), 0);
}

/* Hostile frames against the real server (issue 9): each is closed with its code, and the
 * server goes on serving. */
static void test_websocket_hostile_frames(void **state)
{
    kp_proc *p = start_server();
    conn c;

    /* A fragment flood: one-byte non-final fragments past -max_msg (512) get 1009. */
    conn_open(&c, p, 1);
    send_raw_frame(c.fd, 0x01, "{", 1);
    for (int i = 0; i < MAX_MSG; i++)
        if (kp_try_send(c.fd, "\x00\x81\x01\x02\x03\x04" " ", 7) != 0)
            break; /* the server may close before the flood ends */
    assert_true(conn_closed(&c, TIMEOUT_MS));
    assert_int_equal(c.close_code, 1009);
    conn_close(&c);

    /* A header announcing 2^63 - 1 bytes: 1009 at once, no payload byte needed. */
    conn_open(&c, p, 1);
    const unsigned char huge[14] = {0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    kp_send(c.fd, (const char *)huge, sizeof(huge));
    assert_true(conn_closed(&c, TIMEOUT_MS));
    assert_int_equal(c.close_code, 1009);
    conn_close(&c);

    /* Reserved bits, an unknown opcode, an unmasked frame: 1002 with the close frame. */
    const unsigned char bad[][2] = {{0xc1, 0x80}, {0x83, 0x80}, {0x81, 0x01}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        conn_open(&c, p, 1);
        kp_send(c.fd, (const char *)bad[i], 2);
        assert_true(conn_closed(&c, TIMEOUT_MS));
        assert_int_equal(c.close_code, 1002);
        conn_close(&c);
    }

    /* The server still serves. */
    conn_open(&c, p, 1);
    conn_send(&c, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"after\"}}");
    expect(&c, "{\"id\":1,\"result\":true}");
    conn_close(&c);
    assert_int_equal(kp_proc_stop(p, SIGTERM, 15000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_scenarios_over_tcp_and_websocket),
        cmocka_unit_test(test_websocket_edges),
        cmocka_unit_test(test_websocket_hostile_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
