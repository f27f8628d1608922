/* Unit tests for src/net/conn_proxy.c over a fake inner conn (no libuv): the header taken off
 * the stream whatever the split, the bytes after it delivered in the same read, peer_address
 * answering with the carried address (or the proxy's own for LOCAL/UNKNOWN), a refusal reported
 * once with nothing delivered, writes and closes passed through, and on_closed reaching the
 * owner exactly once after the proxy conn let go of everything. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "conn_proxy.h"

/* ---- a fake inner conn ---- */

typedef struct fake_conn {
    kp_conn base;
    int read_starts, closes;
    bool closed_reset;
    char written[256];
    size_t written_len;
} fake_conn;

static int fake_read_start(kp_conn *c)
{
    ((fake_conn *)c)->read_starts++;
    return 0;
}
static void fake_read_stop(kp_conn *c) { (void)c; }
static int fake_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    (void)line;
    fake_conn *f = (fake_conn *)c;
    memcpy(f->written + f->written_len, data, len);
    f->written_len += len;
    return 0;
}
static int fake_shutdown(kp_conn *c) { (void)c; return 0; }
static void fake_close(kp_conn *c, bool reset)
{
    fake_conn *f = (fake_conn *)c;
    f->closes++;
    f->closed_reset = reset;
}
static size_t fake_queued(const kp_conn *c) { (void)c; return 7; }
static int fake_peer(const kp_conn *c, struct sockaddr_storage *out)
{
    (void)c;
    struct sockaddr_in *sa = (struct sockaddr_in *)out;
    memset(out, 0, sizeof(*out));
    sa->sin_family = AF_INET;
    sa->sin_port = htons(999);
    inet_pton(AF_INET, "127.0.0.1", &sa->sin_addr);
    return 0;
}
static const kp_conn_ops fake_ops = {fake_read_start, fake_read_stop, fake_write, fake_shutdown,
                                     fake_close, fake_queued, fake_peer};

/* The inner conn's events go to whoever bound it (the proxy conn). */
static void inner_deliver(fake_conn *f, const char *data, size_t len)
{
    f->base.events->on_read(f->base.owner, data, len);
}
static void inner_closed(fake_conn *f)
{
    f->base.events->on_closed(f->base.owner);
}

/* ---- the owner above ---- */

typedef struct owner {
    char got[512];
    size_t got_len;
    int headers, refusals, closed;
    char client[64];
    const char *why;
    kp_conn *conn;
    fake_conn *inner;
} owner;

static void own_read(void *o, const char *data, size_t len)
{
    owner *w = o;
    memcpy(w->got + w->got_len, data, len);
    w->got_len += len;
}
static void own_end(void *o, const char *why) { (void)o; (void)why; }
static void own_closed(void *o) { ((owner *)o)->closed++; }
static const kp_conn_events own_events = {own_read, own_end, own_closed};

static bool on_header(void *ctx, void *o, const struct sockaddr_storage *client, const char *why)
{
    (void)ctx;
    owner *w = o;
    if (!client) {
        w->refusals++;
        w->why = why;
        kp_conn_close(w->conn, false); /* the callee closes on a refusal */
        return false;
    }
    w->headers++;
    char ip[INET6_ADDRSTRLEN];
    if (client->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)client)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)client)->sin6_addr, ip, sizeof(ip));
    snprintf(w->client, sizeof(w->client), "%s", ip);
    return true;
}

static void make(owner *w, fake_conn *f)
{
    memset(w, 0, sizeof(*w));
    memset(f, 0, sizeof(*f));
    f->base.ops = &fake_ops;
    w->inner = f;
    assert_int_equal(kp_conn_proxy_new(&f->base, on_header, NULL, w, &w->conn), 0);
    kp_conn_bind(w->conn, &own_events, w);
}

static void test_header_then_bytes(void **state)
{
    (void)state;
    static const char stream[] = "PROXY TCP4 203.0.113.7 192.0.2.1 5555 8080\r\n{\"id\":1}\n";
    size_t len = sizeof(stream) - 1, hdr = strlen("PROXY TCP4 203.0.113.7 192.0.2.1 5555 8080\r\n");
    for (size_t cut = 0; cut <= len; cut++) {
        owner w;
        fake_conn f;
        make(&w, &f);
        assert_int_equal(kp_conn_read_start(w.conn), 0);
        assert_int_equal(f.read_starts, 1);
        /* Before the header: peer_address is the proxy's. */
        struct sockaddr_storage sa;
        assert_int_equal(kp_conn_peer_address(w.conn, &sa), 0);
        assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 999);
        if (cut)
            inner_deliver(&f, stream, cut);
        if (cut < len)
            inner_deliver(&f, stream + cut, len - cut);
        assert_int_equal(w.headers, 1);
        assert_string_equal(w.client, "203.0.113.7");
        assert_int_equal(w.got_len, len - hdr);
        assert_memory_equal(w.got, stream + hdr, len - hdr);
        assert_int_equal(kp_conn_peer_address(w.conn, &sa), 0);
        assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 5555);
        /* Later bytes pass straight through. */
        inner_deliver(&f, "more", 4);
        assert_int_equal(w.got_len, len - hdr + 4);
        /* Writes, queued, close: through to the inner conn. */
        assert_int_equal(kp_conn_write(w.conn, "out", 3, NULL), 0);
        assert_int_equal(f.written_len, 3);
        assert_int_equal(kp_conn_queued(w.conn), 7);
        kp_conn_close(w.conn, true);
        kp_conn_close(w.conn, true); /* idempotent */
        assert_int_equal(f.closes, 1);
        assert_true(f.closed_reset);
        assert_int_equal(w.closed, 0);
        inner_closed(&f); /* frees the proxy conn, then tells the owner */
        assert_int_equal(w.closed, 1);
    }
}

static void test_own_address(void **state)
{
    (void)state;
    owner w;
    fake_conn f;
    make(&w, &f);
    inner_deliver(&f, "PROXY UNKNOWN\r\nx", 16);
    assert_int_equal(w.headers, 1);
    assert_string_equal(w.client, "127.0.0.1"); /* the proxy speaks for itself */
    assert_int_equal(w.got_len, 1);
    struct sockaddr_storage sa;
    kp_conn_peer_address(w.conn, &sa);
    assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 999);
    kp_conn_close(w.conn, false);
    inner_closed(&f);
    assert_int_equal(w.closed, 1);
}

static void test_refused(void **state)
{
    (void)state;
    owner w;
    fake_conn f;
    make(&w, &f);
    inner_deliver(&f, "{\"id\":1,\"method\":\"authorize\"}\n", 31);
    assert_int_equal(w.refusals, 1);
    assert_non_null(w.why);
    assert_int_equal(w.got_len, 0);
    assert_int_equal(f.closes, 1);
    inner_deliver(&f, "PROXY ", 6); /* bytes racing the close: dropped, no second verdict */
    assert_int_equal(w.refusals + w.headers, 1);
    assert_int_equal(w.got_len, 0);
    inner_closed(&f);
    assert_int_equal(w.closed, 1);

    /* Closed before any byte (the peer went away): the owner hears on_closed, nothing else. */
    make(&w, &f);
    kp_conn_close(w.conn, false);
    inner_closed(&f);
    assert_int_equal(w.closed, 1);
    assert_int_equal(w.headers + w.refusals, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_then_bytes),
        cmocka_unit_test(test_own_address),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
