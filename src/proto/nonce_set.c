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
 * doubling with realloc; entries are addressed by offset, so they survive the move.
 *
 * With the rate limit off a session adds thousands of nonces a second to its current job's set,
 * so the set outgrows the caches and its one probe per submit is a miss to memory. Three choices
 * keep that cheap (bench/nonce_set_bench.c measures each):
 * - kp_nonce_sets_prefetch() computes the slot's address and asks the CPU to load it (and the
 *   arena's tail, where an add writes) while the caller does other work: the submit check does it
 *   before the SHA-256 check, so the probe after it finds the line in the cache;
 * - the home slot is taken from the hash's HIGH bits, so doubling the table maps old slot i to
 *   new slots 2i and 2i+1: rehashing walks both tables in order, from the stored hashes only,
 *   instead of scattering writes over a table larger than the cache;
 * - the hash reads the nonce 8 bytes at a time: it runs three times per accepted submit
 *   (prefetch, lookup, add), and FNV's one multiply per byte cost more than the rest of a hit.
 *
 * Tables start at 8 slots and a 64-byte arena because a session submits at most about once per
 * -min_submit_interval, so most tables stay tiny. */
#include "nonce_set.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "kupool/event.h"

#define KP_NONCE_TABLE_INITIAL_SLOTS 8 /* a power of two: homes are the hash's top log2(cap) bits */
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
    /* cap slots, in the same block as the header: a miss touches one block. The header is 40
     * bytes, a multiple of the slot size, so no slot straddles two cache lines. */
    nonce_slot slots[];
};
_Static_assert(offsetof(kp_nonce_table, slots) % sizeof(nonce_slot) == 0,
               "a slot at a misaligned offset would straddle cache lines");

/* 8 bytes as a little-endian word, whatever the host's byte order, so the hash (and the colliding
 * pairs tests/test_nonce_set.c relies on) is the same everywhere: one load on x86 and arm64. */
static inline uint64_t load8_le(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The last n < 8 bytes, zero-padded, in the same order. */
static inline uint64_t load_tail_le(const char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return w;
}

/* A multiply-xorshift over 8-byte words, folded to 32 bits: fast and simple, not collision
 * resistant. That is acceptable here because every table belongs to one session: a client that
 * crafts colliding nonces only slows its own lookups (colliding hashes still get compared byte for
 * byte), and it can add at most one nonce per -min_submit_interval, each at most 64 bytes (well
 * under -max_msg), so its table and its probe chains stay short. The length seeds the state, so a
 * zero-padded tail cannot collide with a longer nonce by construction; the xorshift after each
 * multiply brings the high bits down, so a difference in one word cannot be cancelled by the next;
 * the final mix spreads every input bit over the high bits that pick the home slot. */
static inline uint32_t nonce_hash(const char *p, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        h = (h ^ load8_le(p + i)) * 0xbf58476d1ce4e5b9u;
        h ^= h >> 32;
    }
    if (i < len) {
        h = (h ^ load_tail_le(p + i, len - i)) * 0xbf58476d1ce4e5b9u;
        h ^= h >> 32;
    }
    h *= 0x94d049bb133111ebu;
    h ^= h >> 29;
    return (uint32_t)(h >> 32);
}

/* The home slot of `hash`: its top log2(cap) bits. cap is a power of two >= 2. */
static inline uint32_t home(const kp_nonce_table *t, uint32_t hash)
{
    return hash >> (__builtin_clz(t->cap) + 1);
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
    for (uint32_t i = home(t, hash);; i = (i + 1u) & mask) {
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

/* cap is a power of two, 2 <= cap <= KP_NONCE_SLOTS_MAX. */
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
    /* Any insertion order gives a valid table; this one (old slots in order, homes from the high
     * bits) makes the writes land in order too, a few slots behind the reads. */
    uint32_t mask = t->cap - 1u;
    for (uint32_t i = 0; i < old->cap; i++) {
        const nonce_slot *s = &old->slots[i];
        if (s->ref == 0)
            continue;
        uint32_t j = home(t, s->hash); /* every entry is distinct: take the first empty slot */
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

/* The table of `job_id`, or NULL. */
static const kp_nonce_table *find_table(const kp_nonce_sets *sets, int64_t job_id)
{
    const kp_nonce_table *t = sets->tables;
    while (t && t->job_id > job_id)
        t = t->next;
    return t && t->job_id == job_id ? t : NULL;
}

void kp_nonce_sets_prefetch(const kp_nonce_sets *sets, int64_t job_id, const char *nonce,
                            size_t len)
{
    const kp_nonce_table *t = find_table(sets, job_id);
    if (!t || len > KP_CLIENT_NONCE_MAX)
        return;
    __builtin_prefetch(&t->slots[home(t, nonce_hash(nonce, len))]);
    if (t->arena)
        __builtin_prefetch(t->arena + t->arena_len, 1); /* where an accepted submit's add writes */
}

bool kp_nonce_sets_contains(const kp_nonce_sets *sets, int64_t job_id, const char *nonce,
                            size_t len)
{
    if (len > KP_CLIENT_NONCE_MAX)
        return false;
    const kp_nonce_table *t = find_table(sets, job_id);
    if (!t)
        return false;
    return t->slots[probe(t, nonce_hash(nonce, len), nonce, len)].ref != 0;
}

int kp_nonce_sets_add(kp_nonce_sets *sets, int64_t job_id, const char *nonce, size_t len)
{
    if (len > KP_CLIENT_NONCE_MAX)
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
