/* Structured logging (SPEC §5) with typed fields.
 *
 * One process-wide logger: it is written from the loop thread, the worker threads and the
 * consumer thread alike, so unlike the rest of the core it is not a context struct. Callers format
 * a line into a bounded buffer and hand it to a writer thread, so neither the loop nor a worker
 * ever waits on a disk or a full stderr pipe. If the writer falls behind by more than the queue
 * bound, lines are dropped and the count of dropped lines is written once the writer catches up.
 *
 *   KP_INFO("app.coordinator", "broadcast job", KP_INT("job_id", id), KP_STR("nonce", nonce),
 *           KP_UINT("sessions", n));
 *
 * Text:  2026-11-24T20:31:05.123Z INFO broadcast job job_id=1 nonce=ab sessions=0 module=app.coordinator
 * JSON:  {"ts":"2026-11-24T20:31:05.123Z","level":"info","msg":"broadcast job","job_id":1,
 *         "nonce":"ab","sessions":0,"module":"app.coordinator"}
 *
 * Every field is a typed value that each format renders and escapes itself, so a value (a
 * username, an error text) can never become a field of its own or split a line: see
 * docs/observability.md "Logs" for the quoting and escaping rules. Keys and messages are program
 * constants. Arguments are evaluated only when the level is enabled; at most KP_LOG_FIELDS_MAX
 * fields per line (more do not compile).
 */
#ifndef KP_LOG_H
#define KP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kupool/config.h"
#include "utc_time.h" /* kp_format_utc_ms used to live here */

typedef struct kp_log_options {
    kp_log_level level;
    kp_log_format format;
    const char *file;  /* NULL or "" = stderr */
    uint64_t max_bytes; /* rotate when the file would grow past this; 0 = never */
    uint32_t keep;      /* rotated files kept: FILE.1 .. FILE.keep */
} kp_log_options;

/* Starts the writer thread. Before kp_log_open (and after kp_log_close) lines go straight to
 * stderr at info level, so early errors are never lost. Returns 0, KP_EIO (file cannot be
 * opened; one line says why on stderr) or KP_ENOMEM. */
int kp_log_open(const kp_log_options *opts);

/* Flushes every queued line and stops the writer thread. */
void kp_log_close(void);

/* True when a line at `level` would be written: guard expensive argument preparation with it. */
int kp_log_enabled(kp_log_level level);

/* Parses "trace".."error" / "text","json". Return 0 or KP_EINVAL. */
int kp_log_level_parse(const char *text, kp_log_level *out);
int kp_log_format_parse(const char *text, kp_log_format *out);

/* ---- typed fields --------------------------------------------------------------------------- */

typedef enum kp_log_field_type {
    KP_LOG_FIELD_STR,   /* text: quoted only when needed */
    KP_LOG_FIELD_QSTR,  /* text: always quoted (keeps shapes like listen="host:port" stable) */
    KP_LOG_FIELD_INT,
    KP_LOG_FIELD_UINT,
    KP_LOG_FIELD_FLOAT, /* NaN and infinities are written as the strings "nan", "inf", "-inf" */
    KP_LOG_FIELD_BOOL
} kp_log_field_type;

typedef struct kp_log_field {
    const char *key;
    kp_log_field_type type;
    union {
        int64_t i;
        uint64_t u;
        double f;
        bool b;
        struct {
            const char *p;
            size_t n;
        } s;
    } v;
} kp_log_field;

enum { KP_LOG_FIELDS_MAX = 32 };

static inline kp_log_field kp_log_strn_(const char *key, kp_log_field_type type, const char *p,
                                        size_t n)
{
    kp_log_field f = {.key = key, .type = type};
    f.v.s.p = p != NULL ? p : "";
    f.v.s.n = p != NULL ? n : 0;
    return f;
}

static inline kp_log_field kp_log_str_(const char *key, kp_log_field_type type, const char *s)
{
    return kp_log_strn_(key, type, s, s != NULL ? strlen(s) : 0);
}

static inline kp_log_field kp_log_int_(const char *key, int64_t v)
{
    kp_log_field f = {.key = key, .type = KP_LOG_FIELD_INT, .v.i = v};
    return f;
}

static inline kp_log_field kp_log_uint_(const char *key, uint64_t v)
{
    kp_log_field f = {.key = key, .type = KP_LOG_FIELD_UINT, .v.u = v};
    return f;
}

static inline kp_log_field kp_log_float_(const char *key, double v)
{
    kp_log_field f = {.key = key, .type = KP_LOG_FIELD_FLOAT, .v.f = v};
    return f;
}

static inline kp_log_field kp_log_bool_(const char *key, bool v)
{
    kp_log_field f = {.key = key, .type = KP_LOG_FIELD_BOOL, .v.b = v};
    return f;
}

/* NUL-terminated string (NULL logs as empty). */
#define KP_STR(k, s) kp_log_str_((k), KP_LOG_FIELD_STR, (s))
/* n bytes at p: may contain anything, NUL and invalid UTF-8 included. */
#define KP_STRN(k, p, n) kp_log_strn_((k), KP_LOG_FIELD_STR, (p), (n))
/* A string that the text format always quotes. */
#define KP_QSTR(k, s) kp_log_str_((k), KP_LOG_FIELD_QSTR, (s))
#define KP_INT(k, v) kp_log_int_((k), (int64_t)(v))
#define KP_UINT(k, v) kp_log_uint_((k), (uint64_t)(v))
#define KP_FLOAT(k, v) kp_log_float_((k), (double)(v))
#define KP_BOOL(k, v) kp_log_bool_((k), (v) ? true : false)

/* Logs `msg` with fields[0..n) and the module. Any thread, any time. */
void kp_log_fields(kp_log_level level, const char *module, const char *msg,
                   const kp_log_field *fields, size_t n);

/* For the macros below: n kp_log_field arguments follow. */
void kp_log_fieldsv_(kp_log_level level, const char *module, const char *msg, size_t n, ...);

/* Counts 0..KP_LOG_FIELDS_MAX arguments. With more, the "count" is an argument itself, which
 * does not convert to size_t when it is a field: too many fields fail to compile. */
#define KP_LOG_NARG_(...)                                                                   \
    KP_LOG_NARG_PICK_(__VA_ARGS__ __VA_OPT__(, ) 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, \
                      21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,  \
                      1, 0)
#define KP_LOG_NARG_PICK_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, \
                          a17, a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30,  \
                          a31, a32, N, ...)                                                      \
    N

/* The level check comes first, so that no argument is evaluated for a disabled level. */
#define KP_LOG_AT_(level, mod, msg, ...)                                                        \
    do {                                                                                        \
        if (kp_log_enabled(level)) {                                                            \
            kp_log_fieldsv_((level), (mod), (msg),                                              \
                            (size_t)KP_LOG_NARG_(__VA_ARGS__) __VA_OPT__(, ) __VA_ARGS__);      \
        }                                                                                       \
    } while (0)

#define KP_TRACE(mod, msg, ...) KP_LOG_AT_(KP_LOG_TRACE, mod, msg __VA_OPT__(, ) __VA_ARGS__)
#define KP_DEBUG(mod, msg, ...) KP_LOG_AT_(KP_LOG_DEBUG, mod, msg __VA_OPT__(, ) __VA_ARGS__)
#define KP_INFO(mod, msg, ...) KP_LOG_AT_(KP_LOG_INFO, mod, msg __VA_OPT__(, ) __VA_ARGS__)
#define KP_WARN(mod, msg, ...) KP_LOG_AT_(KP_LOG_WARN, mod, msg __VA_OPT__(, ) __VA_ARGS__)
#define KP_ERROR(mod, msg, ...) KP_LOG_AT_(KP_LOG_ERROR, mod, msg __VA_OPT__(, ) __VA_ARGS__)

#endif
