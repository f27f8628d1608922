/* libFuzzer harness for the admin endpoint's request parsing (src/admin_http.c): arbitrary bytes
 * as a connection's input, split at arbitrary points, without sockets.
 *
 * Input: the first two bytes seed the split points, the rest is the connection's bytes. Each
 * input is parsed twice, once split and once in a single piece; beyond the sanitizers, the
 * harness checks that
 *  - the verdict does not depend on where the reads were split;
 *  - a /stats verdict's username is 1..255 bytes of strict UTF-8 without controls, and survives
 *    a round trip through cJSON unchanged (so the answer is valid JSON);
 *  - an error verdict carries a status from the endpoint's set and a message. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin_http.h"
#include "utf8.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Feeds data in pieces whose lengths come from a small LCG seeded by `seed` (0: one piece).
 * Returns whether the request reached a verdict. */
static bool parse(const uint8_t *data, size_t size, uint32_t seed, kp_admin_request *r)
{
    kp_admin_request_init(r);
    uint32_t state = seed;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off;
        if (seed) {
            state = state * 1103515245u + 12345u;
            size_t piece = 1 + (state >> 16) % 64;
            n = piece < n ? piece : n;
        }
        if (kp_admin_request_feed(r, (const char *)data + off, n) == KP_ADMIN_FEED_DONE)
            return true;
        off += n;
    }
    return false;
}

static int same_verdict(const kp_admin_request *a, const kp_admin_request *b)
{
    return a->verdict.status == b->verdict.status && a->verdict.route == b->verdict.route &&
           strcmp(a->verdict.username, b->verdict.username) == 0;
}

static void check_verdict(const kp_admin_verdict *v)
{
    static const unsigned statuses[] = {0, 400, 404, 405, 431, 500};
    int known = 0;
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        known |= v->status == statuses[i];
    check(known);
    check(v->status == 0 || v->message != NULL);
    if (v->status != 0 || v->route != KP_ADMIN_ROUTE_STATS)
        return;
    size_t len = strlen(v->username);
    check(len >= 1 && len <= KP_USERNAME_MAX);
    check(kp_utf8_text_ok((const unsigned char *)v->username, len));
    cJSON *s = cJSON_CreateString(v->username);
    check(s != NULL);
    char *text = cJSON_PrintUnformatted(s);
    cJSON *back = text ? cJSON_Parse(text) : NULL;
    check(back && cJSON_IsString(back) && strcmp(back->valuestring, v->username) == 0);
    cJSON_Delete(back);
    cJSON_free(text);
    cJSON_Delete(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint16_t seed = (uint16_t)(data[0] | data[1] << 8);
    data += 2;
    size -= 2;

    kp_admin_request split, whole;
    bool split_done = parse(data, size, (uint32_t)seed + 1u, &split);
    bool whole_done = parse(data, size, 0, &whole);
    check(split_done == whole_done);
    if (whole_done) {
        check(same_verdict(&split, &whole));
        check_verdict(&whole.verdict);
    }
    kp_admin_request_free(&split);
    kp_admin_request_free(&whole);

    /* The query decoder alone, on the raw bytes as a query string. */
    char name[KP_USERNAME_MAX + 1];
    if (kp_admin_query_username((const char *)data, size, name))
        check(kp_utf8_text_ok((const unsigned char *)name, strlen(name)));
    return 0;
}
