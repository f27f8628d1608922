/* Per-session, per-job sets of accepted client nonces (SPEC §2 "Duplicate submission").
 *
 * Each job's set is a small open-addressing hash table with linear probing. Nonces are at most
 * 64 bytes, so each slot stores its bytes inline: no per-nonce allocation, exact byte comparison.
 * Tables start at 8 slots because a session submits at most about once per -min_submit_interval,
 * so most tables stay tiny. */
#include "nonce_set.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define KP_NONCE_MAX 64
#define KP_NONCE_TABLE_INITIAL_SLOTS 8 /* a power of two: indices are hash & (cap - 1) */

typedef struct nonce_slot {
    unsigned char tag; /* 0 = empty, else nonce length + 1 (so a 0-byte nonce is storable) */
    char bytes[KP_NONCE_MAX];
} nonce_slot;

struct kp_nonce_table {
    int64_t job_id;
    kp_nonce_table *next; /* older job */
    size_t cap, count;    /* count <= 70% of cap, so probing always finds an empty slot */
    nonce_slot *slots;
};

/* FNV-1a 64: fast and simple, not collision resistant. That is acceptable here because every
 * table belongs to one session: a client that crafts colliding nonces only slows its own lookups,
 * and it can add at most one nonce per -min_submit_interval, each at most 64 bytes (well under
 * -max_msg), so its table and its probe chains stay short. */
static uint64_t fnv1a(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211u;
    }
    return h;
}

/* The slot holding `nonce`, or the empty slot where it would go. */
static nonce_slot *probe(const kp_nonce_table *t, const char *nonce, size_t len)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)fnv1a(nonce, len) & mask;; i = (i + 1) & mask) {
        nonce_slot *s = &t->slots[i];
        if (s->tag == 0 || (s->tag == len + 1 && memcmp(s->bytes, nonce, len) == 0))
            return s;
    }
}

static kp_nonce_table *find_table(const kp_nonce_sets *sets, int64_t job_id)
{
    for (kp_nonce_table *t = sets->tables; t; t = t->next)
        if (t->job_id == job_id)
            return t;
    return NULL;
}

static int rehash(kp_nonce_table *t, size_t new_cap)
{
    nonce_slot *slots = calloc(new_cap, sizeof *slots);
    if (!slots)
        return KP_ENOMEM;
    nonce_slot *old = t->slots;
    size_t old_cap = t->cap;
    t->slots = slots;
    t->cap = new_cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].tag)
            *probe(t, old[i].bytes, old[i].tag - 1u) = old[i];
    free(old);
    return 0;
}

/* A new empty table linked so the list stays ordered newest job first (normally at the head). */
static kp_nonce_table *new_table(kp_nonce_sets *sets, int64_t job_id)
{
    kp_nonce_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->slots = calloc(KP_NONCE_TABLE_INITIAL_SLOTS, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->cap = KP_NONCE_TABLE_INITIAL_SLOTS;
    t->job_id = job_id;
    kp_nonce_table **link = &sets->tables;
    while (*link && (*link)->job_id > job_id)
        link = &(*link)->next;
    t->next = *link;
    *link = t;
    return t;
}

static void free_table(kp_nonce_table *t)
{
    free(t->slots);
    free(t);
}

bool kp_nonce_sets_contains(const kp_nonce_sets *sets, int64_t job_id, const char *nonce,
                            size_t len)
{
    if (len > KP_NONCE_MAX)
        return false;
    const kp_nonce_table *t = find_table(sets, job_id);
    return t && probe(t, nonce, len)->tag != 0;
}

int kp_nonce_sets_add(kp_nonce_sets *sets, int64_t job_id, const char *nonce, size_t len)
{
    if (len > KP_NONCE_MAX)
        return KP_EINVAL;
    kp_nonce_table *t = find_table(sets, job_id);
    if (!t && !(t = new_table(sets, job_id)))
        return KP_ENOMEM;
    nonce_slot *s = probe(t, nonce, len);
    if (s->tag)
        return 0; /* already present */
    /* Keep the load at or under 70%: beyond that linear probe chains lengthen quickly. */
    if ((t->count + 1) * 10 > t->cap * 7) {
        if (rehash(t, t->cap * 2) != 0)
            return KP_ENOMEM;
        s = probe(t, nonce, len);
    }
    s->tag = (unsigned char)(len + 1);
    memcpy(s->bytes, nonce, len);
    t->count++;
    return 0;
}

void kp_nonce_sets_prune(kp_nonce_sets *sets, int64_t oldest_valid_id)
{
    kp_nonce_table **link = &sets->tables;
    while (*link) {
        kp_nonce_table *t = *link;
        if (t->job_id < oldest_valid_id) {
            *link = t->next;
            free_table(t);
        } else {
            link = &t->next;
        }
    }
}

void kp_nonce_sets_free(kp_nonce_sets *sets)
{
    kp_nonce_table *t = sets->tables;
    while (t) {
        kp_nonce_table *next = t->next;
        free_table(t);
        t = next;
    }
    sets->tables = NULL;
}
