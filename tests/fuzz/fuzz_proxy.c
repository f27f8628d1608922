/* libFuzzer harness for proxy_header.c: arbitrary bytes as the start of a connection from a
 * trusted proxy, parsed twice, whole and cut into feeds at points the input chooses.
 *
 * Input: byte 0 seeds the cut points (0: one byte per feed), the rest is the connection's bytes.
 * Checked beyond the sanitizers: both parses agree (status, header length, address), a "more"
 * took every byte it was given, a header never exceeds its version's limit, and a carried
 * address is IPv4 or IPv6. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

typedef struct run {
    kp_proxy_status status;
    size_t header_len;
    kp_proxy_result res;
} run;

static run parse(const uint8_t *data, size_t len, uint8_t seed)
{
    kp_proxy_parser p;
    kp_proxy_parser_init(&p);
    run r = {.status = KP_PROXY_MORE};
    memset(&r.res, 0, sizeof(r.res));
    uint32_t x = seed ? seed : 1;
    size_t at = 0;
    while (at < len) {
        size_t chunk = len - at;
        if (seed == 0) {
            chunk = 1;
        } else if (seed != 0xff) {
            x = x * 1103515245u + 12345u;
            chunk = 1 + (x >> 16) % 64;
            if (chunk > len - at)
                chunk = len - at;
        }
        size_t used = 0;
        r.status = kp_proxy_feed(&p, (const char *)data + at, chunk, &used, &r.res);
        if (used > chunk)
            __builtin_trap();
        r.header_len += used;
        if (r.status != KP_PROXY_MORE)
            return r;
        if (used != chunk)
            __builtin_trap();
        at += chunk;
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    run whole = parse(data + 1, size - 1, 0xff);
    run cut = parse(data + 1, size - 1, data[0]);
    if (whole.status != cut.status)
        __builtin_trap();
    if (whole.status != KP_PROXY_DONE)
        return 0;
    if (whole.header_len != cut.header_len || whole.res.has_src != cut.res.has_src ||
        whole.res.version != cut.res.version)
        __builtin_trap();
    size_t limit = whole.res.version == 1 ? KP_PROXY_V1_MAX : 16 + KP_PROXY_V2_MAX_LEN;
    if (whole.header_len > limit)
        __builtin_trap();
    if (whole.res.has_src) {
        int fam = whole.res.src.ss_family;
        if ((fam != AF_INET && fam != AF_INET6) ||
            memcmp(&whole.res.src, &cut.res.src, sizeof(whole.res.src)) != 0)
            __builtin_trap();
    }
    return 0;
}
