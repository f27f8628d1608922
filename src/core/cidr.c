/* See cidr.h. inet_pton does the address syntax: it is strict (no octal, no short forms for
 * IPv4), which is what a flag naming trusted proxies needs. */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v4(kp_ip *out, const void *addr4)
{
    memset(out, 0, sizeof(*out));
    out->family = 4;
    memcpy(out->bytes, addr4, 4);
}

static void set_v6(kp_ip *out, const uint8_t addr6[16])
{
    if (memcmp(addr6, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
        set_v4(out, addr6 + 12);
        return;
    }
    memset(out, 0, sizeof(*out));
    out->family = 6;
    memcpy(out->bytes, addr6, 16);
}

int kp_ip_from_sockaddr(const struct sockaddr *sa, kp_ip *out)
{
    if (sa->sa_family == AF_INET) {
        set_v4(out, &((const struct sockaddr_in *)sa)->sin_addr);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        set_v6(out, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
        return 0;
    }
    return KP_EINVAL;
}

int kp_ip_parse(const char *text, kp_ip *out)
{
    uint8_t buf[16];
    if (inet_pton(AF_INET, text, buf) == 1) {
        set_v4(out, buf);
        return 0;
    }
    if (inet_pton(AF_INET6, text, buf) == 1) {
        set_v6(out, buf);
        return 0;
    }
    return KP_EINVAL;
}

void kp_ip_format(const kp_ip *ip, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    buf[0] = '\0';
    if (ip->family == 4 || ip->family == 6)
        inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, ip->bytes, buf, (socklen_t)cap);
}

/* Clears the bits of `bytes` past `prefix`; returns whether any was set. */
static bool clear_host_bits(uint8_t bytes[16], unsigned prefix)
{
    bool had = false;
    for (unsigned i = 0; i < 16; i++) {
        unsigned first = i * 8;
        uint8_t keep = prefix >= first + 8 ? 0xff : prefix <= first ? 0 : (uint8_t)(0xff << (8 - (prefix - first)));
        if (bytes[i] & (uint8_t)~keep)
            had = true;
        bytes[i] &= keep;
    }
    return had;
}

int kp_cidr_parse(const char *text, kp_cidr *out)
{
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    if (alen == 0 || alen >= sizeof(addr))
        return KP_EINVAL;
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    kp_ip ip;
    if (kp_ip_parse(addr, &ip) != 0)
        return KP_EINVAL;
    bool written_v6 = strchr(addr, ':') != NULL;
    unsigned max = written_v6 ? 128 : 32;
    unsigned prefix = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p < '0' || *p > '9' || strlen(p) > 3 || (p[0] == '0' && p[1]))
            return KP_EINVAL;
        char *end;
        unsigned long n = strtoul(p, &end, 10);
        if (*end || n > max)
            return KP_EINVAL;
        prefix = (unsigned)n;
    }
    /* A mapped address written as IPv6 ("::ffff:10.0.0.0/104") is stored as IPv4: its prefix
     * counts from the IPv4 part. */
    if (ip.family == 4 && written_v6) {
        if (prefix < 96)
            return KP_EINVAL;
        prefix -= 96;
    }
    if (clear_host_bits(ip.bytes, prefix))
        return KP_EINVAL;
    out->net = ip;
    out->prefix = (uint8_t)prefix;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

int kp_cidr_list_parse(const char *text, kp_cidr_list *out)
{
    out->count = 0;
    const char *p = text;
    while (is_space(*p))
        p++;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (p < end && is_space(*p))
            p++;
        const char *stop = end;
        while (stop > p && is_space(stop[-1]))
            stop--;
        char item[80];
        size_t n = (size_t)(stop - p);
        if (n == 0 || n >= sizeof(item) || out->count == KP_CIDR_LIST_MAX)
            return KP_EINVAL;
        memcpy(item, p, n);
        item[n] = '\0';
        if (kp_cidr_parse(item, &out->items[out->count]) != 0)
            return KP_EINVAL;
        out->count++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

bool kp_cidr_contains(const kp_cidr *c, const kp_ip *ip)
{
    if (c->net.family != ip->family)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->net.bytes, ip->bytes, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip->bytes[full] & mask) == c->net.bytes[full];
}

bool kp_cidr_list_contains(const kp_cidr_list *l, const kp_ip *ip)
{
    for (size_t i = 0; i < l->count; i++)
        if (kp_cidr_contains(&l->items[i], ip))
            return true;
    return false;
}
