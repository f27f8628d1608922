#include "utc_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Shared body: `frac_ms` < 0 means "no fraction". */
static int format_utc(int64_t secs, int frac_ms, char *buf, size_t cap)
{
    if (cap > 0)
        buf[0] = '\0';
    time_t t = (time_t)secs;
    struct tm tm;
    if ((int64_t)t != secs || gmtime_r(&t, &tm) == NULL)
        return -1;
    if (tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return -1;
    /* Formatted into room for any int first: the compiler cannot prove the widths fit `cap`
     * (and warns about truncation); the year range above keeps the real text at its length. */
    char tmp[96];
    int n;
    if (frac_ms >= 0)
        n = snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac_ms);
    else
        n = snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (cap > 0) {
        size_t k = (size_t)n < cap ? (size_t)n : cap - 1;
        memcpy(buf, tmp, k);
        buf[k] = '\0';
    }
    return n;
}

int kp_format_utc_ms(int64_t ms, char *buf, size_t cap)
{
    int64_t secs = ms / 1000;
    int frac = (int)(ms % 1000); /* not ms - secs * 1000: that overflows near INT64_MIN */
    if (frac < 0) {              /* floor, so that -1 ms is 1969-12-31T23:59:59.999Z */
        frac += 1000;
        secs -= 1;
    }
    return format_utc(secs, frac, buf, cap);
}

int kp_format_utc_s(int64_t unix_s, char *buf, size_t cap)
{
    return format_utc(unix_s, -1, buf, cap);
}
