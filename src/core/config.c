/* Server configuration (SPEC §4).
 *
 * One const table describes every flag: its field in kp_config, its environment variable, its
 * default and its help line. Defaults, argv, the environment and -h all read that table, so a
 * flag cannot be parsed one way and documented another.
 *
 * Argument syntax follows Go's flag package: -name value, -name=value, --name value,
 * --name=value; a bool flag alone means true and takes a value only after '='; "--" ends the
 * flags; parsing stops at the first word that is not a flag, and any such word is an error here
 * (the daemon takes no positional arguments). */
#include "kupool/config.h"

#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kupool/error.h"
#include "kupool/version.h"

#define PROG_NAME "kupool-server"

/* Go's time.Duration is int64 nanoseconds; durations beyond it are an overflow, as in Go. */
#define DURATION_NS_MAX ((uint64_t)INT64_MAX)
#define NS_PER_MS UINT64_C(1000000)

typedef enum flag_kind { KIND_STRING, KIND_DURATION, KIND_UINT, KIND_BOOL } flag_kind;

/* An extra rule for a string flag: NULL when `value` is fine, else why it is not. */
typedef const char *(*string_check)(const char *value);

typedef struct flag_desc {
    const char *name;      /* without the leading '-' */
    const char *env;       /* KUP_<NAME>: overrides the flag */
    flag_kind kind;
    size_t offset;         /* of the field in kp_config */
    size_t size;           /* of that field; for a string, its capacity with the NUL */
    const char *def;       /* default in the flag's own syntax: kp_config_defaults() parses it */
    const char *shown_def; /* what -h prints instead of `def` when `def` alone would mislead */
    uint64_t min;          /* numbers: smallest accepted value (durations in ms) */
    uint64_t max;          /* numbers: largest accepted value; 0 = the limit of the type */
    string_check check;    /* strings: extra rule, may be NULL */
    bool secret;           /* never echo the value in an error: it may hold a password */
    const char *help;
} flag_desc;

static const char *check_addr(const char *value);
static const char *check_optional_addr(const char *value);
static const char *check_store(const char *value);
static const char *check_mq(const char *value);

#define CFG_MEMBER(m) (((kp_config *)0)->m)
/* _Generic without a default branch: a flag whose kind does not match the type of its member
 * fails to compile. (A char array member decays to char * in the controlling expression.) */
#define STRING_FIELD(m)                                                                            \
    .kind = KIND_STRING, .offset = offsetof(kp_config, m),                                         \
    .size = _Generic(CFG_MEMBER(m), char *: sizeof CFG_MEMBER(m))
#define DURATION_FIELD(m)                                                                          \
    .kind = KIND_DURATION, .offset = offsetof(kp_config, m),                                       \
    .size = _Generic(CFG_MEMBER(m), uint64_t: sizeof(uint64_t))
#define UINT_FIELD(m)                                                                              \
    .kind = KIND_UINT, .offset = offsetof(kp_config, m),                                           \
    .size = _Generic(CFG_MEMBER(m), uint32_t: sizeof(uint32_t))
#define BOOL_FIELD(m)                                                                              \
    .kind = KIND_BOOL, .offset = offsetof(kp_config, m),                                           \
    .size = _Generic(CFG_MEMBER(m), bool: sizeof(bool))

static const flag_desc flags[] = {
    {.name = "addr", .env = "KUP_ADDR", STRING_FIELD(addr), .def = ":8080", .check = check_addr,
     .help = "TCP listen address for miners: host:port, :port or [v6]:port"},
    {.name = "interval", .env = "KUP_INTERVAL", DURATION_FIELD(interval_ms), .def = "30s",
     .min = 1, .help = "job broadcast interval"},
    /* 0 is the "not given" sentinel, resolved to 2 * interval once every source was read. */
    {.name = "expire", .env = "KUP_EXPIRE", DURATION_FIELD(expire_ms), .def = "0",
     .shown_def = "twice -interval", .help = "how long an older job still accepts submits"},
    {.name = "store", .env = "KUP_STORE", STRING_FIELD(store), .def = "memory",
     .check = check_store, .help = "statistics store: memory or pg"},
    {.name = "pg_dsn", .env = "KUP_PG_DSN", STRING_FIELD(pg_dsn), .def = "", .shown_def = "none",
     .secret = true, .help = "PostgreSQL connection string, required with -store pg"},
    {.name = "mq", .env = "KUP_MQ", STRING_FIELD(mq), .def = "memory", .check = check_mq,
     .help = "event queue: memory or rabbit"},
    {.name = "mq_url", .env = "KUP_MQ_URL", STRING_FIELD(mq_url),
     .def = "amqp://guest:guest@localhost:5672/", .secret = true,
     .help = "RabbitMQ URL, used with -mq rabbit"},
    {.name = "mq_queue", .env = "KUP_MQ_QUEUE", STRING_FIELD(mq_queue),
     .def = "kupool_submissions", .help = "RabbitMQ queue name"},
    {.name = "ws_addr", .env = "KUP_WS_ADDR", STRING_FIELD(ws_addr), .def = "", .shown_def = "off",
     .check = check_optional_addr, .help = "WebSocket listen address"},
    {.name = "http_addr", .env = "KUP_HTTP_ADDR", STRING_FIELD(http_addr), .def = "",
     .shown_def = "off", .check = check_optional_addr,
     .help = "admin HTTP address for /metrics, /healthz and /stats"},
    {.name = "data_dir", .env = "KUP_DATA_DIR", STRING_FIELD(data_dir), .def = "./kupool-data",
     .help = "spool directory for events waiting for a backend"},
    {.name = "consume", .env = "KUP_CONSUME", BOOL_FIELD(consume), .def = "true",
     .help = "run the queue consumer that feeds the stats store in this process"},
    {.name = "shutdown_timeout", .env = "KUP_SHUTDOWN_TIMEOUT", DURATION_FIELD(shutdown_timeout_ms),
     .def = "10s", .help = "how long shutdown may spend flushing pending events"},
    {.name = "log_file", .env = "KUP_LOG_FILE", STRING_FIELD(log_file), .def = "",
     .shown_def = "stderr", .help = "log to this file, rotated by size"},
    {.name = "log_max_mb", .env = "KUP_LOG_MAX_MB", UINT_FIELD(log_max_mb), .def = "100", .min = 1,
     .help = "rotate the log file when it reaches this many MiB"},
    {.name = "log_keep", .env = "KUP_LOG_KEEP", UINT_FIELD(log_keep), .def = "5",
     .help = "rotated log files to keep"},
    {.name = "min_submit_interval", .env = "KUP_MIN_SUBMIT_INTERVAL",
     DURATION_FIELD(min_submit_interval_ms), .def = "1s",
     .help = "least time between accepted submits of a session, 0 = no limit"},
    {.name = "auth_timeout", .env = "KUP_AUTH_TIMEOUT", DURATION_FIELD(auth_timeout_ms),
     .def = "10s", .min = 1, .help = "time a new connection has to authorize"},
    {.name = "max_msg", .env = "KUP_MAX_MSG", UINT_FIELD(max_msg), .def = "4096", .min = 64,
     .max = 16777216, .help = "longest line or frame in bytes, 64..16777216"},
    {.name = "max_conns", .env = "KUP_MAX_CONNS", UINT_FIELD(max_conns), .def = "0",
     .shown_def = "0 = the fd limit", .help = "most concurrent connections"},
    {.name = "max_errors", .env = "KUP_MAX_ERRORS", UINT_FIELD(max_errors), .def = "16", .min = 1,
     .help = "malformed messages in a row before a session is closed"},
    {.name = "job_secret", .env = "KUP_JOB_SECRET", STRING_FIELD(job_secret), .def = "",
     .shown_def = "none: local random jobs", .secret = true,
     .help = "scale-out mode: derive jobs from the time and this secret"},
};

#define FLAG_COUNT (sizeof flags / sizeof flags[0])
#define NO_FLAG ((size_t)-1)

/* The environment-only settings. Designated initializers keep each name beside its enum value. */
static const char *const log_level_names[] = {
    [KP_LOG_TRACE] = "trace", [KP_LOG_DEBUG] = "debug", [KP_LOG_INFO] = "info",
    [KP_LOG_WARN] = "warn",   [KP_LOG_ERROR] = "error",
};
static const char *const log_format_names[] = {[KP_LOG_TEXT] = "text", [KP_LOG_JSON] = "json"};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

typedef enum value_source { FROM_DEFAULT = 0, FROM_FLAG, FROM_ENV } value_source;

/* Where each flag's current value came from, for errors found after all sources were read.
 * `text` points into argv, the environment or the table: all outlive one kp_config_parse(). */
typedef struct parse_state {
    kp_config *cfg;
    FILE *err;
    bool want_version;
    value_source src[FLAG_COUNT];
    const char *text[FLAG_COUNT];
} parse_state;

/* ---- small parsers ---------------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Plain decimal: digits only, no sign, no spaces, at most `limit`. Returns NULL or why not. */
static const char *parse_decimal(const char *text, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return "parse error";
    for (const char *p = text; *p; p++) {
        if (!is_digit(*p))
            return "parse error";
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10) {
            /* Keep scanning: "99999999999x" is a parse error, not a range error. */
            for (const char *q = p; *q; q++)
                if (!is_digit(*q))
                    return "parse error";
            return "value out of range";
        }
        v = v * 10 + d;
    }
    *out = v;
    return NULL;
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *text, bool *out)
{
    static const char *const truths[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const falsehoods[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < COUNT_OF(truths); i++) {
        if (strcmp(text, truths[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(text, falsehoods[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return KP_EINVAL;
}

typedef struct duration_unit {
    const char *name;
    uint64_t ns;
} duration_unit;

static const duration_unit duration_units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000}, /* U+03BC Greek small mu */
    {"ms", 1000000},
    {"s", UINT64_C(1000000000)},
    {"m", UINT64_C(60000000000)},
    {"h", UINT64_C(3600000000000)},
};

static const duration_unit *find_duration_unit(const char *name, size_t len)
{
    for (size_t i = 0; i < COUNT_OF(duration_units); i++)
        if (strlen(duration_units[i].name) == len && memcmp(duration_units[i].name, name, len) == 0)
            return &duration_units[i];
    return NULL;
}

/* floor(0.d1d2..dn * unit), exact for any number of digits: folding from the last digit,
 * floor((d * unit + x) / 10) with x already floored loses nothing, because
 * floor((m + y) / 10) == floor((m + floor(y)) / 10) for an integer m. x stays below unit, so
 * d * unit + x cannot overflow for unit <= 1h. */
static uint64_t fraction_ns(const char *digits, size_t n, uint64_t unit)
{
    uint64_t x = 0;
    for (size_t i = n; i-- > 0;)
        x = ((uint64_t)(digits[i] - '0') * unit + x) / 10;
    return x;
}

int kp_parse_duration_ms(const char *text, uint64_t *out_ms)
{
    if (text == NULL || out_ms == NULL)
        return KP_EINVAL;
    const char *s = text;
    if (*s == '+') /* Go accepts a plus sign; a minus sign is refused: no negative durations */
        s++;
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (*s == '\0')
        return KP_EINVAL;

    uint64_t total_ns = 0;
    while (*s != '\0') {
        uint64_t whole = 0;
        const char *start = s;
        for (; is_digit(*s); s++) {
            unsigned d = (unsigned)(*s - '0');
            if (whole > (DURATION_NS_MAX - d) / 10)
                return KP_EINVAL;
            whole = whole * 10 + d;
        }
        bool has_whole = s != start;

        const char *frac = s;
        size_t frac_len = 0;
        if (*s == '.') {
            frac = ++s;
            while (is_digit(*s))
                s++;
            frac_len = (size_t)(s - frac);
        }
        if (!has_whole && frac_len == 0) /* ".s", "s" or a stray '-' */
            return KP_EINVAL;

        const char *unit_name = s;
        while (*s != '\0' && *s != '.' && !is_digit(*s))
            s++;
        const duration_unit *unit = find_duration_unit(unit_name, (size_t)(s - unit_name));
        if (unit == NULL) /* also a number without a unit */
            return KP_EINVAL;

        if (whole > DURATION_NS_MAX / unit->ns)
            return KP_EINVAL;
        uint64_t v = whole * unit->ns;
        uint64_t part = fraction_ns(frac, frac_len, unit->ns);
        if (part > DURATION_NS_MAX - v)
            return KP_EINVAL;
        v += part;
        if (v > DURATION_NS_MAX - total_ns)
            return KP_EINVAL;
        total_ns += v;
    }
    *out_ms = total_ns / NS_PER_MS;
    return 0;
}

/* Go's net.SplitHostPort, except that the port must be decimal and within 0..65535. */
int kp_split_host_port(const char *addr, char *host, size_t host_cap, int *port)
{
    if (addr == NULL)
        return KP_EINVAL;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return KP_EINVAL; /* missing port */

    const char *host_start;
    const char *host_end;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        /* "[v6]:port" exactly: "[::1]", "[::1]x:1" and "[::1]:1:2" all fail here. */
        if (close == NULL || close + 1 != colon)
            return KP_EINVAL;
        host_start = addr + 1;
        host_end = close;
        if (memchr(host_start, '[', (size_t)(host_end - host_start)) != NULL)
            return KP_EINVAL;
    } else {
        host_start = addr;
        host_end = colon;
        size_t n = (size_t)(host_end - host_start);
        /* Several colons without brackets: an IPv6 literal whose port cannot be told apart. */
        if (memchr(host_start, ':', n) != NULL || memchr(host_start, '[', n) != NULL ||
            memchr(host_start, ']', n) != NULL)
            return KP_EINVAL;
    }

    uint64_t port_value;
    if (parse_decimal(colon + 1, 65535, &port_value) != NULL)
        return KP_EINVAL;

    size_t host_len = (size_t)(host_end - host_start);
    if (host != NULL) {
        if (host_len >= host_cap)
            return KP_EINVAL;
        memcpy(host, host_start, host_len);
        host[host_len] = '\0';
    }
    if (port != NULL)
        *port = (int)port_value;
    return 0;
}

/* ---- per-flag rules --------------------------------------------------------------------- */

static const char *check_addr(const char *value)
{
    char host[KP_CONFIG_STR_MAX];
    int port;
    if (kp_split_host_port(value, host, sizeof host, &port) != 0)
        return "want host:port, :port or [v6]:port with a port in 0..65535";
    return NULL;
}

/* An optional listener: the empty string turns it off. */
static const char *check_optional_addr(const char *value)
{
    return value[0] == '\0' ? NULL : check_addr(value);
}

static const char *check_store(const char *value)
{
    if (strcmp(value, "memory") == 0 || strcmp(value, "pg") == 0)
        return NULL;
    return "must be memory or pg";
}

static const char *check_mq(const char *value)
{
    if (strcmp(value, "memory") == 0 || strcmp(value, "rabbit") == 0)
        return NULL;
    return "must be memory or rabbit";
}

static int check_bounds(const flag_desc *f, uint64_t v, char *why, size_t why_cap)
{
    uint64_t max = f->max != 0 ? f->max : f->kind == KIND_UINT ? UINT32_MAX : UINT64_MAX;
    if (v >= f->min && v <= max)
        return 0;
    const char *unit = f->kind == KIND_DURATION ? "ms" : "";
    if (f->max != 0)
        snprintf(why, why_cap, "must be between %llu%s and %llu%s", (unsigned long long)f->min,
                 unit, (unsigned long long)max, unit);
    else
        snprintf(why, why_cap, "must be at least %llu%s", (unsigned long long)f->min, unit);
    return KP_EINVAL;
}

/* Parses `value` into the field of `f`. On a bad value leaves the field alone, writes the
 * reason to `why` and returns KP_EINVAL. */
static int set_value(kp_config *cfg, const flag_desc *f, const char *value, char *why,
                     size_t why_cap)
{
    char *field = (char *)cfg + f->offset;
    const char *bad = NULL;
    switch (f->kind) {
    case KIND_STRING: {
        size_t len = strlen(value);
        if (len >= f->size) {
            snprintf(why, why_cap, "too long (at most %zu bytes)", f->size - 1);
            return KP_EINVAL;
        }
        if (f->check != NULL && (bad = f->check(value)) != NULL)
            break;
        memcpy(field, value, len + 1);
        return 0;
    }
    case KIND_DURATION: {
        uint64_t ms;
        if (kp_parse_duration_ms(value, &ms) != 0) {
            bad = "parse error";
            break;
        }
        if (check_bounds(f, ms, why, why_cap) != 0)
            return KP_EINVAL;
        *(uint64_t *)(void *)field = ms;
        return 0;
    }
    case KIND_UINT: {
        uint64_t v;
        if ((bad = parse_decimal(value, UINT32_MAX, &v)) != NULL)
            break;
        if (check_bounds(f, v, why, why_cap) != 0)
            return KP_EINVAL;
        *(uint32_t *)(void *)field = (uint32_t)v;
        return 0;
    }
    case KIND_BOOL: {
        bool b;
        if (parse_bool(value, &b) != 0) {
            bad = "parse error";
            break;
        }
        *(bool *)(void *)field = b;
        return 0;
    }
    }
    snprintf(why, why_cap, "%s", bad != NULL ? bad : "unknown flag kind");
    return KP_EINVAL;
}

static size_t find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < FLAG_COUNT; i++)
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return i;
    return NO_FLAG;
}

static bool word_is(const char *word, size_t len, const char *literal)
{
    return strlen(literal) == len && memcmp(word, literal, len) == 0;
}

void kp_config_defaults(kp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        char why[128];
        int rc = set_value(cfg, &flags[i], flags[i].def, why, sizeof why);
        assert(rc == 0 && "a default in the flag table does not parse");
        (void)rc;
    }
    cfg->log_level = KP_LOG_INFO;
    cfg->log_format = KP_LOG_TEXT;
}

/* ---- errors: always exactly one line -------------------------------------------------- */

/* Copies at most ~64 bytes of `src` into `dst`, escaping quotes, backslashes, control and
 * non-ASCII bytes, so user input can neither break the line nor the terminal. */
static void escape_into(char *dst, size_t cap, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const size_t shown_max = 64;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (i == shown_max || o + 8 >= cap) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
}

static int fail(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(FILE *err, const char *fmt, ...)
{
    if (err != NULL) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        fprintf(err, "%s: %s\n", PROG_NAME, line);
        fflush(err);
    }
    return KP_EINVAL;
}

/* "invalid value "abc" for flag -interval: parse error", or "... for KUP_INTERVAL: ...". */
static int fail_value(const parse_state *st, const char *who_flag, const char *who_env,
                      value_source src, const char *value, bool secret, const char *why)
{
    char who[96];
    if (src == FROM_ENV)
        snprintf(who, sizeof who, "%s", who_env);
    else
        snprintf(who, sizeof who, "flag -%s", who_flag);
    if (secret)
        return fail(st->err, "invalid value for %s: %s", who, why);
    char shown[300];
    escape_into(shown, sizeof shown, value, strlen(value));
    return fail(st->err, "invalid value \"%s\" for %s: %s", shown, who, why);
}

/* Sets flag `i` from `value` and remembers where it came from. */
static int apply(parse_state *st, size_t i, const char *value, value_source src)
{
    const flag_desc *f = &flags[i];
    char why[160];
    if (set_value(st->cfg, f, value, why, sizeof why) != 0)
        return fail_value(st, f->name, f->env, src, value, f->secret, why);
    st->src[i] = src;
    st->text[i] = value;
    return 0;
}

static int fail_unexpected(const parse_state *st, const char *arg)
{
    char shown[300];
    escape_into(shown, sizeof shown, arg, strlen(arg));
    return fail(st->err, "unexpected argument \"%s\" (flags only, see -h)", shown);
}

/* ---- help ------------------------------------------------------------------------------- */

static const char *kind_word(flag_kind kind)
{
    switch (kind) {
    case KIND_STRING:
        return "string";
    case KIND_DURATION:
        return "duration";
    case KIND_UINT:
        return "uint";
    case KIND_BOOL:
        return ""; /* as Go prints it: a bool flag needs no value */
    }
    return "";
}

static void print_names(FILE *out, const char *const *names, size_t n, const char *last_sep)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%s", i == 0 ? "" : i + 1 == n ? last_sep : ", ", names[i]);
}

static void print_usage(FILE *out)
{
    if (out == NULL)
        return;
    int width = (int)strlen("version");
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        int w = (int)(strlen(flags[i].name) + 1 + strlen(kind_word(flags[i].kind)));
        if (w > width)
            width = w;
    }
    width += 2;

    fprintf(out, "Usage: %s [flags]\n\n", PROG_NAME);
    fputs("Flags take -name value, -name=value, --name value or --name=value; a bool flag alone\n"
          "means true (-consume=false turns it off). Durations use Go syntax: 500ms, 3s, 1m30s.\n"
          "Each flag's environment variable overrides the flag.\n\n",
          out);
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        const flag_desc *f = &flags[i];
        char head[96];
        snprintf(head, sizeof head, "%s %s", f->name, kind_word(f->kind));
        fprintf(out, "  -%-*s %s (env %s, default ", width, head, f->help, f->env);
        if (f->shown_def != NULL)
            fputs(f->shown_def, out);
        else if (f->kind == KIND_STRING)
            fprintf(out, "\"%s\"", f->def);
        else
            fputs(f->def, out);
        fputs(")\n", out);
    }
    fprintf(out, "  -%-*s %s\n", width, "h, -help", "print this help and exit");
    fprintf(out, "  -%-*s %s\n", width, "version", "print the version and exit");

    fputs("\nEnvironment only:\n", out);
    fprintf(out, "  %-*s log level: ", width + 1, "KUP_LOG_LEVEL");
    print_names(out, log_level_names, COUNT_OF(log_level_names), " or ");
    fprintf(out, " (default %s)\n", log_level_names[KP_LOG_INFO]);
    fprintf(out, "  %-*s log format: ", width + 1, "KUP_LOG_FORMAT");
    print_names(out, log_format_names, COUNT_OF(log_format_names), " or ");
    fprintf(out, " (default %s)\n", log_format_names[KP_LOG_TEXT]);
    fflush(out);
}

/* ---- the three sources ------------------------------------------------------------------ */

/* Reads argv Go style. Returns 0, KP_CONFIG_HELP (usage printed) or KP_EINVAL. */
static int parse_args(parse_state *st, int argc, char **argv, FILE *out)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0')
            return fail_unexpected(st, arg);
        const char *name = arg + 1;
        if (name[0] == '-') {
            name++;
            if (name[0] == '\0') /* "--" ends the flags; nothing may follow here */
                return i + 1 < argc ? fail_unexpected(st, argv[i + 1]) : 0;
        }
        if (name[0] == '-' || name[0] == '=') {
            char shown[300];
            escape_into(shown, sizeof shown, arg, strlen(arg));
            return fail(st->err, "bad flag syntax: %s", shown);
        }
        const char *eq = strchr(name, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const char *value = eq != NULL ? eq + 1 : NULL;

        if (word_is(name, name_len, "h") || word_is(name, name_len, "help")) {
            print_usage(out);
            return KP_CONFIG_HELP;
        }
        if (word_is(name, name_len, "version")) {
            bool on = true;
            if (value != NULL && parse_bool(value, &on) != 0)
                return fail_value(st, "version", NULL, FROM_FLAG, value, false, "parse error");
            st->want_version = on;
            continue;
        }

        size_t idx = find_flag(name, name_len);
        if (idx == NO_FLAG) {
            char shown[300];
            escape_into(shown, sizeof shown, name, name_len);
            return fail(st->err, "flag provided but not defined: -%s", shown);
        }
        if (value == NULL) {
            if (flags[idx].kind == KIND_BOOL) /* Go: a bool takes its value only after '=' */
                value = "true";
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return fail(st->err, "flag needs an argument: -%s", flags[idx].name);
        }
        int rc = apply(st, idx, value, FROM_FLAG);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* An empty variable counts as set only for strings (KUP_WS_ADDR= turns the listener off);
 * an empty number, duration or bool means "not set". */
static int parse_env(parse_state *st)
{
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        const char *value = getenv(flags[i].env);
        if (value == NULL || (value[0] == '\0' && flags[i].kind != KIND_STRING))
            continue;
        int rc = apply(st, i, value, FROM_ENV);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Reads an environment-only choice (case-insensitive). Leaves *index alone when unset or
 * empty; returns KP_EINVAL naming the variable when the value is none of `names`. */
static int env_choice(const parse_state *st, const char *env, const char *const *names, size_t n,
                      int *index)
{
    const char *value = getenv(env);
    if (value == NULL || value[0] == '\0')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(value, names[i]) == 0) {
            *index = (int)i;
            return 0;
        }
    }
    char why[160];
    size_t used = (size_t)snprintf(why, sizeof why, "must be one of ");
    for (size_t i = 0; i < n && used < sizeof why; i++)
        used += (size_t)snprintf(why + used, sizeof why - used, "%s%s", i ? ", " : "", names[i]);
    return fail_value(st, NULL, env, FROM_ENV, value, false, why);
}

static int parse_env_only(parse_state *st)
{
    int level = (int)st->cfg->log_level;
    int format = (int)st->cfg->log_format;
    int rc = env_choice(st, "KUP_LOG_LEVEL", log_level_names, COUNT_OF(log_level_names), &level);
    if (rc == 0)
        rc = env_choice(st, "KUP_LOG_FORMAT", log_format_names, COUNT_OF(log_format_names),
                        &format);
    if (rc != 0)
        return rc;
    st->cfg->log_level = (kp_log_level)level;
    st->cfg->log_format = (kp_log_format)format;
    return 0;
}

/* Rules between flags, checked once every source was read. */
static int resolve(parse_state *st)
{
    kp_config *cfg = st->cfg;
    size_t interval = find_flag("interval", strlen("interval"));
    size_t expire = find_flag("expire", strlen("expire"));
    assert(interval != NO_FLAG && expire != NO_FLAG);

    /* An explicit 0 means the same as no -expire at all. interval is at most ~2^63 ns, so
     * twice it in ms cannot overflow. */
    if (cfg->expire_ms == 0) {
        cfg->expire_ms = 2 * cfg->interval_ms;
    } else if (cfg->expire_ms < cfg->interval_ms) {
        char why[160];
        snprintf(why, sizeof why, "must not be shorter than the interval (%.40s)",
                 st->text[interval]);
        return fail_value(st, flags[expire].name, flags[expire].env, st->src[expire],
                          st->text[expire], false, why);
    }

    if (strcmp(cfg->store, "pg") == 0 && cfg->pg_dsn[0] == '\0')
        return fail(st->err, "-pg_dsn is required with -store pg (or set KUP_PG_DSN)");
    if (strcmp(cfg->mq, "rabbit") == 0 && cfg->mq_url[0] == '\0')
        return fail(st->err, "-mq_url is required with -mq rabbit (or set KUP_MQ_URL)");
    return 0;
}

int kp_config_parse(kp_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
    kp_config_defaults(cfg);
    parse_state st = {.cfg = cfg, .err = err};
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        st.src[i] = FROM_DEFAULT;
        st.text[i] = flags[i].def;
    }

    int rc = argv != NULL ? parse_args(&st, argc, argv, out) : 0;
    if (rc != 0)
        return rc;
    /* Before the environment: a stray KUP_* variable must not stop -version. */
    if (st.want_version) {
        if (out != NULL) {
            fprintf(out, "%s %s\n", PROG_NAME, KP_VERSION);
            fflush(out);
        }
        return KP_CONFIG_VERSION;
    }
    if ((rc = parse_env(&st)) != 0 || (rc = parse_env_only(&st)) != 0 || (rc = resolve(&st)) != 0)
        return rc;
    return KP_CONFIG_RUN;
}
