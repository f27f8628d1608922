/* See address_book.h.
 *
 * One chained hash table of entries keyed by address. Besides the table, an entry is in at most
 * one of two lists, both in time order so expiry only ever looks at a head:
 *   bans  banned addresses, by ban start (every ban lasts -ban_time, so also by its end);
 *   idle  addresses without connections that keep a submit history, by when they went idle.
 * An address with open connections and no ban is in neither. Expiry is lazy: every call that
 * takes the time first drops what expired, so no timer is needed. */
#include "address_book.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define INITIAL_BUCKETS 256u

enum entry_state { LIVE = 0, BANNED, IDLE };

struct kp_addr_entry {
    kp_addr_entry *hnext;       /* hash chain */
    kp_addr_entry *prev, *next; /* in the bans or idle list, by state */
    kp_ip key;
    uint8_t state;  /* enum entry_state */
    uint8_t reason; /* kp_ban_reason while BANNED */
    bool exempt;    /* -ban_exempt: never banned, keeps no history */
    uint32_t conns;
    uint64_t since_ms; /* BANNED: when the ban ends; IDLE: when the last connection closed */
    /* The last ban_check judged submits, one bit each (1 = invalid), a ring from `head`. */
    uint8_t *ring;
    uint16_t head, filled, invalid;
};

typedef struct entry_list {
    kp_addr_entry *head, *tail;
    size_t count;
} entry_list;

struct kp_addr_book {
    kp_addr_book_config cfg;
    uint64_t seed;
    kp_addr_entry **buckets;
    size_t nbuckets, count;
    entry_list bans, idle;
    uint64_t bans_total[KP_BAN_REASONS];
    bool invalid[KP_OUTCOME_COUNT]; /* outcomes that are invalid shares */
};

/* SPEC §9's invalid-share rejections. */
static const kp_outcome invalid_share_outcomes[] = {
    KP_OUTCOME_INVALID_RESULT,
    KP_OUTCOME_LOW_DIFFICULTY,
    KP_OUTCOME_DUPLICATE,
    KP_OUTCOME_TASK_NOT_EXIST,
};

/* ---- keys and hashing ---- */

static kp_ip key_of(const kp_ip *ip)
{
    kp_ip k = *ip;
    if (k.family == 6)
        memset(k.bytes + 8, 0, 8); /* a /64 */
    return k;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t bucket_of(const kp_addr_book *b, const kp_ip *key)
{
    uint64_t lo, hi;
    memcpy(&lo, key->bytes, 8);
    memcpy(&hi, key->bytes + 8, 8);
    uint64_t h = mix(b->seed ^ lo ^ ((uint64_t)key->family << 56));
    h = mix(h ^ hi);
    return (size_t)(h & (b->nbuckets - 1));
}

static bool same_key(const kp_ip *a, const kp_ip *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

static kp_addr_entry *find(const kp_addr_book *b, const kp_ip *key)
{
    for (kp_addr_entry *e = b->buckets[bucket_of(b, key)]; e; e = e->hnext)
        if (same_key(&e->key, key))
            return e;
    return NULL;
}

/* Doubles the table when it holds more entries than buckets; a failed grow keeps the table as
 * it is (longer chains, still correct). */
static void maybe_grow(kp_addr_book *b)
{
    if (b->count <= b->nbuckets)
        return;
    size_t old_n = b->nbuckets;
    kp_addr_entry **old = b->buckets;
    kp_addr_entry **grown = calloc(old_n * 2, sizeof(*grown));
    if (!grown)
        return;
    b->buckets = grown;
    b->nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        for (kp_addr_entry *e = old[i], *next; e; e = next) {
            next = e->hnext;
            size_t at = bucket_of(b, &e->key);
            e->hnext = grown[at];
            grown[at] = e;
        }
    }
    free(old);
}

static void unhash(kp_addr_book *b, kp_addr_entry *e)
{
    kp_addr_entry **p = &b->buckets[bucket_of(b, &e->key)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    b->count--;
}

/* ---- lists ---- */

static void list_push(entry_list *l, kp_addr_entry *e)
{
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    l->count++;
}

static void list_unlink(entry_list *l, kp_addr_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
    l->count--;
}

/* ---- entry life ---- */

static void entry_free(kp_addr_book *b, kp_addr_entry *e)
{
    unhash(b, e);
    free(e->ring);
    free(e);
}

static void ring_reset(kp_addr_entry *e)
{
    free(e->ring);
    e->ring = NULL;
    e->head = e->filled = e->invalid = 0;
}

/* An entry that left a list (or never was in one) with no connections: idle with a history,
 * or gone. */
static void settle(kp_addr_book *b, kp_addr_entry *e, uint64_t now_ms)
{
    if (e->conns > 0) {
        e->state = LIVE;
        return;
    }
    if (!e->ring) {
        entry_free(b, e);
        return;
    }
    e->state = IDLE;
    e->since_ms = now_ms;
    list_push(&b->idle, e);
    uint32_t max_idle = b->cfg.max_idle ? b->cfg.max_idle : KP_ADDR_MAX_IDLE;
    while (b->idle.count > max_idle) {
        kp_addr_entry *old = b->idle.head;
        list_unlink(&b->idle, old);
        entry_free(b, old);
    }
}

static void unban(kp_addr_book *b, kp_addr_entry *e, uint64_t now_ms)
{
    list_unlink(&b->bans, e);
    settle(b, e, now_ms);
}

size_t kp_addr_book_expire(kp_addr_book *b, uint64_t now_ms)
{
    kp_addr_entry *e;
    while ((e = b->bans.head) && e->since_ms <= now_ms)
        unban(b, e, now_ms);
    while ((e = b->idle.head) && now_ms - e->since_ms >= KP_ADDR_IDLE_KEEP_MS) {
        list_unlink(&b->idle, e);
        entry_free(b, e);
    }
    return b->bans.count;
}

static bool ban(kp_addr_book *b, kp_addr_entry *e, kp_ban_reason reason, uint64_t now_ms)
{
    if (b->cfg.ban_time_ms == 0 || e->exempt || e->state == BANNED)
        return false;
    if (e->state == IDLE)
        list_unlink(&b->idle, e);
    uint32_t max_bans = b->cfg.max_bans ? b->cfg.max_bans : KP_ADDR_MAX_BANS;
    if (b->bans.count >= max_bans)
        unban(b, b->bans.head, now_ms); /* the oldest ban makes room */
    ring_reset(e); /* after the ban the address starts with a clean history */
    e->state = BANNED;
    e->reason = (uint8_t)reason;
    e->since_ms = now_ms + b->cfg.ban_time_ms;
    list_push(&b->bans, e);
    b->bans_total[reason]++;
    return true;
}

/* ---- the API ---- */

int kp_addr_book_new(const kp_addr_book_config *cfg, uint64_t seed, kp_addr_book **out)
{
    if (cfg->ban_time_ms && (cfg->ban_check < 1 || cfg->ban_check > KP_ADDR_MAX_BAN_CHECK ||
                             cfg->ban_invalid_percent < 1 || cfg->ban_invalid_percent > 100))
        return KP_EINVAL;
    kp_addr_book *b = calloc(1, sizeof(*b));
    if (!b)
        return KP_ENOMEM;
    b->cfg = *cfg;
    b->seed = seed;
    b->nbuckets = INITIAL_BUCKETS;
    b->buckets = calloc(b->nbuckets, sizeof(*b->buckets));
    if (!b->buckets) {
        free(b);
        return KP_ENOMEM;
    }
    for (size_t i = 0; i < sizeof(invalid_share_outcomes) / sizeof(invalid_share_outcomes[0]); i++)
        b->invalid[invalid_share_outcomes[i]] = true;
    *out = b;
    return 0;
}

void kp_addr_book_free(kp_addr_book *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (kp_addr_entry *e = b->buckets[i], *next; e; e = next) {
            next = e->hnext;
            free(e->ring);
            free(e);
        }
    }
    free(b->buckets);
    free(b);
}

kp_admit kp_addr_book_admit(kp_addr_book *b, const kp_ip *ip, uint64_t now_ms,
                            kp_addr_entry **entry)
{
    kp_addr_book_expire(b, now_ms);
    kp_ip key = key_of(ip);
    kp_addr_entry *e = find(b, &key);
    if (e && e->state == BANNED)
        return KP_ADMIT_BANNED;
    if (e && b->cfg.max_conns_per_ip && e->conns >= b->cfg.max_conns_per_ip)
        return KP_ADMIT_PER_IP;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return KP_ADMIT_NOMEM;
        e->key = key;
        e->exempt = kp_cidr_list_contains(&b->cfg.exempt, ip);
        size_t at = bucket_of(b, &key);
        e->hnext = b->buckets[at];
        b->buckets[at] = e;
        b->count++;
        maybe_grow(b);
    } else if (e->state == IDLE) {
        list_unlink(&b->idle, e);
    }
    e->state = LIVE;
    e->conns++;
    *entry = e;
    return KP_ADMIT_OK;
}

void kp_addr_book_release(kp_addr_book *b, kp_addr_entry *e, uint64_t now_ms)
{
    e->conns--;
    if (e->conns == 0 && e->state == LIVE)
        settle(b, e, now_ms);
    kp_addr_book_expire(b, now_ms);
}

bool kp_addr_book_junk(kp_addr_book *b, kp_addr_entry *e, uint64_t now_ms)
{
    kp_addr_book_expire(b, now_ms);
    return ban(b, e, KP_BAN_JUNK, now_ms);
}

bool kp_addr_book_judged(kp_addr_book *b, kp_addr_entry *e, kp_judgement j, uint64_t now_ms)
{
    if (j == KP_JUDGE_NONE || b->cfg.ban_time_ms == 0 || e->exempt || e->state == BANNED)
        return false;
    uint32_t n = b->cfg.ban_check;
    if (!e->ring) {
        e->ring = calloc((n + 7) / 8, 1);
        if (!e->ring)
            return false; /* no history for this address: never banned for shares, still served */
    }
    uint8_t bit = (uint8_t)(1u << (e->head % 8));
    uint8_t *byte = &e->ring[e->head / 8];
    if (e->filled == n && (*byte & bit))
        e->invalid--; /* the oldest judgement leaves the window */
    if (j == KP_JUDGE_INVALID) {
        *byte |= bit;
        e->invalid++;
    } else {
        *byte &= (uint8_t)~bit;
    }
    e->head = (uint16_t)((e->head + 1) % n);
    if (e->filled < n)
        e->filled++;
    if (e->filled < n || (uint64_t)e->invalid * 100 < (uint64_t)b->cfg.ban_invalid_percent * n)
        return false;
    kp_addr_book_expire(b, now_ms);
    return ban(b, e, KP_BAN_INVALID_SHARES, now_ms);
}

kp_judgement kp_addr_book_judge(const kp_addr_book *b, kp_outcome oc, bool authorize)
{
    if (oc == KP_OUTCOME_OK)
        return authorize ? KP_JUDGE_NONE : KP_JUDGE_VALID;
    if ((unsigned)oc < KP_OUTCOME_COUNT && b->invalid[oc])
        return KP_JUDGE_INVALID;
    return KP_JUDGE_NONE;
}

const kp_ip *kp_addr_entry_key(const kp_addr_entry *e)
{
    return &e->key;
}

bool kp_addr_entry_banned(const kp_addr_entry *e)
{
    return e->state == BANNED;
}

kp_addr_book_stats kp_addr_book_get_stats(const kp_addr_book *b)
{
    kp_addr_book_stats s = {.bans_active = b->bans.count, .entries = b->count};
    memcpy(s.bans_total, b->bans_total, sizeof(s.bans_total));
    return s;
}

void kp_addr_book_each_ban(const kp_addr_book *b,
                           void (*fn)(void *arg, const kp_ip *key, kp_ban_reason reason,
                                      uint64_t until_ms),
                           void *arg)
{
    for (const kp_addr_entry *e = b->bans.head; e; e = e->next)
        fn(arg, &e->key, (kp_ban_reason)e->reason, e->since_ms);
}

void kp_addr_key_format(const kp_ip *key, char *buf, size_t cap)
{
    kp_ip_format(key, buf, cap);
    size_t len = strlen(buf);
    if (key->family == 6 && len + 4 < cap)
        memcpy(buf + len, "/64", 4);
}

const char *kp_ban_reason_label(kp_ban_reason r)
{
    return r == KP_BAN_INVALID_SHARES ? "invalid_shares" : "junk";
}
