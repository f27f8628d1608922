#include "json_escape.h"

#include <string.h>

#include "utf8.h"

/* The escaped form of the character at s[0..n) (n > 0) into out; returns its length and sets
 * *in to the input bytes it stands for. */
static size_t escape_char(const unsigned char *s, size_t n, char out[KP_JSON_ESCAPE_MAX],
                          size_t *in)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    *in = 1;
    switch (c) {
    case '"': memcpy(out, "\\\"", 2); return 2;
    case '\\': memcpy(out, "\\\\", 2); return 2;
    case '\b': memcpy(out, "\\b", 2); return 2;
    case '\f': memcpy(out, "\\f", 2); return 2;
    case '\n': memcpy(out, "\\n", 2); return 2;
    case '\r': memcpy(out, "\\r", 2); return 2;
    case '\t': memcpy(out, "\\t", 2); return 2;
    default: break;
    }
    if (c < 0x20 || c == 0x7f) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 0xf];
        return 6;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    size_t len = kp_utf8_char_len(s, n);
    if (len == 0) {
        memcpy(out, "\\ufffd", 6);
        return 6;
    }
    memcpy(out, s, len);
    *in = len;
    return len;
}

size_t kp_json_escape(char *buf, size_t cap, const char *s, size_t n, size_t *used)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t w = 0;
    size_t r = 0;
    while (r < n) {
        char piece[KP_JSON_ESCAPE_MAX];
        size_t in;
        size_t len = escape_char(u + r, n - r, piece, &in);
        if (cap - w < len)
            break;
        memcpy(buf + w, piece, len);
        w += len;
        r += in;
    }
    *used = r;
    return w;
}
