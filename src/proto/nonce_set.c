/* Per-session, per-job sets of accepted client nonces (SPEC §2 "Duplicate submission").
 *
 * Each job's set is one block holding the table header and an open-addressing hash table with
 * linear probing, plus a byte arena. A slot is 8 bytes: a 32-bit hash of the nonce and a 32-bit
 * reference to its entry in the arena, where entries (one length byte, then the nonce bytes) are
 * packed back to back. A 16-hex-char nonce thus costs 17 arena bytes plus its slot instead of a
 * 65-byte inline slot: about 4x less memory per nonce, fewer cache misses per lookup and fewer
 * fresh pages for the kernel to zero as sets grow.
 *
 * A lookup compares the stored hash first and only reads the arena when the hashes are equal, so a
 * miss (the common case: a new nonce) touches the slots only; a duplicate verdict always comes
 * from an exact comparison of length and bytes, never from the hash alone. The arena grows by
 * doubling with realloc; entries are addressed by offset, so they survive the move. Rehashing
 * reuses the stored hashes and never reads the arena.
 *
 * Tables start at 8 slots and a 64-byte arena because a session submits at most about once per
 * -min_submit_interval, so most tables stay tiny. */
#include "nonce_set.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define KP_NONCE_MAX 64
#define KP_NONCE_TABLE_INITIAL_SLOTS 8 /* a power of two: indices are hash & (cap - 1) */
#define KP_NONCE_ARENA_INITIAL 64
/* Arena offsets are 32-bit; 2 GiB is ~120M 16-char nonces in one job of one session, far beyond
 * what a job's lifetime allows. An add beyond it fails with KP_ENOMEM. */
#define KP_NONCE_ARENA_MAX ((uint32_t)1 << 31)
#define KP_NONCE_SLOTS_MAX ((uint32_t)1 << 30)

typedef struct nonce_slot {
    uint32_t hash;
    uint32_t ref; /* 0 = empty, else 1 + offset of the entry's length byte in the arena */
} nonce_slot;

struct kp_nonce_table {
    int64_t job_id;
    kp_nonce_table *next; /* older job */
    unsigned char *arena; /* entries: length byte, then that many nonce bytes */
    uint32_t arena_len, arena_cap;
    uint32_t cap, count; /* count <= 70% of cap, so probing always finds an empty slot */
    nonce_slot slots[];  /* cap slots, in the same block as the header: a miss touches one block */
};

/* FNV-1a 64, folded to 32 bits: fast and simple, not collision resistant. That is acceptable here
 * because every table belongs to one session: a client that crafts colliding nonces only slows its
 * own lookups (colliding hashes still get compared byte for byte), and it can add at most one nonce
 * per -min_submit_interval, each at most 64 bytes (well under -max_msg), so its table and its
 * probe chains stay short. The fold matters: the low bits of an FNV product depend only on the
 * low bits of each input byte, while the index is taken from the low bits. */
static uint32_t nonce_hash(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211u;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static bool entry_equals(const kp_nonce_table *t, uint32_t ref, const char *nonce, size_t len)
{
    const unsigned char *e = t->arena + (ref - 1u);
    return e[0] == len && memcmp(e + 1, nonce, len) == 0;
}

/* The index of the slot holding `nonce`, or of the empty slot where it would go. */
static uint32_t probe(const kp_nonce_table *t, uint32_t hash, const char *nonce, size_t len)
{
    uint32_t mask = t->cap - 1u;
    for (uint32_t i = hash & mask;; i = (i + 1u) & mask) {
        const nonce_slot *s = &t->slots[i];
        if (s->ref == 0 || (s->hash == hash && entry_equals(t, s->ref, nonce, len)))
            return i;
    }
}

/* The link that points at the table of `job_id`, or where that table would be inserted: the list
 * is kept ordered newest job first, so the walk stops at the first older job. */
static kp_nonce_table **find_link(kp_nonce_table **head, int64_t job_id)
{
    kp_nonce_table **link = head;
    while (*link && (*link)->job_id > job_id)
        link = &(*link)->next;
    return link;
}

static kp_nonce_table *alloc_table(uint32_t cap)
{
    kp_nonce_table *t = calloc(1, sizeof *t + (size_t)cap * sizeof(nonce_slot));
    if (t)
        t->cap = cap;
    return t;
}

/* Replaces *link with a copy of the table at twice the slots. The arena is shared, not copied. */
static int grow_slots(kp_nonce_table **link)
{
    kp_nonce_table *old = *link;
    if (old->cap >= KP_NONCE_SLOTS_MAX)
        return KP_ENOMEM;
    kp_nonce_table *t = alloc_table(old->cap * 2u);
    if (!t)
        return KP_ENOMEM;
    t->job_id = old->job_id;
    t->next = old->next;
    t->arena = old->arena;
    t->arena_len = old->arena_len;
    t->arena_cap = old->arena_cap;
    t->count = old->count;
    uint32_t mask = t->cap - 1u;
    for (uint32_t i = 0; i < old->cap; i++) {
        const nonce_slot *s = &old->slots[i];
        if (s->ref == 0)
            continue;
        uint32_t j = s->hash & mask; /* every entry is distinct: take the first empty slot */
        while (t->slots[j].ref != 0)
            j = (j + 1u) & mask;
        t->slots[j] = *s;
    }
    *link = t;
    free(old);
    return 0;
}

/* Makes room for `need` more arena bytes. */
static int reserve_arena(kp_nonce_table *t, size_t need)
{
    if (need <= (size_t)t->arena_cap - t->arena_len)
        return 0;
    if (need > (size_t)KP_NONCE_ARENA_MAX - t->arena_len)
        return KP_ENOMEM;
    size_t cap = t->arena_cap ? t->arena_cap : KP_NONCE_ARENA_INITIAL;
    while (cap - t->arena_len < need)
        cap *= 2; /* stays <= KP_NONCE_ARENA_MAX: both are powers of two and the check above */
    unsigned char *arena = realloc(t->arena, cap);
    if (!arena)
        return KP_ENOMEM;
    t->arena = arena;
    t->arena_cap = (uint32_t)cap;
    return 0;
}

static void free_table(kp_nonce_table *t)
{
    free(t->arena);
    free(t);
}

bool kp_nonce_sets_contains(const kp_nonce_sets *sets, int64_t job_id, const char *nonce,
                            size_t len)
{
    if (len > KP_NONCE_MAX)
        return false;
    const kp_nonce_table *t = sets->tables;
    while (t && t->job_id > job_id)
        t = t->next;
    if (!t || t->job_id != job_id)
        return false;
    return t->slots[probe(t, nonce_hash(nonce, len), nonce, len)].ref != 0;
}

int kp_nonce_sets_add(kp_nonce_sets *sets, int64_t job_id, const char *nonce, size_t len)
{
    if (len > KP_NONCE_MAX)
        return KP_EINVAL;
    kp_nonce_table **link = find_link(&sets->tables, job_id);
    if (!*link || (*link)->job_id != job_id) {
        kp_nonce_table *t = alloc_table(KP_NONCE_TABLE_INITIAL_SLOTS);
        if (!t)
            return KP_ENOMEM;
        t->job_id = job_id;
        t->next = *link;
        *link = t;
    }
    kp_nonce_table *t = *link;
    uint32_t hash = nonce_hash(nonce, len);
    uint32_t i = probe(t, hash, nonce, len);
    if (t->slots[i].ref != 0)
        return 0; /* already present */
    /* An empty new table is kept on failure: it costs one small block until its job is pruned. */
    if (reserve_arena(t, 1 + len) != 0)
        return KP_ENOMEM;
    /* Keep the load at or under 70%: beyond that linear probe chains lengthen quickly. */
    if ((uint64_t)(t->count + 1u) * 10u > (uint64_t)t->cap * 7u) {
        if (grow_slots(link) != 0)
            return KP_ENOMEM;
        t = *link;
        i = probe(t, hash, nonce, len);
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
