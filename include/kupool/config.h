/* Server configuration: every SPEC §4 flag, its environment variable and its default.
 *
 * Parsing order: defaults, then argv (Go style: -name value, -name=value, --name value), then the
 * environment, which wins. Durations use Go syntax ("500ms", "3s", "1m30s"). The parsing itself
 * is the flag engine's (src/core/flags.h); src/core/config.c holds the table and the rules. */
#ifndef KUPOOL_CONFIG_H
#define KUPOOL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define KP_CONFIG_STR_MAX 1024

typedef enum kp_log_level {
    KP_LOG_TRACE = 0,
    KP_LOG_DEBUG,
    KP_LOG_INFO,
    KP_LOG_WARN,
    KP_LOG_ERROR
} kp_log_level;

typedef enum kp_log_format { KP_LOG_TEXT = 0, KP_LOG_JSON } kp_log_format;

typedef struct kp_config {
    char addr[KP_CONFIG_STR_MAX];      /* -addr, "host:port" or ":port"; default ":8080" */
    uint64_t interval_ms;              /* -interval, default 30s */
    uint64_t expire_ms;                /* -expire, default 2 * interval (resolved after parsing) */
    char store[64];                    /* -store: "memory" | "pg" */
    char pg_dsn[KP_CONFIG_STR_MAX];    /* -pg_dsn, required with -store pg */
    char mq[64];                       /* -mq: "memory" | "rabbit" */
    char mq_url[KP_CONFIG_STR_MAX];    /* -mq_url */
    char mq_queue[256];                /* -mq_queue */
    char ws_addr[KP_CONFIG_STR_MAX];   /* -ws_addr, "" = off */
    char http_addr[KP_CONFIG_STR_MAX]; /* -http_addr, "" = off */
    char data_dir[KP_CONFIG_STR_MAX];  /* -data_dir, default "./kupool-data" */
    bool consume;                      /* -consume, default true */
    uint64_t shutdown_timeout_ms;      /* -shutdown_timeout, default 10s */
    char log_file[KP_CONFIG_STR_MAX];  /* -log_file, "" = stderr */
    uint32_t log_max_mb;               /* -log_max_mb, default 100 */
    uint32_t log_keep;                 /* -log_keep, default 5 */
    uint64_t min_submit_interval_ms;   /* -min_submit_interval, default 1s (0 = off) */
    uint64_t auth_timeout_ms;          /* -auth_timeout, default 10s */
    uint32_t max_msg;                  /* -max_msg, default 4096 bytes */
    uint32_t max_conns;                /* -max_conns, default 0 = fd limit */
    uint32_t max_errors;               /* -max_errors, default 16 */
    char job_secret[KP_CONFIG_STR_MAX]; /* -job_secret, "" = local random jobs */
    /* SPEC §8 share difficulty: integers 1..2^53 */
    uint64_t difficulty;               /* -difficulty, default 1 (off) */
    uint64_t vardiff_target_ms;        /* -vardiff_target, default 0 = fixed difficulty */
    uint64_t vardiff_min;              /* -vardiff_min, default 1 */
    uint64_t vardiff_max;              /* -vardiff_max, default 2^53; >= vardiff_min */
    kp_log_level log_level;            /* KUP_LOG_LEVEL only, default info */
    kp_log_format log_format;          /* KUP_LOG_FORMAT only, default text */
} kp_config;

/* What kp_config_parse() decided. */
enum kp_config_result {
    KP_CONFIG_RUN = 0,    /* cfg is complete: start the server */
    KP_CONFIG_HELP = 1,   /* -h/-help/--help: help was printed to `out`, exit 0 */
    KP_CONFIG_VERSION = 2 /* -version: the version was printed to `out`, exit 0 */
};

/* Fills every field with its SPEC §4 default. */
void kp_config_defaults(kp_config *cfg);

/* Parses argv[1..argc-1] over the defaults, then the KUP_* environment variables (getenv), then
 * resolves derived defaults (expire = 2 * interval). On a bad flag or value prints one line naming
 * the flag (or its env variable) to `err` and returns KP_EINVAL (exit status 2). Otherwise returns
 * one of enum kp_config_result. */
int kp_config_parse(kp_config *cfg, int argc, char **argv, FILE *out, FILE *err);

/* The Go duration parser (kp_parse_duration_ms) is the flag engine's: src/core/flags.h.
 * kp_split_host_port is the addresses': src/core/net_addr.h. */

#endif
