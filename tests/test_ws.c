/* ws.c on its own: a server kp_ws and a client kp_ws wired back to back through memory, plus
 * hand-made bytes for what a well-behaved peer never sends. No sockets, no loop.
 *
 * Each side records what it put on the wire (out), the whole messages it received, and its
 * on_open / on_close calls; deliver() moves one side's output into the other's kp_ws_feed, in
 * one piece or in chunks of any size.
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "testsupport.h"

#include "kupool/error.h"
#include "ws.h"

#define MAX_MSG 4096
#define MAX_MSGS 64

/* The example of RFC 6455 §1.3: this key must be answered with this accept. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

typedef struct side {
    kp_ws *ws;
    uint8_t *out; /* bytes this side sent, not yet delivered */
    size_t out_len, out_cap;
    char *msgs[MAX_MSGS];
    size_t msg_lens[MAX_MSGS];
    int n_msgs;
    int opens;
    int closes;
    uint16_t code;
    char why[160];
    /* behaviour */
    int fail_send;       /* cb->send reports a dead transport */
    int echo;            /* answer each message with the same text */
    int echo_rc;         /* what the last echo's kp_ws_send_text returned */
    int close_on_text;   /* kp_ws_close(1000) from on_text */
    const char *greet;   /* sent from on_open */
    int greet_rc;
} side;

typedef struct pair {
    side srv;
    side cli;
} pair;

/* ---- callbacks ---- */

static int cb_send(void *user, const char *data, size_t len)
{
    side *s = user;
    if (s->fail_send)
        return -1;
    if (s->out_len + len > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 1024;
        while (cap < s->out_len + len)
            cap *= 2;
        s->out = realloc(s->out, cap);
        assert_non_null(s->out);
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, data, len);
    s->out_len += len;
    return 0;
}

static void cb_text(void *user, const char *msg, size_t len)
{
    side *s = user;
    assert_non_null(msg); /* also for an empty message */
    assert_true(s->n_msgs < MAX_MSGS);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, msg, len);
    copy[len] = '\0';
    s->msgs[s->n_msgs] = copy;
    s->msg_lens[s->n_msgs] = len;
    s->n_msgs++;
    if (s->echo)
        s->echo_rc = kp_ws_send_text(s->ws, msg, len);
    if (s->close_on_text)
        kp_ws_close(s->ws, 1000, "enough");
}

static void cb_open(void *user)
{
    side *s = user;
    s->opens++;
    if (s->greet)
        s->greet_rc = kp_ws_send_text(s->ws, s->greet, strlen(s->greet));
}

static void cb_close(void *user, uint16_t code, const char *why)
{
    side *s = user;
    s->closes++;
    s->code = code;
    snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
}

static const kp_ws_callbacks callbacks = {
    .send = cb_send, .on_text = cb_text, .on_open = cb_open, .on_close = cb_close};

/* ---- fixtures ---- */

static void side_clear(side *s)
{
    kp_ws_free(s->ws);
    free(s->out);
    for (int i = 0; i < s->n_msgs; i++)
        free(s->msgs[i]);
    memset(s, 0, sizeof(*s));
}

static int setup(void **state)
{
    pair *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pair *p = *state;
    side_clear(&p->srv);
    side_clear(&p->cli);
    free(p);
    return 0;
}

static void server_new(side *s, size_t max_msg)
{
    assert_int_equal(kp_ws_server_new(&callbacks, s, max_msg, &s->ws), 0);
    assert_non_null(s->ws);
    assert_false(kp_ws_is_open(s->ws));
}

static void client_new(side *s, size_t max_msg)
{
    assert_int_equal(kp_ws_client_new(&callbacks, s, "example.org:8000", "/chat", max_msg, &s->ws), 0);
    assert_non_null(s->ws);
}

/* Takes what `s` sent so far, NUL-terminated for string checks; the caller frees it. */
static char *take_out(side *s, size_t *len)
{
    char *copy = malloc(s->out_len + 1);
    assert_non_null(copy);
    if (s->out_len)
        memcpy(copy, s->out, s->out_len);
    copy[s->out_len] = '\0';
    if (len)
        *len = s->out_len;
    s->out_len = 0;
    return copy;
}

/* Feeds `data` to `to` in pieces of `chunk` bytes (0: all at once). Returns the last result. */
static int feed_chunked(side *to, const void *data, size_t len, size_t chunk)
{
    const char *p = data;
    int rc = 0;
    if (chunk == 0)
        chunk = len ? len : 1;
    size_t off = 0;
    do {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = kp_ws_feed(to->ws, p + off, n);
        off += n;
    } while (off < len);
    return rc;
}

/* Moves everything `from` sent into `to`. */
static int deliver(side *from, side *to, size_t chunk)
{
    size_t len;
    char *bytes = take_out(from, &len);
    int rc = len ? feed_chunked(to, bytes, len, chunk) : 0;
    free(bytes);
    return rc;
}

/* A server and a client with the handshake done. */
static void connect_pair(pair *p, size_t max_msg)
{
    server_new(&p->srv, max_msg);
    client_new(&p->cli, max_msg);
    assert_int_equal(deliver(&p->cli, &p->srv, 0), 0);
    assert_int_equal(p->srv.opens, 1);
    assert_int_equal(deliver(&p->srv, &p->cli, 0), 0);
    assert_int_equal(p->cli.opens, 1);
    assert_true(kp_ws_is_open(p->srv.ws));
    assert_true(kp_ws_is_open(p->cli.ws));
    assert_int_equal(p->srv.closes + p->cli.closes, 0);
}

/* ---- frames by hand ---- */

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

static const uint8_t MASK_KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* One frame into out (room for len + 14); `mask` as a client must; `len_form` forces the 16-bit
 * (126) or 64-bit (127) length even for a short payload, 0 picks the shortest. */
static size_t frame_ex(uint8_t *out, int fin, int rsv, int opcode, int mask, const void *payload,
                       size_t len, int len_form)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
    uint8_t m = mask ? 0x80 : 0;
    if (len_form == 0)
        len_form = len < 126 ? 0 : len < 65536 ? 126 : 127;
    if (len_form == 0) {
        out[n++] = (uint8_t)(m | len);
    } else if (len_form == 126) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, MASK_KEY, 4);
        n += 4;
    }
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        out[n + i] = mask ? (uint8_t)(src[i] ^ MASK_KEY[i % 4]) : src[i];
    return n + len;
}

static size_t frame(uint8_t *out, int fin, int opcode, int mask, const void *payload, size_t len)
{
    return frame_ex(out, fin, 0, opcode, mask, payload, len, 0);
}

/* A close frame's payload: the code and a reason. */
static size_t close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    size_t rlen = strlen(reason);
    memcpy(out + 2, reason, rlen);
    return 2 + rlen;
}

typedef struct wire_frame {
    int fin, rsv, opcode, masked;
    uint8_t *payload; /* unmasked copy, malloc'd */
    size_t len;
} wire_frame;

/* Parses one frame at the start of in[0..avail); returns its size, or 0 when incomplete. */
static size_t parse_frame(const uint8_t *in, size_t avail, wire_frame *f)
{
    if (avail < 2)
        return 0;
    f->fin = in[0] >> 7;
    f->rsv = (in[0] >> 4) & 7;
    f->opcode = in[0] & 0xf;
    f->masked = in[1] >> 7;
    uint64_t len = in[1] & 0x7f;
    size_t n = 2;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = ((uint64_t)in[2] << 8) | in[3];
        n = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | in[2 + i];
        n = 10;
    }
    uint8_t key[4] = {0};
    if (f->masked) {
        if (avail < n + 4)
            return 0;
        memcpy(key, in + n, 4);
        n += 4;
    }
    if (avail - n < len)
        return 0;
    f->len = (size_t)len;
    f->payload = malloc(f->len + 1);
    assert_non_null(f->payload);
    for (size_t i = 0; i < f->len; i++)
        f->payload[i] = f->masked ? (uint8_t)(in[n + i] ^ key[i % 4]) : in[n + i];
    f->payload[f->len] = 0;
    return n + f->len;
}

/* Takes everything `s` sent and expects exactly one frame in it. */
static void take_one_frame(side *s, wire_frame *f)
{
    size_t len;
    char *bytes = take_out(s, &len);
    size_t used = parse_frame((const uint8_t *)bytes, len, f);
    assert_int_not_equal(used, 0);
    assert_int_equal(used, len);
    free(bytes);
}

static uint16_t close_code_of(const wire_frame *f)
{
    assert_int_equal(f->opcode, OP_CLOSE);
    assert_true(f->len >= 2);
    return (uint16_t)((f->payload[0] << 8) | f->payload[1]);
}

/* The server's output must be exactly one close frame with `code`. */
static void expect_close_frame(side *s, int masked, uint16_t code)
{
    wire_frame f;
    take_one_frame(s, &f);
    assert_int_equal(f.masked, masked);
    assert_int_equal(close_code_of(&f), code);
    free(f.payload);
}

/* ---- handshake by hand ---- */

#define REQ_LINE "GET /chat HTTP/1.1\r\n"
#define REQ_HOST "Host: server.example.com\r\n"
#define REQ_UPGRADE "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define REQ_KEY "Sec-WebSocket-Key: " RFC_KEY "\r\n"
#define REQ_VERSION "Sec-WebSocket-Version: 13\r\n"
#define GOOD_REQUEST REQ_LINE REQ_HOST REQ_UPGRADE REQ_KEY "Origin: http://example.com\r\n" REQ_VERSION "\r\n"

static const char GOOD_RESPONSE[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";

static void expect_switching(side *s)
{
    char *out = take_out(s, NULL);
    assert_string_equal(out, GOOD_RESPONSE);
    free(out);
    assert_int_equal(s->opens, 1);
    assert_int_equal(s->closes, 0);
    assert_true(kp_ws_is_open(s->ws));
}

/* Feeds `request` to a fresh server and expects it refused with `status` and on_close(code). */
static void expect_refused(side *s, const char *request, const char *status, uint16_t code)
{
    server_new(s, MAX_MSG);
    int rc = kp_ws_feed(s->ws, request, strlen(request));
    assert_int_equal(rc, KP_ECLOSED);
    char *out = take_out(s, NULL);
    if (strncmp(out, status, strlen(status)) != 0)
        fail_msg("expected \"%s\", got \"%s\"", status, out);
    assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    assert_int_equal(strcmp(out + strlen(out) - 4, "\r\n\r\n"), 0);
    free(out);
    assert_int_equal(s->opens, 0);
    assert_int_equal(s->closes, 1);
    assert_int_equal(s->code, code);
    assert_false(kp_ws_is_open(s->ws));
    /* Over: nothing more is read, said or called. */
    assert_int_equal(kp_ws_feed(s->ws, "x", 1), KP_ECLOSED);
    assert_int_equal(kp_ws_send_text(s->ws, "x", 1), KP_ECLOSED);
    kp_ws_close(s->ws, 1000, NULL);
    assert_int_equal(s->out_len, 0);
    assert_int_equal(s->closes, 1);
    side_clear(s);
}

/* base64(SHA-1(key + GUID)) as a server must compute it. */
static void accept_of(const char *key, char out[29])
{
    char joined[128];
    snprintf(joined, sizeof(joined), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(joined, strlen(joined), md, &mdlen, EVP_sha1(), NULL), 1);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* The key in the client's request head (which it still holds in s->out). */
static void client_key(side *s, char key[25])
{
    char *out = take_out(s, NULL);
    const char *k = strstr(out, "Sec-WebSocket-Key: ");
    assert_non_null(k);
    memcpy(key, k + strlen("Sec-WebSocket-Key: "), 24);
    key[24] = '\0';
    free(out);
}

/* ================= upgrade ================= */

static void test_upgrade_rfc_example(void **state)
{
    pair *p = *state;
    server_new(&p->srv, MAX_MSG);
    assert_int_equal(kp_ws_feed(p->srv.ws, GOOD_REQUEST, strlen(GOOD_REQUEST)), 0);
    expect_switching(&p->srv);
}

static void test_upgrade_split_at_every_byte(void **state)
{
    pair *p = *state;
    const char *req = GOOD_REQUEST;
    size_t len = strlen(req);
    for (size_t cut = 1; cut < len; cut++) {
        server_new(&p->srv, MAX_MSG);
        assert_int_equal(kp_ws_feed(p->srv.ws, req, cut), 0);
        assert_int_equal(p->srv.out_len, 0);
        assert_int_equal(p->srv.opens, 0);
        assert_int_equal(kp_ws_feed(p->srv.ws, req + cut, len - cut), 0);
        expect_switching(&p->srv);
        side_clear(&p->srv);
    }
    /* and one byte per feed */
    server_new(&p->srv, MAX_MSG);
    assert_int_equal(feed_chunked(&p->srv, req, len, 1), 0);
    expect_switching(&p->srv);
}

static void test_upgrade_header_spelling(void **state)
{
    pair *p = *state;
    /* Names are case-insensitive, Connection and Upgrade are token lists, blanks are trimmed,
     * an empty header value is just a header. */
    const char *req = "GET /?x=1 HTTP/1.1\r\nhost: h\r\nX-Empty:\r\nuPgRaDe:  WebSocket \r\n"
                      "CONNECTION: keep-alive, Upgrade\r\nsec-websocket-key:   " RFC_KEY "\t\r\n"
                      "SEC-WEBSOCKET-VERSION: 13\r\n\r\n";
    server_new(&p->srv, MAX_MSG);
    assert_int_equal(kp_ws_feed(p->srv.ws, req, strlen(req)), 0);
    expect_switching(&p->srv);
}

static void test_upgrade_missing_or_invalid_key(void **state)
{
    pair *p = *state;
    const char *bad = "HTTP/1.1 400 Bad Request\r\n";
    const char *keys[] = {
        "",                                              /* no key header at all */
        "Sec-WebSocket-Key: \r\n",                       /* empty */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n", /* no padding */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n", /* 23 characters */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n", /* not base64 */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: " RFC_KEY "\r\n", /* two */
    };
    char req[1024];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(req, sizeof(req), REQ_LINE REQ_HOST REQ_UPGRADE "%s" REQ_VERSION "\r\n", keys[i]);
        expect_refused(&p->srv, req, bad, 1002);
    }
    /* a key value longer than any key */
    char longkey[600];
    memset(longkey, 'A', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    snprintf(req, sizeof(req), REQ_LINE REQ_HOST REQ_UPGRADE "Sec-WebSocket-Key: %s\r\n" REQ_VERSION "\r\n",
             longkey);
    expect_refused(&p->srv, req, bad, 1002);
}

static void test_upgrade_wrong_version(void **state)
{
    pair *p = *state;
    const char *versions[] = {"", "Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version: 13, 8\r\n",
                              "Sec-WebSocket-Version: 130\r\n"};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        char req[512];
        snprintf(req, sizeof(req), REQ_LINE REQ_HOST REQ_UPGRADE REQ_KEY "%s\r\n", versions[i]);
        server_new(&p->srv, MAX_MSG);
        assert_int_equal(kp_ws_feed(p->srv.ws, req, strlen(req)), KP_ECLOSED);
        char *out = take_out(&p->srv, NULL);
        assert_int_equal(strncmp(out, "HTTP/1.1 400 Bad Request\r\n", 26), 0);
        /* RFC 6455 §4.2.2: tell the client which version we speak */
        assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
        free(out);
        assert_int_equal(p->srv.closes, 1);
        assert_int_equal(p->srv.code, 1002);
        side_clear(&p->srv);
    }
}

static void test_upgrade_not_get(void **state)
{
    pair *p = *state;
    const char *bad = "HTTP/1.1 400 Bad Request\r\n";
    expect_refused(&p->srv,
                   "POST /chat HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION
                   "Content-Length: 5\r\n\r\nhello",
                   bad, 1002);
    expect_refused(&p->srv, "POST /chat HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    expect_refused(&p->srv, "HEAD /chat HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    expect_refused(&p->srv, "PUT /chat HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    /* not a method at all: malformed */
    expect_refused(&p->srv, "BREW /chat HTTP/1.1\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    /* HTTP/1.0 cannot upgrade */
    expect_refused(&p->srv, "GET /chat HTTP/1.0\r\n" REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
}

static void test_upgrade_not_an_upgrade(void **state)
{
    pair *p = *state;
    const char *bad = "HTTP/1.1 400 Bad Request\r\n";
    expect_refused(&p->srv, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", bad, 1002);
    expect_refused(&p->srv, REQ_LINE REQ_HOST "Connection: Upgrade\r\n" REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    expect_refused(&p->srv, REQ_LINE REQ_HOST "Upgrade: websocket\r\n" REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    expect_refused(&p->srv,
                   REQ_LINE REQ_HOST "Upgrade: h2c\r\nConnection: Upgrade\r\n" REQ_KEY REQ_VERSION "\r\n", bad,
                   1002);
    /* garbage instead of HTTP */
    expect_refused(&p->srv, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello", bad, 1002);
}

static void test_upgrade_head_too_large(void **state)
{
    pair *p = *state;
    /* max(max_msg, 8192) bounds the head: 9000 bytes of one header are too many for max_msg 4096 */
    size_t pad = 9000;
    size_t cap = pad + 512;
    char *req = malloc(cap);
    assert_non_null(req);
    int n = snprintf(req, cap, REQ_LINE REQ_HOST REQ_UPGRADE REQ_KEY REQ_VERSION "X-Pad: ");
    memset(req + n, 'p', pad);
    snprintf(req + n + pad, cap - (size_t)n - pad, "\r\n\r\n");
    expect_refused(&p->srv, req, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 1009);

    /* the same, arriving byte by byte: refused as soon as the bound is passed */
    server_new(&p->srv, MAX_MSG);
    size_t len = strlen(req);
    size_t fed = 0;
    int rc = 0;
    while (fed < len && rc == 0)
        rc = kp_ws_feed(p->srv.ws, req + fed++, 1);
    assert_int_equal(rc, KP_ECLOSED);
    assert_int_equal(fed, 8192);
    char *out = take_out(&p->srv, NULL);
    assert_int_equal(strncmp(out, "HTTP/1.1 431 ", 13), 0);
    free(out);
    assert_int_equal(p->srv.code, 1009);
    side_clear(&p->srv);

    /* a larger max_msg raises the bound */
    server_new(&p->srv, 16384);
    assert_int_equal(kp_ws_feed(p->srv.ws, req, strlen(req)), 0);
    out = take_out(&p->srv, NULL);
    assert_int_equal(strncmp(out, "HTTP/1.1 101 ", 13), 0);
    free(out);
    free(req);
}

static void test_upgrade_pipelined_frames(void **state)
{
    pair *p = *state;
    /* The request head, two whole frames and half a third in one read: the frames are frames. */
    uint8_t buf[1024];
    size_t n = strlen(GOOD_REQUEST);
    memcpy(buf, GOOD_REQUEST, n);
    n += frame(buf + n, 1, OP_TEXT, 1, "first", 5);
    n += frame(buf + n, 1, OP_TEXT, 1, "second", 6);
    uint8_t third[32];
    size_t tn = frame(third, 1, OP_TEXT, 1, "third", 5);
    memcpy(buf + n, third, 3);
    n += 3;
    server_new(&p->srv, MAX_MSG);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    expect_switching(&p->srv);
    assert_int_equal(p->srv.n_msgs, 2);
    assert_string_equal(p->srv.msgs[0], "first");
    assert_string_equal(p->srv.msgs[1], "second");
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)third + 3, tn - 3), 0);
    assert_int_equal(p->srv.n_msgs, 3);
    assert_string_equal(p->srv.msgs[2], "third");
    side_clear(&p->srv);

    /* head and frames in two reads, cut anywhere */
    n = strlen(GOOD_REQUEST);
    memcpy(buf, GOOD_REQUEST, n);
    n += frame(buf + n, 1, OP_TEXT, 1, "first", 5);
    n += frame(buf + n, 1, OP_TEXT, 1, "second", 6);
    for (size_t cut = 1; cut < n; cut++) {
        server_new(&p->srv, MAX_MSG);
        assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, cut), 0);
        assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf + cut, n - cut), 0);
        expect_switching(&p->srv);
        assert_int_equal(p->srv.n_msgs, 2);
        assert_string_equal(p->srv.msgs[0], "first");
        assert_string_equal(p->srv.msgs[1], "second");
        side_clear(&p->srv);
    }
}

static void test_upgrade_pipelined_frames_answered_after_101(void **state)
{
    pair *p = *state;
    /* on_open may send; a pipelined ping's pong follows the 101 and the greeting, in order */
    uint8_t buf[512];
    size_t n = strlen(GOOD_REQUEST);
    memcpy(buf, GOOD_REQUEST, n);
    n += frame(buf + n, 1, OP_PING, 1, "p", 1);
    server_new(&p->srv, MAX_MSG);
    p->srv.greet = "hello";
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_int_equal(p->srv.greet_rc, 0);
    size_t len;
    char *out = take_out(&p->srv, &len);
    size_t head = strlen(GOOD_RESPONSE);
    assert_true(len > head);
    assert_memory_equal(out, GOOD_RESPONSE, head);
    wire_frame f1, f2;
    size_t u1 = parse_frame((uint8_t *)out + head, len - head, &f1);
    assert_int_not_equal(u1, 0);
    size_t u2 = parse_frame((uint8_t *)out + head + u1, len - head - u1, &f2);
    assert_int_equal(head + u1 + u2, len);
    assert_int_equal(f1.opcode, OP_TEXT);
    assert_string_equal((char *)f1.payload, "hello");
    assert_int_equal(f2.opcode, OP_PONG);
    assert_string_equal((char *)f2.payload, "p");
    free(f1.payload);
    free(f2.payload);
    free(out);
}

static void test_upgrade_zero_length_feed(void **state)
{
    pair *p = *state;
    /* An empty read in the middle of the head is not the end of it. */
    const char *req = GOOD_REQUEST;
    server_new(&p->srv, MAX_MSG);
    assert_int_equal(kp_ws_feed(p->srv.ws, req, 10), 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, req + 10, 0), 0);
    assert_int_equal(p->srv.closes, 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, req + 10, strlen(req) - 10), 0);
    expect_switching(&p->srv);
    assert_int_equal(kp_ws_feed(p->srv.ws, "", 0), 0);
    assert_int_equal(p->srv.closes, 0);
}

static void test_nothing_before_open(void **state)
{
    pair *p = *state;
    server_new(&p->srv, MAX_MSG);
    assert_int_equal(kp_ws_send_text(p->srv.ws, "early", 5), KP_ECLOSED);
    /* closing before the handshake: nothing on the wire, no callback, every call a no-op */
    kp_ws_close(p->srv.ws, 1001, "going away");
    assert_int_equal(p->srv.out_len, 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, GOOD_REQUEST, strlen(GOOD_REQUEST)), KP_ECLOSED);
    assert_int_equal(p->srv.out_len, 0);
    assert_int_equal(p->srv.opens + p->srv.closes, 0);
}

/* ---- the client's side of the handshake ---- */

static void test_client_request(void **state)
{
    pair *p = *state;
    client_new(&p->cli, MAX_MSG);
    char *out = take_out(&p->cli, NULL);
    assert_int_equal(strncmp(out, "GET /chat HTTP/1.1\r\n", 20), 0);
    assert_non_null(strstr(out, "\r\nHost: example.org:8000\r\n"));
    assert_non_null(strstr(out, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(out, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Key: "));
    assert_int_equal(strcmp(out + strlen(out) - 4, "\r\n\r\n"), 0);
    free(out);
    side_clear(&p->cli);

    /* the path defaults to "/" */
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "h:1", NULL, MAX_MSG, &p->cli.ws), 0);
    out = take_out(&p->cli, NULL);
    assert_int_equal(strncmp(out, "GET / HTTP/1.1\r\n", 16), 0);
    free(out);
    side_clear(&p->cli);

    /* two clients never send the same key */
    char k1[25], k2[25];
    client_new(&p->cli, MAX_MSG);
    client_key(&p->cli, k1);
    side_clear(&p->cli);
    client_new(&p->cli, MAX_MSG);
    client_key(&p->cli, k2);
    assert_string_not_equal(k1, k2);
}

static void test_client_bad_arguments(void **state)
{
    pair *p = *state;
    kp_ws *ws = (kp_ws *)p; /* must be reset to NULL */
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "", "/", MAX_MSG, &ws), KP_EINVAL);
    assert_null(ws);
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, NULL, "/", MAX_MSG, &ws), KP_EINVAL);
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "a b", "/", MAX_MSG, &ws), KP_EINVAL);
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "h\r\nX: y", "/", MAX_MSG, &ws), KP_EINVAL);
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "h", "/a b", MAX_MSG, &ws), KP_EINVAL);
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "h", "noslash", MAX_MSG, &ws), KP_EINVAL);
    assert_int_equal(p->cli.out_len, 0);
    /* a dead transport at once */
    p->cli.fail_send = 1;
    assert_int_equal(kp_ws_client_new(&callbacks, &p->cli, "h", "/", MAX_MSG, &ws), KP_EIO);
    assert_null(ws);
}

static void test_client_accepts_101_with_pipelined_frame(void **state)
{
    pair *p = *state;
    client_new(&p->cli, MAX_MSG);
    char key[25], accept[29];
    client_key(&p->cli, key);
    accept_of(key, accept);
    uint8_t buf[512];
    int n = snprintf((char *)buf, sizeof(buf),
                     "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    size_t len = (size_t)n;
    len += frame(buf + len, 1, OP_TEXT, 0, "hello from server", 17);
    assert_int_equal(feed_chunked(&p->cli, buf, len, 1), 0);
    assert_int_equal(p->cli.opens, 1);
    assert_int_equal(p->cli.n_msgs, 1);
    assert_string_equal(p->cli.msgs[0], "hello from server");
}

static void test_client_refuses_bad_answers(void **state)
{
    pair *p = *state;
    const char *answers[] = {
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n", /* the accept for someone else's key */
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Accept: %s\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        client_new(&p->cli, MAX_MSG);
        char key[25], accept[29], resp[512];
        client_key(&p->cli, key);
        accept_of(key, accept);
        snprintf(resp, sizeof(resp), answers[i], accept, accept);
        assert_int_equal(kp_ws_feed(p->cli.ws, resp, strlen(resp)), KP_ECLOSED);
        assert_int_equal(p->cli.opens, 0);
        assert_int_equal(p->cli.closes, 1);
        assert_int_equal(p->cli.code, 1002);
        assert_int_equal(p->cli.out_len, 0);
        assert_false(kp_ws_is_open(p->cli.ws));
        side_clear(&p->cli);
    }
}

/* ================= framing ================= */

static void test_text_both_ways(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    assert_int_equal(kp_ws_send_text(p->cli.ws, "{\"id\":1}", 8), 0);
    /* the client masks, as RFC 6455 §5.3 requires */
    wire_frame f;
    size_t len;
    char *bytes = take_out(&p->cli, &len);
    assert_int_equal(parse_frame((uint8_t *)bytes, len, &f), len);
    assert_true(f.masked);
    assert_int_equal(f.opcode, OP_TEXT);
    assert_true(f.fin);
    assert_string_equal((char *)f.payload, "{\"id\":1}");
    free(f.payload);
    assert_int_equal(kp_ws_feed(p->srv.ws, bytes, len), 0);
    free(bytes);
    assert_int_equal(p->srv.n_msgs, 1);
    assert_string_equal(p->srv.msgs[0], "{\"id\":1}");

    /* the server does not mask; empty messages are messages */
    assert_int_equal(kp_ws_send_text(p->srv.ws, "", 0), 0);
    assert_int_equal(kp_ws_send_text(p->srv.ws, "hi", 2), 0);
    assert_int_equal(deliver(&p->srv, &p->cli, 0), 0);
    assert_int_equal(p->cli.n_msgs, 2);
    assert_int_equal(p->cli.msg_lens[0], 0);
    assert_string_equal(p->cli.msgs[1], "hi");
}

static void test_frames_split_byte_by_byte(void **state)
{
    pair *p = *state;
    size_t sizes[] = {0, 1, 125, 126, 127, 4000, 65535, 65536, 70000};
    connect_pair(p, 1 << 17);
    char *msg = malloc(70000);
    assert_non_null(msg);
    for (size_t i = 0; i < 70000; i++)
        msg[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(kp_ws_send_text(p->cli.ws, msg, sizes[i]), 0);
        assert_int_equal(kp_ws_send_text(p->srv.ws, msg, sizes[i]), 0);
    }
    size_t chunk = 1;
    assert_int_equal(deliver(&p->cli, &p->srv, chunk), 0);
    assert_int_equal(deliver(&p->srv, &p->cli, chunk), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (side *s = &p->srv; s; s = s == &p->srv ? &p->cli : NULL) {
            assert_int_equal(s->msg_lens[i], sizes[i]);
            assert_memory_equal(s->msgs[i], msg, sizes[i]);
        }
    }
    assert_int_equal(p->srv.n_msgs, (int)(sizeof(sizes) / sizeof(sizes[0])));
    assert_int_equal(p->cli.n_msgs, (int)(sizeof(sizes) / sizeof(sizes[0])));
    assert_int_equal(p->srv.out_len + p->cli.out_len, 0);
    free(msg);
}

static void test_frames_in_odd_chunks(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    /* many frames in one buffer, delivered in chunks of 3 and 7 bytes */
    for (int i = 0; i < 20; i++) {
        char m[32];
        int n = snprintf(m, sizeof(m), "message %d", i);
        assert_int_equal(kp_ws_send_text(p->cli.ws, m, (size_t)n), 0);
        assert_int_equal(kp_ws_send_text(p->srv.ws, m, (size_t)n), 0);
    }
    assert_int_equal(deliver(&p->cli, &p->srv, 3), 0);
    assert_int_equal(deliver(&p->srv, &p->cli, 7), 0);
    assert_int_equal(p->srv.n_msgs, 20);
    assert_int_equal(p->cli.n_msgs, 20);
    assert_string_equal(p->srv.msgs[19], "message 19");
    assert_string_equal(p->cli.msgs[7], "message 7");
}

static void test_fragmented_message(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    uint8_t buf[256];
    size_t n = 0;
    n += frame(buf + n, 0, OP_TEXT, 1, "{\"id\":", 6);
    n += frame(buf + n, 0, OP_CONT, 1, "", 0);
    n += frame(buf + n, 1, OP_PING, 1, "mid", 3); /* control frames may come between fragments */
    n += frame(buf + n, 0, OP_CONT, 1, "7,\"m\":", 6);
    n += frame(buf + n, 1, OP_CONT, 1, "\"x\"}", 4);
    n += frame(buf + n, 1, OP_TEXT, 1, "next", 4);
    for (size_t chunk = 0; chunk <= 2; chunk++) {
        assert_int_equal(feed_chunked(&p->srv, buf, n, chunk), 0);
        assert_int_equal(p->srv.n_msgs, 2 * (int)(chunk + 1));
        assert_string_equal(p->srv.msgs[2 * chunk], "{\"id\":7,\"m\":\"x\"}");
        assert_string_equal(p->srv.msgs[2 * chunk + 1], "next");
        wire_frame f;
        take_one_frame(&p->srv, &f);
        assert_int_equal(f.opcode, OP_PONG);
        assert_false(f.masked);
        assert_string_equal((char *)f.payload, "mid");
        free(f.payload);
    }
    /* a UTF-8 character split across fragments is fine */
    n = frame(buf, 0, OP_TEXT, 1, "\xc3", 1);
    n += frame(buf + n, 1, OP_CONT, 1, "\xa9", 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_string_equal(p->srv.msgs[p->srv.n_msgs - 1], "\xc3\xa9");
    assert_int_equal(p->srv.closes, 0);
}

static void test_fragment_sequence_errors(void **state)
{
    pair *p = *state;
    uint8_t buf[256];
    /* a continuation with nothing to continue */
    connect_pair(p, MAX_MSG);
    size_t n = frame(buf, 1, OP_CONT, 1, "x", 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1002);
    assert_int_equal(p->srv.code, 1002);
    assert_int_equal(p->srv.n_msgs, 0);
    side_clear(&p->srv);
    side_clear(&p->cli);
    /* a new text frame while a fragmented message is open */
    connect_pair(p, MAX_MSG);
    n = frame(buf, 0, OP_TEXT, 1, "a", 1);
    n += frame(buf + n, 1, OP_TEXT, 1, "b", 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1002);
    assert_int_equal(p->srv.n_msgs, 0);
}

static void test_ping_gets_pong(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    uint8_t buf[256];
    /* client → server: masked ping, unmasked pong with the same payload */
    size_t n = frame(buf, 1, OP_PING, 1, "are you there", 13);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    wire_frame f;
    take_one_frame(&p->srv, &f);
    assert_int_equal(f.opcode, OP_PONG);
    assert_false(f.masked);
    assert_string_equal((char *)f.payload, "are you there");
    free(f.payload);
    /* an empty ping, and a 125-byte one (the most a control frame holds) */
    char big[125];
    memset(big, 'z', sizeof(big));
    n = frame(buf, 1, OP_PING, 1, "", 0);
    n += frame(buf + n, 1, OP_PING, 1, big, sizeof(big));
    assert_int_equal(feed_chunked(&p->srv, buf, n, 1), 0);
    size_t len;
    char *out = take_out(&p->srv, &len);
    wire_frame f1, f2;
    size_t u1 = parse_frame((uint8_t *)out, len, &f1);
    assert_int_equal(u1 + parse_frame((uint8_t *)out + u1, len - u1, &f2), len);
    assert_int_equal(f1.opcode, OP_PONG);
    assert_int_equal(f1.len, 0);
    assert_int_equal(f2.opcode, OP_PONG);
    assert_int_equal(f2.len, 125);
    free(f1.payload);
    free(f2.payload);
    free(out);
    /* server → client: unmasked ping, masked pong */
    n = frame(buf, 1, OP_PING, 0, "srv", 3);
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)buf, n), 0);
    take_one_frame(&p->cli, &f);
    assert_int_equal(f.opcode, OP_PONG);
    assert_true(f.masked);
    assert_string_equal((char *)f.payload, "srv");
    free(f.payload);
    /* an unsolicited pong is ignored; no message reaches the owner */
    n = frame(buf, 1, OP_PONG, 1, "late", 4);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_int_equal(p->srv.out_len, 0);
    assert_int_equal(p->srv.n_msgs + p->cli.n_msgs, 0);
    assert_int_equal(p->srv.closes + p->cli.closes, 0);
}

static void test_unmasked_client_frame(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    uint8_t buf[64];
    size_t n = frame(buf, 1, OP_TEXT, 0, "{\"id\":1}", 8);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1002);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.code, 1002);
    assert_int_equal(p->srv.n_msgs, 0);
    assert_false(kp_ws_is_open(p->srv.ws));
    assert_int_equal(kp_ws_send_text(p->srv.ws, "x", 1), KP_ECLOSED);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.out_len, 0);

    /* and a masked frame from a server is the client's protocol error */
    n = frame(buf, 1, OP_TEXT, 1, "hi", 2);
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->cli, 1, 1002);
    assert_int_equal(p->cli.code, 1002);
    assert_int_equal(p->cli.n_msgs, 0);
}

static void test_reserved_bits_and_opcodes(void **state)
{
    pair *p = *state;
    uint8_t buf[64];
    const struct {
        int rsv, opcode;
    } cases[] = {{4, OP_TEXT}, {1, OP_TEXT}, {0, 3}, {0, 7}, {0, 0xb}, {0, 0xf}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        connect_pair(p, MAX_MSG);
        size_t n = frame_ex(buf, 1, cases[i].rsv, cases[i].opcode, 1, "x", 1, 0);
        assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
        expect_close_frame(&p->srv, 0, 1002);
        assert_int_equal(p->srv.code, 1002);
        side_clear(&p->srv);
        side_clear(&p->cli);
    }
}

static void test_message_too_big(void **state)
{
    pair *p = *state;
    char *msg = malloc(MAX_MSG + 1);
    uint8_t *buf = malloc(MAX_MSG + 64);
    assert_non_null(msg);
    assert_non_null(buf);
    memset(msg, 'm', MAX_MSG + 1);

    /* exactly max_msg is fine */
    connect_pair(p, MAX_MSG);
    size_t n = frame(buf, 1, OP_TEXT, 1, msg, MAX_MSG);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_int_equal(p->srv.n_msgs, 1);
    assert_int_equal(p->srv.msg_lens[0], MAX_MSG);

    /* one byte more is refused at the frame's header, before any payload byte is read */
    n = frame(buf, 1, OP_TEXT, 1, msg, MAX_MSG + 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, 3), 0); /* 2 + 1 of the length */
    assert_int_equal(p->srv.closes, 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf + 3, 1), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1009);
    assert_int_equal(p->srv.code, 1009);
    assert_int_equal(p->srv.n_msgs, 1);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* a length the 64-bit form allows and no buffer could hold */
    connect_pair(p, MAX_MSG);
    uint8_t huge[15] = {0x81, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* 2^40 */
                        0x37, 0xfa, 0x21, 0x3d, 'x'};
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)huge, sizeof(huge)), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1009);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* fragments that add up to more than max_msg */
    connect_pair(p, MAX_MSG);
    n = frame(buf, 0, OP_TEXT, 1, msg, MAX_MSG / 2);
    n += frame(buf + n, 0, OP_CONT, 1, msg, MAX_MSG / 2);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    n = frame(buf, 1, OP_CONT, 1, msg, 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1009);
    assert_int_equal(p->srv.code, 1009);
    assert_int_equal(p->srv.n_msgs, 0);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* the client enforces its max_msg too */
    connect_pair(p, 16);
    assert_int_equal(kp_ws_send_text(p->srv.ws, msg, 17), 0);
    assert_int_equal(deliver(&p->srv, &p->cli, 0), KP_ECLOSED);
    expect_close_frame(&p->cli, 1, 1009);
    assert_int_equal(p->cli.code, 1009);
    free(msg);
    free(buf);
}

static void test_binary_frame(void **state)
{
    pair *p = *state;
    uint8_t buf[64];
    /* refused at its header (with the first payload byte, where wslay looks at a frame) */
    connect_pair(p, MAX_MSG);
    size_t n = frame(buf, 1, OP_BINARY, 1, "\x00\x01\x02", 3);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, 7), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1003);
    assert_int_equal(p->srv.code, 1003);
    assert_int_equal(p->srv.n_msgs, 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf + 7, n - 7), KP_ECLOSED);
    assert_int_equal(p->srv.closes, 1);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* the first fragment of a binary message, after a good text message in the same read */
    connect_pair(p, MAX_MSG);
    n = frame(buf, 1, OP_TEXT, 1, "ok", 2);
    n += frame(buf + n, 0, OP_BINARY, 1, "ab", 2);
    n += frame(buf + n, 1, OP_CONT, 1, "cd", 2);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1003);
    assert_int_equal(p->srv.n_msgs, 1);
    assert_string_equal(p->srv.msgs[0], "ok");
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* the client refuses binary from a server as well */
    connect_pair(p, MAX_MSG);
    n = frame(buf, 1, OP_BINARY, 0, "b", 1);
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->cli, 1, 1003);
    assert_int_equal(p->cli.code, 1003);
}

static void test_invalid_utf8(void **state)
{
    pair *p = *state;
    uint8_t buf[64];
    connect_pair(p, MAX_MSG);
    size_t n = frame(buf, 1, OP_TEXT, 1, "\xc3\x28", 2);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1007);
    assert_int_equal(p->srv.code, 1007);
    assert_int_equal(p->srv.n_msgs, 0);
    side_clear(&p->srv);
    side_clear(&p->cli);
    /* a message that ends inside a character */
    connect_pair(p, MAX_MSG);
    n = frame(buf, 1, OP_TEXT, 1, "ok\xe2\x82", 4);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1007);
    assert_int_equal(p->srv.n_msgs, 0);
}

static void test_close_started_by_client(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    kp_ws_close(p->cli.ws, 1000, "bye");
    assert_false(kp_ws_is_open(p->cli.ws));
    assert_int_equal(kp_ws_send_text(p->cli.ws, "late", 4), KP_ECLOSED);
    kp_ws_close(p->cli.ws, 1001, "again"); /* no-op once closing */
    /* exactly one masked close frame went out */
    size_t len;
    char *bytes = take_out(&p->cli, &len);
    wire_frame f;
    assert_int_equal(parse_frame((uint8_t *)bytes, len, &f), len);
    assert_true(f.masked);
    assert_int_equal(close_code_of(&f), 1000);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.payload + 2, "bye", 3);
    free(f.payload);
    /* the server answers with its close (echoing the code) and is done */
    assert_int_equal(kp_ws_feed(p->srv.ws, bytes, len), KP_ECLOSED);
    free(bytes);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.code, 1000);
    assert_string_equal(p->srv.why, "closed by peer");
    assert_int_equal(kp_ws_send_text(p->srv.ws, "x", 1), KP_ECLOSED);
    take_one_frame(&p->srv, &f);
    assert_false(f.masked);
    assert_int_equal(close_code_of(&f), 1000);
    /* the client's on_close comes with the server's answer, with the code it sent */
    uint8_t reply[64];
    size_t rn = frame(reply, 1, OP_CLOSE, 0, f.payload, f.len);
    free(f.payload);
    assert_int_equal(p->cli.closes, 0);
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)reply, rn), KP_ECLOSED);
    assert_int_equal(p->cli.closes, 1);
    assert_int_equal(p->cli.code, 1000);
    assert_int_equal(p->cli.out_len, 0); /* no second close frame */
    /* both over, each callback once */
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)reply, rn), KP_ECLOSED);
    assert_int_equal(p->cli.closes + p->srv.closes, 2);
}

static void test_close_started_by_server(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    assert_int_equal(kp_ws_send_text(p->srv.ws, "last words", 10), 0);
    kp_ws_close(p->srv.ws, 1001, "going away");
    /* the client reads the message, then the close, and answers it */
    assert_int_equal(deliver(&p->srv, &p->cli, 1), KP_ECLOSED);
    assert_int_equal(p->cli.n_msgs, 1);
    assert_string_equal(p->cli.msgs[0], "last words");
    assert_int_equal(p->cli.closes, 1);
    assert_int_equal(p->cli.code, 1001);
    /* text the client sent before it saw the close is ignored by the closing server */
    uint8_t buf[64];
    size_t n = frame(buf, 1, OP_TEXT, 1, "too late", 8);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_int_equal(p->srv.n_msgs, 0);
    assert_int_equal(p->srv.closes, 0);
    /* and a ping gets no pong after our close frame */
    n = frame(buf, 1, OP_PING, 1, "p", 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_int_equal(p->srv.out_len, 0);
    assert_int_equal(deliver(&p->cli, &p->srv, 0), KP_ECLOSED);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.code, 1001);
    assert_string_equal(p->srv.why, "closed");
    assert_int_equal(p->srv.out_len, 0);
}

static void test_close_without_code(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    uint8_t buf[64];
    size_t n = frame(buf, 1, OP_CLOSE, 1, "", 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    assert_int_equal(p->srv.code, 1005); /* "no status received" */
    wire_frame f;
    take_one_frame(&p->srv, &f);
    assert_int_equal(f.opcode, OP_CLOSE);
    assert_int_equal(f.len, 0);
    free(f.payload);
}

static void test_close_with_invalid_code(void **state)
{
    pair *p = *state;
    const uint16_t codes[] = {0, 999, 1004, 1005, 1006, 1016, 2999, 5000};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        connect_pair(p, MAX_MSG);
        uint8_t payload[8], buf[64];
        size_t pl = close_payload(payload, codes[i], "");
        size_t n = frame(buf, 1, OP_CLOSE, 1, payload, pl);
        assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
        expect_close_frame(&p->srv, 0, 1002);
        assert_int_equal(p->srv.code, 1002);
        side_clear(&p->srv);
        side_clear(&p->cli);
    }
}

static void test_close_reason_cut(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    char reason[300];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    kp_ws_close(p->srv.ws, 1001, reason);
    wire_frame f;
    take_one_frame(&p->srv, &f);
    assert_int_equal(close_code_of(&f), 1001);
    assert_int_equal(f.len, 125);
    free(f.payload);
}

static void test_close_from_on_text(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    p->srv.close_on_text = 1;
    assert_int_equal(kp_ws_send_text(p->cli.ws, "one", 3), 0);
    assert_int_equal(kp_ws_send_text(p->cli.ws, "two", 3), 0);
    assert_int_equal(deliver(&p->cli, &p->srv, 0), 0);
    /* the second message came after we started closing: dropped */
    assert_int_equal(p->srv.n_msgs, 1);
    assert_int_equal(p->srv.closes, 0);
    expect_close_frame(&p->srv, 0, 1000);
}

static void test_echo_from_on_text(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    p->srv.echo = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kp_ws_send_text(p->cli.ws, "ping?", 5), 0);
    assert_int_equal(deliver(&p->cli, &p->srv, 2), 0);
    assert_int_equal(deliver(&p->srv, &p->cli, 0), 0);
    assert_int_equal(p->cli.n_msgs, 3);
    assert_string_equal(p->cli.msgs[2], "ping?");
}

static void test_control_frame_too_long(void **state)
{
    pair *p = *state;
    uint8_t payload[400], buf[512];
    memset(payload, 'c', sizeof(payload));
    const struct {
        int fin, opcode, len_form;
        size_t len;
    } cases[] = {
        {1, OP_PING, 0, 126},   /* over 125 bytes */
        {1, OP_PONG, 0, 200},
        {1, OP_CLOSE, 0, 126},
        {1, OP_PING, 126, 5},   /* 16-bit length form, however short */
        {0, OP_PING, 0, 1},     /* fragmented control frame */
        {1, OP_TEXT, 126, 5},   /* a length not in its shortest form */
        {1, OP_TEXT, 127, 300},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        connect_pair(p, MAX_MSG);
        size_t n = frame_ex(buf, cases[i].fin, 0, cases[i].opcode, 1, payload, cases[i].len,
                            cases[i].len_form);
        int rc = kp_ws_feed(p->srv.ws, (const char *)buf, n);
        if (p->srv.code != 1002)
            fail_msg("case %zu: on_close code %u (%s), feed %d", i, p->srv.code, p->srv.why, rc);
        assert_int_equal(rc, KP_ECLOSED);
        assert_int_equal(p->srv.closes, 1);
        assert_int_equal(strncmp(p->srv.why, "protocol error", 14), 0);
        /* the connection is failed with a close frame that says 1002 */
        expect_close_frame(&p->srv, 0, 1002);
        assert_int_equal(p->srv.n_msgs, 0);
        side_clear(&p->srv);
        side_clear(&p->cli);
    }
}

/* ================= hostile input (issue 9) ================= */

/* Bytes in use on glibc's heap: what the code under test allocated between two readings, with
 * no help from it. (Under ASan the allocator is ASan's and this stays flat: the checks through
 * kp_ws_memory still hold there.) */
static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}

/* Makes the side's output buffer big enough that recording frames allocates nothing more. */
static void side_reserve_out(side *s, size_t cap)
{
    s->out = realloc(s->out, cap);
    assert_non_null(s->out);
    s->out_cap = cap;
}

static void test_idle_connection_holds_no_buffer(void **state)
{
    pair *p = *state;
    side_reserve_out(&p->srv, 1 << 14);
    side_reserve_out(&p->cli, 1 << 14);
    size_t heap0 = heap_in_use();
    server_new(&p->srv, MAX_MSG);
    client_new(&p->cli, MAX_MSG);
    size_t during = kp_ws_memory(p->srv.ws);
    assert_int_equal(deliver(&p->cli, &p->srv, 0), 0);
    assert_int_equal(deliver(&p->srv, &p->cli, 0), 0);
    assert_true(kp_ws_is_open(p->srv.ws) && kp_ws_is_open(p->cli.ws));
    size_t heap1 = heap_in_use();
    if (heap1 > heap0 + 2 * 512) /* two structs and malloc's overhead; wslay held ~9 KiB each */
        fail_msg("two idle connections hold %zu heap bytes", heap1 - heap0);
    /* the handshake's state is gone: each side is its struct and nothing else */
    size_t idle = kp_ws_memory(p->srv.ws);
    assert_true(idle < during);
    assert_true(idle <= 256);
    assert_int_equal(kp_ws_memory(p->cli.ws), idle);
    /* a message, a ping and a fragmented message later: back to the struct alone */
    uint8_t buf[256];
    size_t n = frame(buf, 1, OP_TEXT, 1, "{\"id\":1}", 8);
    n += frame(buf + n, 0, OP_TEXT, 1, "{\"id\"", 5);
    n += frame(buf + n, 1, OP_PING, 1, "ping", 4);
    n += frame(buf + n, 1, OP_CONT, 1, ":2}", 3);
    assert_int_equal(feed_chunked(&p->srv, buf, n, 3), 0);
    assert_int_equal(p->srv.n_msgs, 2);
    assert_int_equal(kp_ws_memory(p->srv.ws), idle);
}

/* The red team's attack: a message sent as thousands of one-byte fragments. */
static void test_one_byte_fragments_cost_their_bytes(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    side_reserve_out(&p->srv, 1 << 14);
    size_t idle = kp_ws_memory(p->srv.ws);
    size_t heap0 = heap_in_use();
    size_t peak = 0, heap_peak = 0;
    uint8_t buf[16];
    /* max_msg bytes exactly: one text frame and max_msg - 1 continuations, all not final */
    for (size_t i = 0; i < MAX_MSG; i++) {
        size_t n = frame(buf, 0, i == 0 ? OP_TEXT : OP_CONT, 1, "x", 1);
        /* one feed per fragment, and every 7th fragment byte by byte */
        assert_int_equal(feed_chunked(&p->srv, buf, n, i % 7 == 0 ? 1 : 0), 0);
        size_t m = kp_ws_memory(p->srv.ws);
        peak = m > peak ? m : peak;
        size_t h = heap_in_use();
        heap_peak = h > heap_peak ? h : heap_peak;
    }
    assert_int_equal(p->srv.closes, 0);
    assert_int_equal(p->srv.n_msgs, 0);
    /* the message's bytes and the struct, however many fragments carried them */
    if (peak > idle + MAX_MSG)
        fail_msg("%d one-byte fragments made the connection hold %zu bytes", MAX_MSG, peak);
    if (heap_peak > heap0 + MAX_MSG + 512)
        fail_msg("%d one-byte fragments took %zu heap bytes", MAX_MSG, heap_peak - heap0);
    /* an empty final fragment completes it; the buffer is freed once it is delivered */
    size_t n = frame(buf, 1, OP_CONT, 1, "", 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    assert_int_equal(p->srv.n_msgs, 1);
    assert_int_equal(p->srv.msg_lens[0], MAX_MSG);
    assert_int_equal(kp_ws_memory(p->srv.ws), idle);

    /* one fragment byte more than max_msg: 1009 at that fragment's length */
    for (size_t i = 0; i < MAX_MSG; i++) {
        n = frame(buf, 0, i == 0 ? OP_TEXT : OP_CONT, 1, "y", 1);
        assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    }
    n = frame(buf, 1, OP_CONT, 1, "y", 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, 2), KP_ECLOSED); /* no mask, no payload */
    expect_close_frame(&p->srv, 0, 1009);
    assert_int_equal(p->srv.code, 1009);
    assert_int_equal(p->srv.n_msgs, 1);
    /* closed: nothing is held but the struct */
    assert_int_equal(kp_ws_memory(p->srv.ws), idle);
}

static void test_huge_length_closed_at_header(void **state)
{
    pair *p = *state;
    /* 2^63 - 1, the largest length the 64-bit form allows: 1009 at the length's last byte */
    const uint8_t huge[14] = {0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                              0x37, 0xfa, 0x21, 0x3d};
    connect_pair(p, MAX_MSG);
    for (size_t i = 0; i + 1 < 10; i++)
        assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)huge + i, 1), 0);
    assert_int_equal(p->srv.closes, 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)huge + 9, 1), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1009);
    assert_int_equal(p->srv.code, 1009);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* the same from a server to a client (no mask key): at the length's last byte */
    connect_pair(p, MAX_MSG);
    uint8_t unmasked[10];
    memcpy(unmasked, huge, 10);
    unmasked[1] = 0x7f;
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)unmasked, 9), 0);
    assert_int_equal(kp_ws_feed(p->cli.ws, (const char *)unmasked + 9, 1), KP_ECLOSED);
    expect_close_frame(&p->cli, 1, 1009);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* a continuation announcing more than the message has left */
    connect_pair(p, MAX_MSG);
    uint8_t buf[64];
    size_t n = frame(buf, 0, OP_TEXT, 1, "abc", 3);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
    const uint8_t cont[8] = {0x80, 0xfe, (MAX_MSG - 2) >> 8, (MAX_MSG - 2) & 0xff, 1, 2, 3, 4};
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)cont, 3), 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)cont + 3, 5), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1009);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* the 64-bit form with its top bit set is no length at all: 1002 */
    connect_pair(p, MAX_MSG);
    uint8_t top[14];
    memcpy(top, huge, sizeof(top));
    top[2] = 0x80;
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)top, sizeof(top)), KP_ECLOSED);
    expect_close_frame(&p->srv, 0, 1002);
    assert_int_equal(p->srv.code, 1002);
}

/* Each frame-level protocol error: refused at the byte that shows it, with a close frame that
 * says 1002 (or 1003, 1007 where that is the reason), and on_close with the same code. */
static void test_each_protocol_error_closes_with_its_code(void **state)
{
    pair *p = *state;
    uint8_t payload[400];
    memset(payload, 'c', sizeof(payload));
    const struct {
        const char *what;
        int open_first; /* start a fragmented text message first */
        int fin, rsv, opcode, mask;
        size_t len;
        int len_form;
        const char *data; /* payload (NULL: 'c' bytes) */
        size_t refused_at; /* the byte count of this frame at which it is refused */
        uint16_t code;
    } cases[] = {
        {"rsv1", 0, 1, 4, OP_TEXT, 1, 1, 0, NULL, 2, 1002},
        {"rsv3", 0, 1, 1, OP_TEXT, 1, 1, 0, NULL, 2, 1002},
        {"opcode 3", 0, 1, 0, 3, 1, 1, 0, NULL, 2, 1002},
        {"opcode 0xb", 0, 1, 0, 0xb, 1, 1, 0, NULL, 2, 1002},
        {"unmasked", 0, 1, 0, OP_TEXT, 0, 1, 0, NULL, 2, 1002},
        {"continuation first", 0, 1, 0, OP_CONT, 1, 1, 0, NULL, 2, 1002},
        {"text inside a fragmented message", 1, 1, 0, OP_TEXT, 1, 1, 0, NULL, 2, 1002},
        {"binary inside a fragmented message", 1, 1, 0, OP_BINARY, 1, 1, 0, NULL, 2, 1002},
        {"binary", 0, 1, 0, OP_BINARY, 1, 1, 0, NULL, 2, 1003},
        {"fragmented ping", 0, 0, 0, OP_PING, 1, 1, 0, NULL, 2, 1002},
        {"ping over 125 bytes", 0, 1, 0, OP_PING, 1, 126, 0, NULL, 2, 1002},
        {"16-bit length for 5 bytes", 0, 1, 0, OP_TEXT, 1, 5, 126, NULL, 4, 1002},
        {"64-bit length for 300 bytes", 0, 1, 0, OP_TEXT, 1, 300, 127, NULL, 10, 1002},
        {"close with 1 byte", 0, 1, 0, OP_CLOSE, 1, 1, 0, "\x03", 7, 1002},
        {"close code 1005", 0, 1, 0, OP_CLOSE, 1, 2, 0, "\x03\xed", 8, 1002},
        {"close code 1015", 0, 1, 0, OP_CLOSE, 1, 2, 0, "\x03\xf7", 8, 1002},
        {"close reason not UTF-8", 0, 1, 0, OP_CLOSE, 1, 4, 0, "\x03\xe8\xc3\x28", 10, 1007},
        {"text not UTF-8", 0, 1, 0, OP_TEXT, 1, 2, 0, "\xed\xa0", 8, 1007}, /* a surrogate */
    };
    uint8_t buf[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        connect_pair(p, MAX_MSG);
        if (cases[i].open_first) {
            size_t n = frame(buf, 0, OP_TEXT, 1, "{", 1);
            assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), 0);
        }
        size_t n = frame_ex(buf, cases[i].fin, cases[i].rsv, cases[i].opcode, cases[i].mask,
                            cases[i].data ? (const void *)cases[i].data : payload, cases[i].len,
                            cases[i].len_form);
        size_t at = cases[i].refused_at;
        assert_true(at <= n);
        for (size_t b = 0; b + 1 < at; b++)
            if (kp_ws_feed(p->srv.ws, (const char *)buf + b, 1) != 0)
                fail_msg("%s: refused at byte %zu, not %zu", cases[i].what, b + 1, at);
        if (kp_ws_feed(p->srv.ws, (const char *)buf + at - 1, 1) != KP_ECLOSED)
            fail_msg("%s: not refused at byte %zu", cases[i].what, at);
        if (p->srv.code != cases[i].code)
            fail_msg("%s: on_close %u (%s), want %u", cases[i].what, p->srv.code, p->srv.why,
                     cases[i].code);
        expect_close_frame(&p->srv, 0, cases[i].code);
        assert_int_equal(p->srv.closes, 1);
        assert_int_equal(p->srv.n_msgs, 0);
        /* the rest of the frame is not read */
        if (at < n)
            assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf + at, n - at), KP_ECLOSED);
        assert_int_equal(p->srv.out_len, 0);
        side_clear(&p->srv);
        side_clear(&p->cli);
    }
}

static void test_client_masks_each_frame_with_a_new_key(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    /* two identical messages, two keys: the wire bytes differ, the messages do not */
    assert_int_equal(kp_ws_send_text(p->cli.ws, "same", 4), 0);
    size_t l1, l2;
    char *b1 = take_out(&p->cli, &l1);
    assert_int_equal(kp_ws_send_text(p->cli.ws, "same", 4), 0);
    char *b2 = take_out(&p->cli, &l2);
    assert_int_equal(l1, 2 + 4 + 4);
    assert_int_equal(l2, l1);
    assert_memory_not_equal(b1 + 2, b2 + 2, 8);
    assert_int_equal(kp_ws_feed(p->srv.ws, b1, l1), 0);
    assert_int_equal(kp_ws_feed(p->srv.ws, b2, l2), 0);
    free(b1);
    free(b2);
    assert_int_equal(p->srv.n_msgs, 2);
    assert_string_equal(p->srv.msgs[0], "same");
    assert_string_equal(p->srv.msgs[1], "same");
    /* a message over 1 KiB leaves in several sends and arrives whole */
    char big[3000];
    memset(big, 'b', sizeof(big));
    assert_int_equal(kp_ws_send_text(p->cli.ws, big, sizeof(big)), 0);
    assert_int_equal(deliver(&p->cli, &p->srv, 0), 0);
    assert_int_equal(p->srv.msg_lens[2], sizeof(big));
    assert_memory_equal(p->srv.msgs[2], big, sizeof(big));
}

/* ================= the transport ================= */

static void test_send_failure(void **state)
{
    pair *p = *state;
    connect_pair(p, MAX_MSG);
    p->srv.fail_send = 1;
    assert_int_equal(kp_ws_send_text(p->srv.ws, "x", 1), KP_EIO);
    assert_false(kp_ws_is_open(p->srv.ws));
    assert_int_equal(kp_ws_send_text(p->srv.ws, "x", 1), KP_ECLOSED);
    /* not inside kp_ws_feed: no on_close, later feeds are refused */
    assert_int_equal(p->srv.closes, 0);
    uint8_t buf[32];
    size_t n = frame(buf, 1, OP_TEXT, 1, "hi", 2);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_ECLOSED);
    assert_int_equal(p->srv.closes, 0);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* inside kp_ws_feed (a pong that cannot be written): on_close 1006 */
    connect_pair(p, MAX_MSG);
    p->srv.fail_send = 1;
    n = frame(buf, 1, OP_PING, 1, "p", 1);
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_EIO);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.code, 1006);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* an echo from on_text that cannot be written: on_close 1006 from the same feed */
    connect_pair(p, MAX_MSG);
    n = frame(buf, 1, OP_TEXT, 1, "hi", 2);
    p->srv.fail_send = 1;
    p->srv.echo = 1;
    assert_int_equal(kp_ws_feed(p->srv.ws, (const char *)buf, n), KP_EIO);
    assert_int_equal(p->srv.n_msgs, 1);
    assert_int_equal(p->srv.echo_rc, KP_EIO);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.code, 1006);
    side_clear(&p->srv);
    side_clear(&p->cli);

    /* the 101 cannot be written */
    server_new(&p->srv, MAX_MSG);
    p->srv.fail_send = 1;
    assert_int_equal(kp_ws_feed(p->srv.ws, GOOD_REQUEST, strlen(GOOD_REQUEST)), KP_EIO);
    assert_int_equal(p->srv.opens, 0);
    assert_int_equal(p->srv.closes, 1);
    assert_int_equal(p->srv.code, 1006);
}

static void test_long_conversation(void **state)
{
    pair *p = *state;
    /* many round trips through the same pair, in uneven chunks, with pings mixed in */
    connect_pair(p, MAX_MSG);
    p->srv.echo = 1;
    uint8_t ping[16];
    for (int i = 0; i < 200; i++) {
        char m[64];
        int n = snprintf(m, sizeof(m), "{\"id\":%d,\"method\":\"submit\"}", i);
        assert_int_equal(kp_ws_send_text(p->cli.ws, m, (size_t)n), 0);
        if (i % 10 == 0) {
            size_t pn = frame(ping, 1, OP_PING, 1, "k", 1);
            assert_int_equal(cb_send(&p->cli, (const char *)ping, pn), 0);
        }
        assert_int_equal(deliver(&p->cli, &p->srv, (size_t)(i % 13) + 1), 0);
        assert_int_equal(deliver(&p->srv, &p->cli, (size_t)(i % 5) + 1), 0);
        if (p->cli.n_msgs == MAX_MSGS) {
            for (int j = 0; j < p->cli.n_msgs; j++)
                free(p->cli.msgs[j]);
            p->cli.n_msgs = 0;
        }
        if (p->srv.n_msgs == MAX_MSGS) {
            for (int j = 0; j < p->srv.n_msgs; j++)
                free(p->srv.msgs[j]);
            p->srv.n_msgs = 0;
        }
    }
    assert_int_equal(p->srv.closes + p->cli.closes, 0);
    kp_ws_close(p->cli.ws, 1000, NULL);
    assert_int_equal(deliver(&p->cli, &p->srv, 0), KP_ECLOSED);
    assert_int_equal(deliver(&p->srv, &p->cli, 0), KP_ECLOSED);
    assert_int_equal(p->srv.code, 1000);
    assert_int_equal(p->cli.code, 1000);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_upgrade_rfc_example),
        T(test_upgrade_split_at_every_byte),
        T(test_upgrade_header_spelling),
        T(test_upgrade_missing_or_invalid_key),
        T(test_upgrade_wrong_version),
        T(test_upgrade_not_get),
        T(test_upgrade_not_an_upgrade),
        T(test_upgrade_head_too_large),
        T(test_upgrade_pipelined_frames),
        T(test_upgrade_pipelined_frames_answered_after_101),
        T(test_upgrade_zero_length_feed),
        T(test_nothing_before_open),
        T(test_client_request),
        T(test_client_bad_arguments),
        T(test_client_accepts_101_with_pipelined_frame),
        T(test_client_refuses_bad_answers),
        T(test_text_both_ways),
        T(test_frames_split_byte_by_byte),
        T(test_frames_in_odd_chunks),
        T(test_fragmented_message),
        T(test_fragment_sequence_errors),
        T(test_ping_gets_pong),
        T(test_unmasked_client_frame),
        T(test_reserved_bits_and_opcodes),
        T(test_message_too_big),
        T(test_binary_frame),
        T(test_invalid_utf8),
        T(test_close_started_by_client),
        T(test_close_started_by_server),
        T(test_close_without_code),
        T(test_close_with_invalid_code),
        T(test_close_reason_cut),
        T(test_close_from_on_text),
        T(test_echo_from_on_text),
        T(test_control_frame_too_long),
        T(test_idle_connection_holds_no_buffer),
        T(test_one_byte_fragments_cost_their_bytes),
        T(test_huge_length_closed_at_header),
        T(test_each_protocol_error_closes_with_its_code),
        T(test_client_masks_each_frame_with_a_new_key),
        T(test_send_failure),
        T(test_long_conversation),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
