/* See proxy_header.h. The two versions share nothing but the first-byte decision: v1 is a text
 * line checked byte by byte as it grows and parsed once its CRLF arrives; v2 is a 16-byte
 * prefix whose length field then says how much follows, of which only the addresses are kept. */
#include "proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6
#define V2_FIXED 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TCP4 0x11 /* AF_INET, STREAM */
#define V2_TCP6 0x21 /* AF_INET6, STREAM */
#define V2_TCP4_ADDR_LEN 12
#define V2_TCP6_ADDR_LEN 36

_Static_assert(V2_FIXED + V2_TCP6_ADDR_LEN <= KP_PROXY_V1_MAX + 1, "v2 addresses fit the buffer");

void kp_proxy_parser_init(kp_proxy_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static kp_proxy_status fail(kp_proxy_parser *p, const char *why)
{
    p->why = why;
    return KP_PROXY_ERROR;
}

/* ---- v1 ---- */

/* A decimal port, 1..5 digits, at most 65535. */
static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool parse_addr(int family, const char *s, size_t n, void *dst)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text))
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(family, text, dst) == 1;
}

/* The line without its CRLF: "PROXY TCP4 src dst sport dport", "PROXY UNKNOWN[ anything]". */
static kp_proxy_status parse_v1(kp_proxy_parser *p, kp_proxy_result *out)
{
    const char *line = (const char *)p->buf + V1_SIG_LEN;
    size_t len = p->len - 2u - V1_SIG_LEN;
    const char *field[5];
    size_t flen[5];
    size_t n = 0;
    const char *start = line;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && line[i] != ' ')
            continue;
        if (n == 5)
            return fail(p, "v1: too many fields");
        field[n] = start;
        flen[n++] = (size_t)(line + i - start);
        start = line + i + 1;
        if (n == 1 && flen[0] == 7 && memcmp(field[0], "UNKNOWN", 7) == 0) {
            /* The receiver ignores whatever follows UNKNOWN (the spec). */
            out->has_src = false;
            out->version = 1;
            return KP_PROXY_DONE;
        }
    }
    if (n == 0 || flen[0] != 4 || (memcmp(field[0], "TCP4", 4) != 0 && memcmp(field[0], "TCP6", 4) != 0))
        return fail(p, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    if (n != 5)
        return fail(p, "v1: want protocol, two addresses and two ports");
    bool six = field[0][3] == '6';
    uint16_t sport, dport;
    if (!parse_port(field[3], flen[3], &sport) || !parse_port(field[4], flen[4], &dport))
        return fail(p, "v1: bad port");
    memset(&out->src, 0, sizeof(out->src));
    if (six) {
        struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&out->src;
        struct in6_addr dst;
        if (!parse_addr(AF_INET6, field[1], flen[1], &sa->sin6_addr) ||
            !parse_addr(AF_INET6, field[2], flen[2], &dst))
            return fail(p, "v1: bad TCP6 address");
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons(sport);
    } else {
        struct sockaddr_in *sa = (struct sockaddr_in *)&out->src;
        struct in_addr dst;
        if (!parse_addr(AF_INET, field[1], flen[1], &sa->sin_addr) ||
            !parse_addr(AF_INET, field[2], flen[2], &dst))
            return fail(p, "v1: bad TCP4 address");
        sa->sin_family = AF_INET;
        sa->sin_port = htons(sport);
    }
    out->has_src = true;
    out->version = 1;
    return KP_PROXY_DONE;
}

static kp_proxy_status feed_v1(kp_proxy_parser *p, const uint8_t *data, size_t len, size_t *used,
                               kp_proxy_result *out)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (p->len == KP_PROXY_V1_MAX)
            return fail(p, "v1: line longer than 107 bytes");
        if (p->len < V1_SIG_LEN && c != (uint8_t)v1_sig[p->len])
            return fail(p, "v1: does not start with \"PROXY \"");
        bool after_cr = p->len > 0 && p->buf[p->len - 1] == '\r';
        p->buf[p->len++] = c;
        if (after_cr) {
            if (c != '\n')
                return fail(p, "v1: CR not followed by LF");
            *used = i + 1;
            return parse_v1(p, out);
        }
        if (c != '\r' && (c < 0x20 || c > 0x7e))
            return fail(p, "v1: a byte that is not printable ASCII");
    }
    *used = len;
    return KP_PROXY_MORE;
}

/* ---- v2 ---- */

/* The 16 bytes are in: check the command and family, decide what of the block to keep. */
static kp_proxy_status v2_prefix(kp_proxy_parser *p)
{
    uint8_t ver_cmd = p->buf[12], fam = p->buf[13];
    if (ver_cmd >> 4 != 2)
        return fail(p, "v2: version is not 2");
    uint8_t cmd = ver_cmd & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return fail(p, "v2: unknown command");
    if (fam >> 4 > 3 || (fam & 0x0f) > 2)
        return fail(p, "v2: unknown address family or transport");
    p->v2_len = (uint16_t)(p->buf[14] << 8 | p->buf[15]);
    if (p->v2_len > KP_PROXY_V2_MAX_LEN)
        return fail(p, "v2: length over 2048");
    p->v2_keep = 0;
    if (cmd == V2_CMD_PROXY && (fam == V2_TCP4 || fam == V2_TCP6)) {
        p->v2_keep = fam == V2_TCP4 ? V2_TCP4_ADDR_LEN : V2_TCP6_ADDR_LEN;
        if (p->v2_len < p->v2_keep)
            return fail(p, "v2: address block shorter than its family needs");
    }
    return KP_PROXY_MORE;
}

static kp_proxy_status v2_done(kp_proxy_parser *p, kp_proxy_result *out)
{
    out->version = 2;
    out->has_src = p->v2_keep > 0;
    if (!out->has_src)
        return KP_PROXY_DONE;
    const uint8_t *a = p->buf + V2_FIXED;
    memset(&out->src, 0, sizeof(out->src));
    if (p->buf[13] == V2_TCP4) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&out->src;
        sa->sin_family = AF_INET;
        memcpy(&sa->sin_addr, a, 4);                /* src, dst, sport, dport */
        memcpy(&sa->sin_port, a + 8, 2);
    } else {
        struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&out->src;
        sa->sin6_family = AF_INET6;
        memcpy(&sa->sin6_addr, a, 16);
        memcpy(&sa->sin6_port, a + 32, 2);
    }
    return KP_PROXY_DONE;
}

static kp_proxy_status feed_v2(kp_proxy_parser *p, const uint8_t *data, size_t len, size_t *used,
                               kp_proxy_result *out)
{
    size_t i = 0;
    while (p->len < V2_FIXED) {
        if (i == len) {
            *used = len;
            return KP_PROXY_MORE;
        }
        uint8_t c = data[i++];
        if (p->len < sizeof(v2_sig) && c != v2_sig[p->len])
            return fail(p, "v2: bad signature");
        p->buf[p->len++] = c;
        if (p->len == V2_FIXED && v2_prefix(p) == KP_PROXY_ERROR)
            return KP_PROXY_ERROR;
    }
    /* The block: the addresses we read are kept, the rest (other families, TLVs) skipped. */
    size_t want = (size_t)p->v2_len - p->v2_seen;
    size_t take = len - i < want ? len - i : want;
    for (size_t k = 0; k < take; k++, p->v2_seen++)
        if (p->v2_seen < p->v2_keep)
            p->buf[p->len++] = data[i + k];
    i += take;
    *used = i;
    return p->v2_seen == p->v2_len ? v2_done(p, out) : KP_PROXY_MORE;
}

kp_proxy_status kp_proxy_feed(kp_proxy_parser *p, const char *data, size_t len, size_t *used,
                              kp_proxy_result *out)
{
    const uint8_t *d = (const uint8_t *)data;
    *used = 0;
    if (p->why)
        return KP_PROXY_ERROR;
    if (p->version == 0) {
        if (len == 0)
            return KP_PROXY_MORE;
        if (d[0] == 'P')
            p->version = 1;
        else if (d[0] == v2_sig[0])
            p->version = 2;
        else
            return fail(p, "not a PROXY protocol header");
    }
    return p->version == 1 ? feed_v1(p, d, len, used, out) : feed_v2(p, d, len, used, out);
}
