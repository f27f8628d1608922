/* Event JSON round trip and minute bucketing (SPEC §3), plus kp_strerror. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "kupool/error.h"
#include "kupool/event.h"

#define TS_EXAMPLE 1795552265123LL /* 2026-11-24T20:31:05.123Z */

static kp_event make_event(const char *id, const char *user, int64_t job_id, const char *nonce,
                           int64_t ts_ms)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    snprintf(ev.username, sizeof(ev.username), "%s", user);
    ev.job_id = job_id;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%s", nonce);
    ev.ts_ms = ts_ms;
    return ev;
}

static void assert_event_equal(const kp_event *a, const kp_event *b)
{
    assert_string_equal(a->event_id, b->event_id);
    assert_string_equal(a->username, b->username);
    assert_int_equal(a->job_id, b->job_id);
    assert_string_equal(a->client_nonce, b->client_nonce);
    assert_int_equal(a->ts_ms, b->ts_ms);
    assert_int_equal(kp_event_difficulty(a), kp_event_difficulty(b));
}

/* Parses a copy placed right before an inaccessible page, so a read past `len` faults even
 * inside cJSON, which ASan does not instrument. */
static int from_json(const char *json, size_t len, kp_event *ev)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    if (body == 0)
        body = page;
    char *map = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + body, page, PROT_NONE), 0);
    char *copy = map + body - len;
    memcpy(copy, json, len);
    int rc = kp_event_from_json(copy, len, ev);
    munmap(map, body + page);
    return rc;
}

static void round_trip(const kp_event *ev, char *json_out)
{
    char buf[KP_EVENT_JSON_MAX];
    int n = kp_event_to_json(ev, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(strlen(buf), (size_t)n);
    kp_event back;
    memset(&back, 0x5a, sizeof(back));
    assert_int_equal(from_json(buf, (size_t)n, &back), 0);
    assert_event_equal(ev, &back);
    if (json_out != NULL)
        memcpy(json_out, buf, (size_t)n + 1);
}

static void test_to_json_exact(void **state)
{
    (void)state;
    kp_event ev = make_event("00112233aabbccdd-42", "alice", 12, "9f0c", TS_EXAMPLE);
    char json[KP_EVENT_JSON_MAX];
    round_trip(&ev, json);
    assert_string_equal(json, "{\"event_id\":\"00112233aabbccdd-42\",\"username\":\"alice\","
                              "\"job_id\":12,\"client_nonce\":\"9f0c\","
                              "\"ts\":\"2026-11-24T20:31:05.123Z\",\"difficulty\":1}");

    /* SPEC §8: the difficulty the share was checked against, up to 2^53 exactly. */
    ev.difficulty = 256;
    round_trip(&ev, json);
    assert_non_null(strstr(json, ",\"difficulty\":256}"));
    ev.difficulty = KP_DIFFICULTY_MAX;
    round_trip(&ev, json);
    assert_non_null(strstr(json, ",\"difficulty\":9007199254740992}"));
}

static void test_escaping(void **state)
{
    (void)state;
    /* Quotes, backslashes, slash, UTF-8 of every length: only the first two need escapes. */
    kp_event ev = make_event("n-1", "a\"b\\c/d h\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", 1, "ab",
                             TS_EXAMPLE);
    char json[KP_EVENT_JSON_MAX];
    round_trip(&ev, json);
    assert_non_null(strstr(json, "\"username\":\"a\\\"b\\\\c/d h\xc3\xa9 \xe6\x97\xa5 "
                                 "\xf0\x9f\x98\x80\""));

    /* Control characters never reach an event through the codec, but the writer must still
     * produce valid JSON if one does. */
    ev = make_event("x\ny", "t\tb\bf\fr\r\x01\x1f\x7f", 1, "ab", TS_EXAMPLE);
    round_trip(&ev, json);
    assert_non_null(strstr(json, "\"event_id\":\"x\\ny\""));
    assert_non_null(strstr(json, "\"username\":\"t\\tb\\bf\\fr\\r\\u0001\\u001f\\u007f\""));
}

static void test_worst_case_fits(void **state)
{
    (void)state;
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    memset(ev.event_id, 'e', KP_EVENT_ID_MAX);
    memset(ev.username, '"', KP_USERNAME_MAX);
    memset(ev.client_nonce, 'F', KP_CLIENT_NONCE_MAX);
    ev.job_id = INT64_MIN;
    ev.ts_ms = 253402300799999LL; /* 9999-12-31T23:59:59.999Z */
    char buf[KP_EVENT_JSON_MAX];
    int n = kp_event_to_json(&ev, buf, sizeof(buf));
    assert_true(n > 0 && n < KP_EVENT_JSON_MAX);
    assert_non_null(strstr(buf, "\"ts\":\"9999-12-31T23:59:59.999Z\""));

    /* Same with a username that is all 4-byte characters, and a job id that round-trips. */
    memset(ev.username, 0, sizeof(ev.username));
    for (int i = 0; i < KP_USERNAME_MAX / 4; i++)
        strcat(ev.username, "\xf0\x9f\x98\x80");
    ev.job_id = 9007199254740991LL;
    round_trip(&ev, NULL);
    memset(ev.username, '\\', KP_USERNAME_MAX);
    round_trip(&ev, NULL);
}

static void test_small_buffer(void **state)
{
    (void)state;
    kp_event ev = make_event("id-1", "alice", 12, "9f0c", TS_EXAMPLE);
    char full[KP_EVENT_JSON_MAX];
    int len = kp_event_to_json(&ev, full, sizeof(full));
    assert_true(len > 0);
    /* Every cap up to len is refused (the text plus its NUL needs len + 1), and nothing is
     * written past cap. */
    for (int cap = 0; cap <= len; cap++) {
        char buf[KP_EVENT_JSON_MAX];
        memset(buf, 'G', sizeof(buf));
        assert_int_equal(kp_event_to_json(&ev, buf, (size_t)cap), KP_EINVAL);
        for (size_t i = (size_t)cap; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'G');
    }
    char buf[KP_EVENT_JSON_MAX];
    assert_int_equal(kp_event_to_json(&ev, buf, (size_t)len + 1), len);
    assert_string_equal(buf, full);
}

static void test_unterminated_fields_refused(void **state)
{
    (void)state;
    kp_event ev = make_event("id", "alice", 1, "ab", TS_EXAMPLE);
    char buf[KP_EVENT_JSON_MAX];
    memset(ev.username, 'a', sizeof(ev.username));
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
    ev = make_event("id", "alice", 1, "ab", TS_EXAMPLE);
    memset(ev.event_id, 'a', sizeof(ev.event_id));
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
    ev = make_event("id", "alice", 1, "ab", TS_EXAMPLE);
    memset(ev.client_nonce, 'a', sizeof(ev.client_nonce));
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
}

static void test_timestamps(void **state)
{
    (void)state;
    static const struct {
        int64_t ts_ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {-1000, "1969-12-31T23:59:59.000Z"},
        {-1001, "1969-12-31T23:59:58.999Z"},
        {951782400000LL, "2000-02-29T00:00:00.000Z"},
        {1709251199999LL, "2024-02-29T23:59:59.999Z"},
        {TS_EXAMPLE, "2026-11-24T20:31:05.123Z"},
        {-62167219200000LL, "0000-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kp_event ev = make_event("id", "u", 1, "a", cases[i].ts_ms);
        char json[KP_EVENT_JSON_MAX];
        round_trip(&ev, json);
        char want[64];
        snprintf(want, sizeof(want), "\"ts\":\"%s\"", cases[i].text);
        if (strstr(json, want) == NULL)
            fail_msg("%s not in %s", want, json);
    }

    /* No four-digit year: refused rather than written in a form the reader rejects. */
    char buf[KP_EVENT_JSON_MAX];
    kp_event ev = make_event("id", "u", 1, "a", 253402300800000LL); /* year 10000 */
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
    ev.ts_ms = -62167219200001LL; /* year -1 */
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
    ev.ts_ms = INT64_MIN;
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
    ev.ts_ms = INT64_MAX;
    assert_int_equal(kp_event_to_json(&ev, buf, sizeof(buf)), KP_EINVAL);
}

static void test_minute(void **state)
{
    (void)state;
    static const struct {
        int64_t ts_ms;
        int64_t minute;
    } cases[] = {
        {0, 0},
        {1, 0},
        {59999, 0},
        {60000, 60},
        {60001, 60},
        {119999, 60},
        {-1, -60},
        {-59999, -60},
        {-60000, -60},
        {-60001, -120},
        {1795552260000LL, 1795552260LL}, /* exactly on 20:31:00 */
        {TS_EXAMPLE, 1795552260LL},
        {1795552259999LL, 1795552200LL},
        {INT64_MAX, INT64_MAX / 60000 * 60},
        {INT64_MIN, (INT64_MIN / 60000 - 1) * 60},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kp_event ev = make_event("id", "u", 1, "a", cases[i].ts_ms);
        int64_t m = kp_event_minute(&ev);
        if (m != cases[i].minute)
            fail_msg("ts %lld: got %lld want %lld", (long long)cases[i].ts_ms, (long long)m,
                     (long long)cases[i].minute);
        assert_int_equal(m % 60, 0);
    }
}

static void expect_invalid(const char *json)
{
    kp_event ev = make_event("keep", "keep", 99, "99", 99);
    if (from_json(json, strlen(json), &ev) != KP_EINVAL)
        fail_msg("accepted: %s", json);
    /* A refused message leaves the caller's event alone. */
    assert_string_equal(ev.event_id, "keep");
    assert_int_equal(ev.job_id, 99);
}

#define EV_ID "\"event_id\":\"n-1\""
#define EV_USER "\"username\":\"alice\""
#define EV_JOB "\"job_id\":12"
#define EV_NONCE "\"client_nonce\":\"9f0c\""
#define EV_TS "\"ts\":\"2026-11-24T20:31:05.123Z\""

static void test_from_json_accepts(void **state)
{
    (void)state;
    kp_event ev;
    const char *json = "  {\"extra\":[1,{}]," EV_TS "," EV_NONCE "," EV_JOB "," EV_USER "," EV_ID
                       ",\"more\":null}\n";
    assert_int_equal(from_json(json, strlen(json), &ev), 0);
    kp_event want = make_event("n-1", "alice", 12, "9f0c", TS_EXAMPLE);
    assert_event_equal(&ev, &want);
    /* A v1 event has no difficulty: it counts as 1. */
    assert_int_equal(ev.difficulty, 1);

    json = "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":4096}";
    assert_int_equal(from_json(json, strlen(json), &ev), 0);
    assert_int_equal(ev.difficulty, 4096);

    /* Escapes written by other producers decode too. */
    json = "{" EV_ID ",\"username\":\"\\u00e9\\\"\\/\"," EV_JOB "," EV_NONCE "," EV_TS "}";
    assert_int_equal(from_json(json, strlen(json), &ev), 0);
    assert_string_equal(ev.username, "\xc3\xa9\"/");
}

static void test_from_json_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "null",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "} x",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}{}",
        /* missing fields */
        "{" EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_JOB "," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER "," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_TS "}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "}",
        /* wrong types */
        "{\"event_id\":1," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}",
        "{" EV_ID ",\"username\":null," EV_JOB "," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER ",\"job_id\":\"12\"," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER ",\"job_id\":12.5," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER ",\"job_id\":1e300," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER "," EV_JOB ",\"client_nonce\":[]," EV_TS "}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":1795552265123}",
        /* difficulty: an integer 1..2^53 when present */
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":0}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":-1}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":2.5}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":\"2\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":null}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":1e300}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS ",\"difficulty\":18014398509481984}",
        /* empty strings */
        "{\"event_id\":\"\"," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}",
        "{" EV_ID ",\"username\":\"\"," EV_JOB "," EV_NONCE "," EV_TS "}",
        "{" EV_ID "," EV_USER "," EV_JOB ",\"client_nonce\":\"\"," EV_TS "}",
        /* bad timestamps */
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T20:31:05Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24 20:31:05.123Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T20:31:05.123\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T20:31:05.123+00:00\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T20:31:05.123Zx\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-13-01T00:00:00.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-00-01T00:00:00.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-02-30T00:00:00.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2023-02-29T00:00:00.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T24:00:00.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T20:60:00.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2016-12-31T23:59:60.000Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"2026-11-24T20:31:0a.123Z\"}",
        "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE ",\"ts\":\"+026-11-24T20:31:05.123Z\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(bad[i]);

    /* Too long for the fixed-size fields. */
    char json[2048];
    char longs[300];
    memset(longs, 'a', 256);
    longs[256] = '\0';
    snprintf(json, sizeof(json), "{" EV_ID ",\"username\":\"%s\"," EV_JOB "," EV_NONCE "," EV_TS "}",
             longs);
    expect_invalid(json);
    longs[KP_USERNAME_MAX] = '\0';
    snprintf(json, sizeof(json), "{" EV_ID ",\"username\":\"%s\"," EV_JOB "," EV_NONCE "," EV_TS "}",
             longs);
    kp_event ev;
    assert_int_equal(from_json(json, strlen(json), &ev), 0);

    memset(longs, 'a', 256);
    longs[KP_EVENT_ID_MAX + 1] = '\0';
    snprintf(json, sizeof(json), "{\"event_id\":\"%s\"," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}",
             longs);
    expect_invalid(json);
    longs[KP_EVENT_ID_MAX] = '\0';
    snprintf(json, sizeof(json), "{\"event_id\":\"%s\"," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}",
             longs);
    assert_int_equal(from_json(json, strlen(json), &ev), 0);

    memset(longs, 'a', 256);
    longs[KP_CLIENT_NONCE_MAX + 1] = '\0';
    snprintf(json, sizeof(json), "{" EV_ID "," EV_USER "," EV_JOB ",\"client_nonce\":\"%s\"," EV_TS "}",
             longs);
    expect_invalid(json);
    longs[KP_CLIENT_NONCE_MAX] = '\0';
    snprintf(json, sizeof(json), "{" EV_ID "," EV_USER "," EV_JOB ",\"client_nonce\":\"%s\"," EV_TS "}",
             longs);
    assert_int_equal(from_json(json, strlen(json), &ev), 0);

    /* A NUL inside the given length. */
    static const char nul[] = "{" EV_ID "," EV_USER "," EV_JOB "," EV_NONCE "," EV_TS "}\0";
    assert_int_equal(from_json(nul, sizeof(nul) - 1, &ev), KP_EINVAL);
    assert_int_equal(from_json(nul, sizeof(nul) - 2, &ev), 0);
}

static void test_strerror(void **state)
{
    (void)state;
    static const int codes[] = {KP_OK,     KP_ENOMEM,  KP_EINVAL,    KP_EAGAIN,
                                KP_EIO,    KP_ECLOSED, KP_ETIMEDOUT, KP_ENOTSUP};
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++) {
        const char *a = kp_strerror(codes[i]);
        assert_non_null(a);
        assert_true(a[0] != '\0');
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(a, kp_strerror(codes[j]));
    }
    assert_non_null(kp_strerror(-1000));
    assert_non_null(kp_strerror(1));
    assert_string_equal(kp_strerror(-1000), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_json_exact),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_worst_case_fits),
        cmocka_unit_test(test_small_buffer),
        cmocka_unit_test(test_unterminated_fields_refused),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_minute),
        cmocka_unit_test(test_from_json_accepts),
        cmocka_unit_test(test_from_json_rejects),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
