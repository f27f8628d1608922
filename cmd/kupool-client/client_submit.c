#include "client_submit.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "kupool/error.h"
#include "kupool/event.h"


static const char hex_digits[] = "0123456789abcdef";

/* SplitMix64 (Steele, Lea, Flood 2014): a Weyl sequence through an invertible mixer. */
static uint64_t splitmix64_next(kc_nonce_seq *seq)
{
    uint64_t z = (seq->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

int kc_nonce_seq_seed(kc_nonce_seq *seq)
{
    /* Synchronous uv_random (no loop, no callback): getrandom(2) where available. */
    return uv_random(NULL, NULL, &seq->state, sizeof(seq->state), 0, NULL);
}

void kc_nonce_next(kc_nonce_seq *seq, char out[KC_NONCE_HEX + 1])
{
    uint64_t v = splitmix64_next(seq);
    for (int i = KC_NONCE_HEX - 1; i >= 0; i--) {
        out[i] = hex_digits[v & 0xf];
        v >>= 4;
    }
    out[KC_NONCE_HEX] = '\0';
}

double kc_random_unit(kc_nonce_seq *seq)
{
    return (double)(splitmix64_next(seq) >> 11) * 0x1.0p-53;
}

int kc_compute_result(kp_hasher *h, const char *server_nonce, const char *client_nonce,
                      char out[KC_RESULT_HEX + 1])
{
    return kp_hasher_hex(h, server_nonce, strlen(server_nonce), client_nonce, strlen(client_nonce),
                         out);
}

size_t kc_format_submit(char *buf, int64_t id, int64_t job_id, const char *client_nonce,
                        const char *result)
{
    int n = snprintf(buf, KC_SUBMIT_LINE_MAX,
                     "{\"id\":%" PRId64 ",\"method\":\"submit\",\"params\":{\"job_id\":%" PRId64
                     ",\"client_nonce\":\"%s\",\"result\":\"%s\"}}\n",
                     id, job_id, client_nonce, result);
    return n > 0 && n < KC_SUBMIT_LINE_MAX ? (size_t)n : 0;
}

size_t kc_format_authorize(char *buf, size_t cap, int64_t id, const char *username)
{
    int n = snprintf(buf, cap,
                     "{\"id\":%" PRId64 ",\"method\":\"authorize\",\"params\":{\"username\":\"%s\"}}\n",
                     id, username);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int kc_username_ok(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > KP_USERNAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}
