/* The one UTC timestamp formatter: log lines (src/log.c), event messages (src/event.c) and the
 * admin /stats minutes (src/admin.c). */
#ifndef KP_UTC_TIME_H
#define KP_UTC_TIME_H

#include <stddef.h>
#include <stdint.h>

enum {
    KP_UTC_MS_LEN = 24, /* "2026-11-24T20:31:05.123Z" */
    KP_UTC_S_LEN = 20   /* "2026-11-24T20:31:05Z" */
};

/* Formats `ms` (Unix milliseconds, floored: -1 is 1969-12-31T23:59:59.999Z) as
 * 2026-11-24T20:31:05.123Z into buf[cap], cut to cap - 1 bytes; buf is always NUL-terminated
 * when cap > 0. Returns the full length (KP_UTC_MS_LEN), or -1 (buf = "") when the year is
 * outside 0000..9999, which has no four-digit form. */
int kp_format_utc_ms(int64_t ms, char *buf, size_t cap);

/* The same in whole seconds: 2026-11-24T20:31:05Z (KP_UTC_S_LEN), or -1. */
int kp_format_utc_s(int64_t unix_s, char *buf, size_t cap);

#endif
