/* Tests for the flag engine (src/core/flags.c, flags_usage.c) on a table of its own: every Go
 * form, the environment over the flag, errors that name the flag, durations, -h. The programs'
 * own tables are tested through test_config, test_client_units and test_mock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flags.h"
#include "kupool/error.h"

typedef enum color { RED, GREEN, BLUE } color;
static const char *const color_names[] = {[RED] = "red", [GREEN] = "green", [BLUE] = "blue"};

typedef struct values {
    char name[8];
    bool loud;
    uint32_t count;
    uint64_t wait_ms;
    color color;
    int calls; /* set_level() */
    int level;
} values;

static const char *set_level(void *target, const char *value)
{
    values *v = target;
    v->calls++;
    if (strcmp(value, "low") == 0)
        v->level = 1;
    else if (strcmp(value, "high") == 0)
        v->level = 2;
    else
        return "want low or high";
    return NULL;
}

static const char *no_x(const char *value)
{
    return strchr(value, 'x') != NULL ? "must not contain x" : NULL;
}

static const kp_flag_spec specs[] = {
    {.name = "name",
     .env = "T_NAME",
     KP_FLAG_STRING_FIELD(values, name),
     .def = "bob",
     .check = no_x,
     .help = "a name"},
    {.name = "loud",
     .env = "T_LOUD",
     KP_FLAG_BOOL_FIELD(values, loud),
     .def = "false",
     .help = "shout"},
    {.name = "count",
     .env = "T_COUNT",
     KP_FLAG_UINT_FIELD(values, count),
     .def = "3",
     .min = 1,
     .max = 10,
     .help = "how many"},
    {.name = "wait",
     .env = "T_WAIT",
     KP_FLAG_DURATION_FIELD(values, wait_ms),
     .def = "1s",
     .help = "how long"},
    {.name = "color",
     KP_FLAG_ENUM_FIELD(values, color, color_names),
     .def = "green",
     .help = "which color"},
    {.name = "level",
     .type = KP_FLAG_FUNC,
     .set = set_level,
     .arg = "low|high",
     .shown_def = "unset",
     .help = "how high"},
    {.name = "token",
     .env = "T_TOKEN",
     KP_FLAG_STRING_FIELD(values, name),
     .secret = true,
     .help = "a secret"},
    {.name = "h", .alias = "help", .type = KP_FLAG_HELP, .help = "this help"},
    {.name = "version", .type = KP_FLAG_VERSION, .help = "the version"},
    {.env = "T_MOOD",
     KP_FLAG_ENUM_FIELD(values, color, color_names),
     .fold_case = true,
     .def = "green",
     .help = "env only"},
};
#define SPEC_COUNT (sizeof(specs) / sizeof(specs[0]))

static const char *const env_names[] = {"T_NAME", "T_LOUD",  "T_COUNT",
                                        "T_WAIT", "T_TOKEN", "T_MOOD"};

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
    return 0;
}

/* Parses argv (NULL-terminated, without argv[0]) then the environment into *v. */
static int parse(kp_flags *fs, values *v, const char *const *args)
{
    char *argv[16] = {"prog"};
    int argc = 1;
    for (; args[argc - 1] != NULL; argc++) {
        assert_true(argc < 16);
        argv[argc] = (char *)args[argc - 1];
    }
    memset(v, 0, sizeof *v);
    kp_flags_begin(fs, specs, SPEC_COUNT, v);
    int rc = kp_flags_parse_args(fs, argc, argv, 1);
    if (rc == KP_FLAGS_RUN)
        rc = kp_flags_parse_env(fs);
    return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_defaults(void **state)
{
    (void)state;
    kp_flags fs;
    values v;
    assert_int_equal(parse(&fs, &v, (const char *const[]){NULL}), KP_FLAGS_RUN);
    assert_string_equal(v.name, "bob");
    assert_false(v.loud);
    assert_int_equal(v.count, 3);
    assert_int_equal(v.wait_ms, 1000);
    assert_int_equal(v.color, GREEN);
    assert_int_equal(v.calls, 0); /* no default: the setter is not called */
    assert_int_equal(fs.src[kp_flags_find(&fs, "count")], KP_FLAG_FROM_DEFAULT);
}

static void test_go_forms(void **state)
{
    (void)state;
    kp_flags fs;
    values v;
    /* -x v, -x=v, --x v, --x=v */
    assert_int_equal(
        parse(&fs, &v, ARGS("-count", "4", "-wait=2s", "--name", "al", "--color=blue")),
        KP_FLAGS_RUN);
    assert_int_equal(v.count, 4);
    assert_int_equal(v.wait_ms, 2000);
    assert_string_equal(v.name, "al");
    assert_int_equal(v.color, BLUE);
    assert_int_equal(fs.src[kp_flags_find(&fs, "count")], KP_FLAG_FROM_ARG);
    assert_string_equal(fs.text[kp_flags_find(&fs, "wait")], "2s");

    /* a bare bool is true; its value only after '=' */
    assert_int_equal(parse(&fs, &v, ARGS("-loud")), KP_FLAGS_RUN);
    assert_true(v.loud);
    assert_int_equal(parse(&fs, &v, ARGS("--loud=false")), KP_FLAGS_RUN);
    assert_false(v.loud);
    assert_int_equal(parse(&fs, &v, ARGS("-loud", "false")), KP_EINVAL);
    assert_string_equal(fs.error, "unexpected argument \"false\" (flags only, see -h)");

    /* the last one wins; "--" ends the flags; a value may look like a flag */
    assert_int_equal(parse(&fs, &v, ARGS("-count", "4", "-count=5", "--")), KP_FLAGS_RUN);
    assert_int_equal(v.count, 5);
    assert_int_equal(parse(&fs, &v, ARGS("-name", "-loud")), KP_FLAGS_RUN);
    assert_string_equal(v.name, "-loud");
    assert_false(v.loud);

    /* a setter gets the value */
    assert_int_equal(parse(&fs, &v, ARGS("-level", "high")), KP_FLAGS_RUN);
    assert_int_equal(v.level, 2);
    assert_int_equal(v.calls, 1);
}

static void test_env_overrides_flag(void **state)
{
    (void)state;
    kp_flags fs;
    values v;
    setenv("T_COUNT", "7", 1);
    setenv("T_LOUD", "", 1);    /* empty: not set, for anything but a string */
    setenv("T_MOOD", "RED", 1); /* case folded */
    assert_int_equal(parse(&fs, &v, ARGS("-count", "4", "-loud")), KP_FLAGS_RUN);
    assert_int_equal(v.count, 7);
    assert_true(v.loud);
    assert_int_equal(v.color, RED);
    assert_int_equal(fs.src[kp_flags_find(&fs, "count")], KP_FLAG_FROM_ENV);

    setenv("T_NAME", "", 1); /* empty string: set */
    assert_int_equal(parse(&fs, &v, ARGS("-name", "al")), KP_FLAGS_RUN);
    assert_string_equal(v.name, "");

    setenv("T_COUNT", "11", 1);
    assert_int_equal(parse(&fs, &v, ARGS("-count", "4")), KP_EINVAL);
    assert_string_equal(fs.error, "invalid value \"11\" for T_COUNT: must be between 1 and 10");
    setenv("T_MOOD", "mauve", 1);
    unsetenv("T_COUNT");
    assert_int_equal(parse(&fs, &v, ARGS("-count", "4")), KP_EINVAL);
    assert_string_equal(fs.error,
                        "invalid value \"mauve\" for T_MOOD: must be one of red, green, blue");
}

static void test_bad_values_name_the_flag(void **state)
{
    (void)state;
    static const struct {
        const char *args[3];
        const char *error;
    } cases[] = {
        {{"-count", "x"}, "invalid value \"x\" for flag -count: parse error"},
        {{"-count", "0"}, "invalid value \"0\" for flag -count: must be between 1 and 10"},
        {{"-count", "99999999999"},
         "invalid value \"99999999999\" for flag -count: value out of range"},
        {{"-count", "+1"}, "invalid value \"+1\" for flag -count: parse error"},
        {{"-wait", "5"}, "invalid value \"5\" for flag -wait: parse error"},
        {{"-loud=maybe"}, "invalid value \"maybe\" for flag -loud: parse error"},
        {{"-name", "toolongname"},
         "invalid value \"toolongname\" for flag -name: too long (at most 7 bytes)"},
        {{"-name", "x"}, "invalid value \"x\" for flag -name: must not contain x"},
        {{"-name", "x\"\n"}, "invalid value \"x\\\"\\x0a\" for flag -name: must not contain x"},
        {{"-color", "Red"},
         "invalid value \"Red\" for flag -color: must be one of red, green, blue"},
        {{"-level", "mid"}, "invalid value \"mid\" for flag -level: want low or high"},
        {{"-token", "hunter2hunter2"}, "invalid value for flag -token: too long (at most 7 bytes)"},
        {{"-version=maybe"}, "invalid value \"maybe\" for flag -version: parse error"},
        {{"-nope"}, "flag provided but not defined: -nope"},
        {{"--nope=1"}, "flag provided but not defined: -nope"},
        {{"-count"}, "flag needs an argument: -count"},
        {{"--name"}, "flag needs an argument: -name"},
        {{"stray"}, "unexpected argument \"stray\" (flags only, see -h)"},
        {{"-"}, "unexpected argument \"-\" (flags only, see -h)"},
        {{"--", "x"}, "unexpected argument \"x\" (flags only, see -h)"},
        {{"---name=a"}, "bad flag syntax: ---name=a"},
        {{"-=a"}, "bad flag syntax: -=a"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kp_flags fs;
        values v;
        int rc = parse(&fs, &v, cases[i].args);
        if (rc != KP_EINVAL || strcmp(fs.error, cases[i].error) != 0)
            fail_msg("case %zu: rc %d, error [%s], want [%s]", i, rc, fs.error, cases[i].error);
        assert_null(strchr(fs.error, '\n'));
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {{"0", 0},     {"+1s", 1000},     {"1h2m3.5s", 3723500}, {"1.9ms", 1},
                {"999us", 0}, {"2\xc2\xb5s", 0}, {"1m30s", 90000},      {".5s", 500}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 12345;
        assert_int_equal(kp_parse_duration_ms(good[i].text, &ms), 0);
        assert_int_equal(ms, good[i].ms);
    }
    static const char *const bad[] = {"",   "5",    "-1s",         "1x", "s",
                                      ".s", "1.s.", "9999999999h", "1s-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 12345;
        if (kp_parse_duration_ms(bad[i], &ms) != KP_EINVAL)
            fail_msg("\"%s\" parsed", bad[i]);
        assert_int_equal(ms, 12345);
    }
}

static void test_help_and_version(void **state)
{
    (void)state;
    kp_flags fs;
    values v;
    assert_int_equal(parse(&fs, &v, ARGS("-h")), KP_FLAGS_HELP);
    assert_int_equal(parse(&fs, &v, ARGS("-count", "2", "--help")), KP_FLAGS_HELP);
    /* -version wins only once argv is read, and an error after it still counts */
    assert_int_equal(parse(&fs, &v, ARGS("-version", "-count", "2")), KP_FLAGS_VERSION);
    assert_int_equal(parse(&fs, &v, ARGS("-version", "-nope")), KP_EINVAL);
    assert_int_equal(parse(&fs, &v, ARGS("-version=false")), KP_FLAGS_RUN);
}

static char *usage(kp_flags_layout layout)
{
    static char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    assert_non_null(f);
    kp_flags_usage(specs, SPEC_COUNT, layout, f);
    fclose(f);
    return buf;
}

static void test_usage_lists_every_flag(void **state)
{
    (void)state;
    const char *cols = usage(KP_FLAGS_LAYOUT_COLUMNS);
    assert_non_null(strstr(cols, "  -name string      a name (env T_NAME, default \"bob\")\n"));
    assert_non_null(strstr(cols, "  -loud             shout (env T_LOUD, default false)\n"));
    assert_non_null(strstr(cols, "  -count uint       how many (env T_COUNT, default 3)\n"));
    assert_non_null(strstr(cols, "  -wait duration    how long (env T_WAIT, default 1s)\n"));
    assert_non_null(strstr(cols, "  -color string     which color (default green)\n"));
    assert_non_null(strstr(cols, "  -level low|high   how high (default unset)\n"));
    assert_non_null(strstr(cols, "  -token string     a secret (env T_TOKEN, default none)\n"));
    assert_non_null(strstr(cols, "  -h, -help         this help\n"));
    assert_non_null(strstr(cols, "  -version          the version\n"));
    assert_non_null(strstr(cols, "\nEnvironment only:\n  T_MOOD            env only: red, green or "
                                 "blue (default green)\n"));

    const char *go = usage(KP_FLAGS_LAYOUT_GO);
    assert_non_null(strstr(go, "  -name string\n    \ta name (default bob)\n"));
    assert_non_null(strstr(go, "  -loud\n    \tshout (default false)\n"));
    assert_non_null(strstr(go, "  -h, -help\n    \tthis help\n"));
}

static void test_bool_parser(void **state)
{
    (void)state;
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        bool b = false;
        assert_int_equal(kp_parse_bool(yes[i], &b), 0);
        assert_true(b);
        assert_int_equal(kp_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    bool b = true;
    assert_int_equal(kp_parse_bool("yes", &b), KP_EINVAL);
    assert_int_equal(kp_parse_bool("", &b), KP_EINVAL);
    assert_int_equal(kp_parse_bool("tRUE", &b), KP_EINVAL);
    assert_true(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_go_forms, setup),
        cmocka_unit_test_setup(test_env_overrides_flag, setup),
        cmocka_unit_test_setup(test_bad_values_name_the_flag, setup),
        cmocka_unit_test_setup(test_durations, setup),
        cmocka_unit_test_setup(test_help_and_version, setup),
        cmocka_unit_test_setup(test_usage_lists_every_flag, setup),
        cmocka_unit_test_setup(test_bool_parser, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
