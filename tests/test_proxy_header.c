/* Tests for src/net/proxy_header.c: both versions fed whole, split at every byte and one byte at
 * a time (the bytes after the header must be left to the next layer), v1's 107-byte limit, v2
 * TLVs skipped, LOCAL, UNKNOWN, families other than TCP over IPv4/IPv6, v2's length limit and
 * garbage refused at the first byte that proves it wrong. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy_header.h"

#define TAIL "{\"id\":1}\n"

typedef struct outcome {
    kp_proxy_status status;
    size_t header_len; /* bytes the parser took over all calls */
    kp_proxy_result res;
    const char *why;
} outcome;

/* Feeds `data` in chunks: `cuts` holds the chunk boundaries (ascending, inside the data). */
static outcome feed_chunks(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts)
{
    kp_proxy_parser p;
    kp_proxy_parser_init(&p);
    outcome o = {.status = KP_PROXY_MORE};
    size_t at = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        size_t used = 0;
        o.status = kp_proxy_feed(&p, (const char *)data + at, end - at, &used, &o.res);
        assert_true(used <= end - at);
        o.header_len += used;
        if (o.status != KP_PROXY_MORE) {
            o.why = p.why;
            return o;
        }
        assert_int_equal(used, end - at); /* MORE means everything was header */
        at = end;
    }
    return o;
}

/* Feeds the header followed by TAIL whole, split in two at every byte and one byte at a time;
 * every way must agree. Returns the whole-feed outcome. */
static outcome feed_all_ways(const uint8_t *hdr, size_t hlen)
{
    uint8_t buf[4096];
    assert_true(hlen + sizeof(TAIL) <= sizeof(buf));
    memcpy(buf, hdr, hlen);
    memcpy(buf + hlen, TAIL, sizeof(TAIL) - 1);
    size_t len = hlen + sizeof(TAIL) - 1;
    outcome whole = feed_chunks(buf, len, NULL, 0);
    for (size_t cut = 1; cut < len; cut++) {
        outcome o = feed_chunks(buf, len, &cut, 1);
        assert_int_equal(o.status, whole.status);
        if (o.status == KP_PROXY_DONE) {
            assert_int_equal(o.header_len, whole.header_len);
            assert_int_equal(o.res.has_src, whole.res.has_src);
            assert_memory_equal(&o.res.src, &whole.res.src, sizeof(o.res.src));
        }
    }
    size_t cuts[4096];
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    outcome bytewise = feed_chunks(buf, len, cuts, len - 1);
    assert_int_equal(bytewise.status, whole.status);
    if (whole.status == KP_PROXY_DONE) {
        assert_int_equal(bytewise.header_len, hlen);
        assert_int_equal(whole.header_len, hlen);
    }
    return whole;
}

static outcome feed_text(const char *hdr)
{
    return feed_all_ways((const uint8_t *)hdr, strlen(hdr));
}

static void assert_v4(const kp_proxy_result *r, const char *addr, uint16_t port)
{
    assert_true(r->has_src);
    const struct sockaddr_in *sa = (const struct sockaddr_in *)&r->src;
    assert_int_equal(sa->sin_family, AF_INET);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, text, sizeof(text));
    assert_string_equal(text, addr);
    assert_int_equal(ntohs(sa->sin_port), port);
}

static void assert_v6(const kp_proxy_result *r, const char *addr, uint16_t port)
{
    assert_true(r->has_src);
    const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&r->src;
    assert_int_equal(sa->sin6_family, AF_INET6);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &sa->sin6_addr, text, sizeof(text));
    assert_string_equal(text, addr);
    assert_int_equal(ntohs(sa->sin6_port), port);
}

/* ---- v1 ---- */

static void test_v1_tcp4(void **state)
{
    (void)state;
    outcome o = feed_text("PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\r\n");
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_int_equal(o.res.version, 1);
    assert_v4(&o.res, "203.0.113.7", 56324);
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    outcome o = feed_text("PROXY TCP6 2001:db8:1:2::7 2001:db8::1 65535 443\r\n");
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_v6(&o.res, "2001:db8:1:2::7", 65535);
}

static void test_v1_unknown(void **state)
{
    (void)state;
    outcome o = feed_text("PROXY UNKNOWN\r\n");
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_false(o.res.has_src);
    /* Whatever follows UNKNOWN is ignored. */
    o = feed_text("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_false(o.res.has_src);
}

static void test_v1_limits(void **state)
{
    (void)state;
    /* The spec's worst case is exactly 107 bytes with CRLF: accepted. */
    const char *longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(longest), KP_PROXY_V1_MAX);
    assert_int_equal(feed_text(longest).status, KP_PROXY_DONE);
    /* One byte more is refused at byte 108, before any CRLF. */
    char over[256];
    snprintf(over, sizeof(over), "PROXY UNKNOWN %0*d\r\n", KP_PROXY_V1_MAX - 15, 0);
    assert_int_equal(strlen(over), KP_PROXY_V1_MAX + 1);
    outcome o = feed_text(over);
    assert_int_equal(o.status, KP_PROXY_ERROR);
    assert_non_null(o.why);
    /* A line that never ends is refused once it passes the limit, not kept forever. */
    char endless[400];
    memset(endless, 'A', sizeof(endless));
    memcpy(endless, "PROXY ", 6);
    outcome e = feed_chunks((const uint8_t *)endless, sizeof(endless), NULL, 0);
    assert_int_equal(e.status, KP_PROXY_ERROR);
}

static void test_v1_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",          /* a port missing */
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080 9\r\n",   /* a field too many */
        "PROXY TCP4 203.0.113.7  192.0.2.1 56324 8080\r\n",    /* two spaces */
        "PROXY TCP4 2001:db8::1 192.0.2.1 56324 8080\r\n",     /* v6 under TCP4 */
        "PROXY TCP6 203.0.113.7 2001:db8::1 56324 8080\r\n",   /* v4 under TCP6 */
        "PROXY TCP4 203.0.113.256 192.0.2.1 56324 8080\r\n",   /* bad address */
        "PROXY TCP4 203.0.113.7 192.0.2.1 65536 8080\r\n",     /* port too big */
        "PROXY TCP4 203.0.113.7 192.0.2.1 5a 8080\r\n",        /* port not decimal */
        "PROXY TCP4 203.0.113.7 192.0.2.1 -1 8080\r\n",
        "PROXY UDP4 203.0.113.7 192.0.2.1 56324 8080\r\n",     /* unknown protocol */
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\n",       /* LF without CR */
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\r\r\n",   /* CR not before LF */
        "PROXY TCP4 203.0.113.7\t192.0.2.1 56324 8080\r\n",    /* a control byte */
        "PROXYTCP4 203.0.113.7 192.0.2.1 56324 8080\r\n",
        "proxy TCP4 203.0.113.7 192.0.2.1 56324 8080\r\n",     /* case matters */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        outcome o = feed_text(bad[i]);
        if (o.status != KP_PROXY_ERROR)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(o.why);
    }
}

/* ---- v2 ---- */

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Builds a v2 header: 16 bytes, then `block` of `blen` bytes; the length field says `lenfield`. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *block, size_t blen,
                 size_t lenfield)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(lenfield >> 8);
    out[15] = (uint8_t)lenfield;
    memcpy(out + 16, block, blen);
    return 16 + blen;
}

static size_t tcp4_block(uint8_t *b, const char *src, uint16_t sport)
{
    inet_pton(AF_INET, src, b);
    inet_pton(AF_INET, "192.0.2.1", b + 4);
    b[8] = (uint8_t)(sport >> 8);
    b[9] = (uint8_t)sport;
    b[10] = 0x1f;
    b[11] = 0x90;
    return 12;
}

static void test_v2_tcp4_and_tlvs(void **state)
{
    (void)state;
    uint8_t block[600], hdr[700];
    size_t n = tcp4_block(block, "203.0.113.7", 40000);
    size_t h = v2(hdr, 0x21, 0x11, block, n, n);
    outcome o = feed_all_ways(hdr, h);
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_int_equal(o.res.version, 2);
    assert_v4(&o.res, "203.0.113.7", 40000);

    /* TLVs after the addresses (ALPN, authority, a CRC32C, a NOOP of padding) are skipped. */
    static const uint8_t tlvs[] = {0x01, 0x00, 0x02, 'h', '2', 0x02, 0x00, 0x03, 'a', '.', 'b',
                                   0x03, 0x00, 0x04, 1,   2,   3,    4,    0x04, 0x00, 0x01, 0};
    memcpy(block + n, tlvs, sizeof(tlvs));
    memset(block + n + sizeof(tlvs), 0xee, 400); /* and a large unknown tail */
    size_t blen = n + sizeof(tlvs) + 400;
    h = v2(hdr, 0x21, 0x11, block, blen, blen);
    o = feed_all_ways(hdr, h);
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_v4(&o.res, "203.0.113.7", 40000);
}

static void test_v2_tcp6(void **state)
{
    (void)state;
    uint8_t block[36] = {0}, hdr[64];
    inet_pton(AF_INET6, "2001:db8:1:2::7", block);
    inet_pton(AF_INET6, "2001:db8::1", block + 16);
    block[32] = 0x12;
    block[33] = 0x34;
    size_t h = v2(hdr, 0x21, 0x21, block, 36, 36);
    outcome o = feed_all_ways(hdr, h);
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_v6(&o.res, "2001:db8:1:2::7", 0x1234);
}

static void test_v2_own_address(void **state)
{
    (void)state;
    uint8_t block[256] = {0}, hdr[300];
    /* LOCAL (a health check of the balancer itself): any family, the block is skipped. */
    size_t h = v2(hdr, 0x20, 0x00, block, 0, 0);
    outcome o = feed_all_ways(hdr, h);
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_false(o.res.has_src);
    size_t n = tcp4_block(block, "203.0.113.7", 1);
    h = v2(hdr, 0x20, 0x11, block, n, n);
    o = feed_all_ways(hdr, h);
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_false(o.res.has_src);
    /* PROXY over UNSPEC, UNIX (216 bytes) or UDP: the proxy's own address. */
    static const uint8_t fams[] = {0x00, 0x31, 0x32, 0x12, 0x22, 0x10, 0x01};
    for (size_t i = 0; i < sizeof(fams); i++) {
        size_t blen = fams[i] >> 4 == 3 ? 216 : fams[i] >> 4 == 2 ? 36 : 12;
        h = v2(hdr, 0x21, fams[i], block, blen, blen);
        o = feed_all_ways(hdr, h);
        assert_int_equal(o.status, KP_PROXY_DONE);
        assert_false(o.res.has_src);
    }
}

static void test_v2_refused(void **state)
{
    (void)state;
    uint8_t block[64] = {0}, hdr[128];
    size_t n = tcp4_block(block, "203.0.113.7", 1);
    struct {
        uint8_t ver_cmd, fam;
        size_t blen, lenfield;
    } bad[] = {
        {0x11, 0x11, 12, 12}, /* version 1 in a v2 prefix */
        {0x31, 0x11, 12, 12}, /* version 3 */
        {0x22, 0x11, 12, 12}, /* unknown command */
        {0x21, 0x41, 12, 12}, /* unknown family */
        {0x21, 0x13, 12, 12}, /* unknown transport */
        {0x21, 0x11, 11, 11}, /* too short for TCP4 */
        {0x21, 0x21, 12, 12}, /* too short for TCP6 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t h = v2(hdr, bad[i].ver_cmd, bad[i].fam, block, bad[i].blen, bad[i].lenfield);
        outcome o = feed_all_ways(hdr, h);
        if (o.status != KP_PROXY_ERROR)
            fail_msg("accepted case %zu", i);
    }
    (void)n;
    /* A length over 2,048 is refused as soon as the 16 bytes are in, without the block. */
    size_t h = v2(hdr, 0x21, 0x11, block, 0, KP_PROXY_V2_MAX_LEN + 1);
    outcome o = feed_chunks(hdr, h, NULL, 0);
    assert_int_equal(o.status, KP_PROXY_ERROR);
    assert_int_equal(o.header_len, 0);
    h = v2(hdr, 0x21, 0x11, block, 0, 0xffff);
    assert_int_equal(feed_chunks(hdr, h, NULL, 0).status, KP_PROXY_ERROR);
    /* Exactly 2,048 is fine. */
    static uint8_t big[16 + KP_PROXY_V2_MAX_LEN];
    uint8_t blk[KP_PROXY_V2_MAX_LEN] = {0};
    tcp4_block(blk, "198.51.100.1", 2);
    h = v2(big, 0x21, 0x11, blk, sizeof(blk), sizeof(blk));
    o = feed_all_ways(big, h);
    assert_int_equal(o.status, KP_PROXY_DONE);
    assert_v4(&o.res, "198.51.100.1", 2);
}

/* ---- neither ---- */

static void test_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"id\":1,\"method\":\"authorize\"}\n", /* a client that sent no header */
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x02\x00", /* a TLS ClientHello */
        "\r\n\r\n\x00\r\nQUIX\n",
        "PROXX TCP4",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kp_proxy_parser p;
        kp_proxy_parser_init(&p);
        size_t used = 99;
        kp_proxy_result r;
        size_t len = i == 2 ? 5 : i == 3 ? 12 : strlen(bad[i]);
        assert_int_equal(kp_proxy_feed(&p, bad[i], len, &used, &r), KP_PROXY_ERROR);
        assert_non_null(p.why);
        /* Once refused, it stays refused. */
        assert_int_equal(kp_proxy_feed(&p, "PROXY ", 6, &used, &r), KP_PROXY_ERROR);
        assert_int_equal(used, 0);
    }
    /* Nothing at all is "more", not an error. */
    kp_proxy_parser p;
    kp_proxy_parser_init(&p);
    size_t used;
    kp_proxy_result r;
    assert_int_equal(kp_proxy_feed(&p, "", 0, &used, &r), KP_PROXY_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),          cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),       cmocka_unit_test(test_v1_limits),
        cmocka_unit_test(test_v1_malformed),     cmocka_unit_test(test_v2_tcp4_and_tlvs),
        cmocka_unit_test(test_v2_tcp6),          cmocka_unit_test(test_v2_own_address),
        cmocka_unit_test(test_v2_refused),       cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
