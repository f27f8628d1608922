/* The front door's stacking on TLS listeners, on the real kupool-server (SPEC §9): with
 * -proxy_from, a -tls_addr or -wss_addr connection is TCP -> PROXY header (in clear) -> TLS ->
 * session. A client here writes a PROXY v1 or v2 header in clear and then does a real OpenSSL
 * handshake on the same socket, verifying the server against the test CA. Checked:
 *   - line protocol and WebSocket over TLS behind a v1 and a v2 header: authorize, job, an
 *     accepted submit, the carried address in the log (never the proxy's);
 *   - a header split over two writes, the second carrying the rest of the header and the
 *     ClientHello in one write (the PROXY reader hands what follows the header to TLS);
 *   - a ClientHello with no header from a trusted address is refused as proxy_header, before
 *     TLS (no handshake counted failed); an untrusted address speaks TLS directly;
 *   - -max_conns_per_ip counts the carried address over TLS;
 *   - a junk ban over TLS bans the carried address: the log and GET /bans name it, its open
 *     session is closed, its next connection refused, another client behind the proxy served.
 *
 * Certificates: tests/services/tls_certs.sh (fixture tls_certs), in $KUP_TEST_TLS_DIR.
 * Just over 600 lines: the small TLS client (lines and WebSocket frames over OpenSSL) is kept
 * with the only tests that use it rather than in testsupport, which stays TLS-free. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "testsupport.h"

#define REPLY_MS 5000
#define STOP_MS 20000

static const char *const server_env[] = {"KUP_LOG_LEVEL=debug", NULL};

static const char *cert_path(const char *name)
{
    static char paths[4][512];
    static int next;
    const char *dir = getenv("KUP_TEST_TLS_DIR");
    if (!dir)
        fail_msg("KUP_TEST_TLS_DIR is not set (run through ctest: fixture tls_certs)");
    char *p = paths[next++ % 4];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

/* ---- the server ---- */

typedef struct fixture {
    kp_proc proc;
    int tls_port, wss_port, admin_port;
    SSL_CTX *ctx; /* the client side: verifies against the test CA */
    char data_dir[64];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->data_dir, sizeof(fx->data_dir), "/tmp/kp_fd_tls.XXXXXX");
    if (!mkdtemp(fx->data_dir))
        return -1;
    fx->ctx = SSL_CTX_new(TLS_client_method());
    if (!fx->ctx || SSL_CTX_load_verify_locations(fx->ctx, cert_path("ca.pem"), NULL) != 1)
        return -1;
    SSL_CTX_set_verify(fx->ctx, SSL_VERIFY_PEER, NULL);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    kp_proc_abandon(&fx->proc);
    SSL_CTX_free(fx->ctx);
    free(fx);
    return 0;
}

static void start(fixture *fx, const char *const *extra)
{
    const char *args[40] = {"-tls_addr", "127.0.0.1:0", "-wss_addr", "127.0.0.1:0",
                            "-tls_cert", cert_path("chain.pem"), "-tls_key", cert_path("server.key"),
                            "-http_addr", "127.0.0.1:0", "-proxy_from", "127.0.0.1",
                            "-min_submit_interval", "0", "-data_dir", fx->data_dir};
    size_t n = 16;
    for (size_t i = 0; extra[i] && n < 39; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    kp_proc_start(&fx->proc, args, server_env);
    fx->admin_port = kp_proc_listen_port(&fx->proc, "http.admin", 5000);
    fx->tls_port = kp_proc_listen_port(&fx->proc, "tls.server", 5000);
    fx->wss_port = kp_proc_listen_port(&fx->proc, "wss.server", 5000);
}

static void stop(fixture *fx)
{
    int status = kp_proc_stop(&fx->proc, SIGTERM, STOP_MS);
    fx->proc.pid = 0;
    assert_int_equal(status, 0);
}

/* ---- PROXY headers ---- */

typedef struct header {
    char bytes[128];
    size_t len;
} header;

static header v1(const char *family, const char *src, int port)
{
    header h;
    const char *dst = strcmp(family, "TCP6") == 0 ? "2001:db8::1" : "192.0.2.1";
    h.len = (size_t)snprintf(h.bytes, sizeof(h.bytes), "PROXY %s %s %s %d 443\r\n", family, src,
                             dst, port);
    return h;
}

/* A v2 PROXY command for TCP over IPv4, with a TLV the server must skip. */
static header v2(const char *src, int port)
{
    static const unsigned char sig[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    header h;
    unsigned char *b = (unsigned char *)h.bytes;
    memcpy(b, sig, sizeof(sig));
    b[12] = 0x21; /* version 2, PROXY */
    b[13] = 0x11; /* TCP over IPv4 */
    b[14] = 0;
    b[15] = 12 + 7; /* the addresses, then a 7-byte TLV */
    inet_pton(AF_INET, src, b + 16);
    inet_pton(AF_INET, "192.0.2.1", b + 20);
    b[24] = (unsigned char)(port >> 8);
    b[25] = (unsigned char)port;
    b[26] = 443 >> 8;
    b[27] = 443 & 0xff;
    static const unsigned char noop[] = {0x04, 0x00, 0x04, 'a', 'b', 'c', 'd'}; /* PP2_TYPE_NOOP */
    memcpy(b + 28, noop, sizeof(noop));
    h.len = 35;
    return h;
}

/* ---- a TLS client on a socket the test connected ---- */

typedef struct peer {
    int fd;
    SSL *ssl;
    bool ws;
    bool timed_out; /* the last read found nothing within REPLY_MS (the connection is open) */
    char buf[32 * 1024]; /* plaintext read and not yet taken */
    size_t len;
} peer;

/* Connects from `src`, writes `lead` in clear, then handshakes. `glued` (may be NULL) goes out
 * in the same write as the ClientHello, just before it: the write BIO buffers it, and OpenSSL
 * flushes the BIO once the ClientHello is in. Returns whether the handshake completed. */
static bool peer_open(fixture *fx, peer *p, int port, const char *src, const header *lead,
                      const header *glued)
{
    memset(p, 0, sizeof(*p));
    p->fd = kp_connect_from(src, port, 0);
    struct timeval tv = {.tv_sec = REPLY_MS / 1000};
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (lead)
        kp_send(p->fd, lead->bytes, lead->len);
    p->ssl = SSL_new(fx->ctx);
    assert_non_null(p->ssl);
    BIO *rbio = BIO_new_socket(p->fd, BIO_NOCLOSE);
    BIO *wbio = BIO_push(BIO_new(BIO_f_buffer()), BIO_new_socket(p->fd, BIO_NOCLOSE));
    assert_true(rbio && wbio);
    SSL_set_bio(p->ssl, rbio, wbio);
    if (glued)
        assert_int_equal(BIO_write(wbio, glued->bytes, (int)glued->len), (int)glued->len);
    SSL_set_tlsext_host_name(p->ssl, "localhost");
    SSL_set1_host(p->ssl, "localhost");
    bool ok = SSL_connect(p->ssl) == 1;
    ERR_clear_error();
    if (ok) /* from here on every write goes straight to the socket */
        SSL_set0_wbio(p->ssl, BIO_new_socket(p->fd, BIO_NOCLOSE));
    return ok;
}

static void peer_close(peer *p)
{
    if (p->ssl)
        SSL_free(p->ssl);
    kp_close(p->fd);
    p->ssl = NULL;
}

/* Reads more plaintext; false on timeout, EOF, reset or a TLS error. */
static bool peer_fill(peer *p)
{
    if (p->len == sizeof(p->buf))
        fail_msg("a message over %zu bytes", sizeof(p->buf));
    size_t got = 0;
    int ok = SSL_read_ex(p->ssl, p->buf + p->len, sizeof(p->buf) - p->len, &got);
    p->timed_out = ok != 1 && SSL_get_error(p->ssl, ok) == SSL_ERROR_WANT_READ;
    ERR_clear_error();
    if (ok != 1)
        return false;
    p->len += got;
    return true;
}

static void peer_take(peer *p, size_t n)
{
    memmove(p->buf, p->buf + n, p->len - n);
    p->len -= n;
}

/* One message into out: a line without its "\n", or a WebSocket text frame's payload.
 * Returns false when the connection ends (or times out) first. */
static bool peer_recv(peer *p, char *out, size_t cap)
{
    for (;;) {
        if (!p->ws) {
            char *nl = memchr(p->buf, '\n', p->len);
            if (nl) {
                size_t n = (size_t)(nl - p->buf);
                assert_true(n < cap);
                memcpy(out, p->buf, n);
                out[n] = '\0';
                peer_take(p, n + 1);
                return true;
            }
        } else if (p->len >= 2) {
            const unsigned char *b = (const unsigned char *)p->buf;
            if (b[0] == 0x88) /* a close frame: the connection ends */
                return false;
            assert_int_equal(b[0], 0x81); /* else whole text frames, unmasked */
            size_t hdr = 2, n = b[1] & 0x7f;
            if (n == 126 && p->len >= 4) {
                n = (size_t)b[2] << 8 | b[3];
                hdr = 4;
            }
            assert_true(n != 127);
            if (n != 126 && p->len >= hdr + n) {
                assert_true(n < cap);
                memcpy(out, p->buf + hdr, n);
                out[n] = '\0';
                peer_take(p, hdr + n);
                return true;
            }
        }
        if (!peer_fill(p))
            return false;
    }
}

static void peer_write(peer *p, const void *data, size_t len)
{
    size_t wrote = 0;
    if (SSL_write_ex(p->ssl, data, len, &wrote) != 1 || wrote != len)
        fail_msg("TLS write failed");
}

/* One message: a line, or a masked WebSocket text frame. */
static void peer_send(peer *p, const char *msg)
{
    size_t len = strlen(msg);
    if (!p->ws) {
        peer_write(p, msg, len);
        peer_write(p, "\n", 1);
        return;
    }
    unsigned char frame[1024];
    static const unsigned char mask[4] = {7, 13, 42, 99};
    size_t hdr = 2;
    assert_true(len + 8 <= sizeof(frame));
    frame[0] = 0x81;
    if (len < 126) {
        frame[1] = (unsigned char)(0x80 | len);
    } else {
        frame[1] = 0x80 | 126;
        frame[2] = (unsigned char)(len >> 8);
        frame[3] = (unsigned char)len;
        hdr = 4;
    }
    memcpy(frame + hdr, mask, 4);
    for (size_t i = 0; i < len; i++)
        frame[hdr + 4 + i] = (unsigned char)msg[i] ^ mask[i % 4];
    peer_write(p, frame, hdr + 4 + len);
}

/* The WebSocket upgrade, over TLS. */
static void peer_upgrade(peer *p)
{
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    peer_write(p, req, sizeof(req) - 1);
    char *end;
    while (!(end = memmem(p->buf, p->len, "\r\n\r\n", 4)))
        assert_true(peer_fill(p));
    assert_int_equal(strncmp(p->buf, "HTTP/1.1 101", 12), 0);
    peer_take(p, (size_t)(end + 4 - p->buf));
    p->ws = true;
}

/* The server ends the connection (within REPLY_MS) without another message. */
static bool peer_ended(peer *p)
{
    char msg[4096];
    p->timed_out = false;
    return !peer_recv(p, msg, sizeof(msg)) && !p->timed_out;
}

static void field(const char *msg, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *v = strstr(msg, pat);
    if (!v)
        fail_msg("no %s in %s", key, msg);
    v += strlen(pat);
    v += *v == '"';
    size_t n = strcspn(v, "\",}");
    assert_true(n < cap);
    memcpy(out, v, n);
    out[n] = '\0';
}

/* Authorizes as `user` and expects the job; its server_nonce and job_id go out. */
static void expect_served_job(peer *p, const char *user, char nonce[65], char job[32])
{
    char msg[4096];
    char req[160];
    snprintf(req, sizeof(req), "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"%s\"}}", user);
    peer_send(p, req);
    assert_true(peer_recv(p, msg, sizeof(msg)));
    assert_string_equal(msg, "{\"id\":1,\"result\":true}");
    assert_true(peer_recv(p, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "\"method\":\"job\""));
    field(msg, "server_nonce", nonce, 65);
    field(msg, "job_id", job, 32);
}

static void expect_served(peer *p)
{
    char nonce[65], job[32];
    expect_served_job(p, "u", nonce, job);
}

/* Authorize, job, an accepted submit. */
static void mine_once(peer *p, const char *user, const char *client_nonce)
{
    char nonce[65], job[32], result[65], msg[4096], req[512];
    expect_served_job(p, user, nonce, job);
    kp_test_result(nonce, client_nonce, result);
    snprintf(req, sizeof(req),
             "{\"id\":2,\"method\":\"submit\",\"params\":{\"job_id\":%s,\"client_nonce\":\"%s\","
             "\"result\":\"%s\"}}",
             job, client_nonce, result);
    peer_send(p, req);
    assert_true(peer_recv(p, msg, sizeof(msg)));
    assert_string_equal(msg, "{\"id\":2,\"result\":true}");
}

/* ---- the admin endpoint ---- */

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

/* The addresses GET /bans lists, comma-separated, into out. */
static void bans(fixture *fx, char *out, size_t cap)
{
    char *body = http_get(fx->admin_port, "/bans");
    cJSON *doc = cJSON_Parse(body);
    if (!doc)
        fail_msg("/bans is not JSON: %s", body);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "bans");
    assert_true(cJSON_IsArray(list));
    out[0] = '\0';
    cJSON *b;
    cJSON_ArrayForEach(b, list)
    {
        const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "addr"));
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "reason"));
        assert_non_null(a);
        assert_non_null(r);
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s/%s", used ? "," : "", a, r);
    }
    cJSON_Delete(doc);
    free(body);
}

/* ---- the tests ---- */

static void test_tls_behind_proxy_header(void **state)
{
    fixture *fx = *state;
    const char *args[] = {NULL};
    start(fx, args);
    peer p;

    /* v2 then TLS: the line protocol, a submit accepted, the carried address logged. */
    header h = v2("203.0.113.7", 5555);
    assert_true(peer_open(fx, &p, fx->tls_port, "127.0.0.1", &h, NULL));
    mine_once(&p, "alice", "0a01");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"alice\" addr=203.0.113.7:5555", REPLY_MS));
    peer_close(&p);

    /* v1, an IPv6 client. */
    h = v1("TCP6", "2001:db8:7::9", 6000);
    assert_true(peer_open(fx, &p, fx->tls_port, "127.0.0.1", &h, NULL));
    mine_once(&p, "bob", "0a02");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"bob\" addr=[2001:db8:7::9]:6000", REPLY_MS));
    peer_close(&p);

    /* Split over two writes, the second the header's rest with the ClientHello behind it. */
    h = v2("203.0.113.8", 5556);
    header first = {.len = 9}, rest = {.len = h.len - 9};
    memcpy(first.bytes, h.bytes, first.len);
    memcpy(rest.bytes, h.bytes + first.len, rest.len);
    assert_true(peer_open(fx, &p, fx->tls_port, "127.0.0.1", &first, &rest));
    mine_once(&p, "carol", "0a03");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"carol\" addr=203.0.113.8:5556", REPLY_MS));
    peer_close(&p);
    /* The same for v1, split inside the address. */
    h = v1("TCP4", "198.51.100.20", 7000);
    first.len = 14;
    rest.len = h.len - 14;
    memcpy(first.bytes, h.bytes, first.len);
    memcpy(rest.bytes, h.bytes + first.len, rest.len);
    assert_true(peer_open(fx, &p, fx->tls_port, "127.0.0.1", &first, &rest));
    mine_once(&p, "dave", "0a04");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"dave\" addr=198.51.100.20:7000", REPLY_MS));
    peer_close(&p);

    /* wss://: v2, TLS, the upgrade, the same exchange in frames. */
    h = v2("203.0.113.9", 5557);
    assert_true(peer_open(fx, &p, fx->wss_port, "127.0.0.1", &h, NULL));
    peer_upgrade(&p);
    mine_once(&p, "erin", "0a05");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"erin\" addr=203.0.113.9:5557", REPLY_MS));
    peer_close(&p);
    /* And v1 glued to the ClientHello in one write. */
    h = v1("TCP4", "198.51.100.21", 7001);
    assert_true(peer_open(fx, &p, fx->wss_port, "127.0.0.1", NULL, &h));
    peer_upgrade(&p);
    mine_once(&p, "frank", "0a06");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"frank\" addr=198.51.100.21:7001", REPLY_MS));
    peer_close(&p);

    assert_true(metric(fx, "kupool_tls_handshakes_total{result=\"ok\"}") == 6);
    assert_true(metric(fx, "kupool_tls_handshakes_total{result=\"failed\"}") == 0);
    stop(fx);
    assert_non_null(strstr(fx->proc.log, "accepted=6"));
    /* No session was ever logged as the proxy. */
    assert_null(strstr(fx->proc.log, "addr=127.0.0.1:"));
}

static void test_tls_without_header_refused(void **state)
{
    fixture *fx = *state;
    const char *args[] = {NULL};
    start(fx, args);
    peer p;
    /* A ClientHello from the trusted address is not a PROXY header: refused before TLS. */
    assert_false(peer_open(fx, &p, fx->tls_port, "127.0.0.1", NULL, NULL));
    peer_close(&p);
    assert_false(peer_open(fx, &p, fx->wss_port, "127.0.0.1", NULL, NULL));
    peer_close(&p);
    assert_true(metric(fx, "kupool_connections_refused_total{reason=\"proxy_header\"}") == 2);
    assert_true(kp_proc_wait_log(&fx->proc, "connection refused: bad PROXY header proxy=127.0.0.1", REPLY_MS));
    /* TLS never saw those bytes: nothing counted as a failed handshake. */
    assert_true(metric(fx, "kupool_tls_handshakes_total{result=\"failed\"}") == 0);
    /* An address not in -proxy_from is never read for a header: its ClientHello goes to TLS. */
    assert_true(peer_open(fx, &p, fx->tls_port, "127.0.0.2", NULL, NULL));
    mine_once(&p, "direct", "0b01");
    assert_true(kp_proc_wait_log(&fx->proc, "authorized username=\"direct\" addr=127.0.0.2:", REPLY_MS));
    peer_close(&p);
    stop(fx);
}

static void test_tls_per_ip_limit(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"-max_conns_per_ip", "2", NULL};
    start(fx, args);
    /* Five connections from the proxy's address; two carry the same client, the limit. */
    header h = v2("198.51.100.1", 1000);
    peer a, b, c, other, ws;
    assert_true(peer_open(fx, &a, fx->tls_port, "127.0.0.1", &h, NULL));
    expect_served(&a);
    h = v1("TCP4", "198.51.100.1", 1001);
    assert_true(peer_open(fx, &b, fx->wss_port, "127.0.0.1", &h, NULL));
    peer_upgrade(&b);
    expect_served(&b);
    /* The third of that address: refused on its header, before TLS. */
    h = v2("198.51.100.1", 1002);
    assert_false(peer_open(fx, &c, fx->tls_port, "127.0.0.1", &h, NULL));
    h = v2("198.51.100.2", 1003);
    assert_true(peer_open(fx, &other, fx->tls_port, "127.0.0.1", &h, NULL));
    expect_served(&other);
    h = v1("TCP4", "198.51.100.3", 1004);
    assert_true(peer_open(fx, &ws, fx->wss_port, "127.0.0.1", &h, NULL));
    peer_upgrade(&ws);
    expect_served(&ws);
    assert_true(metric(fx, "kupool_connections_refused_total{reason=\"per_ip\"}") == 1);
    assert_true(kp_proc_wait_log(&fx->proc, "-max_conns_per_ip reached addr=198.51.100.1", REPLY_MS));
    /* A slot freed over TLS is a slot again. */
    peer_close(&a);
    usleep(200000);
    h = v2("198.51.100.1", 1005);
    peer d;
    assert_true(peer_open(fx, &d, fx->tls_port, "127.0.0.1", &h, NULL));
    expect_served(&d);
    peer *all[] = {&b, &c, &other, &ws, &d};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        peer_close(all[i]);
    stop(fx);
}

static void test_tls_junk_ban(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"-ban_time", "1m", "-max_errors", "3", NULL};
    start(fx, args);
    /* An open session of the address, then junk from it, both over TLS behind the proxy. */
    header h = v2("203.0.113.77", 2000);
    peer victim, junk, again, other;
    assert_true(peer_open(fx, &victim, fx->wss_port, "127.0.0.1", &h, NULL));
    peer_upgrade(&victim);
    expect_served(&victim);
    h = v1("TCP4", "203.0.113.77", 2001);
    assert_true(peer_open(fx, &junk, fx->tls_port, "127.0.0.1", &h, NULL));
    peer_write(&junk, "x\nx\nx\n", 6);
    char msg[4096];
    for (int i = 0; i < 3; i++) {
        assert_true(peer_recv(&junk, msg, sizeof(msg)));
        assert_string_equal(msg, "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}");
    }
    assert_true(peer_ended(&junk));
    assert_true(peer_ended(&victim));
    assert_true(kp_proc_wait_log(&fx->proc, "address banned addr=203.0.113.77 reason=junk", REPLY_MS));
    char list[512];
    bans(fx, list, sizeof(list));
    assert_string_equal(list, "203.0.113.77/junk");
    /* Its next connection is refused on the header; another client behind the proxy is not. */
    h = v2("203.0.113.77", 2002);
    assert_false(peer_open(fx, &again, fx->tls_port, "127.0.0.1", &h, NULL));
    h = v2("203.0.113.78", 2003);
    assert_true(peer_open(fx, &other, fx->tls_port, "127.0.0.1", &h, NULL));
    mine_once(&other, "other", "0c01");
    assert_true(metric(fx, "kupool_connections_refused_total{reason=\"banned\"}") == 1);
    assert_true(metric(fx, "kupool_bans_total{reason=\"junk\"}") == 1);
    peer *all[] = {&victim, &junk, &again, &other};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        peer_close(all[i]);
    stop(fx);
    assert_null(strstr(fx->proc.log, "addr=127.0.0.1"));
}

int main(void)
{
    /* A refused connection is closed under the ClientHello: its write must fail, not kill the
     * test (the server inherits this, and ignores SIGPIPE itself anyway). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_behind_proxy_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_without_header_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_per_ip_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_junk_ban, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
