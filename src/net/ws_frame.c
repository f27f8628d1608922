/* RFC 6455 §5.2 frame headers, masking (§5.3), UTF-8 and close-code checks. See ws_frame.h. */
#include "ws_frame.h"

#include <string.h>

static bool opcode_known(uint8_t opcode)
{
    switch (opcode) {
    case WS_OP_CONT:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return true;
    default:
        return false;
    }
}

/* The size of the length field and the mask key, known from the first two bytes. */
static size_t length_bytes(const uint8_t b[2])
{
    uint8_t len7 = b[1] & 0x7f;
    return len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
}

static size_t mask_bytes(const uint8_t b[2])
{
    return (b[1] & 0x80) ? 4 : 0;
}

/* Copies into the decoder until it holds `upto` bytes; returns how many were taken. */
static size_t take(ws_header_decoder *d, const uint8_t *data, size_t len, size_t upto)
{
    size_t want = upto - d->have;
    size_t n = len < want ? len : want;
    if (n)
        memcpy(d->buf + d->have, data, n);
    d->have = (uint8_t)(d->have + n);
    return n;
}

static enum ws_header_status bad(ws_header_decoder *d, const char **why, const char *what)
{
    *why = what;
    d->reported = WS_HDR_BAD;
    return WS_HDR_BAD;
}

static enum ws_header_status report(ws_header_decoder *d, enum ws_header_status st)
{
    d->reported = (uint8_t)st;
    return st;
}

/* The first two bytes: what is wrong whatever the connection's state. */
static enum ws_header_status decode_start(ws_header_decoder *d, ws_frame_header *h, const char **why)
{
    h->fin = (d->buf[0] & 0x80) != 0;
    h->opcode = d->buf[0] & 0x0f;
    h->masked = (d->buf[1] & 0x80) != 0;
    h->len = 0;
    if (d->buf[0] & 0x70)
        return bad(d, why, "reserved bits set");
    if (!opcode_known(h->opcode))
        return bad(d, why, "unknown opcode");
    if (ws_opcode_is_control(h->opcode) && !h->fin)
        return bad(d, why, "fragmented control frame");
    if (ws_opcode_is_control(h->opcode) && (d->buf[1] & 0x7f) > WS_CONTROL_MAX)
        return bad(d, why, "control frame over 125 bytes");
    return report(d, WS_HDR_START);
}

/* The length, in the shortest form that holds it (RFC 6455 §5.2), top bit clear. */
static enum ws_header_status decode_length(ws_header_decoder *d, ws_frame_header *h, const char **why)
{
    const uint8_t *b = d->buf;
    uint8_t len7 = b[1] & 0x7f;
    if (len7 < 126) {
        h->len = len7;
    } else if (len7 == 126) {
        h->len = ((uint64_t)b[2] << 8) | b[3];
        if (h->len < 126)
            return bad(d, why, "length not in its shortest form");
    } else {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = (v << 8) | b[2 + i];
        if (v >> 63)
            return bad(d, why, "length with the top bit set");
        if (v < 65536)
            return bad(d, why, "length not in its shortest form");
        h->len = v;
    }
    return report(d, WS_HDR_LENGTH);
}

enum ws_header_status ws_header_feed(ws_header_decoder *d, const uint8_t *data, size_t len,
                                     size_t *used, ws_frame_header *h, const char **why)
{
    *used = 0;
    if (d->reported == WS_HDR_BAD) /* refused already: stays refused */
        return bad(d, why, "malformed frame header");
    if (d->have < 2) {
        *used = take(d, data, len, 2);
        return d->have < 2 ? WS_HDR_MORE : decode_start(d, h, why);
    }
    size_t length_end = 2 + length_bytes(d->buf);
    if (d->reported == WS_HDR_START) {
        *used = take(d, data, len, length_end);
        return d->have < length_end ? WS_HDR_MORE : decode_length(d, h, why);
    }
    size_t end = length_end + mask_bytes(d->buf);
    *used = take(d, data, len, end);
    if (d->have < end)
        return WS_HDR_MORE;
    if (h->masked)
        memcpy(h->mask, d->buf + length_end, 4);
    return report(d, WS_HDR_DONE);
}

size_t ws_header_encode(uint8_t out[WS_HEADER_MAX], uint8_t opcode, uint64_t len,
                        const uint8_t mask[4])
{
    size_t n = 0;
    uint8_t m = mask ? 0x80 : 0;
    out[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[n++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], uint64_t pos)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ key[(pos + i) & 3];
}

bool ws_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            more = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false; /* a continuation byte first, or 0xf8..0xff */
        }
        if (len - i - 1 < more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

bool ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}
