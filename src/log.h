/* Structured logging (SPEC §5).
 *
 * One process-wide logger: it is written from the loop thread, the worker threads and the
 * consumer thread alike, so unlike the rest of the core it is not a context struct. Callers format
 * a line into a bounded buffer and hand it to a writer thread, so neither the loop nor a worker
 * ever waits on a disk or a full stderr pipe. If the writer falls behind by more than the queue
 * bound, lines are dropped and the count of dropped lines is written once the writer catches up.
 *
 * Text:  2026-11-24T20:31:05.123Z INFO broadcast job job_id=1 nonce=ab sessions=0 module=app.coordinator
 * JSON:  {"ts":"2026-11-24T20:31:05.123Z","level":"info","msg":"broadcast job","job_id":1,
 *         "nonce":"ab","sessions":0,"module":"app.coordinator"}
 */
#ifndef KP_LOG_H
#define KP_LOG_H

#include <stdint.h>

#include "kupool/config.h"

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

/* Logs `msg` with the key=value pairs in `kv_fmt` (printf format, may be NULL) and the module.
 * A value that may contain spaces is formatted quoted, key="%s"; control characters are made
 * harmless by the logger, so a line never splits.
 * In JSON format each pair becomes a member; a value that looks like an integer or a float stays
 * a number, true/false stay booleans, a quoted value is unquoted. */
void kp_log(kp_log_level level, const char *module, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define KP_TRACE(mod, msg, ...) kp_log(KP_LOG_TRACE, mod, msg, __VA_ARGS__)
#define KP_DEBUG(mod, msg, ...) kp_log(KP_LOG_DEBUG, mod, msg, __VA_ARGS__)
#define KP_INFO(mod, msg, ...) kp_log(KP_LOG_INFO, mod, msg, __VA_ARGS__)
#define KP_WARN(mod, msg, ...) kp_log(KP_LOG_WARN, mod, msg, __VA_ARGS__)
#define KP_ERROR(mod, msg, ...) kp_log(KP_LOG_ERROR, mod, msg, __VA_ARGS__)

/* Parses "trace".."error" / "text","json". Return 0 or KP_EINVAL. */
int kp_log_level_parse(const char *text, kp_log_level *out);
int kp_log_format_parse(const char *text, kp_log_format *out);

/* Formats `ms` (Unix milliseconds) as 2026-11-24T20:31:05.123Z into buf (cap >= 25). */
void kp_format_utc_ms(int64_t ms, char *buf, size_t cap);

#endif
