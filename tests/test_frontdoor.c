/* Integration tests of the front door (SPEC §9) on the real kupool-server: PROXY v1 and v2 from
 * a trusted address (split headers, the carried address in the logs), a missing or malformed
 * header refused and counted, untrusted peers served directly and never parsed, the header
 * under -auth_timeout, -max_conns_per_ip on direct and proxied clients, junk bans (max errors,
 * over-long line, bad WebSocket upgrade), invalid-share bans, the open sessions of a banned
 * address closed, -ban_exempt, and GET /bans and the metrics.
 *
 * Client addresses are told apart with loopback sources (127.0.0.2, 127.0.0.3, ...): every
 * address of 127.0.0.0/8 is local on Linux. 127.0.0.1 plays the trusted proxy. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testsupport.h"

#define REPLY_MS 5000
#define STOP_MS 20000

static const char *const server_env[] = {"KUP_LOG_LEVEL=debug", NULL};
static const char authorize[] = "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"u\"}}\n";

typedef struct fixture {
    kp_proc proc;
    int admin_port;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    *state = fx;
    return fx ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    kp_proc_abandon(&fx->proc);
    free(fx);
    return 0;
}

static void start(fixture *fx, const char *const *extra)
{
    const char *args[40];
    size_t n = 0;
    args[n++] = "-http_addr";
    args[n++] = "127.0.0.1:0";
    args[n++] = "-ws_addr";
    args[n++] = "127.0.0.1:0";
    for (size_t i = 0; extra[i] && n < 39; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    kp_proc_start(&fx->proc, args, server_env);
    fx->admin_port = kp_proc_listen_port(&fx->proc, "http.admin", 5000);
}

static void stop(fixture *fx)
{
    int status = kp_proc_stop(&fx->proc, SIGTERM, STOP_MS);
    fx->proc.pid = 0;
    assert_int_equal(status, 0);
}

static int connect_from(const char *src, int port)
{
    return kp_connect_from(src, port, 0);
}

/* Authorizes and expects the answer and the job, whose server_nonce goes to nonce (may be NULL). */
static void expect_served_job(int fd, char nonce[33])
{
    char line[4096];
    kp_send(fd, authorize, sizeof(authorize) - 1);
    kp_expect_line(fd, line, sizeof(line), REPLY_MS);
    assert_string_equal(line, "{\"id\":1,\"result\":true}");
    kp_expect_line(fd, line, sizeof(line), REPLY_MS);
    assert_non_null(strstr(line, "\"method\":\"job\""));
    const char *n = strstr(line, "\"server_nonce\":\"");
    assert_non_null(n);
    if (nonce) {
        memcpy(nonce, n + 16, 32);
        nonce[32] = '\0';
    }
}

static void expect_served(int fd)
{
    expect_served_job(fd, NULL);
}

/* The server closes the connection without serving it. */
static void expect_refused(int fd)
{
    kp_try_send(fd, authorize, sizeof(authorize) - 1);
    char line[4096];
    int n = kp_recv_line(fd, line, sizeof(line), REPLY_MS);
    assert_int_equal(n, -2);
}

/* GET path on the admin port; returns the body (caller frees); the answer must be 200. */
static char *http_get(int port, const char *path)
{
    int status = 0;
    char *body = kp_http_get(port, path, &status);
    assert_int_equal(status, 200);
    return body;
}

static double metric(fixture *fx, const char *series)
{
    return kp_metric(fx->admin_port, series);
}

/* /bans parsed: the number of bans, and checks that `addr` is listed with `reason` and an
 * `until` in the SPEC's form. */
static int bans_has(fixture *fx, const char *addr, const char *reason)
{
    char *body = http_get(fx->admin_port, "/bans");
    cJSON *doc = cJSON_Parse(body);
    if (!doc)
        fail_msg("/bans is not JSON: %s", body);
    cJSON *bans = cJSON_GetObjectItemCaseSensitive(doc, "bans");
    assert_true(cJSON_IsArray(bans));
    int found = 0;
    cJSON *b;
    cJSON_ArrayForEach(b, bans)
    {
        const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "addr"));
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "reason"));
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "until"));
        assert_non_null(a);
        assert_non_null(r);
        assert_non_null(u);
        assert_int_equal(strlen(u), 24);
        assert_int_equal(u[23], 'Z');
        assert_int_equal(cJSON_GetArraySize(b), 3);
        if (strcmp(a, addr) == 0 && strcmp(r, reason) == 0)
            found = 1;
    }
    cJSON_Delete(doc);
    free(body);
    return found;
}

/* ---- PROXY protocol ---- */

static void test_proxy_headers(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"-proxy_from", "127.0.0.1", "-auth_timeout", "1s", NULL};
    start(fx, args);
    int port = fx->proc.port;

    /* v1, split inside the header and between the header and the first message. */
    int fd = connect_from("127.0.0.1", port);
    kp_send(fd, "PROXY TCP4 203.0.113.7 192", 26);
    usleep(50000);
    kp_send(fd, ".0.2.1 5555 8080\r", 17);
    usleep(50000);
    kp_send(fd, "\n", 1);
    expect_served(fd);
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"u\" addr=203.0.113.7:5555", REPLY_MS));

    /* v2 with the first message in the same segment; a TCP6 source. */
    static const uint8_t v2[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                 0x54, 0x0A, 0x21, 0x21, 0x00, 0x24};
    uint8_t hdr[sizeof(v2) + 36 + sizeof(authorize)];
    memcpy(hdr, v2, sizeof(v2));
    inet_pton(AF_INET6, "2001:db8:1:2::7", hdr + 16);
    inet_pton(AF_INET6, "2001:db8::1", hdr + 32);
    hdr[48] = 0x30;
    hdr[49] = 0x39; /* 12345 */
    hdr[50] = 0;
    hdr[51] = 80;
    memcpy(hdr + 52, authorize, sizeof(authorize) - 1);
    int fd6 = connect_from("127.0.0.1", port);
    kp_send(fd6, (const char *)hdr, 52 + sizeof(authorize) - 1);
    char line[4096];
    kp_expect_line(fd6, line, sizeof(line), REPLY_MS);
    assert_string_equal(line, "{\"id\":1,\"result\":true}");
    assert_true(kp_proc_wait_log(&fx->proc, "addr=[2001:db8:1:2::7]:12345", REPLY_MS));

    /* UNKNOWN: served as the proxy itself. */
    int fdu = connect_from("127.0.0.1", port);
    kp_send(fdu, "PROXY UNKNOWN\r\n", 15);
    expect_served(fdu);

    /* From a trusted address: no header, a malformed one, a v1 line over 107 bytes. */
    int bad1 = connect_from("127.0.0.1", port);
    expect_refused(bad1);
    int bad2 = connect_from("127.0.0.1", port);
    kp_send(bad2, "PROXY TCP4 203.0.113.7 192.0.2.1 99999 8080\r\n", 46);
    expect_refused(bad2);
    int bad3 = connect_from("127.0.0.1", port);
    char longline[200];
    memset(longline, '1', sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    kp_try_send(bad3, longline, sizeof(longline));
    assert_int_equal(kp_wait_closed(bad3, REPLY_MS), 1);
    assert_true(metric(fx, "kupool_connections_refused_total{reason=\"proxy_header\"}") == 3);

    /* An untrusted peer is a direct client: its bytes are never taken for a header. */
    int direct = connect_from("127.0.0.2", port);
    expect_served(direct);
    assert_true(kp_proc_wait_log(&fx->proc, "addr=127.0.0.2:", REPLY_MS));
    /* A header from an untrusted peer is just an invalid message. */
    int spoof = connect_from("127.0.0.3", port);
    kp_send(spoof, "PROXY TCP4 203.0.113.9 192.0.2.1 1 2\r\n", 38);
    kp_expect_line(spoof, line, sizeof(line), REPLY_MS);
    assert_string_equal(line, "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}");

    /* The header counts against -auth_timeout from the accept. */
    int slow = connect_from("127.0.0.1", port);
    kp_send(slow, "PROXY TCP4 ", 11);
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(kp_wait_closed(slow, 4000), 1);
    assert_true(kp_test_now_ms() - t0 < 3000);
    assert_true(metric(fx, "kupool_sessions_closed_total{reason=\"auth_timeout\"}") >= 1);

    int fds[] = {fd, fd6, fdu, bad1, bad2, bad3, direct, spoof, slow};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        kp_close(fds[i]);
    stop(fx);
}

/* ---- per-address limit ---- */

static void test_per_ip_limit(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"-proxy_from", "127.0.0.1", "-max_conns_per_ip", "2", NULL};
    start(fx, args);
    int port = fx->proc.port;
    int a = connect_from("127.0.0.2", port), b = connect_from("127.0.0.2", port);
    expect_served(a);
    expect_served(b);
    int c = connect_from("127.0.0.2", port);
    expect_refused(c);
    int other = connect_from("127.0.0.3", port);
    expect_served(other);
    /* Behind the proxy: the carried address counts, not the proxy's. */
    int p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = connect_from("127.0.0.1", port);
        kp_send(p[i], "PROXY TCP4 198.51.100.1 192.0.2.1 1000 8080\r\n", 45);
    }
    expect_served(p[0]);
    expect_served(p[1]);
    expect_refused(p[2]);
    /* A slot freed is a slot again. */
    kp_close(a);
    usleep(200000);
    int d = connect_from("127.0.0.2", port);
    expect_served(d);
    assert_true(metric(fx, "kupool_connections_refused_total{reason=\"per_ip\"}") == 2);
    int fds[] = {b, c, other, p[0], p[1], p[2], d};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        kp_close(fds[i]);
    stop(fx);
}

/* ---- bans ---- */

static void test_junk_bans(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"-ban_time", "1m", "-max_errors", "3", "-max_msg", "64",
                          "-ban_exempt", "127.0.0.9", "-auth_timeout", "500ms", NULL};
    start(fx, args);
    int port = fx->proc.port;

    /* An open session of the same address, to be closed by the ban. */
    int victim = connect_from("127.0.0.2", port);
    expect_served(victim);
    int junk = connect_from("127.0.0.2", port);
    kp_send(junk, "x\nx\nx\n", 6);
    assert_int_equal(kp_wait_closed(junk, REPLY_MS), 1);
    assert_int_equal(kp_wait_closed(victim, REPLY_MS), 1);
    assert_true(kp_proc_wait_log(&fx->proc, "address banned addr=127.0.0.2 reason=junk", REPLY_MS));
    int again = connect_from("127.0.0.2", port);
    expect_refused(again);
    assert_true(bans_has(fx, "127.0.0.2", "junk"));

    /* An over-long line. */
    int longl = connect_from("127.0.0.3", port);
    char big[200];
    memset(big, 'a', sizeof(big));
    kp_try_send(longl, big, sizeof(big));
    assert_int_equal(kp_wait_closed(longl, REPLY_MS), 1);
    assert_true(bans_has(fx, "127.0.0.3", "junk"));

    /* A bad WebSocket upgrade. */
    int ws_port = kp_proc_listen_port(&fx->proc, "ws.server", 5000);
    int ws = connect_from("127.0.0.4", ws_port);
    kp_send(ws, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    assert_int_equal(kp_wait_closed(ws, REPLY_MS), 1);
    assert_true(bans_has(fx, "127.0.0.4", "junk"));

    /* A deadline is not junk: a client that never authorizes is closed, not banned. */
    int idle = connect_from("127.0.0.5", port);
    assert_int_equal(kp_wait_closed(idle, REPLY_MS), 1);
    int idle2 = connect_from("127.0.0.5", port);
    expect_served(idle2);

    /* An exempt address is never banned. */
    int ex = connect_from("127.0.0.9", port);
    kp_send(ex, "x\nx\nx\n", 6);
    assert_int_equal(kp_wait_closed(ex, REPLY_MS), 1);
    int ex2 = connect_from("127.0.0.9", port);
    expect_served(ex2);

    assert_true(metric(fx, "kupool_bans_total{reason=\"junk\"}") == 3);
    assert_true(metric(fx, "kupool_bans_active") == 3);
    assert_true(metric(fx, "kupool_connections_refused_total{reason=\"banned\"}") == 1);
    int fds[] = {victim, junk, again, longl, ws, idle, idle2, ex, ex2};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        kp_close(fds[i]);
    stop(fx);
}

static void test_invalid_share_ban(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"-proxy_from", "127.0.0.1", "-ban_time", "2s", "-ban_check", "10",
                          "-ban_invalid_percent", "50", "-min_submit_interval", "0", NULL};
    start(fx, args);
    int port = fx->proc.port;
    /* A client behind the proxy, from an IPv6 /64 with two sessions. */
    int s1 = connect_from("127.0.0.1", port), s2 = connect_from("127.0.0.1", port);
    kp_send(s1, "PROXY TCP6 2001:db8:5:6::1 2001:db8::1 1 80\r\n", 45);
    kp_send(s2, "PROXY TCP6 2001:db8:5:6::2 2001:db8::1 2 80\r\n", 45);
    char nonce[33];
    expect_served_job(s1, nonce);
    expect_served(s2);
    char line[4096];
    /* 9 judged, 4 invalid (each kind) and 5 accepted: fewer than -ban_check, no ban; the
     * 10th, invalid, from the other session of the /64, makes 5 of 10 = 50%. */
    char r1[65];
    kp_test_result(nonce, "01", r1);
    const struct {
        int job;
        const char *cn, *result, *want;
    } seq[] = {
        {1, "aa", "00", "Invalid result"},     {99, "aa", "00", "Task does not exist"},
        {1, "01", r1, "true"},                 {1, "01", r1, "Duplicate submission"},
        {1, "ab", "00", "Invalid result"},     {1, "02", NULL, "true"},
        {1, "03", NULL, "true"},               {1, "04", NULL, "true"},
        {1, "05", NULL, "true"},
    };
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        char result[65];
        if (seq[i].result)
            snprintf(result, sizeof(result), "%s", seq[i].result);
        else
            kp_test_result(nonce, seq[i].cn, result);
        kp_sendf(s1, "{\"id\":%zu,\"method\":\"submit\",\"params\":{\"job_id\":%d,\"client_nonce\":\"%s\",\"result\":\"%s\"}}\n",
                 i + 2, seq[i].job, seq[i].cn, result);
        kp_expect_line(s1, line, sizeof(line), REPLY_MS);
        if (!strstr(line, seq[i].want))
            fail_msg("submit %zu: got %s, want %s", i, line, seq[i].want);
    }
    /* Not judged: Task expired and Invalid params never count. */
    kp_sendf(s1, "{\"id\":50,\"method\":\"submit\",\"params\":{\"job_id\":1}}\n");
    kp_expect_line(s1, line, sizeof(line), REPLY_MS);
    assert_non_null(strstr(line, "Invalid params"));
    assert_false(bans_has(fx, "2001:db8:5:6::/64", "invalid_shares"));
    /* The other session of the same /64 tips it. */
    kp_sendf(s2, "{\"id\":2,\"method\":\"submit\",\"params\":{\"job_id\":1,\"client_nonce\":\"ff\",\"result\":\"00\"}}\n");
    kp_expect_line(s2, line, sizeof(line), REPLY_MS);
    assert_non_null(strstr(line, "Invalid result"));
    assert_int_equal(kp_wait_closed(s1, REPLY_MS), 1);
    assert_int_equal(kp_wait_closed(s2, REPLY_MS), 1);
    assert_true(bans_has(fx, "2001:db8:5:6::/64", "invalid_shares"));
    assert_true(kp_proc_wait_log(&fx->proc, "address banned addr=2001:db8:5:6::/64 reason=invalid_shares", REPLY_MS));
    int s3 = connect_from("127.0.0.1", port);
    kp_send(s3, "PROXY TCP6 2001:db8:5:6::99 2001:db8::1 3 80\r\n", 46);
    expect_refused(s3);
    /* The proxy itself is not banned: another client through it is served. */
    int s4 = connect_from("127.0.0.1", port);
    kp_send(s4, "PROXY TCP4 203.0.113.50 192.0.2.1 4 80\r\n", 40);
    expect_served(s4);
    /* The ban ends after -ban_time. */
    usleep(2200000);
    assert_true(metric(fx, "kupool_bans_active") == 0);
    int s5 = connect_from("127.0.0.1", port);
    kp_send(s5, "PROXY TCP6 2001:db8:5:6::99 2001:db8::1 3 80\r\n", 46);
    expect_served(s5);
    assert_true(metric(fx, "kupool_bans_total{reason=\"invalid_shares\"}") == 1);
    int fds[] = {s1, s2, s3, s4, s5};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        kp_close(fds[i]);
    stop(fx);
}

/* With the defaults nothing changes: a PROXY line is an invalid message, nobody is limited. */
static void test_defaults_off(void **state)
{
    fixture *fx = *state;
    const char *args[] = {NULL};
    start(fx, args);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = connect_from("127.0.0.2", fx->proc.port);
        expect_served(fds[i]);
    }
    char *bans = http_get(fx->admin_port, "/bans");
    assert_string_equal(bans, "{\"bans\":[]}\n");
    free(bans);
    for (int i = 0; i < 8; i++)
        kp_close(fds[i]);
    stop(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_proxy_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_ip_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_junk_bans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_share_ban, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
