/* The admin endpoint's request parsing (src/admin/admin_http.c), without sockets: verdicts for
 * good and bad heads, the /stats username rule (issue 9: %ff%fe used to be served), and the same
 * verdict wherever the bytes are split; and the /stats answer's body (stats_json.c). Links only
 * kp_admin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "admin_http.h"
#include "stats_json.h"
#include "utf8.h"
#include "testsupport.h"

/* Feeds `text` in pieces of `piece` bytes (0: whole). Returns whether a verdict was reached. */
static bool parse(const char *text, size_t len, size_t piece, kp_admin_request *r)
{
    kp_admin_request_init(r);
    for (size_t off = 0; off < len;) {
        size_t n = piece && piece < len - off ? piece : len - off;
        if (kp_admin_request_feed(r, text + off, n) == KP_ADMIN_FEED_DONE)
            return true;
        off += n;
    }
    return false;
}

typedef struct expect {
    const char *request;
    unsigned status;
    kp_admin_route route;
    const char *username;
} expect;

static void test_verdicts(void **state)
{
    const expect cases[] = {
        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, KP_ADMIN_ROUTE_METRICS, ""},
        {"GET /healthz HTTP/1.0\r\n\r\n", 0, KP_ADMIN_ROUTE_HEALTHZ, ""},
        {"GET /bans HTTP/1.1\r\n\r\n", 0, KP_ADMIN_ROUTE_BANS, ""},
        {"POST /bans HTTP/1.1\r\n\r\n", 405, KP_ADMIN_ROUTE_BANS, ""},
        {"GET http://h:1/metrics HTTP/1.1\r\n\r\n", 0, KP_ADMIN_ROUTE_METRICS, ""},
        {"GET /stats?username=al%69ce HTTP/1.1\r\n\r\n", 0, KP_ADMIN_ROUTE_STATS, "alice"},
        {"GET /stats?x=1&username=a+b&username=c HTTP/1.1\r\n\r\n", 0, KP_ADMIN_ROUTE_STATS,
         "a b"},
        {"GET /stats?username=j%C3%BCrgen HTTP/1.1\r\n\r\n", 0, KP_ADMIN_ROUTE_STATS,
         "j\xc3\xbcrgen"},
        {"GET /stats?username=%ff%fe HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /stats?username=%ed%a0%80 HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /stats?username=%c2%85 HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /stats?username=%c3 HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /stats?username=a%0ab HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /stats?username=a% HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /stats HTTP/1.1\r\n\r\n", 400, KP_ADMIN_ROUTE_STATS, ""},
        {"GET /nope HTTP/1.1\r\n\r\n", 404, KP_ADMIN_ROUTE_NONE, ""},
        {"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 405, KP_ADMIN_ROUTE_METRICS, ""},
        {"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
         KP_ADMIN_ROUTE_HEALTHZ, ""},
        {"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400, KP_ADMIN_ROUTE_HEALTHZ, ""},
        {"HELLO there\r\n\r\n", 400, KP_ADMIN_ROUTE_NONE, ""},
        {"GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", 0, KP_ADMIN_ROUTE_HEALTHZ,
         ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const expect *e = &cases[i];
        size_t len = strlen(e->request);
        for (size_t piece = 0; piece <= len; piece++) {
            kp_admin_request r;
            if (!parse(e->request, len, piece, &r))
                fail_msg("case %zu split %zu: no verdict", i, piece);
            if (r.verdict.status != e->status || r.verdict.route != e->route ||
                strcmp(r.verdict.username, e->username) != 0)
                fail_msg("case %zu split %zu: status %u route %d user '%s'", i, piece,
                         r.verdict.status, (int)r.verdict.route, r.verdict.username);
            assert_true(r.verdict.status == 0 || r.verdict.message != NULL);
            kp_admin_request_free(&r);
        }
    }
}

static void test_incomplete_and_oversized(void **state)
{
    kp_admin_request r;
    static const char half[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
    assert_false(parse(half, sizeof(half) - 1, 3, &r));
    kp_admin_request_free(&r);

    size_t big = KP_ADMIN_MAX_HEAD + 100;
    char *req = malloc(big);
    assert_non_null(req);
    memcpy(req, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
    memset(req + 30, 'b', big - 30);
    for (size_t piece = 1; piece < 5000; piece += 1000) {
        assert_true(parse(req, big, piece, &r));
        assert_int_equal(r.verdict.status, 431);
        assert_true(r.head_bytes <= KP_ADMIN_MAX_HEAD);
        kp_admin_request_free(&r);
    }
    free(req);
}

static void test_text_rule(void **state)
{
    static const struct {
        const char *text;
        bool ok;
    } cases[] = {
        {"alice", true},         {"j\xc3\xbcrgen", true}, {"\xf0\x9f\x98\x80", true},
        {"\xef\xbf\xbf", true},  {"\xff\xfe", false},     {"\xc0\xaf", false},
        {"\xe0\x80\xaf", false}, {"\xed\xa0\x80", false}, {"\xf4\x90\x80\x80", false},
        {"\xc2\x85", false},     {"\x7f", false},         {"a\tb", false},
        {"\xe2\x82", false},     {"\x80", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (kp_utf8_text_ok((const unsigned char *)cases[i].text, strlen(cases[i].text)) !=
            cases[i].ok)
            fail_msg("case %zu", i);
}

static void test_stats_body(void **state)
{
    kp_minute_count counts[] = {
        {.minute = 1795552260, .count = 3, .difficulty_sum = 3}, /* 2026-11-24T20:31:00Z */
        {.minute = 1795552320, .count = 2, .difficulty_sum = 9007199254740992.0}, /* 2^53 */
        {.minute = 253402300800 + 60, .count = 1, .difficulty_sum = 0.5}, /* year 10000 */
    };
    /* 20:33:10Z: 20:32 is the last complete minute. */
    kp_query_result res = {.rc = 0, .counts = counts, .n = 3, .wall_ms = 1795552390000};
    char *text = kp_admin_stats_json("j\xc3\xbcrgen \"x\"", &res);
    assert_non_null(text);
    assert_string_equal(text, "{\"username\":\"j\xc3\xbcrgen \\\"x\\\"\",\"minutes\":["
                              "{\"minute\":\"2026-11-24T20:31:00Z\",\"count\":3,"
                              "\"difficulty_sum\":3},"
                              "{\"minute\":\"2026-11-24T20:32:00Z\",\"count\":2,"
                              "\"difficulty_sum\":9007199254740992},"
                              "{\"minute\":\"253402300860\",\"count\":1,\"difficulty_sum\":0.5}],"
                              "\"hashrate\":{\"1m\":150119987579016.53,"
                              "\"5m\":30023997515803.32,\"60m\":2501999792983.61}}");
    cJSON_free(text);

    kp_query_result none = {.wall_ms = 1795552390000};
    text = kp_admin_stats_json("a", &none);
    assert_non_null(text);
    assert_string_equal(text, "{\"username\":\"a\",\"minutes\":[],"
                              "\"hashrate\":{\"1m\":0,\"5m\":0,\"60m\":0}}");
    cJSON_free(text);
}

/* The hashrate windows: the last 1, 5 and 60 complete minutes before the wall clock, the
 * current minute and later ones left out, missing minutes counting 0. */
static void test_hashrate_windows(void **state)
{
    (void)state;
    const int64_t m2035 = 1795552500; /* 2026-11-24T20:35:00Z */
    kp_minute_count counts[] = {
        {.minute = m2035 - 61 * 60, .difficulty_sum = 1e9},  /* 19:34: outside 60m */
        {.minute = m2035 - 60 * 60, .difficulty_sum = 3600}, /* 19:35: first of the 60 */
        {.minute = m2035 - 6 * 60, .difficulty_sum = 7200},  /* 20:29: outside 5m */
        {.minute = m2035 - 5 * 60, .difficulty_sum = 180},   /* 20:30: first of the 5 */
        {.minute = m2035 - 4 * 60, .difficulty_sum = 300},   /* 20:31 */
        {.minute = m2035 - 60, .difficulty_sum = 120},       /* 20:34: the last complete */
        {.minute = m2035, .difficulty_sum = 6000},           /* 20:35: current, incomplete */
        {.minute = m2035 + 300, .difficulty_sum = 6000},     /* a clock running ahead */
    };
    size_t n = sizeof(counts) / sizeof(counts[0]);
    int64_t now = m2035 * 1000 + 30000; /* 20:35:30 */
    assert_true(kp_admin_hashrate(counts, n, now, 1) == 2.0);
    assert_true(kp_admin_hashrate(counts, n, now, 5) == 2.0); /* (180 + 300 + 120) / 300 */
    assert_true(kp_admin_hashrate(counts, n, now, 60) == (3600.0 + 7200 + 600) / 3600);
    assert_true(kp_admin_hashrate(counts, n, now, 0) == 0);
    /* At the minute's first millisecond 20:34 is complete; a millisecond earlier it is not. */
    assert_true(kp_admin_hashrate(counts, n, m2035 * 1000, 1) == 2.0);
    assert_true(kp_admin_hashrate(counts, n, m2035 * 1000 - 1, 1) == 0.0); /* 20:33: no row */
    assert_true(kp_admin_hashrate(counts, n, m2035 * 1000 - 1, 5) == 480.0 / 300 + 7200.0 / 300);
    /* Order does not matter. */
    kp_minute_count rev[sizeof(counts) / sizeof(counts[0])];
    for (size_t i = 0; i < n; i++)
        rev[i] = counts[n - 1 - i];
    assert_true(kp_admin_hashrate(rev, n, now, 60) == kp_admin_hashrate(counts, n, now, 60));
    /* Before 1970 the minute is floored, not truncated toward zero. */
    kp_minute_count old = {.minute = -120, .difficulty_sum = 60};
    assert_true(kp_admin_hashrate(&old, 1, -30000, 1) == 1.0); /* now -0:30 → -1:00 current */
    assert_true(kp_admin_hashrate(NULL, 0, now, 60) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_incomplete_and_oversized),
        cmocka_unit_test(test_text_rule),
        cmocka_unit_test(test_stats_body),
        cmocka_unit_test(test_hashrate_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
