#include "client_search.h"

#include <string.h>

#include "kupool/error.h"

const char kc_target_any[KC_TARGET_HEX + 1] =
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

void kc_bucket_init(kc_bucket *b, double rate)
{
    *b = (kc_bucket){.rate = rate > 0 ? rate : 0};
}

uint64_t kc_bucket_available(kc_bucket *b, uint64_t now_ns)
{
    if (b->rate == 0)
        return UINT64_MAX;
    if (b->last_ns != 0 && now_ns > b->last_ns) {
        b->credit += b->rate * (double)(now_ns - b->last_ns) / 1e9;
        /* At least two hashes of credit may build up: with less, a rate below 1/burst would
         * lose the fraction past one hash at every refill that crosses it. */
        double cap = b->rate * KC_BUCKET_BURST_S;
        if (cap < 2.0)
            cap = 2.0;
        if (b->credit > cap)
            b->credit = cap;
    }
    if (b->last_ns == 0 || now_ns > b->last_ns)
        b->last_ns = now_ns;
    return b->credit >= 1.0 ? (uint64_t)b->credit : 0;
}

void kc_bucket_spend(kc_bucket *b, uint64_t n)
{
    if (b->rate == 0)
        return;
    b->credit -= (double)n;
    if (b->credit < 0)
        b->credit = 0;
}

void kc_search_init(kc_search *s, double hashrate)
{
    memset(s, 0, sizeof(*s));
    kc_bucket_init(&s->bucket, hashrate);
}

void kc_search_reset(kc_search *s)
{
    s->dropped_stale += s->len;
    s->on = false;
    s->announced = false;
    s->job_id = 0; /* `difficulty` stays: the last one in force, for the summary */
    s->head = s->len = 0;
}

int kc_target_parse(const char *hex, size_t len, char out[KC_TARGET_HEX + 1])
{
    if (len != KC_TARGET_HEX)
        return KP_EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = hex[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return KP_EINVAL;
        out[i] = c;
    }
    out[KC_TARGET_HEX] = '\0';
    return 0;
}

void kc_search_announce(kc_search *s, uint64_t difficulty, const char *target)
{
    s->on = true;
    s->announced = true;
    s->next_difficulty = difficulty;
    memcpy(s->next_target, target, KC_TARGET_HEX + 1);
}

void kc_search_job(kc_search *s, int64_t job_id, const char *server_nonce)
{
    if (s->announced) {
        s->announced = false;
        s->difficulty = s->next_difficulty;
        memcpy(s->target, s->next_target, sizeof(s->target));
    }
    /* The queue holds shares of one job at most: the one being searched. */
    if (s->len && s->queue[s->head].job_id != job_id) {
        s->dropped_stale += s->len;
        s->head = s->len = 0;
    }
    size_t n = strlen(server_nonce);
    if (n >= sizeof(s->server_nonce))
        n = sizeof(s->server_nonce) - 1;
    memcpy(s->server_nonce, server_nonce, n);
    s->server_nonce[n] = '\0';
    s->server_nonce_len = n;
    s->job_id = job_id;
}

static void queue_share(kc_search *s, const char *nonce, const char *result)
{
    s->found++;
    uint64_t hashes = s->since_share;
    s->since_share = 0;
    if (s->len == KC_SEARCH_QUEUE) {
        s->dropped_full++;
        return;
    }
    kc_share *sh = &s->queue[(s->head + s->len) % KC_SEARCH_QUEUE];
    sh->job_id = s->job_id;
    sh->difficulty = s->difficulty;
    sh->hashes = hashes;
    memcpy(sh->nonce, nonce, sizeof(sh->nonce));
    memcpy(sh->result, result, sizeof(sh->result));
    s->len++;
}

uint64_t kc_search_run(kc_search *s, kp_hasher *h, kc_nonce_seq *seq, uint64_t max_hashes,
                       uint32_t *found)
{
    *found = 0;
    if (!kc_search_active(s))
        return 0;
    char nonce[KC_NONCE_HEX + 1];
    char result[KC_RESULT_HEX + 1];
    uint64_t done = 0;
    while (done < max_hashes) {
        kc_nonce_next(seq, nonce);
        if (kp_hasher_hex(h, s->server_nonce, s->server_nonce_len, nonce, KC_NONCE_HEX,
                          result) != 0)
            break;
        done++;
        s->since_share++;
        if (kc_meets_target(result, s->target)) {
            queue_share(s, nonce, result);
            (*found)++;
        }
    }
    s->hashes += done;
    return done;
}

void kc_search_pop(kc_search *s)
{
    if (s->len == 0)
        return;
    s->head = (uint8_t)((s->head + 1) % KC_SEARCH_QUEUE);
    s->len--;
}
