/* Wire codec and outcome table (SPEC §2).
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "outcome.h"

/* `len` bytes right before an inaccessible page, so that an access past them faults even
 * without ASan. Unmap with guarded_free(). */
static char *guarded_alloc(size_t len, char **map, size_t *map_len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    if (body == 0)
        body = page;
    *map = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(*map != MAP_FAILED);
    assert_int_equal(mprotect(*map + body, page, PROT_NONE), 0);
    *map_len = body + page;
    return *map + body - len;
}

static void guarded_free(char **map, size_t *map_len)
{
    if (*map != NULL)
        munmap(*map, *map_len);
    *map = NULL;
    *map_len = 0;
}

/* The scratch of the last parse, exactly as large as its line: a request's strings live there
 * until the next parse. */
static char *scratch_map;
static size_t scratch_map_len;

/* Parses a guarded copy of `line` (the session hands the codec slices of its buffer, with no
 * NUL after them) into a guarded scratch of the line's size, the least the codec may be given. */
static kp_outcome parse_n(const char *line, size_t len, kp_request *req)
{
    guarded_free(&scratch_map, &scratch_map_len);
    char *scratch = guarded_alloc(len, &scratch_map, &scratch_map_len);
    char *line_map;
    size_t line_map_len;
    char *copy = guarded_alloc(len, &line_map, &line_map_len);
    memcpy(copy, line, len);
    kp_outcome oc = kp_request_parse(copy, len, scratch, len, req);
    guarded_free(&line_map, &line_map_len); /* the request must not point into the line */
    return oc;
}

static int free_scratch(void **state)
{
    (void)state;
    guarded_free(&scratch_map, &scratch_map_len);
    return 0;
}

static kp_outcome parse(const char *line, kp_request *req)
{
    return parse_n(line, strlen(line), req);
}

static void expect_fail(const char *line, kp_outcome want, int has_id, int64_t id)
{
    kp_request req;
    kp_outcome oc = parse(line, &req);
    if (oc != want)
        fail_msg("%s: got %d want %d", line, oc, want);
    assert_int_equal(req.has_id, has_id);
    if (has_id)
        assert_int_equal(req.id, id);
    /* A failed parse hands out no params. */
    kp_authorize_params ap;
    kp_submit_params sp;
    assert_int_equal(kp_authorize_params_get(&req, &ap), KP_OUTCOME_INVALID_USERNAME);
    assert_int_equal(kp_submit_params_get(&req, &sp), KP_OUTCOME_INVALID_PARAMS);
}

/* ---- envelope ---- */

static void test_invalid_json(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "{",
        "}",
        "not json",
        "[1,2]",
        "[{\"id\":1,\"method\":\"submit\",\"params\":{}}]",
        "42",
        "\"str\"",
        "null",
        "true",
        "{\"id\":1,}",
        "{'id':1}",
        "{\"id\":1,\"method\":\"submit\",\"params\":{}}x",
        "{\"id\":1,\"method\":\"submit\",\"params\":{}} {\"id\":2}",
        "{\"id\":1,\"method\":\"submit\",\"params\":{}}}",
        "   ",
        /* cut off at every kind of token: cJSON must stop at the length, not past it */
        "{\"id\":12",
        "{\"id\":-",
        "{\"id\":1e",
        "{\"id\":tru",
        "{\"id\":nul",
        "{\"id\":\"abc",
        "{\"id\":\"abc\\",
        "{\"id\":\"\\u12",
        "{\"id\":\"\\ud83d",
        "{\"id\":\"\\ud83d\\ude0",
        "{\"id\"",
        "{\"id",
        "{\"id\":[1,",
        "{\"id\":{\"a\":",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect_fail(lines[i], KP_OUTCOME_INVALID_JSON, 0, 0);

    kp_request req;
    assert_int_equal(parse_n("", 0, &req), KP_OUTCOME_INVALID_JSON);
    assert_false(req.has_id);
}

static void test_nul_byte_is_invalid_json(void **state)
{
    (void)state;
    /* A valid object followed by NUL and garbage, and a NUL inside a string. */
    static const char a[] = "{\"id\":1,\"method\":\"submit\",\"params\":{}}\0garbage";
    static const char b[] = "{\"id\":1,\"method\":\"auth\0orize\",\"params\":{}}";
    kp_request req;
    assert_int_equal(parse_n(a, sizeof(a) - 1, &req), KP_OUTCOME_INVALID_JSON);
    assert_false(req.has_id);
    assert_int_equal(parse_n(b, sizeof(b) - 1, &req), KP_OUTCOME_INVALID_JSON);
    assert_false(req.has_id);
}

static void test_bad_id_answers_null(void **state)
{
    (void)state;
    static const char *const ids[] = {
        NULL, /* missing */
        "null", "\"1\"", "1.5", "-0.5", "true", "false", "[]", "[1]", "{}", "1e300", "-1e300",
        "9007199254740992", "-9007199254740992", "18446744073709551616", "1e16",
        /* integral values, but not integers as written (SPEC §2: an integer has no fraction
         * or exponent) */
        "7.0", "1e3", "1E3", "-0.0", "0e0", "3.00",
    };
    char line[256];
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if (ids[i] == NULL)
            snprintf(line, sizeof(line), "{\"method\":\"submit\",\"params\":{}}");
        else
            snprintf(line, sizeof(line), "{\"id\":%s,\"method\":\"submit\",\"params\":{}}", ids[i]);
        expect_fail(line, KP_OUTCOME_INVALID_REQUEST, 0, 0);
    }
    /* The key is case-sensitive. */
    expect_fail("{\"ID\":1,\"method\":\"submit\",\"params\":{}}", KP_OUTCOME_INVALID_REQUEST, 0, 0);
}

static void test_good_ids(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t value;
    } ids[] = {
        {"0", 0},
        {"-0", 0},
        {"7", 7},
        {"-5", -5},
        {"9007199254740991", 9007199254740991LL},
        {"-9007199254740991", -9007199254740991LL},
    };
    char line[256];
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":%s,\"method\":\"submit\",\"params\":{}}", ids[i].text);
        kp_request req;
        assert_int_equal(parse(line, &req), KP_OUTCOME_OK);
        assert_true(req.has_id);
        assert_int_equal(req.id, ids[i].value);
        assert_int_equal(req.method, KP_METHOD_SUBMIT);
        kp_request_free(&req);
        kp_authorize_params ap;
        assert_int_equal(kp_authorize_params_get(&req, &ap), KP_OUTCOME_INVALID_USERNAME);
    }
}

static void test_bad_method_keeps_id(void **state)
{
    (void)state;
    static const char *const methods[] = {NULL, "5", "null", "true", "[\"submit\"]", "{}"};
    char line[256];
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (methods[i] == NULL)
            snprintf(line, sizeof(line), "{\"id\":41,\"params\":{}}");
        else
            snprintf(line, sizeof(line), "{\"id\":41,\"method\":%s,\"params\":{}}", methods[i]);
        expect_fail(line, KP_OUTCOME_INVALID_REQUEST, 1, 41);
    }
}

static void test_bad_params_keeps_id(void **state)
{
    (void)state;
    static const char *const params[] = {NULL, "[]", "\"x\"", "null", "1", "true"};
    char line[256];
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        if (params[i] == NULL)
            snprintf(line, sizeof(line), "{\"id\":-2,\"method\":\"authorize\"}");
        else
            snprintf(line, sizeof(line), "{\"id\":-2,\"method\":\"authorize\",\"params\":%s}",
                     params[i]);
        expect_fail(line, KP_OUTCOME_INVALID_REQUEST, 1, -2);
    }
}

static void test_unknown_method(void **state)
{
    (void)state;
    expect_fail("{\"id\":3,\"method\":\"foo\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    expect_fail("{\"id\":3,\"method\":\"\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    expect_fail("{\"id\":3,\"method\":\"Authorize\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    expect_fail("{\"id\":3,\"method\":\"submit \",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    expect_fail("{\"id\":3,\"method\":\"job\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
}

static void test_envelope_check_order(void **state)
{
    (void)state;
    /* id first: nothing else matters when it is bad. */
    expect_fail("{\"id\":\"x\",\"method\":5}", KP_OUTCOME_INVALID_REQUEST, 0, 0);
    expect_fail("{\"id\":null,\"method\":\"foo\",\"params\":{}}", KP_OUTCOME_INVALID_REQUEST, 0, 0);
    /* method type before params type. */
    expect_fail("{\"id\":9,\"method\":5,\"params\":[]}", KP_OUTCOME_INVALID_REQUEST, 1, 9);
    /* params type before method name. */
    expect_fail("{\"id\":9,\"method\":\"foo\",\"params\":[]}", KP_OUTCOME_INVALID_REQUEST, 1, 9);
    expect_fail("{\"id\":9,\"method\":\"foo\"}", KP_OUTCOME_INVALID_REQUEST, 1, 9);
}

static void test_methods_and_extra_fields(void **state)
{
    (void)state;
    kp_request req;
    assert_int_equal(parse("{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"a\"}}", &req),
                     KP_OUTCOME_OK);
    assert_int_equal(req.method, KP_METHOD_AUTHORIZE);
    kp_request_free(&req);

    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"params\":{\"x\":[1,{}]},\"extra\":[1,2],"
                           "\"method\":\"submit\",\"id\":2,\"more\":null}",
                           &req),
                     KP_OUTCOME_OK);
    assert_int_equal(req.method, KP_METHOD_SUBMIT);
    assert_int_equal(req.id, 2);
    kp_request_free(&req);

    /* Whitespace around the object is JSON, not garbage. */
    assert_int_equal(parse(" \t{ \"id\" : 3 , \"method\" : \"submit\" , \"params\" : { } } \t", &req),
                     KP_OUTCOME_OK);
    kp_request_free(&req);

    /* Freeing twice is harmless: kp_request_free() only clears the request. */
    kp_request_free(&req);
}

/* Framing strips "\r\n"; the codec sees the bare line. A stray "\r" left at the end is JSON
 * whitespace and harmless either way. */
static void test_crlf_is_framing_business(void **state)
{
    (void)state;
    kp_request req;
    assert_int_equal(parse("{\"id\":1,\"method\":\"submit\",\"params\":{}}", &req), KP_OUTCOME_OK);
    kp_request_free(&req);
    assert_int_equal(parse("{\"id\":1,\"method\":\"submit\",\"params\":{}}\r", &req), KP_OUTCOME_OK);
    kp_request_free(&req);
}

/* ---- authorize params ---- */

/* Builds an authorize line around raw username bytes and returns the params outcome. */
static kp_outcome authorize_raw(const char *name_json, kp_authorize_params *out, char *copy,
                                size_t copy_cap)
{
    char line[2048];
    int n = snprintf(line, sizeof(line),
                     "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":%s}}", name_json);
    assert_true(n > 0 && (size_t)n < sizeof(line));
    kp_request req;
    assert_int_equal(parse(line, &req), KP_OUTCOME_OK);
    kp_authorize_params p = {0};
    kp_outcome oc = kp_authorize_params_get(&req, &p);
    if (oc == KP_OUTCOME_OK) {
        assert_non_null(p.username);
        assert_int_equal(strlen(p.username), p.username_len);
        if (copy != NULL) {
            assert_true(p.username_len < copy_cap);
            memcpy(copy, p.username, p.username_len + 1);
        }
        if (out != NULL)
            *out = p;
    }
    kp_request_free(&req);
    return oc;
}

static kp_outcome authorize_name(const char *raw)
{
    char quoted[1024];
    int n = snprintf(quoted, sizeof(quoted), "\"%s\"", raw);
    assert_true(n > 0 && (size_t)n < sizeof(quoted));
    return authorize_raw(quoted, NULL, NULL, 0);
}

static void test_username_good(void **state)
{
    (void)state;
    static const char *const names[] = {
        "alice",
        "a",
        "with space",
        "h\xc3\xa9llo",             /* é */
        "\xc2\xa0",                 /* U+00A0, first code point after C1 */
        "\xdf\xbf",                 /* U+07FF */
        "\xe0\xa0\x80",             /* U+0800 */
        "\xe6\x97\xa5\xe6\x9c\xac", /* 日本 */
        "\xed\x9f\xbf",             /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",             /* U+E000, just above them */
        "\xef\xbf\xbf",             /* U+FFFF */
        "\xf0\x90\x80\x80",         /* U+10000 */
        "\xf0\x9f\x98\x80",         /* 😀 */
        "\xf4\x8f\xbf\xbf",         /* U+10FFFF */
        "~!@#$%^&*()_+{}|:<>?",
        "quote\\\"back\\\\slash", /* JSON escapes: quote"back\slash */
        "\\u00e9",                /* é via an escape */
        "\\ud83d\\ude00",         /* 😀 via a surrogate pair escape */
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (authorize_name(names[i]) != KP_OUTCOME_OK)
            fail_msg("username %zu rejected", i);
    }

    char copy[512];
    kp_authorize_params p;
    assert_int_equal(authorize_raw("\"quote\\\"back\\\\slash\"", &p, copy, sizeof(copy)),
                     KP_OUTCOME_OK);
    assert_string_equal(copy, "quote\"back\\slash");
    assert_int_equal(p.username_len, 16);
}

static void test_username_length(void **state)
{
    (void)state;
    char name[600];
    memset(name, 'a', 255);
    name[255] = '\0';
    assert_int_equal(authorize_name(name), KP_OUTCOME_OK);
    memset(name, 'a', 256);
    name[256] = '\0';
    assert_int_equal(authorize_name(name), KP_OUTCOME_INVALID_USERNAME);

    /* The limit is in bytes: 85 three-byte characters are 255 bytes, 86 are too many. */
    name[0] = '\0';
    for (int i = 0; i < 85; i++)
        strcat(name, "\xe6\x97\xa5");
    assert_int_equal(strlen(name), 255);
    assert_int_equal(authorize_name(name), KP_OUTCOME_OK);
    strcat(name, "\xe6\x97\xa5");
    assert_int_equal(authorize_name(name), KP_OUTCOME_INVALID_USERNAME);

    assert_int_equal(authorize_name(""), KP_OUTCOME_INVALID_USERNAME);
}

static void test_username_wrong_type(void **state)
{
    (void)state;
    static const char *const values[] = {"5", "null", "true", "[\"a\"]", "{}"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        assert_int_equal(authorize_raw(values[i], NULL, NULL, 0), KP_OUTCOME_INVALID_USERNAME);

    kp_request req;
    assert_int_equal(parse("{\"id\":1,\"method\":\"authorize\",\"params\":{}}", &req), KP_OUTCOME_OK);
    kp_authorize_params p;
    assert_int_equal(kp_authorize_params_get(&req, &p), KP_OUTCOME_INVALID_USERNAME);
    kp_request_free(&req);

    /* Case-sensitive key. */
    assert_int_equal(parse("{\"id\":1,\"method\":\"authorize\",\"params\":{\"Username\":\"a\"}}", &req),
                     KP_OUTCOME_OK);
    assert_int_equal(kp_authorize_params_get(&req, &p), KP_OUTCOME_INVALID_USERNAME);
    kp_request_free(&req);
}

static void test_username_controls(void **state)
{
    (void)state;
    static const char *const names[] = {
        "a\\tb", "\\n", "a\\r", "\\u0001", "\\u001f", "\\u007f", "\\u0080", "\\u009f",
        "a\\u0085b",     /* NEL */
        "x\x01y",        /* raw bytes in the JSON string, which cJSON passes through */
        "x\ty",
        "x\x7fy",
        "x\xc2\x80y",    /* raw U+0080 */
        "x\xc2\x9fy",    /* raw U+009F */
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (authorize_name(names[i]) != KP_OUTCOME_INVALID_USERNAME)
            fail_msg("username %zu accepted", i);
    }
}

static void test_username_bad_utf8(void **state)
{
    (void)state;
    static const char *const names[] = {
        "\x80",                 /* lone continuation */
        "a\xbf",                /* lone continuation */
        "\xc0\x80",             /* overlong NUL */
        "\xc1\xbf",             /* overlong */
        "\xe0\x80\x80",         /* overlong */
        "\xe0\x9f\xbf",         /* overlong U+07FF */
        "\xed\xa0\x80",         /* U+D800 */
        "\xed\xbf\xbf",         /* U+DFFF */
        "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
        "\xf0\x80\x80\x80",     /* overlong */
        "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "\xfe",
        "\xff",
        "\xc3",                 /* truncated at end */
        "a\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3(",                /* bad continuation */
        "\xe2(\xa1",
        "\xe2\x82(",
        "\xf0\x9f(\x80",
        "\xf0\x9f\x98(",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (authorize_name(names[i]) != KP_OUTCOME_INVALID_USERNAME)
            fail_msg("username %zu accepted", i);
    }
}

/* An escaped NUL is a control character like any other: the username is refused, never cut
 * to the "a" before it (issue 9). */
static void test_username_escaped_nul(void **state)
{
    (void)state;
    assert_int_equal(authorize_name("\\u0000"), KP_OUTCOME_INVALID_USERNAME);
    assert_int_equal(authorize_raw("\"a\\u0000b\"", NULL, NULL, 0), KP_OUTCOME_INVALID_USERNAME);
    assert_int_equal(authorize_raw("\"a\\u0000\"", NULL, NULL, 0), KP_OUTCOME_INVALID_USERNAME);
}

/* ---- submit params ---- */

#define NONCE_64 "0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789abcdef0123"

static kp_outcome submit_params(const char *params, kp_submit_params *out, kp_request *keep)
{
    char line[4096];
    int n = snprintf(line, sizeof(line), "{\"id\":5,\"method\":\"submit\",\"params\":%s}", params);
    assert_true(n > 0 && (size_t)n < sizeof(line));
    kp_request req;
    assert_int_equal(parse(line, &req), KP_OUTCOME_OK);
    kp_submit_params p;
    memset(&p, 0, sizeof(p));
    kp_outcome oc = kp_submit_params_get(&req, &p);
    if (out != NULL)
        *out = p;
    if (keep != NULL)
        *keep = req;
    else
        kp_request_free(&req);
    return oc;
}

static void test_submit_good(void **state)
{
    (void)state;
    kp_submit_params p;
    kp_request req;
    assert_int_equal(submit_params("{\"job_id\":12,\"client_nonce\":\"9f0C\",\"result\":\"ab\"}", &p, &req),
                     KP_OUTCOME_OK);
    assert_int_equal(p.job_id, 12);
    assert_string_equal(p.client_nonce, "9f0C");
    assert_int_equal(p.client_nonce_len, 4);
    assert_string_equal(p.result, "ab");
    assert_int_equal(p.result_len, 2);
    kp_request_free(&req);

    /* Any order, extra fields, job ids the protocol (not the codec) rejects. */
    static const char *const ok[] = {
        "{\"result\":\"\",\"x\":1,\"client_nonce\":\"0\",\"job_id\":12}",
        "{\"job_id\":0,\"client_nonce\":\"a\",\"result\":\"zz not hex\"}",
        "{\"job_id\":-1,\"client_nonce\":\"a\",\"result\":\"\"}",
        "{\"job_id\":9007199254740991,\"client_nonce\":\"a\",\"result\":\"\"}",
        "{\"job_id\":-9007199254740991,\"client_nonce\":\"a\",\"result\":\"\"}",
        "{\"job_id\":1,\"client_nonce\":\"" NONCE_64 "\",\"result\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (submit_params(ok[i], NULL, NULL) != KP_OUTCOME_OK)
            fail_msg("%s rejected", ok[i]);
    }

    /* result of any length. */
    char params[3000];
    int n = snprintf(params, sizeof(params), "{\"job_id\":1,\"client_nonce\":\"a\",\"result\":\"");
    memset(params + n, 'f', 2000);
    memcpy(params + n + 2000, "\"}", 3);
    assert_int_equal(submit_params(params, &p, &req), KP_OUTCOME_OK);
    assert_int_equal(p.result_len, 2000);
    kp_request_free(&req);
}

static void test_submit_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* job_id */
        "{\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":1.5,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":43.0,\"client_nonce\":\"a\",\"result\":\"x\"}", /* integral, not an integer */
        "{\"job_id\":4e1,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":\"3\",\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":null,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":true,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":[1],\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":9007199254740992,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":-9007199254740992,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"job_id\":1e300,\"client_nonce\":\"a\",\"result\":\"x\"}",
        "{\"Job_id\":1,\"client_nonce\":\"a\",\"result\":\"x\"}",
        /* client_nonce */
        "{\"job_id\":1,\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"\",\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"xyz\",\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"12 4\",\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"0x12\",\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"abg\",\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"ab\\u00e9\",\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":1234,\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":null,\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":[\"a\"],\"result\":\"x\"}",
        "{\"job_id\":1,\"client_nonce\":\"" NONCE_64 "0\",\"result\":\"x\"}",
        /* result */
        "{\"job_id\":1,\"client_nonce\":\"a\"}",
        "{\"job_id\":1,\"client_nonce\":\"a\",\"result\":5}",
        "{\"job_id\":1,\"client_nonce\":\"a\",\"result\":null}",
        "{\"job_id\":1,\"client_nonce\":\"a\",\"result\":true}",
        "{\"job_id\":1,\"client_nonce\":\"a\",\"result\":[\"x\"]}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (submit_params(bad[i], NULL, NULL) != KP_OUTCOME_INVALID_PARAMS)
            fail_msg("%s accepted", bad[i]);
    }
}

/* ---- issue 9: escaped NULs, integers by grammar, the scanner's edges ---- */

static void test_escaped_nul_is_visible(void **state)
{
    (void)state;
    /* The nonce is not 1..64 hex characters once the NUL is seen. */
    assert_int_equal(submit_params("{\"job_id\":1,\"client_nonce\":\"a3\\u0000zz!!\",\"result\":\"x\"}",
                                   NULL, NULL),
                     KP_OUTCOME_INVALID_PARAMS);
    assert_int_equal(submit_params("{\"job_id\":1,\"client_nonce\":\"a3\\u0000\",\"result\":\"x\"}",
                                   NULL, NULL),
                     KP_OUTCOME_INVALID_PARAMS);
    /* The result keeps its real length: 64 hex digits and junk are 69 bytes, never a hash. */
    kp_submit_params p;
    kp_request req;
    assert_int_equal(submit_params("{\"job_id\":1,\"client_nonce\":\"a3\",\"result\":\"" NONCE_64
                                   "\\u0000junk\"}",
                                   &p, &req),
                     KP_OUTCOME_OK);
    assert_int_equal(p.result_len, 69);
    assert_memory_equal(p.result, NONCE_64 "\0junk", 70);
    kp_request_free(&req);
    /* The method is compared on all its bytes. */
    expect_fail("{\"id\":3,\"method\":\"submit\\u0000x\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    expect_fail("{\"id\":3,\"method\":\"submit\\u0000\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    expect_fail("{\"id\":3,\"method\":\"authorize\\u0000\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
    /* A key is compared on all its bytes too: "id\u0000" is another member. */
    expect_fail("{\"id\\u0000\":3,\"method\":\"submit\",\"params\":{}}", KP_OUTCOME_INVALID_REQUEST, 0, 0);
}

static void test_escaped_names_decode(void **state)
{
    (void)state;
    kp_request req;
    assert_int_equal(parse("{\"\\u0069d\":4,\"method\":\"\\u0073ubmit\",\"par\\u0061ms\":{}}", &req),
                     KP_OUTCOME_OK);
    assert_int_equal(req.id, 4);
    assert_int_equal(req.method, KP_METHOD_SUBMIT);
    kp_request_free(&req);
    kp_submit_params p;
    assert_int_equal(submit_params("{\"job_\\u0069d\":2,\"client_nonce\":\"\\u0041b\",\"result\":\"\\/\\\"\"}",
                                   &p, &req),
                     KP_OUTCOME_OK);
    assert_int_equal(p.job_id, 2);
    assert_string_equal(p.client_nonce, "Ab");
    assert_string_equal(p.result, "/\"");
    kp_request_free(&req);
}

static void test_integers_by_grammar(void **state)
{
    (void)state;
    /* Not JSON at all: leading zeros, a bare sign or dot, a dangling exponent. */
    static const char *const not_json[] = {"0001", "01", "-01", "00", "1.", ".5", "+1", "-",
                                           "1e", "1e+", "1.e3", "0x10", "Infinity", "NaN",
                                           "-Infinity", "1_000", "--1"};
    char line[256];
    for (size_t i = 0; i < sizeof(not_json) / sizeof(not_json[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":%s,\"method\":\"submit\",\"params\":{}}", not_json[i]);
        expect_fail(line, KP_OUTCOME_INVALID_JSON, 0, 0);
        snprintf(line, sizeof(line),
                 "{\"id\":1,\"method\":\"submit\",\"params\":{\"job_id\":%s}}", not_json[i]);
        expect_fail(line, KP_OUTCOME_INVALID_JSON, 0, 0);
    }
    /* JSON numbers, but no integers. */
    static const char *const not_int[] = {"3.0", "1e5", "1E5", "1e+5", "1e-5", "-0.0", "0.5",
                                          "1e400", "-1e400", "2.5e-400"};
    for (size_t i = 0; i < sizeof(not_int) / sizeof(not_int[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":%s,\"method\":\"submit\",\"params\":{}}", not_int[i]);
        expect_fail(line, KP_OUTCOME_INVALID_REQUEST, 0, 0);
        snprintf(line, sizeof(line),
                 "{\"job_id\":%s,\"client_nonce\":\"a\",\"result\":\"x\"}", not_int[i]);
        assert_int_equal(submit_params(line, NULL, NULL), KP_OUTCOME_INVALID_PARAMS);
    }
    /* A huge integer is JSON, just out of range. */
    char huge[600] = "{\"id\":";
    memset(huge + strlen(huge), '9', 500);
    strcpy(huge + 6 + 500, ",\"method\":\"submit\",\"params\":{}}");
    expect_fail(huge, KP_OUTCOME_INVALID_REQUEST, 0, 0);
    /* -0 is an integer (0). */
    kp_submit_params p;
    assert_int_equal(submit_params("{\"job_id\":-0,\"client_nonce\":\"a\",\"result\":\"x\"}", &p, NULL),
                     KP_OUTCOME_OK);
    assert_int_equal(p.job_id, 0);
}

/* Builds {"id":1,"method":"submit","params":{},"x":<levels arrays>} and parses it. */
static kp_outcome parse_nested(size_t levels, char open, char close)
{
    static char line[300000];
    size_t at = (size_t)snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"submit\",\"params\":{},\"x\":");
    assert_true(at + 2 * levels + 2 < sizeof(line));
    for (size_t i = 0; i < levels; i++) {
        if (open == '{' && i > 0)
            at += (size_t)snprintf(line + at, sizeof(line) - at, "\"k\":");
        line[at++] = open;
    }
    for (size_t i = 0; i < levels; i++)
        line[at++] = close;
    line[at++] = '}';
    kp_request req;
    return parse_n(line, at, &req);
}

/* Builds {"id":1,"method":"submit","params":{"a":<levels arrays>}} and parses it. */
static kp_outcome parse_nested_in_params(size_t levels)
{
    char line[512];
    size_t at = (size_t)snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"submit\",\"params\":{\"a\":");
    assert_true(at + 2 * levels + 2 < sizeof(line));
    memset(line + at, '[', levels);
    memset(line + at + levels, ']', levels);
    at += 2 * levels;
    memcpy(line + at, "}}", 2);
    kp_request req;
    return parse_n(line, at + 2, &req);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    /* The line's object is level 1: 31 more levels are the most allowed. */
    assert_int_equal(parse_nested(31, '[', ']'), KP_OUTCOME_OK);
    assert_int_equal(parse_nested(32, '[', ']'), KP_OUTCOME_INVALID_JSON);
    assert_int_equal(parse_nested(31, '{', '}'), KP_OUTCOME_OK);
    assert_int_equal(parse_nested(32, '{', '}'), KP_OUTCOME_INVALID_JSON);
    /* Far deeper than any stack would take if the limit were missing. */
    assert_int_equal(parse_nested(100000, '[', ']'), KP_OUTCOME_INVALID_JSON);
    /* params counts as level 2: deep nesting inside it is limited the same way. */
    assert_int_equal(parse_nested_in_params(30), KP_OUTCOME_OK);
    assert_int_equal(parse_nested_in_params(31), KP_OUTCOME_INVALID_JSON);
}

static void test_string_escapes(void **state)
{
    (void)state;
    /* Every simple escape, and \u in 1, 2, 3 and (a pair) 4 UTF-8 bytes. */
    kp_submit_params p;
    kp_request req;
    assert_int_equal(submit_params("{\"job_id\":1,\"client_nonce\":\"a\",\"result\":"
                                   "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00\\uD83D\\uDE00\"}",
                                   &p, &req),
                     KP_OUTCOME_OK);
    assert_int_equal(p.result_len, 8 + 1 + 2 + 3 + 4 + 4);
    assert_memory_equal(p.result, "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
                        p.result_len + 1);
    kp_request_free(&req);

    /* Broken escapes anywhere in the line, even in members nobody reads. */
    static const char *const bad[] = {
        "\\ud83d",         /* lone high surrogate */
        "\\ude00",         /* lone low surrogate */
        "\\ud83dx",        /* high surrogate, then a plain character */
        "\\ud83d\\u0041",  /* high surrogate, then no low one */
        "\\ud83d\\ud83d",  /* two high surrogates */
        "\\ud83d\\n",
        "\\u00zz",         /* not hex (cJSON let this one through) */
        "\\u12",
        "\\x",
        "\\U0041",
        "\\'",
        "\\0",
    };
    char line[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"submit\",\"params\":{},\"x\":\"%s\"}", bad[i]);
        expect_fail(line, KP_OUTCOME_INVALID_JSON, 0, 0);
        snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"submit\",\"params\":{},\"%s\":1}", bad[i]);
        expect_fail(line, KP_OUTCOME_INVALID_JSON, 0, 0);
    }
}

/* Raw bytes in strings: a NUL is refused anywhere; other control characters and bytes that are
 * not UTF-8 pass the scanner (documented in docs/protocol.md), and the field checks judge them. */
static void test_raw_bytes_in_strings(void **state)
{
    (void)state;
    static const char a[] = "{\"id\":1,\"method\":\"submit\",\"params\":{},\"x\":\"a\0b\"}";
    kp_request req;
    assert_int_equal(parse_n(a, sizeof(a) - 1, &req), KP_OUTCOME_INVALID_JSON);
    assert_int_equal(parse("{\"id\":1,\"method\":\"submit\",\"params\":{},\"x\":\"\x01\x1f\t\xff\xc0\x80\"}",
                           &req),
                     KP_OUTCOME_OK);
    assert_int_equal(submit_params("{\"job_id\":1,\"client_nonce\":\"a\xff\",\"result\":\"x\"}", NULL, NULL),
                     KP_OUTCOME_INVALID_PARAMS);
    expect_fail("{\"id\":3,\"method\":\"submit\xff\",\"params\":{}}", KP_OUTCOME_UNKNOWN_METHOD, 1, 3);
}

static void test_whitespace_and_framing_edges(void **state)
{
    (void)state;
    kp_request req;
    /* The four JSON whitespace bytes, everywhere a token may be separated. */
    assert_int_equal(parse("\r\n\t {\r\n\t \"id\"\r\n\t :\r\n\t 1\r\n\t ,\"method\":\"submit\",\"params\""
                           ":\r\n\t {\r\n\t }\r\n\t }\r\n\t ",
                           &req),
                     KP_OUTCOME_OK);
    /* Other control bytes are not whitespace (cJSON skipped them all). */
    expect_fail("\f{\"id\":1,\"method\":\"submit\",\"params\":{}}", KP_OUTCOME_INVALID_JSON, 0, 0);
    expect_fail("{\"id\":1,\v\"method\":\"submit\",\"params\":{}}", KP_OUTCOME_INVALID_JSON, 0, 0);
    expect_fail("{\"id\":1,\"method\":\"submit\",\"params\":{}}\x01", KP_OUTCOME_INVALID_JSON, 0, 0);
    /* Top-level values that are not an object, and trailing garbage of every kind. */
    static const char *const bad[] = {
        "", " ", "\r", "[]", "1", "-1", "\"{}\"", "{}{}", "{} 1", "{},", "{}]", "{}\"", "{}x",
        "{\"id\":1,\"method\":\"submit\",\"params\":{}}null",
        "{\"a\":1 \"b\":2}", "{\"a\" 1}", "{\"a\":}", "{,}", "{\"a\":1,,\"b\":2}", "{a:1}",
        "{\"a\":[1 2]}", "{\"a\":[,1]}", "{\"a\":[1,]}", "{\"a\":tRue}", "{\"a\":nulll}",
        "{\"a\":\"x\"\"y\"}", "{1:2}", "{\"a\":{\"b\"}}", "{\"a\":[}", "{\"a\":]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_fail(bad[i], KP_OUTCOME_INVALID_JSON, 0, 0);
}

/* Duplicate keys: the first occurrence counts, as it did with cJSON (docs/protocol.md). */
static void test_duplicate_keys_first_wins(void **state)
{
    (void)state;
    kp_request req;
    assert_int_equal(parse("{\"id\":1,\"id\":2,\"method\":\"submit\",\"method\":\"x\",\"params\":{}}", &req),
                     KP_OUTCOME_OK);
    assert_int_equal(req.id, 1);
    assert_int_equal(req.method, KP_METHOD_SUBMIT);
    expect_fail("{\"id\":\"x\",\"id\":1,\"method\":\"submit\",\"params\":{}}", KP_OUTCOME_INVALID_REQUEST, 0, 0);
    expect_fail("{\"id\":1,\"method\":\"submit\",\"params\":[],\"params\":{}}", KP_OUTCOME_INVALID_REQUEST, 1, 1);

    /* Members of params come from the first params object only. */
    kp_authorize_params ap;
    char name[16];
    assert_int_equal(authorize_raw("\"a\",\"username\":\"b\"", &ap, name, sizeof(name)), KP_OUTCOME_OK);
    assert_string_equal(name, "a");
    assert_int_equal(parse("{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"a\"},"
                           "\"params\":{\"username\":\"b\"}}",
                           &req),
                     KP_OUTCOME_OK);
    assert_int_equal(kp_authorize_params_get(&req, &ap), KP_OUTCOME_OK);
    assert_string_equal(ap.username, "a");
    assert_int_equal(parse("{\"id\":1,\"method\":\"authorize\",\"params\":{},"
                           "\"params\":{\"username\":\"b\"}}",
                           &req),
                     KP_OUTCOME_OK);
    assert_int_equal(kp_authorize_params_get(&req, &ap), KP_OUTCOME_INVALID_USERNAME);
    /* Members of nested objects never stand in for the envelope's. */
    expect_fail("{\"x\":{\"id\":1},\"method\":\"submit\",\"params\":{}}", KP_OUTCOME_INVALID_REQUEST, 0, 0);
    assert_int_equal(submit_params("{\"x\":{\"job_id\":1,\"client_nonce\":\"a\",\"result\":\"x\"}}", NULL, NULL),
                     KP_OUTCOME_INVALID_PARAMS);
}

/* The getters answer only for the method that was parsed. */
static void test_getters_follow_the_method(void **state)
{
    (void)state;
    kp_request req;
    kp_authorize_params ap;
    kp_submit_params sp;
    assert_int_equal(parse("{\"id\":1,\"method\":\"submit\",\"params\":{\"username\":\"a\",\"job_id\":1,"
                           "\"client_nonce\":\"a\",\"result\":\"x\"}}",
                           &req),
                     KP_OUTCOME_OK);
    assert_int_equal(kp_submit_params_get(&req, &sp), KP_OUTCOME_OK);
    assert_int_equal(kp_authorize_params_get(&req, &ap), KP_OUTCOME_INVALID_USERNAME);
    assert_int_equal(parse("{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"a\",\"job_id\":1,"
                           "\"client_nonce\":\"a\",\"result\":\"x\"}}",
                           &req),
                     KP_OUTCOME_OK);
    assert_int_equal(kp_authorize_params_get(&req, &ap), KP_OUTCOME_OK);
    assert_int_equal(kp_submit_params_get(&req, &sp), KP_OUTCOME_INVALID_PARAMS);
}

/* A scratch smaller than the line is a caller bug; it must never be written past. (Release
 * builds only: debug builds assert.) */
static void test_scratch_too_small(void **state)
{
    (void)state;
#ifdef NDEBUG
    const char *line = "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"alice\"}}";
    char scratch[8];
    kp_request req;
    assert_int_equal(kp_request_parse(line, strlen(line), scratch, sizeof(scratch), &req),
                     KP_OUTCOME_INVALID_JSON);
#endif
}

/* ---- output lines ---- */

static void expect_response(bool has_id, int64_t id, kp_outcome oc, const char *want)
{
    char buf[KP_RESPONSE_MAX];
    size_t n = kp_format_response(buf, has_id, id, oc);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
}

static void test_format_response(void **state)
{
    (void)state;
    expect_response(true, 7, KP_OUTCOME_OK, "{\"id\":7,\"result\":true}\n");
    expect_response(true, 7, KP_OUTCOME_TASK_EXPIRED,
                    "{\"id\":7,\"result\":false,\"error\":\"Task expired\"}\n");
    expect_response(false, 7, KP_OUTCOME_INVALID_JSON,
                    "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}\n");
    expect_response(false, 0, KP_OUTCOME_OK, "{\"id\":null,\"result\":true}\n");
    expect_response(true, 0, KP_OUTCOME_OK, "{\"id\":0,\"result\":true}\n");
    expect_response(true, -3, KP_OUTCOME_UNKNOWN_METHOD,
                    "{\"id\":-3,\"result\":false,\"error\":\"Unknown method\"}\n");
    expect_response(true, INT64_MIN, KP_OUTCOME_TOO_FREQUENT,
                    "{\"id\":-9223372036854775808,\"result\":false,"
                    "\"error\":\"Submission too frequent\"}\n");
}

static void test_format_response_every_outcome_fits(void **state)
{
    (void)state;
    for (int oc = 0; oc < KP_OUTCOME_COUNT; oc++) {
        char want[256];
        const char *wire = kp_outcome_wire((kp_outcome)oc);
        if (wire == NULL)
            snprintf(want, sizeof(want), "{\"id\":-9223372036854775808,\"result\":true}\n");
        else
            snprintf(want, sizeof(want),
                     "{\"id\":-9223372036854775808,\"result\":false,\"error\":\"%s\"}\n", wire);
        /* Guard bytes after KP_RESPONSE_MAX catch an overflow even without ASan. */
        char buf[KP_RESPONSE_MAX + 16];
        memset(buf, 'G', sizeof(buf));
        size_t n = kp_format_response(buf, true, INT64_MIN, (kp_outcome)oc);
        assert_true(n < KP_RESPONSE_MAX);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(buf, want, n);
        for (size_t i = KP_RESPONSE_MAX; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'G');
    }
}

static void test_format_job(void **state)
{
    (void)state;
    char buf[128];
    size_t n = kp_format_job(buf, sizeof(buf), 12, "00112233445566778899aabbccddeeff");
    const char *want = "{\"id\":null,\"method\":\"job\",\"params\":{\"job_id\":12,"
                       "\"server_nonce\":\"00112233445566778899aabbccddeeff\"}}\n";
    assert_int_equal(n, strlen(want));
    assert_string_equal(buf, want);

    /* The documented cap of 128 holds the widest job id. */
    n = kp_format_job(buf, sizeof(buf), INT64_MIN, "00112233445566778899aabbccddeeff");
    assert_true(n > 0 && n < sizeof(buf));
    assert_int_equal(buf[n - 1], '\n');

    /* Too small: nothing usable, reported as 0 rather than a cut line. */
    assert_int_equal(kp_format_job(buf, strlen(want), 12, "00112233445566778899aabbccddeeff"), 0);
    assert_int_equal(kp_format_job(buf, strlen(want) + 1, 12, "00112233445566778899aabbccddeeff"),
                     strlen(want));
}

/* The job line must itself be a message a client's JSON parser accepts; our parser says it is
 * an object with a null id (hence Invalid request for a server). */
static void test_job_line_is_json(void **state)
{
    (void)state;
    char buf[128];
    size_t n = kp_format_job(buf, sizeof(buf), 1, "ffeeddccbbaa99887766554433221100");
    kp_request req;
    assert_int_equal(parse_n(buf, n - 1, &req), KP_OUTCOME_INVALID_REQUEST);
    assert_false(req.has_id);
}

/* ---- outcome table ---- */

static void test_outcome_wire_strings(void **state)
{
    (void)state;
    static const char *const want[KP_OUTCOME_COUNT] = {
        [KP_OUTCOME_OK] = NULL,
        [KP_OUTCOME_INVALID_JSON] = "Invalid JSON",
        [KP_OUTCOME_INVALID_REQUEST] = "Invalid request",
        [KP_OUTCOME_UNKNOWN_METHOD] = "Unknown method",
        [KP_OUTCOME_INVALID_USERNAME] = "Invalid username",
        [KP_OUTCOME_ALREADY_AUTHORIZED] = "Already authorized",
        [KP_OUTCOME_UNAUTHORIZED] = "Unauthorized",
        [KP_OUTCOME_INVALID_PARAMS] = "Invalid params",
        [KP_OUTCOME_TASK_NOT_EXIST] = "Task does not exist",
        [KP_OUTCOME_TASK_EXPIRED] = "Task expired",
        [KP_OUTCOME_TOO_FREQUENT] = "Submission too frequent",
        [KP_OUTCOME_DUPLICATE] = "Duplicate submission",
        [KP_OUTCOME_INVALID_RESULT] = "Invalid result",
        [KP_OUTCOME_LOW_DIFFICULTY] = "Low difficulty share",
    };
    assert_null(kp_outcome_wire(KP_OUTCOME_OK));
    for (int oc = 1; oc < KP_OUTCOME_COUNT; oc++) {
        assert_non_null(want[oc]);
        assert_non_null(kp_outcome_wire((kp_outcome)oc));
        assert_string_equal(kp_outcome_wire((kp_outcome)oc), want[oc]);
    }
    assert_null(kp_outcome_wire(KP_OUTCOME_COUNT));
    assert_null(kp_outcome_wire((kp_outcome)-1));
}

static void test_outcome_labels(void **state)
{
    (void)state;
    assert_string_equal(kp_outcome_label(KP_OUTCOME_OK), "ok");
    assert_string_equal(kp_outcome_label(KP_OUTCOME_TASK_EXPIRED), "task_expired");
    for (int a = 0; a < KP_OUTCOME_COUNT; a++) {
        const char *la = kp_outcome_label((kp_outcome)a);
        assert_non_null(la);
        assert_true(la[0] != '\0');
        /* Prometheus label values are free text, but keep them plain snake_case. */
        for (const char *p = la; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
        for (int b = a + 1; b < KP_OUTCOME_COUNT; b++)
            assert_string_not_equal(la, kp_outcome_label((kp_outcome)b));
    }
    assert_non_null(kp_outcome_label(KP_OUTCOME_COUNT));
}

static void test_outcome_malformed(void **state)
{
    (void)state;
    for (int oc = 0; oc < KP_OUTCOME_COUNT; oc++) {
        int want = oc == KP_OUTCOME_INVALID_JSON || oc == KP_OUTCOME_INVALID_REQUEST ||
                   oc == KP_OUTCOME_UNKNOWN_METHOD || oc == KP_OUTCOME_INVALID_PARAMS;
        assert_int_equal(kp_outcome_is_malformed((kp_outcome)oc) != 0, want);
    }
    assert_int_equal(kp_outcome_is_malformed(KP_OUTCOME_COUNT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_nul_byte_is_invalid_json),
        cmocka_unit_test(test_bad_id_answers_null),
        cmocka_unit_test(test_good_ids),
        cmocka_unit_test(test_bad_method_keeps_id),
        cmocka_unit_test(test_bad_params_keeps_id),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_envelope_check_order),
        cmocka_unit_test(test_methods_and_extra_fields),
        cmocka_unit_test(test_crlf_is_framing_business),
        cmocka_unit_test(test_username_good),
        cmocka_unit_test(test_username_length),
        cmocka_unit_test(test_username_wrong_type),
        cmocka_unit_test(test_username_controls),
        cmocka_unit_test(test_username_bad_utf8),
        cmocka_unit_test(test_username_escaped_nul),
        cmocka_unit_test(test_submit_good),
        cmocka_unit_test(test_submit_bad),
        cmocka_unit_test(test_escaped_nul_is_visible),
        cmocka_unit_test(test_escaped_names_decode),
        cmocka_unit_test(test_integers_by_grammar),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_raw_bytes_in_strings),
        cmocka_unit_test(test_whitespace_and_framing_edges),
        cmocka_unit_test(test_duplicate_keys_first_wins),
        cmocka_unit_test(test_getters_follow_the_method),
        cmocka_unit_test(test_scratch_too_small),
        cmocka_unit_test(test_format_response),
        cmocka_unit_test(test_format_response_every_outcome_fits),
        cmocka_unit_test(test_format_job),
        cmocka_unit_test(test_job_line_is_json),
        cmocka_unit_test(test_outcome_wire_strings),
        cmocka_unit_test(test_outcome_labels),
        cmocka_unit_test(test_outcome_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, free_scratch);
}
