/* Event JSON (SPEC §3) and the minute an event is counted in.
 *
 * The writer is hand-rolled because it runs on the loop thread for every accepted submit; the
 * reader runs on the consumer side, where cJSON's allocations do not matter. */
#include "kupool/event.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "codec.h" /* KP_JSON_INT_MAX: the same exact-double limit as on the wire */
#include "json_escape.h"
#include "kupool/error.h"
#include "utc_time.h"

#define MS_PER_MINUTE 60000
#define MS_PER_SECOND 1000
#define TS_TEXT_LEN ((size_t)KP_UTC_MS_LEN)

/* Floor, not C's truncation: -1 ms belongs to the minute that starts at -60 s. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t kp_event_minute(const kp_event *ev)
{
    return floor_div(ev->ts_ms, MS_PER_MINUTE) * 60;
}

/* Appends into a fixed buffer and remembers running out of room, so the caller checks once. */
typedef struct json_writer {
    char *buf;
    size_t cap;
    size_t len;
    bool full;
} json_writer;

static void put_bytes(json_writer *w, const char *s, size_t n)
{
    if (w->full || w->cap - w->len <= n) { /* keep one byte for the terminating NUL */
        w->full = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void put_text(json_writer *w, const char *s)
{
    put_bytes(w, s, strlen(s));
}

/* Writes s as a JSON string body through the one escaper (src/json_escape.h). Usernames are
 * already valid UTF-8 without controls (the codec checked them), so they pass through as is. */
static void put_escaped(json_writer *w, const char *s, size_t n)
{
    if (w->full || w->cap - w->len <= 1) { /* keep one byte for the terminating NUL */
        w->full = true;
        return;
    }
    size_t used;
    w->len += kp_json_escape(w->buf + w->len, w->cap - w->len - 1, s, n, &used);
    if (used != n)
        w->full = true;
}

/* A field of a kp_event must be NUL-terminated inside its array. */
static bool field_len(const char *field, size_t size, size_t *len)
{
    *len = strnlen(field, size);
    return *len < size;
}

static void put_string_field(json_writer *w, const char *key, const char *value, size_t n)
{
    put_text(w, key);
    put_bytes(w, "\"", 1);
    put_escaped(w, value, n);
    put_bytes(w, "\"", 1);
}

/* "2026-11-24T20:31:05.123Z" into out[TS_TEXT_LEN + 1]. Years outside 0000..9999 have no
 * four-digit form, so they are refused rather than written in a shape the reader rejects. */
static bool format_ts(int64_t ts_ms, char *out)
{
    return kp_format_utc_ms(ts_ms, out, TS_TEXT_LEN + 1) == (int)TS_TEXT_LEN;
}

int kp_event_to_json(const kp_event *ev, char *buf, size_t cap)
{
    size_t id_len, user_len, nonce_len;
    if (!field_len(ev->event_id, sizeof(ev->event_id), &id_len) ||
        !field_len(ev->username, sizeof(ev->username), &user_len) ||
        !field_len(ev->client_nonce, sizeof(ev->client_nonce), &nonce_len))
        return KP_EINVAL;

    char ts[TS_TEXT_LEN + 1];
    if (!format_ts(ev->ts_ms, ts))
        return KP_EINVAL;
    char job_id[24];
    snprintf(job_id, sizeof(job_id), "%" PRId64, ev->job_id);
    char difficulty[24];
    snprintf(difficulty, sizeof(difficulty), "%" PRIu64, kp_event_difficulty(ev));

    json_writer w = {buf, cap, 0, cap == 0};
    put_string_field(&w, "{\"event_id\":", ev->event_id, id_len);
    put_string_field(&w, ",\"username\":", ev->username, user_len);
    put_text(&w, ",\"job_id\":");
    put_text(&w, job_id);
    put_string_field(&w, ",\"client_nonce\":", ev->client_nonce, nonce_len);
    put_string_field(&w, ",\"ts\":", ts, TS_TEXT_LEN);
    put_text(&w, ",\"difficulty\":");
    put_text(&w, difficulty);
    put_bytes(&w, "}", 1);
    if (w.full)
        return KP_EINVAL;
    buf[w.len] = '\0';
    return (int)w.len;
}

/* Copies a string member of 1..size-1 bytes into dst[size]. */
static bool get_string(const cJSON *obj, const char *key, char *dst, size_t size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return false;
    size_t n = strnlen(item->valuestring, size);
    if (n == 0 || n >= size)
        return false;
    memcpy(dst, item->valuestring, n + 1);
    return true;
}

static bool parse_digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Accepts exactly the shape format_ts() writes, and only real calendar instants: timegm()
 * would quietly turn Feb 30 into Mar 2, so the result is converted back and compared. */
static bool parse_ts(const char *s, int64_t *ts_ms)
{
    if (strlen(s) != TS_TEXT_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z')
        return false;
    int year, mon, day, hour, min, sec, ms;
    if (!parse_digits(s, 4, &year) || !parse_digits(s + 5, 2, &mon) ||
        !parse_digits(s + 8, 2, &day) || !parse_digits(s + 11, 2, &hour) ||
        !parse_digits(s + 14, 2, &min) || !parse_digits(s + 17, 2, &sec) ||
        !parse_digits(s + 20, 3, &ms))
        return false;
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59)
        return false;

    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    struct tm back;
    if (gmtime_r(&t, &back) == NULL || back.tm_year != year - 1900 || back.tm_mon != mon - 1 ||
        back.tm_mday != day || back.tm_hour != hour || back.tm_min != min || back.tm_sec != sec)
        return false;
    *ts_ms = (int64_t)t * MS_PER_SECOND + ms;
    return true;
}

static bool event_from_tree(const cJSON *root, kp_event *ev)
{
    if (!cJSON_IsObject(root))
        return false;
    if (!get_string(root, "event_id", ev->event_id, sizeof(ev->event_id)) ||
        !get_string(root, "username", ev->username, sizeof(ev->username)) ||
        !get_string(root, "client_nonce", ev->client_nonce, sizeof(ev->client_nonce)))
        return false;

    const cJSON *job_id = cJSON_GetObjectItemCaseSensitive(root, "job_id");
    if (!cJSON_IsNumber(job_id))
        return false;
    double d = job_id->valuedouble;
    if (!(d >= -(double)KP_JSON_INT_MAX && d <= (double)KP_JSON_INT_MAX) ||
        (double)(int64_t)d != d)
        return false;
    ev->job_id = (int64_t)d;

    /* Optional: a v1 event has no difficulty and counts as 1 (SPEC §8). */
    const cJSON *diff = cJSON_GetObjectItemCaseSensitive(root, "difficulty");
    ev->difficulty = 1;
    if (diff != NULL) {
        if (!cJSON_IsNumber(diff))
            return false;
        double dd = diff->valuedouble;
        if (!(dd >= 1 && dd <= (double)KP_DIFFICULTY_MAX) || (double)(uint64_t)dd != dd)
            return false;
        ev->difficulty = (uint64_t)dd;
    }

    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    if (!cJSON_IsString(ts) || ts->valuestring == NULL)
        return false;
    return parse_ts(ts->valuestring, &ev->ts_ms);
}

int kp_event_from_json(const char *json, size_t len, kp_event *ev)
{
    /* Same reasons as the wire codec: cJSON would stop at a NUL and ignore trailing bytes. */
    if (len == 0 || memchr(json, '\0', len) != NULL)
        return KP_EINVAL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL)
        return KP_EINVAL;

    bool ok = end != NULL;
    for (const char *p = end; ok && p < json + len; p++)
        ok = *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';

    /* Build into a copy so a rejected message leaves the caller's event untouched. */
    kp_event parsed = {0};
    ok = ok && event_from_tree(root, &parsed);
    cJSON_Delete(root);
    if (!ok)
        return KP_EINVAL;
    *ev = parsed;
    return 0;
}
