/* libFuzzer harness: the command line and the KUP_* environment through kp_config_parse(), that
 * is through the flag engine (src/core/flags.c: argv in every Go form, the environment overlay,
 * the value parsers) over the server's table, then the rules between flags.
 *
 * The input is NUL-separated strings. One of the form KUP_NAME=value (NAME among the variables
 * below) sets that variable for this input; every other string is an argument, after
 * argv[0] = "kupool-server". The parser reports errors as a value and prints them to a FILE,
 * which is /dev/null here: it never exits, so one process runs every input. Variables are set
 * with putenv() from buffers this harness owns and unset after each input, so nothing leaks
 * and no input sees the one before. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/config.h"
#include "kupool/error.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define ARGS_MAX 64
#define ENV_MAX 8
#define ENV_ENTRY_MAX 2048 /* longer than KP_CONFIG_STR_MAX, to reach the too-long checks */

static const char *const env_names[] = {
    "KUP_ADDR",         "KUP_INTERVAL",   "KUP_EXPIRE",       "KUP_STORE",
    "KUP_PG_DSN",       "KUP_MQ",         "KUP_MQ_URL",       "KUP_MQ_QUEUE",
    "KUP_WS_ADDR",      "KUP_HTTP_ADDR",  "KUP_DATA_DIR",     "KUP_CONSUME",
    "KUP_SHUTDOWN_TIMEOUT", "KUP_LOG_FILE", "KUP_LOG_MAX_MB", "KUP_LOG_KEEP",
    "KUP_MIN_SUBMIT_INTERVAL", "KUP_AUTH_TIMEOUT", "KUP_MAX_MSG", "KUP_MAX_CONNS",
    "KUP_MAX_ERRORS",   "KUP_JOB_SECRET", "KUP_LOG_LEVEL",    "KUP_LOG_FORMAT",
};
#define ENV_NAMES (sizeof(env_names) / sizeof(env_names[0]))

static FILE *sink;
static char env_entries[ENV_MAX][ENV_ENTRY_MAX]; /* putenv() keeps pointers to these */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sink = fopen("/dev/null", "w");
    CHECK(sink != NULL);
    /* The inputs alone decide: no variable from the fuzzer's own environment. */
    for (size_t i = 0; i < ENV_NAMES; i++)
        unsetenv(env_names[i]);
    return 0;
}

/* The variable a "KUP_NAME=value" string sets, or -1. */
static int env_index(const char *s)
{
    const char *eq = strchr(s, '=');
    if (eq == NULL)
        return -1;
    for (size_t i = 0; i < ENV_NAMES; i++) {
        size_t n = strlen(env_names[i]);
        if ((size_t)(eq - s) == n && memcmp(s, env_names[i], n) == 0)
            return (int)i;
    }
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A NUL-terminated copy: every string in it ends at a NUL. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    char *args[ARGS_MAX + 2];
    int argc = 0;
    args[argc++] = "kupool-server";
    int set[ENV_MAX];
    size_t nset = 0;
    for (char *s = text; s <= text + size; s += strlen(s) + 1) {
        int env = env_index(s);
        if (env >= 0 && nset < ENV_MAX && strlen(s) < ENV_ENTRY_MAX) {
            memcpy(env_entries[nset], s, strlen(s) + 1);
            CHECK(putenv(env_entries[nset]) == 0);
            set[nset++] = env;
        } else if (argc <= ARGS_MAX) {
            args[argc++] = s;
        }
    }
    args[argc] = NULL;

    kp_config cfg;
    int rc = kp_config_parse(&cfg, argc, args, sink, sink);
    CHECK(rc == KP_EINVAL || rc == KP_CONFIG_RUN || rc == KP_CONFIG_HELP ||
          rc == KP_CONFIG_VERSION);
    if (rc == KP_CONFIG_RUN) {
        /* What the server relies on after a successful parse. */
        CHECK(memchr(cfg.addr, '\0', sizeof(cfg.addr)) != NULL);
        CHECK(memchr(cfg.job_secret, '\0', sizeof(cfg.job_secret)) != NULL);
        CHECK(cfg.expire_ms >= cfg.interval_ms);
        CHECK(cfg.max_msg >= 64 && cfg.max_errors >= 1);
    }

    /* Unset before the buffers are reused: environ points into them. */
    for (size_t i = 0; i < nset; i++)
        unsetenv(env_names[set[i]]);
    free(text);
    return 0;
}
