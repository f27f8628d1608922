/* kupool-client flags: one table for the flag engine (src/core/flags.h) — every flag's name,
 * value word, default as shown by -h, help line and field or setter; parsing and -h both read
 * it. What stays here is what only the client knows: its addresses, -rate's "max" and -mix. */
#include "client_options.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "kupool/error.h"
#include "kupool/version.h"

#include "client_submit.h"

#define PROG_NAME "kupool-client"
#define MAX_SESSIONS 1000000u
#define DEFAULT_LOAD_HASHRATE 100.0 /* SPEC §8 */

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

/* Setters for the values the engine has no type for; `target` is the kc_options. */
static const char *set_addr(void *target, const char *v)
{
    kc_options *o = target;
    const char *why = NULL;
    return kc_addr_parse(v, &o->addr, &why) == 0 ? NULL : why;
}

static const char *set_rate(void *target, const char *v)
{
    kc_options *o = target;
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

static const char *set_hashrate(void *target, const char *v)
{
    kc_options *o = target;
    o->hashrate_set = true;
    if (strcmp(v, "max") == 0) {
        o->hashrate = 0;
        return NULL;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (!v[0] || errno || *end || !(d >= 0.001 && d <= 1e10))
        return "want hashes per second per session, 0.001..1e10, or max";
    o->hashrate = d;
    return NULL;
}

static const char *set_src(void *target, const char *v)
{
    kc_options *o = target;
    const char *why = NULL;
    if (kc_src_range_parse(v, &o->src, &why) != 0)
        return why;
    o->has_src = true;
    return NULL;
}

static const char *set_mix(void *target, const char *v)
{
    kc_options *o = target;
    const char *why = NULL;
    return kc_mix_parse(v, &o->mix, &why) == 0 ? NULL : why;
}

static const kp_flag_spec flags[] = {
    {.name = "addr", .type = KP_FLAG_FUNC, .set = set_addr, .def = "127.0.0.1:8080",
     .arg = "address", .help = "server address: host:port, tcp://host:port, tls://host:port, ws:// or wss://host:port/path"},
    {.name = "username", KP_FLAG_STRING_FIELD(kc_options, username), .def = "alice",
     .help = "username to authorize as; load mode uses USERNAME-<session index>"},
    {.name = "n", KP_FLAG_UINT_FIELD(kc_options, sessions), .def = "0", .max = MAX_SESSIONS,
     .arg = "sessions", .shown_def = "0 = demo mode, one session",
     .help = "load mode: number of sessions held at once"},
    /* Its default depends on the mode: resolved after parsing, from where the value came. */
    {.name = "duration", KP_FLAG_DURATION_FIELD(kc_options, duration_ms), .def = "0",
     .shown_def = "demo: until SIGINT; load: 10s",
     .help = "how long to run, e.g. 30s or 2m (0 = until SIGINT/SIGTERM)"},
    {.name = "rate", .type = KP_FLAG_FUNC, .set = set_rate, .def = "0.95", .arg = "float|max",
     .help = "load mode: submits per second per session; 0 = idle sessions that never submit; "
             "max = no pacing, keep -pipeline submits in flight"},
    {.name = "pipeline", KP_FLAG_UINT_FIELD(kc_options, pipeline), .def = "1", .min = 1,
     .max = 1024, .arg = "k",
     .help = "load mode: submits in flight per session (for a server with -min_submit_interval 0)"},
    {.name = "connect_rate", KP_FLAG_UINT_FIELD(kc_options, connect_rate), .def = "2000",
     .min = 1, .max = 1000000, .arg = "per-second",
     .help = "load mode: new connections per second while ramping up"},
    {.name = "src", .type = KP_FLAG_FUNC, .set = set_src, .arg = "range",
     .shown_def = "the kernel's choice",
     .help = "load mode: local addresses to connect from, e.g. 127.0.0.2-127.0.0.9"},
    {.name = "mix", .type = KP_FLAG_FUNC, .set = set_mix, .arg = "spec", .shown_def = "none",
     .help = "load mode: shares of bad submits, e.g. duplicate=0.05,invalid=0.05,frequent=0.05"},
    {.name = "tls_ca", KP_FLAG_STRING_FIELD(kc_options, tls_ca), .def = "", .arg = "file",
     .shown_def = "the system's CA store",
     .help = "tls:// and wss://: CA certificates (PEM) that verify the server"},
    {.name = "tls_insecure", KP_FLAG_BOOL_FIELD(kc_options, tls_insecure), .def = "false",
     .help = "tls:// and wss://: do not verify the server's certificate (test certificates)"},
    {.name = "json", KP_FLAG_BOOL_FIELD(kc_options, json), .def = "false",
     .help = "load mode: print the final summary as one JSON object"},
    /* Its default depends on the mode: resolved after parsing, from whether it was given. */
    {.name = "hashrate", .type = KP_FLAG_FUNC, .set = set_hashrate, .arg = "H|max",
     .shown_def = "load: 100; demo: max, as fast as one core goes",
     .help = "hashes per second per session while the server asks for difficulty (SPEC §8)"},
    {.name = "min_submit_interval", KP_FLAG_DURATION_FIELD(kc_options, min_submit_interval_ms),
     .def = "1s",
     .help = "the server's -min_submit_interval: no share goes sooner after an accepted one"},
    {.name = "h", .alias = "help", .type = KP_FLAG_HELP, .help = "print this help"},
    {.name = "version", .type = KP_FLAG_VERSION, .help = "print the version"},
};

#define FLAG_COUNT (sizeof(flags) / sizeof(flags[0]))
_Static_assert(FLAG_COUNT <= KP_FLAGS_MAX, "the client's flag table outgrew the engine");

static void print_help(FILE *out)
{
    fprintf(out,
            "Usage: %s [flags]\n\n"
            "Demo mode (default): one session that authorizes, answers every job at most once a\n"
            "second and at least once a minute, logs each answer and reconnects with jittered\n"
            "backoff. Load mode (-n N): N sessions from one loop, a progress line per second on\n"
            "stderr and a summary at the end. When the server sends set_difficulty, each session\n"
            "searches for shares at -hashrate and submits those that meet its target.\n\nFlags:\n",
            PROG_NAME);
    kp_flags_usage(flags, FLAG_COUNT, KP_FLAGS_LAYOUT_GO, out);
    fputs("\nEnvironment: KUP_LOG_LEVEL=trace|debug|info|warn|error, KUP_LOG_FORMAT=text|json\n",
          out);
}

int kc_options_parse(kc_options *o, int argc, char **argv, FILE *out, FILE *err)
{
    memset(o, 0, sizeof(*o));
    kp_flags fs;
    kp_flags_begin(&fs, flags, FLAG_COUNT, o);
    switch (kp_flags_parse_args(&fs, argc, argv, 1)) {
    case KP_FLAGS_RUN:
        break;
    case KP_FLAGS_HELP:
        print_help(out);
        return KC_OPTIONS_HELP;
    case KP_FLAGS_VERSION:
        fprintf(out, "%s %s\n", PROG_NAME, KP_VERSION);
        return KC_OPTIONS_VERSION;
    default:
        fprintf(err, "%s: %s\n", PROG_NAME, fs.error);
        return KP_EINVAL;
    }
    o->duration_set = fs.src[kp_flags_find(&fs, "duration")] != KP_FLAG_FROM_DEFAULT;
    if (o->sessions > 0 && !o->duration_set)
        o->duration_ms = 10000;
    if (!o->hashrate_set)
        o->hashrate = o->sessions > 0 ? DEFAULT_LOAD_HASHRATE : 0;
    if (!kc_username_ok(o->username)) {
        fprintf(err,
                "%s: invalid value for flag -username: 1..%d bytes without control characters, "
                "'\"' or '\\'\n",
                PROG_NAME, KP_USERNAME_MAX);
        return KP_EINVAL;
    }
    return KC_OPTIONS_RUN;
}
