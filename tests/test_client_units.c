/* Unit tests for kupool-client's pure parts: -addr and -src parsing, the submit's result and
 * request line, nonces, flags, -mix, the latency histogram, backoff, and the summary's JSON.
 * The cmd/kupool-client sources are compiled into this binary (tests/CMakeLists.txt). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testsupport.h"

#include "client_addr.h"
#include "client_options.h"
#include "client_search.h"
#include "client_session.h"
#include "client_submit.h"
#include "client_summary.h"
#include "histogram.h"
#include "kupool/error.h"

/* ---- -addr ---- */

static kc_addr parse_ok(const char *text)
{
    kc_addr a;
    const char *why = NULL;
    int rc = kc_addr_parse(text, &a, &why);
    if (rc != 0)
        fail_msg("\"%s\" did not parse: %s", text, why ? why : "?");
    return a;
}

static void test_addr_forms(void **state)
{
    kc_addr a = parse_ok("127.0.0.1:8080");
    assert_int_equal(a.scheme, KC_SCHEME_TCP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 8080);
    assert_string_equal(a.path, "");

    a = parse_ok("localhost:9");
    assert_string_equal(a.host, "localhost");
    assert_int_equal(a.port, 9);

    a = parse_ok(":8080"); /* like Go's net.Dial: this machine */
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 8080);

    a = parse_ok("[::1]:7000");
    assert_int_equal(a.scheme, KC_SCHEME_TCP);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7000);

    a = parse_ok("tcp://10.0.0.5:65535");
    assert_int_equal(a.scheme, KC_SCHEME_TCP);
    assert_string_equal(a.host, "10.0.0.5");
    assert_int_equal(a.port, 65535);
    a = parse_ok("TCP://h:1/"); /* a lone slash is harmless */
    assert_int_equal(a.scheme, KC_SCHEME_TCP);

    a = parse_ok("ws://127.0.0.1:8000/kupool");
    assert_int_equal(a.scheme, KC_SCHEME_WS);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 8000);
    assert_string_equal(a.path, "/kupool");

    a = parse_ok("ws://example.org"); /* scheme's port, path "/" */
    assert_int_equal(a.port, 80);
    assert_string_equal(a.path, "/");
    a = parse_ok("ws://h:1?token=x");
    assert_string_equal(a.path, "/?token=x");
    a = parse_ok("ws://[::1]:81/a/b?c");
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 81);
    assert_string_equal(a.path, "/a/b?c");
    a = parse_ok("wss://secure.example/x");
    assert_int_equal(a.scheme, KC_SCHEME_WSS);
    assert_int_equal(a.port, 443);
    assert_string_equal(kc_scheme_name(a.scheme), "wss");
    a = parse_ok("tls://pool.example:8443");
    assert_int_equal(a.scheme, KC_SCHEME_TLS);
    assert_int_equal(a.port, 8443);
    assert_string_equal(a.path, "");
    assert_string_equal(kc_scheme_name(a.scheme), "tls");
}

static void test_addr_errors(void **state)
{
    static const char *const bad[] = {
        "",
        "127.0.0.1",          /* no port */
        "127.0.0.1:",         /* empty port */
        "127.0.0.1:0",        /* port 0 */
        "127.0.0.1:65536",    /* too big */
        "127.0.0.1:80x",      /* junk */
        "::1:8080",           /* IPv6 without brackets */
        "http://h:1",         /* unknown scheme */
        "tcp://h",            /* tcp needs a port */
        "tcp://h:1/path",     /* tcp has no path */
        "tls://h",            /* tls needs a port */
        "tls://h:1/path",     /* tls has no path */
        "h:1/path",           /* a path needs ws:// */
        "ws://user@h:1/",     /* no user info */
        "ws://h:1/#frag",     /* no fragment */
        "ws://",              /* no host */
        "ws://[::1/",         /* broken brackets */
        "a b:1",              /* spaces */
        "h:1\n",              /* control characters */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kc_addr a;
        const char *why = NULL;
        if (kc_addr_parse(bad[i], &a, &why) != KP_EINVAL)
            fail_msg("\"%s\" parsed but should not", bad[i]);
        assert_non_null(why);
    }
}

static void test_addr_host_header(void **state)
{
    char buf[300];
    kc_addr a = parse_ok("ws://127.0.0.1:8000/x");
    assert_int_equal(kc_addr_host_header(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "127.0.0.1:8000");
    a = parse_ok("ws://[::1]:81/");
    assert_int_equal(kc_addr_host_header(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "[::1]:81");
    assert_int_equal(kc_addr_host_header(&a, buf, 5), KP_EINVAL);
}

static void test_addr_resolve(void **state)
{
    struct sockaddr_storage ss;
    const char *why = NULL;
    kc_addr a = parse_ok("127.0.0.1:8080");
    assert_int_equal(kc_addr_resolve(&a, &ss, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    assert_int_equal(ntohs(in->sin_port), 8080);
    assert_int_equal(ntohl(in->sin_addr.s_addr), 0x7f000001u);
    a = parse_ok("localhost:1"); /* IPv4 preferred */
    assert_int_equal(kc_addr_resolve(&a, &ss, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    /* (No lookup of a missing name: without a reachable DNS server it takes seconds.) */
}

/* ---- -src ---- */

static void test_src_range(void **state)
{
    kc_src_range r;
    const char *why = NULL;
    assert_int_equal(kc_src_range_parse("127.0.0.2-127.0.0.9", &r, &why), 0);
    assert_int_equal(r.first, 0x7f000002u);
    assert_int_equal(r.last, 0x7f000009u);
    assert_int_equal(kc_src_range_count(&r), 8);

    assert_int_equal(kc_src_range_parse("127.0.0.5", &r, &why), 0);
    assert_int_equal(kc_src_range_count(&r), 1);

    assert_int_equal(kc_src_range_parse("127.0.0.255-127.0.1.1", &r, &why), 0); /* crosses */
    assert_int_equal(kc_src_range_count(&r), 3);

    assert_int_equal(kc_src_range_parse("127.0.0.0-127.0.255.255", &r, &why), 0); /* 65536 */
    assert_int_equal(kc_src_range_count(&r), 65536);

    static const char *const bad[] = {"", "127.0.0.9-127.0.0.2", "127.0.0.1-", "-127.0.0.1",
                                      "127.0.0.256", "::1", "127.0.0.0-127.1.0.0", "localhost",
                                      "127.0.0.1-127.0.0.2-127.0.0.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (kc_src_range_parse(bad[i], &r, &why) != KP_EINVAL)
            fail_msg("-src \"%s\" parsed but should not", bad[i]);
        assert_non_null(why);
    }
}

/* ---- results, lines, nonces ---- */

static void test_compute_result(void **state)
{
    kp_hasher h;
    assert_int_equal(kp_hasher_init(&h), 0);
    char out[KC_RESULT_HEX + 1];
    /* docs/protocol.md's example: printf '%s%s' 2c0f…f6 00ff10 | sha256sum */
    assert_int_equal(kc_compute_result(&h, "2c0f9e3b5a4d6c7e8f90a1b2c3d4e5f6", "00ff10", out), 0);
    assert_string_equal(out, "3adfea3219eac9c1f7658b64889bd2bc21a7adafd0d7213e8c872ea72ec64a3f");
    assert_int_equal(kc_compute_result(&h, "00000000000000000000000000000000", "0", out), 0);
    assert_string_equal(out, "54f05a87f5b881780cdc40e3fddfebf72e3ba7e5f65405ab121c7f22d9849ab4");

    /* What the client computes is what the server's checker accepts, and what the test
     * support's independent SHA-256 computes. */
    kc_nonce_seq seq;
    assert_int_equal(kc_nonce_seq_seed(&seq), 0);
    const char *server_nonce = "ffeeddccbbaa99887766554433221100";
    for (int i = 0; i < 100; i++) {
        char nonce[KC_NONCE_HEX + 1], want[65];
        kc_nonce_next(&seq, nonce);
        assert_int_equal(kc_compute_result(&h, server_nonce, nonce, out), 0);
        kp_test_result(server_nonce, nonce, want);
        assert_string_equal(out, want);
        assert_true(kp_hasher_check(&h, server_nonce, strlen(server_nonce), nonce, strlen(nonce),
                                    out, strlen(out)));
    }
    kp_hasher_free(&h);
}

static void test_format_submit(void **state)
{
    char line[KC_SUBMIT_LINE_MAX];
    const char *result = "3adfea3219eac9c1f7658b64889bd2bc21a7adafd0d7213e8c872ea72ec64a3f";
    size_t n = kc_format_submit(line, 42, 7, "00ff10", result);
    assert_true(n > 0);
    assert_int_equal(n, strlen(line));
    assert_string_equal(line, "{\"id\":42,\"method\":\"submit\",\"params\":{\"job_id\":7,"
                              "\"client_nonce\":\"00ff10\",\"result\":\"3adfea3219eac9c1f7658b64889"
                              "bd2bc21a7adafd0d7213e8c872ea72ec64a3f\"}}\n");
    cJSON *root = cJSON_ParseWithLength(line, n - 1);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "method")->valuestring, "submit");
    cJSON_Delete(root);

    /* The longest ids still fit. */
    char big_nonce[65];
    memset(big_nonce, 'a', 64);
    big_nonce[64] = '\0';
    assert_true(kc_format_submit(line, 9007199254740991LL, 9007199254740991LL, big_nonce, result) > 0);

    n = kc_format_authorize(line, sizeof(line), 1, "alice");
    assert_string_equal(line, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"alice\"}}\n");
    assert_int_equal(kc_format_authorize(line, 10, 1, "alice"), 0); /* does not fit */
}

static int is_lower_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_nonces(void **state)
{
    enum { N = 20000 };
    kc_nonce_seq seq;
    assert_int_equal(kc_nonce_seq_seed(&seq), 0);
    char(*all)[KC_NONCE_HEX + 1] = malloc(N * sizeof(*all));
    assert_non_null(all);
    for (int i = 0; i < N; i++) {
        kc_nonce_next(&seq, all[i]);
        assert_int_equal(strlen(all[i]), KC_NONCE_HEX);
        assert_true(is_lower_hex(all[i]));
    }
    qsort(all, N, sizeof(*all), cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(all[i - 1], all[i]);
    free(all);

    /* Two sessions seeded separately do not start alike. */
    kc_nonce_seq a, b;
    char na[KC_NONCE_HEX + 1], nb[KC_NONCE_HEX + 1];
    assert_int_equal(kc_nonce_seq_seed(&a), 0);
    assert_int_equal(kc_nonce_seq_seed(&b), 0);
    kc_nonce_next(&a, na);
    kc_nonce_next(&b, nb);
    assert_string_not_equal(na, nb);

    for (int i = 0; i < 1000; i++) {
        double u = kc_random_unit(&seq);
        assert_true(u >= 0.0 && u < 1.0);
    }
}

static void test_username_ok(void **state)
{
    char long_name[300];
    memset(long_name, 'x', sizeof(long_name));
    long_name[255] = '\0';
    assert_true(kc_username_ok("alice"));
    assert_true(kc_username_ok("bob-42 ü"));
    assert_true(kc_username_ok(long_name));
    long_name[255] = 'x';
    long_name[256] = '\0';
    assert_false(kc_username_ok(long_name));
    assert_false(kc_username_ok(""));
    assert_false(kc_username_ok("a\"b"));
    assert_false(kc_username_ok("a\\b"));
    assert_false(kc_username_ok("a\tb"));
}

/* ---- flags ---- */

static int parse_args(kc_options *o, const char *const *args, char *errbuf, size_t cap)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "kupool-client";
    for (size_t i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    FILE *out = fopen("/dev/null", "w");
    FILE *err = fmemopen(errbuf, cap, "w");
    assert_non_null(out);
    assert_non_null(err);
    int rc = kc_options_parse(o, argc, argv, out, err);
    fclose(out);
    fclose(err);
    return rc;
}

static void test_options(void **state)
{
    kc_options o;
    char err[512] = "";
    const char *const none[] = {NULL};
    assert_int_equal(parse_args(&o, none, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_string_equal(o.addr.host, "127.0.0.1");
    assert_int_equal(o.addr.port, 8080);
    assert_string_equal(o.username, "alice");
    assert_int_equal(o.sessions, 0);
    assert_int_equal(o.duration_ms, 0); /* demo: until a signal */
    assert_int_equal(o.pipeline, 1);
    assert_false(o.json);
    assert_false(o.rate_max);
    assert_true(o.hashrate == 0); /* demo: as fast as one core goes */
    assert_int_equal(o.min_submit_interval_ms, 1000);

    const char *const load[] = {"-addr", "ws://127.0.0.1:9/kp", "--n", "2000", "-rate=0",
                                "-pipeline", "16", "-src", "127.0.0.2-127.0.0.9", "-json",
                                "-connect_rate=500", "-username", "bob", NULL};
    assert_int_equal(parse_args(&o, load, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_int_equal(o.addr.scheme, KC_SCHEME_WS);
    assert_int_equal(o.sessions, 2000);
    assert_int_equal(o.duration_ms, 10000); /* load mode's default */
    assert_true(o.rate == 0.0 && !o.rate_max);
    assert_int_equal(o.pipeline, 16);
    assert_true(o.has_src);
    assert_int_equal(kc_src_range_count(&o.src), 8);
    assert_true(o.json);
    assert_int_equal(o.connect_rate, 500);
    assert_string_equal(o.username, "bob");
    assert_true(o.hashrate == 100); /* load mode's default (SPEC §8) */

    const char *const hr[] = {"-n", "3", "-hashrate", "2.5e5", "-min_submit_interval", "250ms",
                              NULL};
    assert_int_equal(parse_args(&o, hr, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_true(o.hashrate == 250000);
    assert_int_equal(o.min_submit_interval_ms, 250);
    const char *const hr_max[] = {"-n", "3", "-hashrate", "max", "-min_submit_interval=0", NULL};
    assert_int_equal(parse_args(&o, hr_max, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_true(o.hashrate == 0);
    assert_int_equal(o.min_submit_interval_ms, 0);
    const char *const demo_capped[] = {"-hashrate", "1000", NULL};
    assert_int_equal(parse_args(&o, demo_capped, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_true(o.hashrate == 1000);

    const char *const max[] = {"-n", "5", "-rate", "max", "-duration", "1m30s", "-json=false",
                               NULL};
    assert_int_equal(parse_args(&o, max, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_true(o.rate_max);
    assert_int_equal(o.duration_ms, 90000);
    assert_false(o.json);

    const char *const mix[] = {"-n", "1", "-mix", "duplicate=0.1,invalid=0.2,frequent=0.05", NULL};
    assert_int_equal(parse_args(&o, mix, err, sizeof(err)), KC_OPTIONS_RUN);
    assert_true(fabs(o.mix.duplicate - 0.1) < 1e-12);
    assert_true(fabs(o.mix.invalid - 0.2) < 1e-12);
    assert_true(fabs(o.mix.frequent - 0.05) < 1e-12);

    const char *const help[] = {"-h", NULL};
    assert_int_equal(parse_args(&o, help, err, sizeof(err)), KC_OPTIONS_HELP);
    const char *const version[] = {"--version", NULL};
    assert_int_equal(parse_args(&o, version, err, sizeof(err)), KC_OPTIONS_VERSION);
}

static void test_options_errors(void **state)
{
    static const char *const cases[][4] = {
        {"-addr", "http://x:1", NULL},
        {"-addr", NULL},
        {"-n", "-3", NULL},
        {"-n", "abc", NULL},
        {"-rate", "fast", NULL},
        {"-rate", "-1", NULL},
        {"-pipeline", "0", NULL},
        {"-duration", "10", NULL}, /* Go durations need a unit */
        {"-src", "127.0.0.9-127.0.0.1", NULL},
        {"-mix", "duplicate=2", NULL},
        {"-mix", "dup=0.1", NULL},
        {"-mix", "duplicate=0.6,invalid=0.6", NULL},
        {"-json=maybe", NULL},
        {"-nosuchflag", NULL},
        {"stray", NULL},
        {"-username", "a\"b", NULL},
        {"-hashrate", "0", NULL},
        {"-hashrate", "-5", NULL},
        {"-hashrate", "fast", NULL},
        {"-hashrate", "", NULL},
        {"-min_submit_interval", "1", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kc_options o;
        char err[512] = "";
        int rc = parse_args(&o, cases[i], err, sizeof(err));
        if (rc != KP_EINVAL)
            fail_msg("case %zu (%s) returned %d", i, cases[i][0], rc);
        /* One line that names the program. */
        assert_non_null(strstr(err, "kupool-client: "));
        char *nl = strchr(err, '\n');
        assert_non_null(nl);
        assert_int_equal(nl[1], '\0');
    }
}

static void test_mix_parse(void **state)
{
    kc_mix m;
    const char *why = NULL;
    assert_int_equal(kc_mix_parse("", &m, &why), 0);
    assert_true(m.duplicate == 0 && m.invalid == 0 && m.frequent == 0);
    assert_int_equal(kc_mix_parse("frequent=1", &m, &why), 0);
    assert_true(m.frequent == 1.0);
    assert_int_equal(kc_mix_parse("invalid=0.5,duplicate=0.5", &m, &why), 0);
    assert_int_equal(kc_mix_parse("invalid", &m, &why), KP_EINVAL);
    assert_int_equal(kc_mix_parse("invalid=", &m, &why), KP_EINVAL);
    assert_int_equal(kc_mix_parse("invalid=nan", &m, &why), KP_EINVAL);
}

/* ---- histogram ---- */

static void test_histogram(void **state)
{
    kc_histogram *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    kc_histogram_reset(h);
    assert_int_equal(kc_histogram_percentile(h, 50), 0);
    assert_true(kc_histogram_mean(h) == 0.0);

    /* 1..100000 µs, one each: percentile p is p% of 100000, within a bucket's width. */
    for (uint64_t v = 1; v <= 100000; v++)
        kc_histogram_record(h, v);
    assert_int_equal(h->count, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    const double ps[] = {1, 10, 50, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        double want = ps[i] * 1000.0;
        double got = (double)kc_histogram_percentile(h, ps[i]);
        if (fabs(got - want) > want / 128.0 + 1)
            fail_msg("p%g = %.0f, want %.0f", ps[i], got, want);
    }
    assert_int_equal(kc_histogram_percentile(h, 100), 100000);
    assert_true(fabs(kc_histogram_mean(h) - 50000.5) < 1e-6);

    /* Small values are exact; huge ones land in the last bucket with max exact. */
    kc_histogram *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    for (int i = 0; i < 10; i++)
        kc_histogram_record(g, 7);
    assert_int_equal(kc_histogram_percentile(g, 50), 7);
    kc_histogram_record(g, UINT64_C(1) << 50);
    assert_int_equal(g->max, UINT64_C(1) << 50);
    assert_int_equal(kc_histogram_percentile(g, 100), UINT64_C(1) << 50);

    kc_histogram_merge(h, g);
    assert_int_equal(h->count, 100011);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, UINT64_C(1) << 50);
    free(g);
    free(h);
}

/* ---- backoff ---- */

static void test_backoff(void **state)
{
    kc_nonce_seq rng;
    assert_int_equal(kc_nonce_seq_seed(&rng), 0);
    for (uint32_t attempt = 0; attempt < 40; attempt++) {
        uint64_t window = 500;
        for (uint32_t i = 0; i < attempt && window < 30000; i++)
            window *= 2;
        if (window > 30000)
            window = 30000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < 200; i++) {
            uint64_t d = kc_backoff_ms(&rng, 500, 30000, attempt);
            assert_true(d >= 10 && d <= window);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Jittered: spread over the window, not one value. */
        assert_true(hi - lo > window / 4);
    }
    assert_string_equal(kc_down_reason_name(KC_DOWN_CLOSED_BY_SERVER), "closed by server");
}

/* ---- summary ---- */

static void test_summary_json(void **state)
{
    kc_summary *sum = calloc(1, sizeof(*sum));
    assert_non_null(sum);
    kc_summary_init(sum, 3);
    sum->transport = "ws";
    sum->rate = 0.95;
    snprintf(sum->rate_text, sizeof(sum->rate_text), "0.95");
    sum->pipeline = 1;
    sum->peak_ready = 3;
    sum->ready_at_end = 2;
    sum->authorized = 4;
    sum->down[KC_DOWN_CLOSED_BY_SERVER] = 1;
    sum->submits = 12;
    sum->accepted = 9;
    sum->rejected[KP_OUTCOME_DUPLICATE] = 2;
    sum->rejected[KP_OUTCOME_COUNT] = 1;
    sum->mix_expected = 2;
    sum->unexpected = 1;
    sum->elapsed_s = 3.0;
    sum->hashes = 3000;
    sum->hashrate_asked = 400;
    sum->shares_found = 20;
    sum->shares_dropped_full = 2;
    sum->shares_dropped_stale = 3;
    sum->low_difficulty = 1;
    sum->difficulty_min = 64;
    sum->difficulty_max = 256;
    sum->accepted_difficulty = 8 * 256 + 5 * 64; /* 2368 */
    for (uint64_t v = 100; v <= 1200; v += 100)
        kc_histogram_record(&sum->latency, v);
    /* Job 5 arrives right after authorize (not a broadcast), 6 and 7 are broadcast. */
    assert_int_equal(kc_summary_job(sum, 5, 1000000, 0), 0);
    assert_int_equal(kc_summary_job(sum, 6, 2000000, 1), 0);
    assert_int_equal(kc_summary_job(sum, 6, 5000000, 1), 0);
    assert_int_equal(kc_summary_job(sum, 7, 9000000, 1), 0);
    assert_int_equal(kc_summary_job(sum, 7, 9500000, 1), 0);
    assert_int_equal(kc_summary_job(sum, 7, 10000000, 1), 0);
    assert_int_equal(kc_summary_newest_job(sum), 7);
    double max_ms, mean_ms;
    kc_summary_spread(sum, &max_ms, &mean_ms);
    assert_true(fabs(max_ms - 3.0) < 1e-9);
    assert_true(fabs(mean_ms - 2.0) < 1e-9);
    assert_int_equal(kc_summary_errors(sum), 2); /* one lost connection, one unexpected */

    char buf[8192] = "";
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(f);
    assert_int_equal(kc_summary_print_json(sum, f), 0);
    fclose(f);
    char *nl = strchr(buf, '\n'); /* one line */
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
    cJSON *root = cJSON_Parse(buf);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItem(root, "sessions")->valueint, 3);
    assert_string_equal(cJSON_GetObjectItem(root, "transport")->valuestring, "ws");
    assert_int_equal(cJSON_GetObjectItem(root, "connected")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(root, "closed_by_server")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(root, "accepted")->valueint, 9);
    assert_true(fabs(cJSON_GetObjectItem(root, "accepted_per_s")->valuedouble - 3.0) < 1e-9);
    cJSON *rej = cJSON_GetObjectItem(root, "rejected");
    assert_int_equal(cJSON_GetObjectItem(rej, "Duplicate submission")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(rej, "(other)")->valueint, 1);
    assert_int_equal(cJSON_GetArraySize(rej), 2);
    cJSON *lat = cJSON_GetObjectItem(root, "latency_us");
    assert_int_equal(cJSON_GetObjectItem(lat, "count")->valueint, 12);
    assert_int_equal(cJSON_GetObjectItem(lat, "max")->valueint, 1200);
    int p50 = cJSON_GetObjectItem(lat, "p50")->valueint;
    assert_true(p50 >= 590 && p50 <= 610);
    cJSON *jobs = cJSON_GetObjectItem(root, "jobs");
    assert_int_equal(cJSON_GetObjectItem(jobs, "seen")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(jobs, "receipts")->valueint, 6);
    assert_true(fabs(cJSON_GetObjectItem(jobs, "spread_max_ms")->valuedouble - 3.0) < 1e-9);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(jobs, "broadcasts")), 2);
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(root, "cpu_s")));
    assert_int_equal(cJSON_GetObjectItem(root, "errors")->valueint, 2);
    cJSON *search = cJSON_GetObjectItem(root, "search");
    assert_true(cJSON_IsObject(search));
    assert_int_equal(cJSON_GetObjectItem(search, "hashes")->valueint, 3000);
    assert_true(cJSON_GetObjectItem(search, "hashrate")->valuedouble == 1000.0);
    assert_true(fabs(cJSON_GetObjectItem(search, "hashrate_per_session")->valuedouble - 1000.0 / 3) <
                1e-9);
    assert_true(cJSON_GetObjectItem(search, "hashrate_asked")->valuedouble == 400);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(search, "hashrate_max")));
    assert_int_equal(cJSON_GetObjectItem(search, "shares_found")->valueint, 20);
    assert_int_equal(cJSON_GetObjectItem(search, "shares_dropped_queue_full")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(search, "shares_dropped_stale")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(search, "low_difficulty")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(search, "difficulty_max")->valueint, 256);
    /* accepted shares worth 2368 hashes in 3 s */
    assert_true(cJSON_GetObjectItem(search, "accepted_difficulty_sum")->valuedouble == 2368.0);
    assert_true(fabs(cJSON_GetObjectItem(search, "accepted_hashrate")->valuedouble - 2368.0 / 3) <
                1e-9);
    cJSON_Delete(root);

    /* The text form names the same things. */
    f = fmemopen(buf, sizeof(buf), "w");
    kc_summary_print_text(sum, f);
    fclose(f);
    assert_non_null(strstr(buf, "Duplicate submission"));
    assert_non_null(strstr(buf, "p99"));
    assert_non_null(strstr(buf, "3000 hashes, 1000/s (asked 400/s per session)"));
    assert_non_null(strstr(buf, "1 low difficulty; accepted imply 789 hashes/s"));
    kc_summary_free(sum);
    free(sum);
}


/* ---- the search (SPEC §8) ---- */

/* T(256) = floor((2^256 - 1) / 256) and T + 1, from python3: '%064x' % (((1 << 256) - 1) // 256). */
static const char t256[] = "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
static const char t256_plus_1[] = "0100000000000000000000000000000000000000000000000000000000000000";

static void test_target_parse(void **state)
{
    char t[KC_TARGET_HEX + 1];
    assert_int_equal(kc_target_parse(t256, 64, t), 0);
    assert_string_equal(t, t256);
    char upper[65];
    for (int i = 0; i < 64; i++)
        upper[i] = t256[i] == 'f' ? 'F' : t256[i];
    upper[64] = '\0';
    assert_int_equal(kc_target_parse(upper, 64, t), 0);
    assert_string_equal(t, t256); /* folded: the compare is on lowercase digits */
    assert_int_equal(kc_target_parse(t256, 63, t), KP_EINVAL);
    assert_int_equal(kc_target_parse("", 0, t), KP_EINVAL);
    char bad[65];
    memcpy(bad, t256, 65);
    bad[40] = 'g';
    assert_int_equal(kc_target_parse(bad, 64, t), KP_EINVAL);
    bad[40] = ' ';
    assert_int_equal(kc_target_parse(bad, 64, t), KP_EINVAL);
}

/* At the boundary: T itself meets T, T + 1 does not; all ff (D = 1) takes every digest. */
static void test_target_compare(void **state)
{
    assert_true(kc_meets_target(t256, t256));
    assert_false(kc_meets_target(t256_plus_1, t256));
    assert_true(kc_meets_target("00fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe", t256));
    assert_true(kc_meets_target("0000000000000000000000000000000000000000000000000000000000000000", t256));
    assert_false(kc_meets_target("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", t256));
    /* The first digit decides before the rest: 0a... < 0f... even though "a" > "9" in the
     * rest of the string. */
    assert_true(kc_meets_target("0a99999999999999999999999999999999999999999999999999999999999999",
                                "0f00000000000000000000000000000000000000000000000000000000000000"));
    assert_false(kc_meets_target("a000000000000000000000000000000000000000000000000000000000000000",
                                 "9fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"));
    assert_true(kc_meets_target("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                                kc_target_any));
    assert_int_equal(strlen(kc_target_any), 64);
}

static const char sn[] = "00112233445566778899aabbccddeeff";

static void search_on(kc_search *s, uint64_t d, const char *target, int64_t job)
{
    char t[KC_TARGET_HEX + 1];
    assert_int_equal(kc_target_parse(target, strlen(target), t), 0);
    kc_search_announce(s, d, t);
    kc_search_job(s, job, sn);
}

/* set_difficulty counts from the job after it; before any, the search is off. */
static void test_search_announce(void **state)
{
    kc_search s;
    kc_search_init(&s, 0);
    kp_hasher h;
    assert_int_equal(kp_hasher_init(&h), 0);
    kc_nonce_seq seq = {.state = 42};
    uint32_t found = 7;
    kc_search_job(&s, 1, sn);
    assert_false(kc_search_active(&s)); /* a server with difficulty off */
    assert_int_equal(kc_search_run(&s, &h, &seq, 100, &found), 0);
    assert_int_equal(found, 0);
    assert_int_equal(s.hashes, 0);

    char t[KC_TARGET_HEX + 1];
    assert_int_equal(kc_target_parse(t256, 64, t), 0);
    kc_search_announce(&s, 256, t);
    assert_true(s.on);
    assert_int_equal(s.difficulty, 0); /* not before the job it precedes */
    kc_search_job(&s, 2, sn);
    assert_int_equal(s.difficulty, 256);
    assert_string_equal(s.target, t256);
    kc_search_job(&s, 3, sn); /* no announcement: unchanged */
    assert_int_equal(s.difficulty, 256);
    assert_true(kc_search_active(&s));

    kc_search_reset(&s); /* the connection ended */
    assert_false(kc_search_active(&s));
    assert_false(s.on);
    kp_hasher_free(&h);
}

/* Every share found is the right hash, meets the target, and carries its job, difficulty and
 * hashes; the hashes of all shares plus those since the last one add up to what was computed. */
static void test_search_shares(void **state)
{
    kc_search s;
    kc_search_init(&s, 0);
    kp_hasher h;
    assert_int_equal(kp_hasher_init(&h), 0);
    kc_nonce_seq seq = {.state = 7};
    search_on(&s, 16, "0fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", 5);
    uint64_t total_found = 0, share_hashes = 0, done = 0;
    while (done < 16000) {
        uint32_t found;
        done += kc_search_run(&s, &h, &seq, 1, &found); /* one at a time: the queue never fills */
        total_found += found;
        const kc_share *sh;
        while ((sh = kc_search_peek(&s))) {
            char want[KC_RESULT_HEX + 1];
            assert_int_equal(kc_compute_result(&h, sn, sh->nonce, want), 0);
            assert_string_equal(sh->result, want);
            assert_true(kc_meets_target(sh->result, s.target));
            assert_int_equal(sh->result[0], '0');
            assert_int_equal(sh->job_id, 5);
            assert_int_equal(sh->difficulty, 16);
            assert_true(sh->hashes >= 1);
            share_hashes += sh->hashes;
            kc_search_pop(&s);
        }
    }
    assert_int_equal(done, 16000);
    assert_int_equal(s.hashes, 16000);
    assert_int_equal(s.found, total_found);
    assert_int_equal(s.dropped_full, 0);
    assert_int_equal(share_hashes + s.since_share, 16000);
    /* 1000 expected for D = 16; four standard deviations (sqrt(1000) ~ 32) either side. */
    assert_in_range(total_found, 870, 1130);
    kp_hasher_free(&h);
}

/* All ff: every hash is a share, one hash each. The queue holds KC_SEARCH_QUEUE; the rest are
 * dropped and counted; a newer job drops those still waiting (stale). */
static void test_search_queue(void **state)
{
    kc_search s;
    kc_search_init(&s, 0);
    kp_hasher h;
    assert_int_equal(kp_hasher_init(&h), 0);
    kc_nonce_seq seq = {.state = 9};
    search_on(&s, 1, kc_target_any, 1);
    uint32_t found;
    assert_int_equal(kc_search_run(&s, &h, &seq, 10, &found), 10);
    assert_int_equal(found, 10);
    assert_int_equal(s.found, 10);
    assert_int_equal(s.len, KC_SEARCH_QUEUE);
    assert_int_equal(s.dropped_full, 10 - KC_SEARCH_QUEUE);
    assert_int_equal(kc_search_peek(&s)->hashes, 1);
    char first[KC_NONCE_HEX + 1];
    memcpy(first, kc_search_peek(&s)->nonce, sizeof(first));
    kc_search_pop(&s);
    assert_int_equal(s.len, KC_SEARCH_QUEUE - 1);
    assert_string_not_equal(kc_search_peek(&s)->nonce, first); /* FIFO: the next one */

    /* The same job again (a repeated notification) keeps the queue. */
    kc_search_job(&s, 1, sn);
    assert_int_equal(s.len, KC_SEARCH_QUEUE - 1);
    kc_search_job(&s, 2, sn);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.dropped_stale, KC_SEARCH_QUEUE - 1);
    assert_int_equal(kc_search_run(&s, &h, &seq, 1, &found), 1);
    assert_int_equal(kc_search_peek(&s)->job_id, 2);
    kc_search_reset(&s);
    assert_null(kc_search_peek(&s));
    assert_int_equal(s.dropped_stale, KC_SEARCH_QUEUE);
    assert_int_equal(s.hashes, 11); /* counters outlive the connection */
    kp_hasher_free(&h);
}

/* A target no digest meets: hashes counted, and `hashes` of the next share spans jobs. */
static void test_search_hashes_span_jobs(void **state)
{
    kc_search s;
    kc_search_init(&s, 0);
    kp_hasher h;
    assert_int_equal(kp_hasher_init(&h), 0);
    kc_nonce_seq seq = {.state = 11};
    search_on(&s, KP_DIFFICULTY_MAX,
              "0000000000000000000000000000000000000000000000000000000000000000", 1);
    uint32_t found;
    assert_int_equal(kc_search_run(&s, &h, &seq, 300, &found), 300);
    assert_int_equal(found, 0);
    search_on(&s, 1, kc_target_any, 2);
    assert_int_equal(kc_search_run(&s, &h, &seq, 1, &found), 1);
    assert_int_equal(found, 1);
    assert_int_equal(kc_search_peek(&s)->hashes, 301);
    assert_int_equal(kc_search_peek(&s)->difficulty, 1);
    kp_hasher_free(&h);
}

/* -hashrate: credit accrues with time, at most KC_BUCKET_BURST_S worth (and at least 2
 * hashes); unlimited is unlimited. */
static void test_bucket(void **state)
{
    kc_bucket b;
    kc_bucket_init(&b, 100);
    uint64_t t = 5000000000u;
    assert_int_equal(kc_bucket_available(&b, t), 0); /* the first look only starts the clock */
    assert_int_equal(kc_bucket_available(&b, t + 50000000u), 5);
    kc_bucket_spend(&b, 5);
    assert_int_equal(kc_bucket_available(&b, t + 50000000u), 0);
    assert_int_equal(kc_bucket_available(&b, t + 5000000000u), 10); /* a stall: capped */
    kc_bucket_spend(&b, 100);                                      /* never below zero */
    assert_int_equal(kc_bucket_available(&b, t + 5000000000u), 0);
    assert_int_equal(kc_bucket_available(&b, t - 1000u), 0); /* a clock going back adds nothing */

    kc_bucket_init(&b, 0.5); /* below one hash per burst window: still one hash a 2 s */
    assert_int_equal(kc_bucket_available(&b, t), 0);
    assert_int_equal(kc_bucket_available(&b, t + 1000000000u), 0);
    assert_int_equal(kc_bucket_available(&b, t + 2000000000u), 1);
    assert_int_equal(kc_bucket_available(&b, t + 60000000000u), 2); /* the floor of the cap */

    kc_bucket_init(&b, 0);
    assert_true(kc_bucket_available(&b, t) == UINT64_MAX);
    kc_bucket_spend(&b, 1000);
    assert_true(kc_bucket_available(&b, t) == UINT64_MAX);
}

/* Pacing as the miner does it: 10 ms ticks, spend what is allowed; 1 s gives the rate. Ticks
 * that come late (a loop stall under the burst cap) lose nothing. */
static void test_bucket_pacing(void **state)
{
    static const double rates[] = {100, 1000, 123456, 3};
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        kc_bucket b;
        kc_bucket_init(&b, rates[r]);
        uint64_t t = 1000000000u, spent = 0;
        kc_bucket_available(&b, t);
        for (int tick = 1; tick <= 1000; tick++) { /* 10 s */
            if (tick % 7 == 0 && tick != 1000)
                continue; /* a tick that came late: the next one sees 20 ms */
            uint64_t now = t + (uint64_t)tick * 10000000u;
            uint64_t n = kc_bucket_available(&b, now);
            kc_bucket_spend(&b, n);
            spent += n;
        }
        double want = rates[r] * 10.0;
        if (fabs((double)spent - want) > 1.0 + want * 0.005)
            fail_msg("rate %g: %llu hashes in 10 s, want %.0f", rates[r],
                     (unsigned long long)spent, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_forms),     cmocka_unit_test(test_addr_errors),
        cmocka_unit_test(test_addr_host_header), cmocka_unit_test(test_addr_resolve),
        cmocka_unit_test(test_src_range),      cmocka_unit_test(test_compute_result),
        cmocka_unit_test(test_format_submit),  cmocka_unit_test(test_nonces),
        cmocka_unit_test(test_username_ok),    cmocka_unit_test(test_options),
        cmocka_unit_test(test_options_errors), cmocka_unit_test(test_mix_parse),
        cmocka_unit_test(test_histogram),      cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_summary_json),   cmocka_unit_test(test_target_parse),
        cmocka_unit_test(test_target_compare), cmocka_unit_test(test_search_announce),
        cmocka_unit_test(test_search_shares),  cmocka_unit_test(test_search_queue),
        cmocka_unit_test(test_search_hashes_span_jobs), cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_bucket_pacing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
