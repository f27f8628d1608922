/* Server configuration (SPEC §4): the kupool-server flag table and the rules between flags.
 *
 * One const table describes every flag: its field in kp_config, its environment variable, its
 * default and its help line. The flag engine (flags.c) reads defaults, argv, the environment and
 * -h from that table, so a flag cannot be parsed one way and documented another. What stays here
 * is what only the server knows: which strings are valid stores and addresses, and the rules
 * checked once every source was read (-expire against -interval, -pg_dsn with -store pg). */
#include "kupool/config.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "flags.h"
#include "kupool/error.h"
#include "kupool/event.h" /* KP_DIFFICULTY_MAX */
#include "kupool/version.h"
#include "net_addr.h"

#define PROG_NAME "kupool-server"

static const char *check_addr(const char *value);
static const char *check_optional_addr(const char *value);
static const char *check_store(const char *value);
static const char *check_mq(const char *value);
static const char *set_difficulty(void *target, const char *value);
static const char *set_vardiff_min(void *target, const char *value);
static const char *set_vardiff_max(void *target, const char *value);

/* The environment-only settings. Designated initializers keep each name beside its enum value. */
static const char *const log_level_names[] = {
    [KP_LOG_TRACE] = "trace", [KP_LOG_DEBUG] = "debug", [KP_LOG_INFO] = "info",
    [KP_LOG_WARN] = "warn",   [KP_LOG_ERROR] = "error",
};
static const char *const log_format_names[] = {[KP_LOG_TEXT] = "text", [KP_LOG_JSON] = "json"};

_Static_assert(sizeof(kp_log_level) == sizeof(int) && sizeof(kp_log_format) == sizeof(int),
               "the flag engine stores a choice as an int");

/* Fields of kp_config, typed: a flag whose kind does not match its member fails to compile. */
#define STRING_FIELD(m) KP_FLAG_STRING_FIELD(kp_config, m)
#define DURATION_FIELD(m) KP_FLAG_DURATION_FIELD(kp_config, m)
#define UINT_FIELD(m) KP_FLAG_UINT_FIELD(kp_config, m)
#define BOOL_FIELD(m) KP_FLAG_BOOL_FIELD(kp_config, m)

static const kp_flag_spec flags[] = {
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
    /* SPEC §8: share difficulty and vardiff (integers 1..2^53, wider than the engine's UINT). */
    {.name = "difficulty", .env = "KUP_DIFFICULTY", .type = KP_FLAG_FUNC, .set = set_difficulty,
     .def = "1", .arg = "int", .help = "share difficulty 1..2^53 (expected hashes per share); 1 = off"},
    {.name = "vardiff_target", .env = "KUP_VARDIFF_TARGET", DURATION_FIELD(vardiff_target_ms),
     .def = "0", .shown_def = "0 = fixed difficulty",
     .help = "retarget each session's difficulty to about one share per this duration"},
    {.name = "vardiff_min", .env = "KUP_VARDIFF_MIN", .type = KP_FLAG_FUNC, .set = set_vardiff_min,
     .def = "1", .arg = "int", .help = "lowest vardiff difficulty, 1..2^53"},
    {.name = "vardiff_max", .env = "KUP_VARDIFF_MAX", .type = KP_FLAG_FUNC, .set = set_vardiff_max,
     .def = "9007199254740992", .shown_def = "2^53", .arg = "int",
     .help = "highest vardiff difficulty, 1..2^53, >= -vardiff_min"},
    {.name = "h", .alias = "help", .type = KP_FLAG_HELP, .help = "print this help and exit"},
    {.name = "version", .type = KP_FLAG_VERSION, .help = "print the version and exit"},
    /* Environment only: */
    {.env = "KUP_LOG_LEVEL", KP_FLAG_ENUM_FIELD(kp_config, log_level, log_level_names),
     .fold_case = true, .def = "info", .help = "log level"},
    {.env = "KUP_LOG_FORMAT", KP_FLAG_ENUM_FIELD(kp_config, log_format, log_format_names),
     .fold_case = true, .def = "text", .help = "log format"},
};

#define FLAG_COUNT (sizeof flags / sizeof flags[0])
_Static_assert(FLAG_COUNT <= KP_FLAGS_MAX, "the server's flag table outgrew the engine");

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

/* A difficulty: plain decimal 1..2^53 (SPEC §8), the integers a double holds exactly. */
static const char *parse_difficulty(const char *value, uint64_t *out)
{
    static const char why[] = "want an integer 1..9007199254740992 (2^53)";
    uint64_t v = 0;
    if (value[0] == '\0')
        return why;
    for (const char *c = value; *c; c++) {
        if (*c < '0' || *c > '9' || v > KP_DIFFICULTY_MAX / 10)
            return why;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    if (v < 1 || v > KP_DIFFICULTY_MAX)
        return why;
    *out = v;
    return NULL;
}

static const char *set_difficulty(void *target, const char *value)
{
    return parse_difficulty(value, &((kp_config *)target)->difficulty);
}

static const char *set_vardiff_min(void *target, const char *value)
{
    return parse_difficulty(value, &((kp_config *)target)->vardiff_min);
}

static const char *set_vardiff_max(void *target, const char *value)
{
    return parse_difficulty(value, &((kp_config *)target)->vardiff_max);
}

void kp_config_defaults(kp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    kp_flags_defaults(flags, FLAG_COUNT, cfg);
}

static void print_usage(FILE *out)
{
    if (out == NULL)
        return;
    fprintf(out, "Usage: %s [flags]\n\n", PROG_NAME);
    fputs("Flags take -name value, -name=value, --name value or --name=value; a bool flag alone\n"
          "means true (-consume=false turns it off). Durations use Go syntax: 500ms, 3s, 1m30s.\n"
          "Each flag's environment variable overrides the flag.\n\n",
          out);
    kp_flags_usage(flags, FLAG_COUNT, KP_FLAGS_LAYOUT_COLUMNS, out);
}

/* Rules between flags, checked once every source was read. */
static int resolve(kp_flags *fs)
{
    kp_config *cfg = fs->target;
    size_t interval = kp_flags_find(fs, "interval");
    size_t expire = kp_flags_find(fs, "expire");
    assert(interval != KP_FLAGS_MAX && expire != KP_FLAGS_MAX);

    /* An explicit 0 means the same as no -expire at all. interval is at most ~2^63 ns, so
     * twice it in ms cannot overflow. */
    if (cfg->expire_ms == 0) {
        cfg->expire_ms = 2 * cfg->interval_ms;
    } else if (cfg->expire_ms < cfg->interval_ms) {
        char why[160];
        snprintf(why, sizeof why, "must not be shorter than the interval (%.40s)",
                 fs->text[interval]);
        return kp_flags_fail_value(fs, expire, why);
    }

    if (cfg->vardiff_min > cfg->vardiff_max) {
        size_t vmin = kp_flags_find(fs, "vardiff_min");
        assert(vmin != KP_FLAGS_MAX);
        return kp_flags_fail_value(fs, vmin, "must not exceed -vardiff_max");
    }

    if (strcmp(cfg->store, "pg") == 0 && cfg->pg_dsn[0] == '\0')
        return kp_flags_fail(fs, "-pg_dsn is required with -store pg (or set KUP_PG_DSN)");
    if (strcmp(cfg->mq, "rabbit") == 0 && cfg->mq_url[0] == '\0')
        return kp_flags_fail(fs, "-mq_url is required with -mq rabbit (or set KUP_MQ_URL)");
    return 0;
}

int kp_config_parse(kp_config *cfg, int argc, char **argv, FILE *out, FILE *err)
{
    memset(cfg, 0, sizeof *cfg);
    kp_flags fs;
    kp_flags_begin(&fs, flags, FLAG_COUNT, cfg);

    int rc = argv != NULL ? kp_flags_parse_args(&fs, argc, argv, 1) : KP_FLAGS_RUN;
    if (rc == KP_FLAGS_HELP) {
        print_usage(out);
        return KP_CONFIG_HELP;
    }
    /* Before the environment: a stray KUP_* variable must not stop -version. */
    if (rc == KP_FLAGS_VERSION) {
        if (out != NULL) {
            fprintf(out, "%s %s\n", PROG_NAME, KP_VERSION);
            fflush(out);
        }
        return KP_CONFIG_VERSION;
    }
    if (rc == 0 && (rc = kp_flags_parse_env(&fs)) == 0)
        rc = resolve(&fs);
    if (rc != 0) {
        if (err != NULL) {
            fprintf(err, "%s: %s\n", PROG_NAME, fs.error);
            fflush(err);
        }
        return KP_EINVAL;
    }
    return KP_CONFIG_RUN;
}
