/* Log line formats (SPEC §5): text and JSON renderings of a line's typed fields. Pure: no
 * thread, no clock, no file; the time comes in, the bytes go out into the caller's buffer, so
 * tests drive every rendering rule without the writer thread (log.c).
 *
 * Rules shared by both formats: a line is at most KP_LOG_LINE_BYTES with its "\n"; a field that
 * does not fit is left out whole and the line ends in "..." (text) or stays valid JSON; client
 * text is escaped by each format, so it can never become a field of its own. */
#include "log_format.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_escape.h"
#include "kupool/error.h"
#include "utc_time.h"
#include "utf8.h"

static const char *const level_upper[] = {
    [KP_LOG_TRACE] = "TRACE", [KP_LOG_DEBUG] = "DEBUG", [KP_LOG_INFO] = "INFO",
    [KP_LOG_WARN] = "WARN",   [KP_LOG_ERROR] = "ERROR",
};

static const char *const level_lower[] = {
    [KP_LOG_TRACE] = "trace", [KP_LOG_DEBUG] = "debug", [KP_LOG_INFO] = "info",
    [KP_LOG_WARN] = "warn",   [KP_LOG_ERROR] = "error",
};

kp_log_level kp_log_clamp_level(kp_log_level level)
{
    if ((int)level < KP_LOG_TRACE) {
        return KP_LOG_TRACE;
    }
    if ((int)level > KP_LOG_ERROR) {
        return KP_LOG_ERROR;
    }
    return level;
}

/* Length of data[0..len) without a trailing, incomplete UTF-8 sequence, so that a truncated
 * line never ends in the middle of a character. */
static size_t utf8_trim(const char *data, size_t len)
{
    size_t i = len;
    size_t back = 0;
    while (i > 0 && back < 4 && ((unsigned char)data[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) {
        return len;
    }
    unsigned char lead = (unsigned char)data[i - 1];
    size_t need;
    if (lead < 0x80) {
        return len;
    } else if ((lead & 0xE0) == 0xC0) {
        need = 2;
    } else if ((lead & 0xF0) == 0xE0) {
        need = 3;
    } else if ((lead & 0xF8) == 0xF0) {
        need = 4;
    } else {
        return len; /* not UTF-8 anyway: leave it */
    }
    return (back + 1 >= need) ? len : i - 1;
}

/* A bounded output buffer: every put either fits entirely or writes nothing. */
typedef struct outbuf {
    char *data;
    size_t len;
    size_t cap;
} outbuf;

static size_t out_room(const outbuf *o)
{
    return o->cap - o->len;
}

static bool out_put(outbuf *o, const char *s, size_t n)
{
    if (out_room(o) < n) {
        return false;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
    return true;
}

static bool out_str(outbuf *o, const char *s)
{
    return out_put(o, s, strlen(s));
}

/* Shortest "%.Ng" that reads back as the same double; NaN and infinities have no JSON or
 * unambiguous text form and are written as words (the caller quotes them in JSON). */
static int format_double(double v, char *buf, size_t cap, bool *is_number)
{
    *is_number = isfinite(v);
    if (isnan(v)) {
        return snprintf(buf, cap, "nan");
    }
    if (isinf(v)) {
        return snprintf(buf, cap, v < 0 ? "-inf" : "inf");
    }
    int n = snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) {
        n = snprintf(buf, cap, "%.17g", v);
    }
    return n;
}

/* A number, bool or float field value as text; *is_number is false for nan/inf. */
static size_t format_scalar(const kp_log_field *f, char *buf, size_t cap, bool *is_number)
{
    int n = 0;
    *is_number = true;
    switch (f->type) {
    case KP_LOG_FIELD_INT: n = snprintf(buf, cap, "%lld", (long long)f->v.i); break;
    case KP_LOG_FIELD_UINT: n = snprintf(buf, cap, "%llu", (unsigned long long)f->v.u); break;
    case KP_LOG_FIELD_BOOL: n = snprintf(buf, cap, "%s", f->v.b ? "true" : "false"); break;
    case KP_LOG_FIELD_FLOAT: n = format_double(f->v.f, buf, cap, is_number); break;
    default: break;
    }
    return n > 0 ? (size_t)n : 0;
}

static bool is_string_field(const kp_log_field *f)
{
    return f->type == KP_LOG_FIELD_STR || f->type == KP_LOG_FIELD_QSTR;
}

/* ---- text format ------------------------------------------------------------------------ */

enum { TEXT_ESCAPE_MAX = 4 }; /* "\xNN", or one UTF-8 character */

/* The text form of the character at s[0..n) inside a quoted value; returns its length, sets *in
 * to the input bytes it stands for and *plain to whether it could also stand unquoted. */
static size_t text_escape_char(const unsigned char *s, size_t n, char out[TEXT_ESCAPE_MAX],
                               size_t *in, bool *plain)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    *in = 1;
    *plain = false;
    switch (c) {
    case '"': memcpy(out, "\\\"", 2); return 2;
    case '\\': memcpy(out, "\\\\", 2); return 2;
    case '\n': memcpy(out, "\\n", 2); return 2;
    case '\r': memcpy(out, "\\r", 2); return 2;
    case '\t': memcpy(out, "\\t", 2); return 2;
    default: break;
    }
    if (c >= 0x80) {
        size_t len = kp_utf8_char_len(s, n);
        if (len > 0) {
            memcpy(out, s, len);
            *in = len;
            *plain = true;
            return len;
        }
    }
    if (c < 0x20 || c >= 0x7f) { /* control, DEL, or a byte of no UTF-8 character */
        out[0] = '\\';
        out[1] = 'x';
        out[2] = hex[c >> 4];
        out[3] = hex[c & 0xf];
        return 4;
    }
    out[0] = (char)c;
    *plain = c != ' ' && c != '=';
    return 1;
}

/* True when s[0..n) can be written without quotes and still read as one value. */
static bool text_plain(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        char piece[TEXT_ESCAPE_MAX];
        size_t in;
        bool plain;
        text_escape_char(u + i, n - i, piece, &in, &plain);
        if (!plain) {
            return false;
        }
        i += in;
    }
    return n > 0;
}

/* Puts whole characters of s[0..n) (escaped when `quoted`), keeping `reserve` bytes of room.
 * Returns true when all of it fit. */
static bool text_put_chars(outbuf *o, const char *s, size_t n, bool quoted, size_t reserve)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        char piece[TEXT_ESCAPE_MAX];
        size_t in;
        bool plain;
        size_t len = text_escape_char(u + i, n - i, piece, &in, &plain);
        if (!quoted) { /* text_plain() said every character stands as is */
            len = in;
            memcpy(piece, u + i, in);
        }
        if (out_room(o) < len + reserve) {
            return false;
        }
        out_put(o, piece, len);
        i += in;
    }
    return true;
}

/* Control characters would break the one-line-per-record framing: they become spaces. */
static void text_sanitize(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            s[i] = ' ';
        }
    }
}

/* Puts raw s[0..n) (a message) with control bytes as spaces; cut to fit at a
 * character boundary. Returns true when all of it fit. */
static bool text_put_raw(outbuf *o, const char *s, size_t n)
{
    bool whole = n <= out_room(o);
    if (!whole) {
        n = utf8_trim(s, out_room(o));
    }
    size_t start = o->len;
    out_put(o, s, n);
    text_sanitize(o->data + start, n);
    return whole;
}

/* Keys are program constants; anything unexpected in one still cannot fake a separator. */
static void text_put_key(outbuf *o, const char *key)
{
    for (const char *k = key != NULL ? key : "-"; *k != '\0' && out_room(o) > 0; k++) {
        char c = *k;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        out_put(o, ok ? &c : "_", 1);
    }
}

/* How much of a field made it into the line. */
typedef enum text_put {
    TEXT_WHOLE,
    TEXT_CUT,       /* the line needs "..." after what was put */
    TEXT_CUT_MARKED /* a quoted value was cut and ends in ..." already */
} text_put;

/* Puts " key=value". What fits of a string value is kept (a quoted one is closed, with the
 * "..." inside the quotes so that the line still reads as key=value pairs); anything else that
 * does not fit is left out whole. The "..." uses the room format_text keeps past o->cap. */
static text_put text_put_field(outbuf *o, const kp_log_field *f, size_t ellipsis_room)
{
    size_t mark = o->len;
    if (!out_put(o, " ", 1)) {
        return TEXT_CUT;
    }
    text_put_key(o, f->key);
    if (!out_put(o, "=", 1)) {
        o->len = mark;
        return TEXT_CUT;
    }
    if (is_string_field(f)) {
        bool quoted = f->type == KP_LOG_FIELD_QSTR || !text_plain(f->v.s.p, f->v.s.n);
        if (!quoted) {
            return text_put_chars(o, f->v.s.p, f->v.s.n, false, 0) ? TEXT_WHOLE : TEXT_CUT;
        }
        if (!out_put(o, "\"", 1)) {
            o->len = mark;
            return TEXT_CUT;
        }
        bool whole = text_put_chars(o, f->v.s.p, f->v.s.n, true, 1);
        if (whole) {
            out_put(o, "\"", 1); /* room was reserved */
            return TEXT_WHOLE;
        }
        o->cap += ellipsis_room;
        out_put(o, "...\"", 4);
        o->cap -= ellipsis_room;
        return TEXT_CUT_MARKED;
    }
    char num[64];
    bool is_number;
    size_t n = format_scalar(f, num, sizeof num, &is_number);
    if (!out_put(o, num, n)) {
        o->len = mark;
        return TEXT_CUT;
    }
    return TEXT_WHOLE;
}

static size_t format_text(char *line, size_t cap, const char *ts, kp_log_level level,
                          const char *module, const char *msg, const kp_log_field *fields,
                          size_t n_fields)
{
    /* The tail " module=X\n" is always kept, so a truncated line still ends like every other. */
    char tail[KP_LOG_MODULE_MAX + 16];
    size_t mod_len = strnlen(module, KP_LOG_MODULE_MAX);
    int tail_len = snprintf(tail, sizeof tail, " module=%.*s\n", (int)mod_len, module);
    text_sanitize(tail, (size_t)tail_len - 1);

    const size_t ellipsis = 3;
    outbuf o = {.data = line, .len = 0, .cap = cap - (size_t)tail_len - ellipsis};

    out_str(&o, ts);
    out_put(&o, " ", 1);
    out_str(&o, level_upper[level]);
    out_put(&o, " ", 1);
    text_put put = text_put_raw(&o, msg, strlen(msg)) ? TEXT_WHOLE : TEXT_CUT;
    for (size_t i = 0; put == TEXT_WHOLE && i < n_fields; i++) {
        put = text_put_field(&o, &fields[i], ellipsis);
    }

    o.cap = cap;
    if (put == TEXT_CUT) {
        out_put(&o, "...", ellipsis);
    }
    out_put(&o, tail, (size_t)tail_len);
    return o.len;
}

/* ---- JSON format ------------------------------------------------------------------------ */

/* Puts s[0..n) as a JSON string. If it does not fit, puts as much as fits followed by "..." and
 * returns 1; returns 0 when whole, -1 (nothing written) when not even "..." fits. */
static int json_put_string(outbuf *o, const char *s, size_t n)
{
    size_t used;
    size_t room = out_room(o);
    if (room >= 2) {
        size_t w = kp_json_escape(o->data + o->len + 1, room - 2, s, n, &used);
        if (used == n) {
            o->data[o->len] = '"';
            o->data[o->len + 1 + w] = '"';
            o->len += w + 2;
            return 0;
        }
    }
    if (room < 5) { /* "..." */
        return -1;
    }
    size_t w = kp_json_escape(o->data + o->len + 1, room - 5, s, n, &used);
    o->data[o->len] = '"';
    memcpy(o->data + o->len + 1 + w, "...\"", 4);
    o->len += w + 5;
    return 1;
}

/* Puts ,"key":value. Returns false when the member was cut or left out. */
static bool json_put_field(outbuf *o, const kp_log_field *f)
{
    size_t mark = o->len;
    const char *key = f->key ? f->key : "-";
    if (!out_put(o, ",", 1) || json_put_string(o, key, strlen(key)) != 0 || !out_put(o, ":", 1)) {
        o->len = mark;
        return false;
    }
    if (is_string_field(f)) {
        int rc = json_put_string(o, f->v.s.p, f->v.s.n);
        if (rc < 0) {
            o->len = mark;
        }
        return rc == 0;
    }
    char num[64];
    bool is_number;
    size_t n = format_scalar(f, num, sizeof num, &is_number);
    bool ok = is_number ? out_put(o, num, n) : json_put_string(o, num, n) == 0;
    if (!ok) {
        o->len = mark;
    }
    return ok;
}

static size_t format_json(char *line, size_t cap, const char *ts, kp_log_level level,
                          const char *module, const char *msg, const kp_log_field *fields,
                          size_t n_fields)
{
    static const char truncated_member[] = ",\"truncated\":true";

    /* The tail is built first and always kept: a cut line stays one valid object. */
    char tail[KP_LOG_MODULE_MAX * KP_JSON_ESCAPE_MAX + 32];
    outbuf t = {.data = tail, .len = 0, .cap = sizeof tail};
    out_str(&t, ",\"module\":");
    json_put_string(&t, module, strnlen(module, KP_LOG_MODULE_MAX));
    out_str(&t, "}\n");

    outbuf o = {.data = line, .len = 0, .cap = cap - t.len - (sizeof truncated_member - 1)};
    out_str(&o, "{\"ts\":\"");
    out_str(&o, ts);
    out_str(&o, "\",\"level\":\"");
    out_str(&o, level_lower[level]);
    out_str(&o, "\",\"msg\":");
    bool whole = json_put_string(&o, msg, strlen(msg)) == 0;
    for (size_t i = 0; whole && i < n_fields; i++) {
        whole = json_put_field(&o, &fields[i]);
    }

    o.cap = cap;
    if (!whole) {
        out_put(&o, truncated_member, sizeof truncated_member - 1);
    }
    out_put(&o, tail, t.len);
    return o.len;
}

/* ---- line assembly ---------------------------------------------------------------------- */

size_t kp_log_format_line(char *line, kp_log_format format, int64_t unix_ms, kp_log_level level,
                          const char *module, const char *msg, const kp_log_field *fields,
                          size_t n_fields)
{
    char ts[KP_UTC_MS_LEN + 1];
    if (kp_format_utc_ms(unix_ms, ts, sizeof ts) < 0) {
        snprintf(ts, sizeof ts, "0000-00-00T00:00:00.000Z"); /* a clock beyond year 9999 */
    }
    level = kp_log_clamp_level(level);
    if (module == NULL) {
        module = "-";
    }
    if (msg == NULL) {
        msg = "";
    }
    if (format == KP_LOG_JSON) {
        return format_json(line, KP_LOG_LINE_BYTES, ts, level, module, msg, fields, n_fields);
    }
    return format_text(line, KP_LOG_LINE_BYTES, ts, level, module, msg, fields, n_fields);
}

int kp_log_level_parse(const char *text, kp_log_level *out)
{
    if (text == NULL) {
        return KP_EINVAL;
    }
    for (int l = KP_LOG_TRACE; l <= KP_LOG_ERROR; l++) {
        if (strcasecmp(text, level_lower[l]) == 0) {
            *out = (kp_log_level)l;
            return 0;
        }
    }
    return KP_EINVAL;
}

int kp_log_format_parse(const char *text, kp_log_format *out)
{
    if (text == NULL) {
        return KP_EINVAL;
    }
    if (strcasecmp(text, "text") == 0) {
        *out = KP_LOG_TEXT;
        return 0;
    }
    if (strcasecmp(text, "json") == 0) {
        *out = KP_LOG_JSON;
        return 0;
    }
    return KP_EINVAL;
}
