/* kupool-client flags. One table: every flag's name, value word, default as shown by -h, help
 * line and setter; parsing and -h both read it. */
#include "client_options.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/config.h"
#include "kupool/error.h"
#include "kupool/version.h"

#include "client_submit.h"

#define PROG_NAME "kupool-client"
#define MAX_SESSIONS 1000000u

/* Sets the flag from `value`; returns NULL, or why the value is bad. */
typedef const char *(*flag_setter)(kc_options *o, const char *value);

typedef struct flag_desc {
    const char *name;
    const char *value_word; /* NULL for a bool flag */
    const char *shown_def;
    flag_setter set;
    const char *help;
} flag_desc;

static const char *parse_uint(const char *value, uint32_t min, uint32_t max, uint32_t *out)
{
    if (!value[0])
        return "parse error";
    uint64_t v = 0;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9')
            return "parse error";
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return "out of range";
    }
    if (v < min)
        return "out of range";
    *out = (uint32_t)v;
    return NULL;
}

static const char *parse_bool(const char *value, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
    static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(value, yes[i]) == 0) {
            *out = true;
            return NULL;
        }
        if (strcmp(value, no[i]) == 0) {
            *out = false;
            return NULL;
        }
    }
    return "parse error";
}

static const char *parse_share(const char *value, size_t len, double *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return "want a number in 0..1";
    memcpy(buf, value, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (errno || *end || !(d >= 0.0 && d <= 1.0))
        return "want a number in 0..1";
    *out = d;
    return NULL;
}

int kc_mix_parse(const char *text, kc_mix *out, const char **why)
{
    kc_mix m = {0};
    const char *p = text;
    while (*p) {
        const char *end = p + strcspn(p, ",");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) {
            *why = "want kind=share pairs, e.g. duplicate=0.05,invalid=0.05,frequent=0.05";
            return KP_EINVAL;
        }
        size_t klen = (size_t)(eq - p);
        double *slot = klen == 9 && memcmp(p, "duplicate", 9) == 0   ? &m.duplicate
                       : klen == 7 && memcmp(p, "invalid", 7) == 0   ? &m.invalid
                       : klen == 8 && memcmp(p, "frequent", 8) == 0 ? &m.frequent
                                                                     : NULL;
        if (!slot) {
            *why = "kinds are duplicate, invalid and frequent";
            return KP_EINVAL;
        }
        const char *bad = parse_share(eq + 1, (size_t)(end - eq - 1), slot);
        if (bad) {
            *why = bad;
            return KP_EINVAL;
        }
        p = *end ? end + 1 : end;
    }
    if (m.duplicate + m.invalid + m.frequent > 1.0 + 1e-9) {
        *why = "the shares add up to more than 1";
        return KP_EINVAL;
    }
    *out = m;
    return 0;
}

static const char *set_addr(kc_options *o, const char *v)
{
    const char *why = NULL;
    return kc_addr_parse(v, &o->addr, &why) == 0 ? NULL : why;
}

static const char *set_username(kc_options *o, const char *v)
{
    if (strlen(v) >= sizeof(o->username))
        return "too long (at most 255 bytes)";
    snprintf(o->username, sizeof(o->username), "%s", v);
    return NULL;
}

static const char *set_sessions(kc_options *o, const char *v)
{
    return parse_uint(v, 0, MAX_SESSIONS, &o->sessions);
}

static const char *set_duration(kc_options *o, const char *v)
{
    if (kp_parse_duration_ms(v, &o->duration_ms) != 0)
        return "parse error";
    o->duration_set = true;
    return NULL;
}

static const char *set_rate(kc_options *o, const char *v)
{
    if (strcmp(v, "max") == 0) {
        o->rate_max = true;
        o->rate = 0;
        return NULL;
    }
    o->rate_max = false;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (!v[0] || errno || *end || !(d >= 0.0 && d <= 1e6))
        return "want submits per second per session, 0..1000000 (0 = idle), or max";
    o->rate = d;
    return NULL;
}

static const char *set_pipeline(kc_options *o, const char *v)
{
    return parse_uint(v, 1, 1024, &o->pipeline);
}

static const char *set_connect_rate(kc_options *o, const char *v)
{
    return parse_uint(v, 1, 1000000, &o->connect_rate);
}

static const char *set_src(kc_options *o, const char *v)
{
    const char *why = NULL;
    if (kc_src_range_parse(v, &o->src, &why) != 0)
        return why;
    o->has_src = true;
    return NULL;
}

static const char *set_mix(kc_options *o, const char *v)
{
    const char *why = NULL;
    return kc_mix_parse(v, &o->mix, &why) == 0 ? NULL : why;
}

static const char *set_json(kc_options *o, const char *v)
{
    return parse_bool(v, &o->json);
}

static const flag_desc flags[] = {
    {"addr", "address", "127.0.0.1:8080", set_addr,
     "server address: host:port, tcp://host:port or ws://host:port/path"},
    {"username", "string", "alice", set_username,
     "username to authorize as; load mode uses USERNAME-<session index>"},
    {"n", "sessions", "0 = demo mode, one session", set_sessions,
     "load mode: number of sessions held at once"},
    {"duration", "duration", "demo: until SIGINT; load: 10s", set_duration,
     "how long to run, e.g. 30s or 2m (0 = until SIGINT/SIGTERM)"},
    {"rate", "float|max", "0.95", set_rate,
     "load mode: submits per second per session; 0 = idle sessions that never submit; max = no "
     "pacing, keep -pipeline submits in flight"},
    {"pipeline", "k", "1", set_pipeline,
     "load mode: submits in flight per session (for a server with -min_submit_interval 0)"},
    {"connect_rate", "per-second", "2000", set_connect_rate,
     "load mode: new connections per second while ramping up"},
    {"src", "range", "the kernel's choice", set_src,
     "load mode: local addresses to connect from, e.g. 127.0.0.2-127.0.0.9"},
    {"mix", "spec", "none", set_mix,
     "load mode: shares of bad submits, e.g. duplicate=0.05,invalid=0.05,frequent=0.05"},
    {"json", NULL, "false", set_json, "load mode: print the final summary as one JSON object"},
};

#define FLAG_COUNT (sizeof(flags) / sizeof(flags[0]))

static void defaults(kc_options *o)
{
    memset(o, 0, sizeof(*o));
    const char *why = NULL;
    kc_addr_parse("127.0.0.1:8080", &o->addr, &why);
    snprintf(o->username, sizeof(o->username), "alice");
    o->rate = 0.95;
    o->pipeline = 1;
    o->connect_rate = 2000;
}

static void print_help(FILE *out)
{
    fprintf(out,
            "Usage: %s [flags]\n\n"
            "Demo mode (default): one session that authorizes, answers every job at most once a\n"
            "second and at least once a minute, logs each answer and reconnects with jittered\n"
            "backoff. Load mode (-n N): N sessions from one loop, a progress line per second on\n"
            "stderr and a summary at the end.\n\nFlags:\n",
            PROG_NAME);
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        const flag_desc *f = &flags[i];
        fprintf(out, "  -%s%s%s\n    \t%s (default %s)\n", f->name, f->value_word ? " " : "",
                f->value_word ? f->value_word : "", f->help, f->shown_def);
    }
    fprintf(out, "  -h, -help\n    \tprint this help\n  -version\n    \tprint the version\n\n"
                 "Environment: KUP_LOG_LEVEL=trace|debug|info|warn|error, KUP_LOG_FORMAT=text|json\n");
}

static const flag_desc *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < FLAG_COUNT; i++)
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static int fail(FILE *err, const char *what, const char *detail)
{
    fprintf(err, "%s: %s%s\n", PROG_NAME, what, detail ? detail : "");
    return KP_EINVAL;
}

int kc_options_parse(kc_options *o, int argc, char **argv, FILE *out, FILE *err)
{
    defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            if (i + 1 < argc)
                return fail(err, "unexpected argument after --: ", argv[i + 1]);
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0')
            return fail(err, "unexpected argument (flags only, see -h): ", arg);
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        if ((name_len == 1 && name[0] == 'h') || (name_len == 4 && memcmp(name, "help", 4) == 0)) {
            print_help(out);
            return KC_OPTIONS_HELP;
        }
        if (name_len == 7 && memcmp(name, "version", 7) == 0) {
            fprintf(out, "%s %s\n", PROG_NAME, KP_VERSION);
            return KC_OPTIONS_VERSION;
        }
        const flag_desc *f = find_flag(name, name_len);
        if (!f)
            return fail(err, "flag provided but not defined: ", arg);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (!f->value_word) {
            value = "true";
        } else {
            if (i + 1 >= argc) {
                fprintf(err, "%s: flag needs an argument: -%s\n", PROG_NAME, f->name);
                return KP_EINVAL;
            }
            value = argv[++i];
        }
        const char *bad = f->set(o, value);
        if (bad) {
            fprintf(err, "%s: invalid value \"%s\" for flag -%s: %s\n", PROG_NAME, value, f->name,
                    bad);
            return KP_EINVAL;
        }
    }
    if (o->sessions > 0 && !o->duration_set)
        o->duration_ms = 10000;
    if (!kc_username_ok(o->username))
        return fail(err, "invalid value for flag -username: ",
                    "1..255 bytes without control characters, '\"' or '\\'");
    return KC_OPTIONS_RUN;
}
