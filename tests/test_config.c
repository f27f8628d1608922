/* Configuration: defaults, Go-style flag syntax, environment precedence, validation errors,
 * help/version, Go durations and host:port splitting.
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kupool/config.h"
#include "kupool/error.h"
#include "kupool/version.h"
#include "flags.h"
#include "net_addr.h"

/* Every flag with its variable, as SPEC §4 names them; kept here, independent of config.c's
 * table, so the test notices a flag that goes missing. */
static const struct {
    const char *flag;
    const char *env;
} spec_flags[] = {
    {"addr", "KUP_ADDR"},
    {"interval", "KUP_INTERVAL"},
    {"expire", "KUP_EXPIRE"},
    {"store", "KUP_STORE"},
    {"pg_dsn", "KUP_PG_DSN"},
    {"mq", "KUP_MQ"},
    {"mq_url", "KUP_MQ_URL"},
    {"mq_queue", "KUP_MQ_QUEUE"},
    {"ws_addr", "KUP_WS_ADDR"},
    {"http_addr", "KUP_HTTP_ADDR"},
    {"data_dir", "KUP_DATA_DIR"},
    {"consume", "KUP_CONSUME"},
    {"shutdown_timeout", "KUP_SHUTDOWN_TIMEOUT"},
    {"log_file", "KUP_LOG_FILE"},
    {"log_max_mb", "KUP_LOG_MAX_MB"},
    {"log_keep", "KUP_LOG_KEEP"},
    {"min_submit_interval", "KUP_MIN_SUBMIT_INTERVAL"},
    {"auth_timeout", "KUP_AUTH_TIMEOUT"},
    {"max_msg", "KUP_MAX_MSG"},
    {"max_conns", "KUP_MAX_CONNS"},
    {"max_errors", "KUP_MAX_ERRORS"},
    {"job_secret", "KUP_JOB_SECRET"},
    /* SPEC §8 */
    {"difficulty", "KUP_DIFFICULTY"},
    {"vardiff_target", "KUP_VARDIFF_TARGET"},
    {"vardiff_min", "KUP_VARDIFF_MIN"},
    {"vardiff_max", "KUP_VARDIFF_MAX"},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ARGS 64

/* One kp_config_parse() call with everything it printed. */
typedef struct run {
    int rc;
    kp_config cfg;
    char *out;
    char *err;
} run;

static void clear_env(void)
{
    for (size_t i = 0; i < COUNT_OF(spec_flags); i++)
        unsetenv(spec_flags[i].env);
    unsetenv("KUP_LOG_LEVEL");
    unsetenv("KUP_LOG_FORMAT");
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

/* Parses the NULL-terminated argument list (program name added) into r. */
static void parse_argv(run *r, char **args, int n)
{
    char *argv[MAX_ARGS + 1];
    argv[0] = "kupool-server";
    for (int i = 0; i < n; i++)
        argv[i + 1] = args[i];
    argv[n + 1] = NULL;

    size_t out_len = 0, err_len = 0;
    FILE *out = open_memstream(&r->out, &out_len);
    FILE *err = open_memstream(&r->err, &err_len);
    assert_non_null(out);
    assert_non_null(err);
    r->rc = kp_config_parse(&r->cfg, n + 1, argv, out, err);
    fclose(out);
    fclose(err);
}

static void parse(run *r, ...)
{
    char *args[MAX_ARGS];
    int n = 0;
    va_list ap;
    va_start(ap, r);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) {
        assert_true(n < MAX_ARGS);
        args[n++] = a;
    }
    va_end(ap);
    parse_argv(r, args, n);
}

static void run_free(run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The call must fail with KP_EINVAL and exactly one line on err that contains `needle`. */
static void expect_error(run *r, const char *needle)
{
    if (r->rc != KP_EINVAL || strstr(r->err, needle) == NULL || count_lines(r->err) != 1)
        print_error("rc=%d err=[%s], wanted a line with [%s]\n", r->rc, r->err, needle);
    assert_int_equal(r->rc, KP_EINVAL);
    assert_non_null(strstr(r->err, needle));
    assert_int_equal(count_lines(r->err), 1);
    assert_int_equal(r->err[strlen(r->err) - 1], '\n');
    assert_string_equal(r->out, "");
    assert_int_equal(strncmp(r->err, "kupool-server: ", 15), 0);
}

static void expect_ok(run *r)
{
    if (r->rc != KP_CONFIG_RUN)
        print_error("rc=%d err=[%s]\n", r->rc, r->err);
    assert_int_equal(r->rc, KP_CONFIG_RUN);
    assert_string_equal(r->err, "");
    assert_string_equal(r->out, "");
}

/* ---- defaults ---------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    kp_config cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    kp_config_defaults(&cfg);
    assert_string_equal(cfg.addr, ":8080");
    assert_int_equal(cfg.interval_ms, 30000);
    assert_int_equal(cfg.expire_ms, 0); /* resolved by kp_config_parse */
    assert_string_equal(cfg.store, "memory");
    assert_string_equal(cfg.pg_dsn, "");
    assert_string_equal(cfg.mq, "memory");
    assert_string_equal(cfg.mq_url, "amqp://guest:guest@localhost:5672/");
    assert_string_equal(cfg.mq_queue, "kupool_submissions");
    assert_string_equal(cfg.ws_addr, "");
    assert_string_equal(cfg.http_addr, "");
    assert_string_equal(cfg.data_dir, "./kupool-data");
    assert_true(cfg.consume);
    assert_int_equal(cfg.shutdown_timeout_ms, 10000);
    assert_string_equal(cfg.log_file, "");
    assert_int_equal(cfg.log_max_mb, 100);
    assert_int_equal(cfg.log_keep, 5);
    assert_int_equal(cfg.min_submit_interval_ms, 1000);
    assert_int_equal(cfg.auth_timeout_ms, 10000);
    assert_int_equal(cfg.max_msg, 4096);
    assert_int_equal(cfg.max_conns, 0);
    assert_int_equal(cfg.max_errors, 16);
    assert_string_equal(cfg.job_secret, "");
    assert_int_equal(cfg.log_level, KP_LOG_INFO);
    assert_int_equal(cfg.log_format, KP_LOG_TEXT);

    run r;
    parse(&r, NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, ":8080");
    assert_int_equal(r.cfg.interval_ms, 30000);
    assert_int_equal(r.cfg.expire_ms, 60000);
    run_free(&r);
}

/* ---- syntax ------------------------------------------------------------------------------ */

static void test_syntax_forms(void **state)
{
    (void)state;
    run r;
    parse(&r, "-addr", "127.0.0.1:1", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, "127.0.0.1:1");
    run_free(&r);

    parse(&r, "-addr=127.0.0.1:2", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, "127.0.0.1:2");
    run_free(&r);

    parse(&r, "--addr", "127.0.0.1:3", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, "127.0.0.1:3");
    run_free(&r);

    parse(&r, "--addr=127.0.0.1:4", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, "127.0.0.1:4");
    run_free(&r);

    /* The value runs to the end of the word, '=' included. */
    parse(&r, "-job_secret=a=b", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.job_secret, "a=b");
    run_free(&r);

    /* The last occurrence wins. */
    parse(&r, "-interval", "1s", "-interval=2s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.interval_ms, 2000);
    run_free(&r);

    /* "--" ends the flags. */
    parse(&r, "-interval", "1s", "--", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.interval_ms, 1000);
    run_free(&r);
}

static void test_every_flag(void **state)
{
    (void)state;
    run r;
    parse(&r, "-addr", "[::1]:7000", "-interval", "3s", "-expire", "9s", "-store", "pg",
          "-pg_dsn", "postgresql://u@h/db", "-mq", "rabbit", "-mq_url", "amqp://x/", "-mq_queue",
          "q", "-ws_addr", ":8000", "-http_addr", "127.0.0.1:9100", "-data_dir", "/tmp/d",
          "-consume=false", "-shutdown_timeout", "1m", "-log_file", "/tmp/k.log", "-log_max_mb",
          "7", "-log_keep", "0", "-min_submit_interval", "0", "-auth_timeout", "250ms",
          "-max_msg", "64", "-max_conns", "4294967295", "-max_errors", "1", "-job_secret", "s3",
          NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, "[::1]:7000");
    assert_int_equal(r.cfg.interval_ms, 3000);
    assert_int_equal(r.cfg.expire_ms, 9000);
    assert_string_equal(r.cfg.store, "pg");
    assert_string_equal(r.cfg.pg_dsn, "postgresql://u@h/db");
    assert_string_equal(r.cfg.mq, "rabbit");
    assert_string_equal(r.cfg.mq_url, "amqp://x/");
    assert_string_equal(r.cfg.mq_queue, "q");
    assert_string_equal(r.cfg.ws_addr, ":8000");
    assert_string_equal(r.cfg.http_addr, "127.0.0.1:9100");
    assert_string_equal(r.cfg.data_dir, "/tmp/d");
    assert_false(r.cfg.consume);
    assert_int_equal(r.cfg.shutdown_timeout_ms, 60000);
    assert_string_equal(r.cfg.log_file, "/tmp/k.log");
    assert_int_equal(r.cfg.log_max_mb, 7);
    assert_int_equal(r.cfg.log_keep, 0);
    assert_int_equal(r.cfg.min_submit_interval_ms, 0);
    assert_int_equal(r.cfg.auth_timeout_ms, 250);
    assert_int_equal(r.cfg.max_msg, 64);
    assert_int_equal(r.cfg.max_conns, 4294967295u);
    assert_int_equal(r.cfg.max_errors, 1);
    assert_string_equal(r.cfg.job_secret, "s3");
    run_free(&r);

    parse(&r, "-max_msg", "16777216", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.max_msg, 16777216);
    run_free(&r);
}

/* ---- environment ------------------------------------------------------------------------- */

static void test_env_overrides_flag(void **state)
{
    (void)state;
    run r;
    setenv("KUP_INTERVAL", "7s", 1);
    setenv("KUP_ADDR", "127.0.0.1:9", 1);
    setenv("KUP_MAX_MSG", "128", 1);
    parse(&r, "-interval", "5s", "-addr", ":1", "-max_msg", "256", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.interval_ms, 7000);
    assert_int_equal(r.cfg.expire_ms, 14000);
    assert_string_equal(r.cfg.addr, "127.0.0.1:9");
    assert_int_equal(r.cfg.max_msg, 128);
    run_free(&r);
    clear_env();

    /* Every variable is read, not only the ones with a flag given. */
    for (size_t i = 0; i < COUNT_OF(spec_flags); i++) {
        static const struct {
            const char *env;
            const char *value;
        } sample[] = {
            {"KUP_ADDR", ":1"},         {"KUP_INTERVAL", "2s"},       {"KUP_EXPIRE", "5s"},
            {"KUP_STORE", "pg"},        {"KUP_PG_DSN", "dsn"},        {"KUP_MQ", "rabbit"},
            {"KUP_MQ_URL", "amqp://y"}, {"KUP_MQ_QUEUE", "qq"},       {"KUP_WS_ADDR", ":2"},
            {"KUP_HTTP_ADDR", ":3"},    {"KUP_DATA_DIR", "/d"},       {"KUP_CONSUME", "F"},
            {"KUP_SHUTDOWN_TIMEOUT", "4s"}, {"KUP_LOG_FILE", "/l"},   {"KUP_LOG_MAX_MB", "2"},
            {"KUP_LOG_KEEP", "3"},      {"KUP_MIN_SUBMIT_INTERVAL", "5ms"},
            {"KUP_AUTH_TIMEOUT", "6s"}, {"KUP_MAX_MSG", "100"},       {"KUP_MAX_CONNS", "8"},
            {"KUP_MAX_ERRORS", "9"},    {"KUP_JOB_SECRET", "sec"},
            {"KUP_DIFFICULTY", "3"},    {"KUP_VARDIFF_TARGET", "7s"}, {"KUP_VARDIFF_MIN", "2"},
            {"KUP_VARDIFF_MAX", "30"},
        };
        assert_int_equal(COUNT_OF(sample), COUNT_OF(spec_flags));
        assert_string_equal(sample[i].env, spec_flags[i].env);
        setenv(sample[i].env, sample[i].value, 1);
    }
    parse(&r, NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.addr, ":1");
    assert_int_equal(r.cfg.interval_ms, 2000);
    assert_int_equal(r.cfg.expire_ms, 5000);
    assert_string_equal(r.cfg.store, "pg");
    assert_string_equal(r.cfg.pg_dsn, "dsn");
    assert_string_equal(r.cfg.mq, "rabbit");
    assert_string_equal(r.cfg.mq_url, "amqp://y");
    assert_string_equal(r.cfg.mq_queue, "qq");
    assert_string_equal(r.cfg.ws_addr, ":2");
    assert_string_equal(r.cfg.http_addr, ":3");
    assert_string_equal(r.cfg.data_dir, "/d");
    assert_false(r.cfg.consume);
    assert_int_equal(r.cfg.shutdown_timeout_ms, 4000);
    assert_string_equal(r.cfg.log_file, "/l");
    assert_int_equal(r.cfg.log_max_mb, 2);
    assert_int_equal(r.cfg.log_keep, 3);
    assert_int_equal(r.cfg.min_submit_interval_ms, 5);
    assert_int_equal(r.cfg.auth_timeout_ms, 6000);
    assert_int_equal(r.cfg.max_msg, 100);
    assert_int_equal(r.cfg.max_conns, 8);
    assert_int_equal(r.cfg.max_errors, 9);
    assert_string_equal(r.cfg.job_secret, "sec");
    run_free(&r);
}

static void test_env_empty(void **state)
{
    (void)state;
    run r;
    /* Empty string variable: set, and here it turns the listener off. */
    setenv("KUP_WS_ADDR", "", 1);
    setenv("KUP_LOG_FILE", "", 1);
    /* Empty number, duration or bool: as if unset. */
    setenv("KUP_INTERVAL", "", 1);
    setenv("KUP_MAX_MSG", "", 1);
    setenv("KUP_CONSUME", "", 1);
    setenv("KUP_LOG_LEVEL", "", 1);
    setenv("KUP_LOG_FORMAT", "", 1);
    parse(&r, "-ws_addr", ":8000", "-log_file", "x.log", "-interval", "5s", "-max_msg", "100",
          "-consume=false", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.ws_addr, "");
    assert_string_equal(r.cfg.log_file, "");
    assert_int_equal(r.cfg.interval_ms, 5000);
    assert_int_equal(r.cfg.max_msg, 100);
    assert_false(r.cfg.consume);
    assert_int_equal(r.cfg.log_level, KP_LOG_INFO);
    assert_int_equal(r.cfg.log_format, KP_LOG_TEXT);
    run_free(&r);
}

static void test_log_env(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        kp_log_level level;
    } levels[] = {{"trace", KP_LOG_TRACE}, {"debug", KP_LOG_DEBUG}, {"info", KP_LOG_INFO},
                  {"warn", KP_LOG_WARN},   {"error", KP_LOG_ERROR}, {"DEBUG", KP_LOG_DEBUG}};
    run r;
    for (size_t i = 0; i < COUNT_OF(levels); i++) {
        setenv("KUP_LOG_LEVEL", levels[i].text, 1);
        parse(&r, NULL);
        expect_ok(&r);
        assert_int_equal(r.cfg.log_level, levels[i].level);
        run_free(&r);
    }
    setenv("KUP_LOG_FORMAT", "json", 1);
    parse(&r, NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.log_format, KP_LOG_JSON);
    run_free(&r);
    setenv("KUP_LOG_FORMAT", "text", 1);
    parse(&r, NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.log_format, KP_LOG_TEXT);
    run_free(&r);
}

/* ---- bool -------------------------------------------------------------------------------- */

static void test_bool_forms(void **state)
{
    (void)state;
    static const char *const truths[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const falsehoods[] = {"0", "f", "F", "FALSE", "false", "False"};
    char word[32];
    run r;

    parse(&r, "-consume", NULL);
    expect_ok(&r);
    assert_true(r.cfg.consume);
    run_free(&r);

    parse(&r, "-consume=false", "--consume", NULL);
    expect_ok(&r);
    assert_true(r.cfg.consume);
    run_free(&r);

    for (size_t i = 0; i < COUNT_OF(truths); i++) {
        snprintf(word, sizeof word, "-consume=%s", falsehoods[i]);
        parse(&r, word, NULL);
        expect_ok(&r);
        assert_false(r.cfg.consume);
        run_free(&r);

        snprintf(word, sizeof word, "--consume=%s", truths[i]);
        parse(&r, "-consume=0", word, NULL);
        expect_ok(&r);
        assert_true(r.cfg.consume);
        run_free(&r);

        setenv("KUP_CONSUME", falsehoods[i], 1);
        parse(&r, "-consume", NULL);
        expect_ok(&r);
        assert_false(r.cfg.consume);
        run_free(&r);

        setenv("KUP_CONSUME", truths[i], 1);
        parse(&r, "-consume=false", NULL);
        expect_ok(&r);
        assert_true(r.cfg.consume);
        run_free(&r);
        unsetenv("KUP_CONSUME");
    }

    /* Go semantics: a bool never takes the next word, which is then a stray argument. */
    parse(&r, "-consume", "false", NULL);
    expect_error(&r, "unexpected argument \"false\"");
    run_free(&r);

    parse(&r, "-consume=yes", NULL);
    expect_error(&r, "for flag -consume");
    run_free(&r);

    parse(&r, "-consume=", NULL);
    expect_error(&r, "for flag -consume");
    run_free(&r);

    setenv("KUP_CONSUME", "maybe", 1);
    parse(&r, NULL);
    expect_error(&r, "KUP_CONSUME");
    run_free(&r);
}

/* ---- validation -------------------------------------------------------------------------- */

static void test_validation_errors(void **state)
{
    (void)state;
    char long_queue[300];
    memset(long_queue, 'q', sizeof long_queue - 1);
    long_queue[sizeof long_queue - 1] = '\0';

    static const struct {
        const char *args[4];
        const char *needle;
    } cases[] = {
        {{"-interval", "abc"}, "invalid value \"abc\" for flag -interval: parse error"},
        {{"-interval", "0"}, "for flag -interval"},
        {{"-interval", "500us"}, "for flag -interval"},
        {{"-interval", "-1s"}, "for flag -interval"},
        {{"-interval", "5"}, "for flag -interval"},
        {{"--interval=1x"}, "for flag -interval"},
        {{"-expire", "10s"}, "for flag -expire"},
        {{"-interval", "10s", "-expire", "9999ms"}, "for flag -expire"},
        {{"-expire", "soon"}, "for flag -expire"},
        {{"-store", "mysql"}, "for flag -store"},
        {{"-store", "pg"}, "-pg_dsn is required with -store pg"},
        {{"-mq", "kafka"}, "for flag -mq"},
        {{"-mq", "rabbit", "-mq_url", ""}, "-mq_url"},
        {{"-addr", "8080"}, "for flag -addr"},
        {{"-addr", ""}, "for flag -addr"},
        {{"-addr", ":65536"}, "for flag -addr"},
        {{"-addr", ":-1"}, "for flag -addr"},
        {{"-addr", ":http"}, "for flag -addr"},
        {{"-addr", "::1:80"}, "for flag -addr"},
        {{"-addr", "[::1]"}, "for flag -addr"},
        {{"-ws_addr", "foo"}, "for flag -ws_addr"},
        {{"-http_addr", "localhost:"}, "for flag -http_addr"},
        {{"-max_msg", "63"}, "for flag -max_msg"},
        {{"-max_msg", "16777217"}, "for flag -max_msg"},
        {{"-max_msg", "12a"}, "for flag -max_msg: parse error"},
        {{"-max_msg", "+100"}, "for flag -max_msg: parse error"},
        {{"-max_msg", " 100"}, "for flag -max_msg: parse error"},
        {{"-max_msg", "-5"}, "for flag -max_msg: parse error"},
        {{"-max_msg", "99999999999"}, "for flag -max_msg: value out of range"},
        {{"-max_conns", "4294967296"}, "for flag -max_conns: value out of range"},
        {{"-max_conns", ""}, "for flag -max_conns: parse error"},
        {{"-max_errors", "0"}, "for flag -max_errors"},
        {{"-log_max_mb", "0"}, "for flag -log_max_mb"},
        {{"-log_keep", "x"}, "for flag -log_keep"},
        {{"-shutdown_timeout", "1"}, "for flag -shutdown_timeout"},
        {{"-min_submit_interval", "1x"}, "for flag -min_submit_interval"},
        {{"-auth_timeout", "0"}, "for flag -auth_timeout"},
        {{"-version=maybe"}, "-version"},
        {{"-bogus"}, "flag provided but not defined: -bogus"},
        {{"--bogus=1"}, "flag provided but not defined: -bogus"},
        {{"-interval"}, "flag needs an argument: -interval"},
        {{"--addr"}, "flag needs an argument: -addr"},
        {{"extra"}, "unexpected argument \"extra\""},
        {{"-interval", "1s", "extra"}, "unexpected argument \"extra\""},
        {{"-"}, "unexpected argument \"-\""},
        {{"--", "x"}, "unexpected argument \"x\""},
        {{"---addr=x"}, "bad flag syntax"},
        {{"-=x"}, "bad flag syntax"},
        /* Go takes the next word as the value even when it looks like a flag. */
        {{"-addr", "-interval", "5s"}, "invalid value \"-interval\" for flag -addr"},
        /* A newline in the value cannot break the one-line rule. */
        {{"-store", "a\nb"}, "invalid value \"a\\x0ab\" for flag -store"},
    };
    for (size_t i = 0; i < COUNT_OF(cases); i++) {
        char *args[4];
        int n = 0;
        while (n < 4 && cases[i].args[n] != NULL) {
            args[n] = (char *)cases[i].args[n];
            n++;
        }
        run r;
        parse_argv(&r, args, n);
        expect_error(&r, cases[i].needle);
        run_free(&r);
    }

    run r;
    parse(&r, "-mq_queue", long_queue, NULL);
    expect_error(&r, "for flag -mq_queue: too long");
    run_free(&r);

    /* A secret is never echoed, even when it is wrong. */
    char *long_dsn = malloc(KP_CONFIG_STR_MAX + 10);
    assert_non_null(long_dsn);
    memset(long_dsn, 'p', KP_CONFIG_STR_MAX + 9);
    long_dsn[KP_CONFIG_STR_MAX + 9] = '\0';
    parse(&r, "-pg_dsn", long_dsn, NULL);
    expect_error(&r, "-pg_dsn");
    assert_null(strstr(r.err, "ppp"));
    run_free(&r);
    free(long_dsn);

    /* A string exactly at capacity (NUL included) fits. */
    long_queue[255] = '\0';
    parse(&r, "-mq_queue", long_queue, NULL);
    expect_ok(&r);
    assert_int_equal(strlen(r.cfg.mq_queue), 255);
    run_free(&r);

    /* -h after a bad flag: the error wins, as in Go. */
    parse(&r, "-bogus", "-h", NULL);
    expect_error(&r, "-bogus");
    run_free(&r);
}

static void test_env_errors(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        const char *value;
        const char *needle;
    } cases[] = {
        {"KUP_INTERVAL", "abc", "invalid value \"abc\" for KUP_INTERVAL: parse error"},
        {"KUP_INTERVAL", "0", "for KUP_INTERVAL"},
        {"KUP_EXPIRE", "1s", "for KUP_EXPIRE"},
        {"KUP_STORE", "sqlite", "for KUP_STORE"},
        {"KUP_MQ", "", "for KUP_MQ"},
        {"KUP_ADDR", "", "for KUP_ADDR"},
        {"KUP_WS_ADDR", "nope", "for KUP_WS_ADDR"},
        {"KUP_HTTP_ADDR", ":99999", "for KUP_HTTP_ADDR"},
        {"KUP_MAX_MSG", "1", "for KUP_MAX_MSG"},
        {"KUP_MAX_ERRORS", "0", "for KUP_MAX_ERRORS"},
        {"KUP_LOG_MAX_MB", "0", "for KUP_LOG_MAX_MB"},
        {"KUP_LOG_KEEP", "-1", "for KUP_LOG_KEEP"},
        {"KUP_MAX_CONNS", "1e3", "for KUP_MAX_CONNS"},
        {"KUP_SHUTDOWN_TIMEOUT", "10", "for KUP_SHUTDOWN_TIMEOUT"},
        {"KUP_MIN_SUBMIT_INTERVAL", "1s2", "for KUP_MIN_SUBMIT_INTERVAL"},
        {"KUP_AUTH_TIMEOUT", "0s", "for KUP_AUTH_TIMEOUT"},
        {"KUP_CONSUME", "yes", "for KUP_CONSUME"},
        {"KUP_LOG_LEVEL", "loud", "for KUP_LOG_LEVEL"},
        {"KUP_LOG_FORMAT", "xml", "for KUP_LOG_FORMAT"},
        {"KUP_STORE", "pg", "-pg_dsn is required with -store pg"},
    };
    for (size_t i = 0; i < COUNT_OF(cases); i++) {
        clear_env();
        setenv(cases[i].env, cases[i].value, 1);
        run r;
        parse(&r, NULL);
        expect_error(&r, cases[i].needle);
        run_free(&r);
    }

    /* The environment also overrides a good flag with a bad value, and is named as such. */
    clear_env();
    setenv("KUP_INTERVAL", "fast", 1);
    run r;
    parse(&r, "-interval", "5s", NULL);
    expect_error(&r, "KUP_INTERVAL");
    assert_null(strstr(r.err, "flag -interval"));
    run_free(&r);
}

/* ---- expire and cross-flag rules --------------------------------------------------------- */

static void test_expire(void **state)
{
    (void)state;
    run r;
    parse(&r, "-interval", "3s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.expire_ms, 6000);
    run_free(&r);

    parse(&r, "-interval", "3s", "-expire", "45s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.expire_ms, 45000);
    run_free(&r);

    parse(&r, "-interval", "3s", "-expire", "3s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.expire_ms, 3000);
    run_free(&r);

    /* 0 is the same as not given. */
    parse(&r, "-interval", "250ms", "-expire", "0", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.expire_ms, 500);
    run_free(&r);

    /* The order of the flags does not matter: the rule is checked after all were read. */
    parse(&r, "-expire", "2s", "-interval", "1s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.expire_ms, 2000);
    run_free(&r);

    /* The interval from the environment counts for the default expire too. */
    setenv("KUP_INTERVAL", "4s", 1);
    parse(&r, "-interval", "1s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.expire_ms, 8000);
    run_free(&r);
}

static void test_store_pg(void **state)
{
    (void)state;
    run r;
    parse(&r, "-store", "pg", NULL);
    expect_error(&r, "-pg_dsn is required with -store pg");
    run_free(&r);

    parse(&r, "-store", "pg", "-pg_dsn", "postgresql://localhost/kupool", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.store, "pg");
    assert_string_equal(r.cfg.pg_dsn, "postgresql://localhost/kupool");
    run_free(&r);

    setenv("KUP_PG_DSN", "postgresql://env/kupool", 1);
    parse(&r, "-store=pg", NULL);
    expect_ok(&r);
    assert_string_equal(r.cfg.pg_dsn, "postgresql://env/kupool");
    run_free(&r);

    /* An empty variable is a set string: it removes the flag's DSN. */
    setenv("KUP_PG_DSN", "", 1);
    parse(&r, "-store=pg", "-pg_dsn", "postgresql://flag/kupool", NULL);
    expect_error(&r, "-pg_dsn is required with -store pg");
    run_free(&r);
}

/* ---- help and version -------------------------------------------------------------------- */

static void test_help(void **state)
{
    (void)state;
    static const char *const spellings[] = {"-h", "-help", "--help", "--h"};
    for (size_t s = 0; s < COUNT_OF(spellings); s++) {
        run r;
        parse(&r, "-interval", "5s", (char *)spellings[s], "-bogus", NULL);
        assert_int_equal(r.rc, KP_CONFIG_HELP);
        assert_string_equal(r.err, "");
        for (size_t i = 0; i < COUNT_OF(spec_flags); i++) {
            char name[64];
            snprintf(name, sizeof name, "  -%s ", spec_flags[i].flag);
            if (strstr(r.out, name) == NULL || strstr(r.out, spec_flags[i].env) == NULL)
                print_error("help misses %s / %s:\n%s", name, spec_flags[i].env, r.out);
            assert_non_null(strstr(r.out, name));
            assert_non_null(strstr(r.out, spec_flags[i].env));
        }
        assert_non_null(strstr(r.out, "KUP_LOG_LEVEL"));
        assert_non_null(strstr(r.out, "KUP_LOG_FORMAT"));
        assert_non_null(strstr(r.out, "-version"));
        assert_non_null(strstr(r.out, "-interval duration"));
        assert_non_null(strstr(r.out, "(env KUP_INTERVAL, default 30s)"));
        assert_non_null(strstr(r.out, "(env KUP_ADDR, default \":8080\")"));
        assert_non_null(strstr(r.out, "(env KUP_MAX_MSG, default 4096)"));
        assert_non_null(strstr(r.out, "(env KUP_CONSUME, default true)"));
        run_free(&r);
    }

    /* One line per flag, each with its variable and a default. */
    run r;
    parse(&r, "-h", NULL);
    int flag_lines = 0;
    for (char *line = r.out; line != NULL && *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (strncmp(line, "  -", 3) == 0 && strstr(line, "(env KUP_") != NULL) {
            assert_non_null(strstr(line, ", default "));
            flag_lines++;
        }
        line = nl + 1;
    }
    assert_int_equal(flag_lines, (int)COUNT_OF(spec_flags));
    run_free(&r);
}

static void test_version(void **state)
{
    (void)state;
    run r;
    parse(&r, "-version", NULL);
    assert_int_equal(r.rc, KP_CONFIG_VERSION);
    assert_string_equal(r.out, "kupool-server " KP_VERSION "\n");
    assert_string_equal(r.err, "");
    run_free(&r);

    /* A bad variable does not stop -version. */
    setenv("KUP_INTERVAL", "bad", 1);
    parse(&r, "--version", NULL);
    assert_int_equal(r.rc, KP_CONFIG_VERSION);
    assert_string_equal(r.out, "kupool-server " KP_VERSION "\n");
    run_free(&r);
    unsetenv("KUP_INTERVAL");

    parse(&r, "-version=false", NULL);
    expect_ok(&r);
    run_free(&r);

    /* Flags are still checked. */
    parse(&r, "-version", "-max_msg", "1", NULL);
    expect_error(&r, "-max_msg");
    run_free(&r);
}

/* ---- durations --------------------------------------------------------------------------- */

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {
        {"0", 0},
        {"+0", 0},
        {"1.5h", 5400000},
        {"1h2m3.5s", 3723500},
        {"250ms", 250},
        {"1500us", 1},
        {"1500\xc2\xb5s", 1},
        {"1500\xce\xbcs", 1},
        {"999999ns", 0},
        {"1000000ns", 1},
        {"300ms", 300},
        {"2h45m", 9900000},
        {"3s", 3000},
        {"1m", 60000},
        {"1m30s", 90000},
        {".5s", 500},
        {"1.s", 1000},
        {"0s", 0},
        {"0.001s", 1},
        {"0.0009999s", 0},
        {"1.0000000000000000000000001s", 1000},
        {"0.333333333333333333333333h", 1199999},
        {"+5s", 5000},
        {"1s1s", 2000},
        {"100h", 360000000},
        {"2562047h", UINT64_C(9223369200000)},
        {"9223372036854775807ns", UINT64_C(9223372036854)},
    };
    for (size_t i = 0; i < COUNT_OF(good); i++) {
        uint64_t ms = 12345;
        int rc = kp_parse_duration_ms(good[i].text, &ms);
        if (rc != 0 || ms != good[i].ms)
            print_error("duration \"%s\": rc=%d ms=%llu, want %llu\n", good[i].text, rc,
                        (unsigned long long)ms, (unsigned long long)good[i].ms);
        assert_int_equal(rc, 0);
        assert_int_equal(ms, good[i].ms);
    }

    static const char *const bad[] = {
        "",     "1",     "-1s", "1x",   "-0",  "s",    ".s",    ".",    "1.5",
        "1s1",  "1 s",   " 1s", "1s ",  "1S",  "1sec", "1..5s", "++1s", "1e3s",
        "1hms", "0x10s", "inf", "nans", "1\xc2\xb5", "2562048h",
        "9223372036854775808ns", "9223372036854775807ns1ns", "99999999999999999999h",
    };
    for (size_t i = 0; i < COUNT_OF(bad); i++) {
        uint64_t ms = 777;
        int rc = kp_parse_duration_ms(bad[i], &ms);
        if (rc != KP_EINVAL)
            print_error("duration \"%s\" accepted as %llu\n", bad[i], (unsigned long long)ms);
        assert_int_equal(rc, KP_EINVAL);
        assert_int_equal(ms, 777); /* untouched on error */
    }
    uint64_t ms;
    assert_int_equal(kp_parse_duration_ms(NULL, &ms), KP_EINVAL);
}

/* ---- host:port --------------------------------------------------------------------------- */

static void test_split_host_port(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        const char *host;
        int port;
    } good[] = {
        {":8080", "", 8080},
        {"127.0.0.1:0", "127.0.0.1", 0},
        {"localhost:65535", "localhost", 65535},
        {"[::1]:9100", "::1", 9100},
        {"[fe80::1%eth0]:80", "fe80::1%eth0", 80},
        {"[]:1", "", 1},
        {"example.com:00080", "example.com", 80},
        {"0.0.0.0:1", "0.0.0.0", 1},
    };
    for (size_t i = 0; i < COUNT_OF(good); i++) {
        char host[64] = "garbage";
        int port = -7;
        int rc = kp_split_host_port(good[i].addr, host, sizeof host, &port);
        if (rc != 0)
            print_error("addr \"%s\" rejected\n", good[i].addr);
        assert_int_equal(rc, 0);
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
    }

    static const char *const bad[] = {
        "",        "8080",    "localhost", "localhost:", ":",         ":65536",
        ":-1",     ":+1",     ":http",     ":80x",       ": 80",      "::1:80",
        "::1",     "[::1]",   "[::1]80",   "[::1]:",     "[::1]:1:2", "[::1]x:80",
        "[::1:80", "::1]:80", "a]:80",     "a[:80",      "[[::1]]:80",
        ":99999999999999999999",
    };
    for (size_t i = 0; i < COUNT_OF(bad); i++) {
        char host[64];
        int port;
        if (kp_split_host_port(bad[i], host, sizeof host, &port) != KP_EINVAL)
            print_error("addr \"%s\" accepted\n", bad[i]);
        assert_int_equal(kp_split_host_port(bad[i], host, sizeof host, &port), KP_EINVAL);
    }

    /* The host must fit the caller's buffer, NUL included. */
    char small[4];
    int port;
    assert_int_equal(kp_split_host_port("abc:1", small, sizeof small, &port), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(kp_split_host_port("abcd:1", small, sizeof small, &port), KP_EINVAL);
    assert_int_equal(kp_split_host_port(NULL, small, sizeof small, &port), KP_EINVAL);
}

/* SPEC §8: -difficulty, -vardiff_*: defaults, the full range, env over flag, bad values. */
static void test_difficulty_flags(void **state)
{
    (void)state;
    run r;
    parse(&r, NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.difficulty, 1);
    assert_int_equal(r.cfg.vardiff_target_ms, 0);
    assert_int_equal(r.cfg.vardiff_min, 1);
    assert_int_equal(r.cfg.vardiff_max, UINT64_C(9007199254740992));
    run_free(&r);

    parse(&r, "-difficulty", "9007199254740992", "-vardiff_target=10s", "-vardiff_min", "4",
          "--vardiff_max", "4", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.difficulty, UINT64_C(9007199254740992));
    assert_int_equal(r.cfg.vardiff_target_ms, 10000);
    assert_int_equal(r.cfg.vardiff_min, 4);
    assert_int_equal(r.cfg.vardiff_max, 4);
    run_free(&r);

    setenv("KUP_DIFFICULTY", "256", 1);
    setenv("KUP_VARDIFF_TARGET", "1500ms", 1);
    parse(&r, "-difficulty", "2", "-vardiff_target", "3s", NULL);
    expect_ok(&r);
    assert_int_equal(r.cfg.difficulty, 256);
    assert_int_equal(r.cfg.vardiff_target_ms, 1500);
    run_free(&r);
    unsetenv("KUP_DIFFICULTY");
    unsetenv("KUP_VARDIFF_TARGET");

    static const struct {
        const char *args[4];
        const char *needle;
    } bad[] = {
        {{"-difficulty", "0"}, "for flag -difficulty"},
        {{"-difficulty", "9007199254740993"}, "for flag -difficulty"},
        {{"-difficulty", "18446744073709551617"}, "for flag -difficulty"},
        {{"-difficulty", "1.5"}, "for flag -difficulty"},
        {{"-difficulty", "-4"}, "for flag -difficulty"},
        {{"-difficulty", ""}, "for flag -difficulty"},
        {{"-vardiff_target", "10"}, "for flag -vardiff_target"},
        {{"-vardiff_min", "0"}, "for flag -vardiff_min"},
        {{"-vardiff_max", "x"}, "for flag -vardiff_max"},
        {{"-vardiff_min", "100", "-vardiff_max", "99"}, "-vardiff_min"},
    };
    for (size_t i = 0; i < COUNT_OF(bad); i++) {
        char *args[4];
        int n = 0;
        while (n < 4 && bad[i].args[n])
            args[n] = (char *)bad[i].args[n], n++;
        parse_argv(&r, args, n);
        expect_error(&r, bad[i].needle);
        run_free(&r);
    }
    setenv("KUP_VARDIFF_MAX", "0", 1);
    parse(&r, NULL);
    expect_error(&r, "KUP_VARDIFF_MAX");
    run_free(&r);
    unsetenv("KUP_VARDIFF_MAX");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),        T(test_syntax_forms), T(test_every_flag),
        T(test_env_overrides_flag), T(test_env_empty), T(test_log_env),
        T(test_bool_forms),      T(test_validation_errors), T(test_env_errors),
        T(test_expire),          T(test_store_pg),     T(test_help),
        T(test_version),         T(test_durations),    T(test_split_host_port),
        T(test_difficulty_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
