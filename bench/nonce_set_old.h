/* FOR bench/nonce_set_bench.c ONLY: the duplicate set as it was at commit 3304cda (before the
 * prefetch, the word-at-a-time hash and the order-preserving growth), renamed old_*, so the
 * benchmark measures the old and the new implementation in the same run on the same nonces.
 * Not built into any library; do not fix bugs here, the point is to keep the old behaviour. */
#ifndef KP_BENCH_NONCE_SET_OLD_H
#define KP_BENCH_NONCE_SET_OLD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OLD_NONCE_MAX 64
#define OLD_INITIAL_SLOTS 8
#define OLD_ARENA_INITIAL 64

typedef struct old_slot {
    uint32_t hash;
    uint32_t ref;
} old_slot;

typedef struct old_table {
    int64_t job_id;
    struct old_table *next;
    unsigned char *arena;
    uint32_t arena_len, arena_cap;
    uint32_t cap, count;
    old_slot slots[];
} old_table;

typedef struct old_sets {
    old_table *tables;
} old_sets;

static uint32_t old_hash(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211u;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static uint32_t old_probe(const old_table *t, uint32_t hash, const char *nonce, size_t len)
{
    uint32_t mask = t->cap - 1u;
    for (uint32_t i = hash & mask;; i = (i + 1u) & mask) {
        const old_slot *s = &t->slots[i];
        if (s->ref == 0)
            return i;
        if (s->hash != hash)
            continue;
        const unsigned char *e = t->arena + (s->ref - 1u);
        if (e[0] == len && memcmp(e + 1, nonce, len) == 0)
            return i;
    }
}

static old_table *old_alloc(uint32_t cap)
{
    old_table *t = calloc(1, sizeof *t + (size_t)cap * sizeof(old_slot));
    if (t)
        t->cap = cap;
    return t;
}

static bool old_contains(const old_sets *sets, int64_t job_id, const char *nonce, size_t len)
{
    if (len > OLD_NONCE_MAX)
        return false;
    const old_table *t = sets->tables;
    while (t && t->job_id > job_id)
        t = t->next;
    if (!t || t->job_id != job_id)
        return false;
    return t->slots[old_probe(t, old_hash(nonce, len), nonce, len)].ref != 0;
}

static int old_grow(old_table **link)
{
    old_table *old = *link;
    old_table *t = old_alloc(old->cap * 2u);
    if (!t)
        return -1;
    t->job_id = old->job_id;
    t->next = old->next;
    t->arena = old->arena;
    t->arena_len = old->arena_len;
    t->arena_cap = old->arena_cap;
    t->count = old->count;
    uint32_t mask = t->cap - 1u;
    for (uint32_t i = 0; i < old->cap; i++) {
        const old_slot *s = &old->slots[i];
        if (s->ref == 0)
            continue;
        uint32_t j = s->hash & mask;
        while (t->slots[j].ref != 0)
            j = (j + 1u) & mask;
        t->slots[j] = *s;
    }
    *link = t;
    free(old);
    return 0;
}

static int old_add(old_sets *sets, int64_t job_id, const char *nonce, size_t len)
{
    if (len > OLD_NONCE_MAX)
        return -1;
    old_table **link = &sets->tables;
    while (*link && (*link)->job_id > job_id)
        link = &(*link)->next;
    if (!*link || (*link)->job_id != job_id) {
        old_table *t = old_alloc(OLD_INITIAL_SLOTS);
        if (!t)
            return -1;
        t->job_id = job_id;
        t->next = *link;
        *link = t;
    }
    old_table *t = *link;
    uint32_t hash = old_hash(nonce, len);
    uint32_t i = old_probe(t, hash, nonce, len);
    if (t->slots[i].ref != 0)
        return 0;
    if ((size_t)t->arena_cap - t->arena_len < 1 + len) {
        size_t cap = t->arena_cap ? t->arena_cap : OLD_ARENA_INITIAL;
        while (cap - t->arena_len < 1 + len)
            cap *= 2;
        unsigned char *arena = realloc(t->arena, cap);
        if (!arena)
            return -1;
        t->arena = arena;
        t->arena_cap = (uint32_t)cap;
    }
    if ((uint64_t)(t->count + 1u) * 10u > (uint64_t)t->cap * 7u) {
        if (old_grow(link) != 0)
            return -1;
        t = *link;
        i = old_probe(t, hash, nonce, len);
    }
    unsigned char *e = t->arena + t->arena_len;
    e[0] = (unsigned char)len;
    memcpy(e + 1, nonce, len);
    t->slots[i].hash = hash;
    t->slots[i].ref = t->arena_len + 1u;
    t->arena_len += (uint32_t)(1 + len);
    t->count++;
    return 0;
}

static void old_free(old_sets *sets)
{
    old_table *t = sets->tables;
    while (t) {
        old_table *next = t->next;
        free(t->arena);
        free(t);
        t = next;
    }
    sets->tables = NULL;
}

#endif
