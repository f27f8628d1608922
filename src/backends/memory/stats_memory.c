/* The memory stats store: per (username, minute) counts and difficulty sums (SPEC §8) in a hash
 * table of users, each with its minutes in ascending order (events arrive almost in time order, so an insert is nearly
 * always an append). A mutex makes `query` safe beside the consumer's `record`.
 *
 * Bounded (stats_memory.h): minutes older than the retention window (which ends at the newest
 * minute counted) are forgotten, and when
 * there are more users or entries than the caps, the users counted least recently are dropped
 * whole. Users sit on a list in the order they were last counted (`lru`, oldest first), so both
 * checks look at its head only. The bounds are enforced after each batch is counted, so the
 * all-or-nothing undo of a failed batch never meets a user that was dropped meanwhile; a store
 * may exceed a cap by one batch for the time of one call.
 *
 * Deduplication on event_id is not done here: with the memory mq an event is delivered exactly
 * once, and the set of seen ids would grow without bound. */
#include "stats_memory.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "kupool/error.h"

typedef struct user_counts {
    struct user_counts *next;            /* hash chain */
    struct user_counts *lru_prev, *lru_next; /* stats_memory.lru, least recently counted first */
    char *username;
    kp_minute_count *minutes; /* ascending by minute */
    size_t len, cap;
} user_counts;

typedef struct stats_memory {
    kp_stats parent; /* first: a kp_stats * is a stats_memory * */
    pthread_mutex_t mu;
    kp_stats_memory_limits lim;
    user_counts **buckets;
    size_t nbuckets, nusers;
    size_t nentries; /* sum of every user's len */
    int64_t newest;  /* the newest minute counted; INT64_MIN before the first */
    user_counts *lru_head, *lru_tail;
    kp_stats_evictions evicted;
} stats_memory;

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: usernames are not adversarial to a counter */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static user_counts *find_user(stats_memory *sm, const char *name)
{
    for (user_counts *u = sm->buckets[hash_name(name) % sm->nbuckets]; u; u = u->next)
        if (strcmp(u->username, name) == 0)
            return u;
    return NULL;
}

static int rehash(stats_memory *sm)
{
    size_t n = sm->nbuckets * 2;
    user_counts **b = calloc(n, sizeof(*b));
    if (!b)
        return KP_ENOMEM;
    for (size_t i = 0; i < sm->nbuckets; i++) {
        for (user_counts *u = sm->buckets[i], *next; u; u = next) {
            next = u->next;
            size_t k = hash_name(u->username) % n;
            u->next = b[k];
            b[k] = u;
        }
    }
    free(sm->buckets);
    sm->buckets = b;
    sm->nbuckets = n;
    return 0;
}

/* ---- the recency list ---- */

static void lru_unlink(stats_memory *sm, user_counts *u)
{
    if (u->lru_prev)
        u->lru_prev->lru_next = u->lru_next;
    else
        sm->lru_head = u->lru_next;
    if (u->lru_next)
        u->lru_next->lru_prev = u->lru_prev;
    else
        sm->lru_tail = u->lru_prev;
    u->lru_prev = u->lru_next = NULL;
}

static void lru_append(stats_memory *sm, user_counts *u)
{
    u->lru_prev = sm->lru_tail;
    u->lru_next = NULL;
    if (sm->lru_tail)
        sm->lru_tail->lru_next = u;
    else
        sm->lru_head = u;
    sm->lru_tail = u;
}

/* ---- users ---- */

static user_counts *get_user(stats_memory *sm, const char *name)
{
    user_counts *u = find_user(sm, name);
    if (u) {
        if (u != sm->lru_tail) {
            lru_unlink(sm, u);
            lru_append(sm, u);
        }
        return u;
    }
    if (sm->nusers >= sm->nbuckets && rehash(sm) != 0)
        return NULL;
    u = calloc(1, sizeof(*u));
    if (!u || !(u->username = strdup(name))) {
        free(u);
        return NULL;
    }
    size_t k = hash_name(name) % sm->nbuckets;
    u->next = sm->buckets[k];
    sm->buckets[k] = u;
    sm->nusers++;
    lru_append(sm, u);
    return u;
}

/* Removes `u` from the table and the list and frees it; its entries count as evicted. */
static void drop_user(stats_memory *sm, user_counts *u, uint64_t *evicted)
{
    user_counts **link = &sm->buckets[hash_name(u->username) % sm->nbuckets];
    while (*link != u)
        link = &(*link)->next;
    *link = u->next;
    lru_unlink(sm, u);
    sm->nusers--;
    sm->nentries -= u->len;
    *evicted += u->len;
    free(u->username);
    free(u->minutes);
    free(u);
}

/* Drops u's minutes before `cutoff` (they are a prefix: the array is sorted). */
static void trim_user(stats_memory *sm, user_counts *u, int64_t cutoff)
{
    size_t old = 0;
    while (old < u->len && u->minutes[old].minute < cutoff)
        old++;
    if (old == 0)
        return;
    memmove(u->minutes, u->minutes + old, (u->len - old) * sizeof(*u->minutes));
    u->len -= old;
    sm->nentries -= old;
    sm->evicted.expired += old;
}

/* The slot of (u, minute), made (zeroed) when missing. NULL when out of memory. */
static kp_minute_count *minute_slot(stats_memory *sm, user_counts *u, int64_t minute)
{
    size_t i = u->len;
    while (i > 0 && u->minutes[i - 1].minute > minute)
        i--;
    if (i > 0 && u->minutes[i - 1].minute == minute)
        return &u->minutes[i - 1];
    if (u->len == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 4;
        kp_minute_count *m = realloc(u->minutes, cap * sizeof(*m));
        if (!m)
            return NULL;
        u->minutes = m;
        u->cap = cap;
    }
    memmove(u->minutes + i + 1, u->minutes + i, (u->len - i) * sizeof(*u->minutes));
    u->minutes[i] = (kp_minute_count){.minute = minute};
    u->len++;
    sm->nentries++;
    return &u->minutes[i];
}

/* Undoes what a failed batch's first phase made: slots still at count 0 (every counted slot
 * holds at least 1) and users left with none. Frees only, so it cannot fail. */
static void drop_empty_slots(stats_memory *sm, const kp_event *events, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        user_counts *u = find_user(sm, events[i].username);
        if (!u)
            continue;
        size_t w = 0;
        for (size_t r = 0; r < u->len; r++)
            if (u->minutes[r].count != 0)
                u->minutes[w++] = u->minutes[r];
        sm->nentries -= u->len - w;
        u->len = w;
        if (u->len == 0) {
            uint64_t none = 0;
            drop_user(sm, u, &none);
        }
    }
}

/* After a batch: forget what aged out of the window, then the least recently counted users
 * while a cap is exceeded. The list head is the user counted longest ago: when its newest
 * minute is outside the window, all of it is. */
static void enforce_bounds(stats_memory *sm, int64_t cutoff)
{
    while (sm->lru_head && (sm->lru_head->len == 0 ||
                            sm->lru_head->minutes[sm->lru_head->len - 1].minute < cutoff))
        drop_user(sm, sm->lru_head, &sm->evicted.expired);
    while (sm->lru_head &&
           (sm->nusers > sm->lim.max_users || sm->nentries > sm->lim.max_entries))
        drop_user(sm, sm->lru_head, &sm->evicted.capped);
}

/* The first minute inside the window that ends at `newest`. */
static int64_t window_start(const stats_memory *sm, int64_t newest)
{
    return newest == INT64_MIN ? INT64_MIN : newest - sm->lim.retention_s;
}

static int mem_record(kp_stats *st, const kp_event *events, size_t n)
{
    stats_memory *sm = (stats_memory *)st;
    pthread_mutex_lock(&sm->mu);
    /* The whole batch is judged against one window: the one its own newest event ends. */
    int64_t newest = sm->newest;
    for (size_t i = 0; i < n; i++) {
        int64_t minute = kp_event_minute(&events[i]);
        if (minute > newest)
            newest = minute;
    }
    int64_t cutoff = window_start(sm, newest);
    /* All or nothing, in two phases: the consumer retries a failed batch whole. First every
     * (user, minute) slot the batch needs is made (the only step that allocates, so the only one
     * that fails); then the counts and sums are added, which cannot fail. Nothing is added and
     * taken back, so a difficulty sum is never rounded by an undo. */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t minute = kp_event_minute(&events[i]);
        if (minute < cutoff)
            continue; /* already outside the window (a replay after a long outage) */
        user_counts *u = get_user(sm, events[i].username);
        if (!u || !minute_slot(sm, u, minute))
            rc = KP_ENOMEM;
    }
    if (rc != 0)
        drop_empty_slots(sm, events, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t minute = kp_event_minute(&events[i]);
        if (minute < cutoff)
            continue;
        kp_minute_count *m = minute_slot(sm, find_user(sm, events[i].username), minute);
        m->count++;
        m->difficulty_sum += (double)kp_event_difficulty(&events[i]);
    }
    if (rc == 0) {
        sm->newest = newest;
        uint64_t skipped = 0;
        for (size_t i = 0; i < n; i++)
            skipped += kp_event_minute(&events[i]) < cutoff;
        sm->evicted.expired += skipped;
        for (size_t i = 0; i < n; i++) {
            user_counts *u = find_user(sm, events[i].username);
            if (u)
                trim_user(sm, u, cutoff);
        }
        enforce_bounds(sm, cutoff);
    }
    pthread_mutex_unlock(&sm->mu);
    return rc;
}

static int mem_query(kp_stats *st, const char *username, kp_minute_count **out, size_t *n)
{
    stats_memory *sm = (stats_memory *)st;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&sm->mu);
    int rc = 0;
    user_counts *u = find_user(sm, username);
    /* Minutes that aged out since the user was last counted are still stored: skip them. */
    int64_t cutoff = window_start(sm, sm->newest);
    size_t first = 0;
    while (u && first < u->len && u->minutes[first].minute < cutoff)
        first++;
    if (u && first < u->len) {
        size_t len = u->len - first;
        *out = malloc(len * sizeof(**out));
        if (*out) {
            memcpy(*out, u->minutes + first, len * sizeof(**out));
            *n = len;
        } else {
            rc = KP_ENOMEM;
        }
    }
    pthread_mutex_unlock(&sm->mu);
    return rc;
}

static void mem_evictions(kp_stats *st, kp_stats_evictions *out)
{
    stats_memory *sm = (stats_memory *)st;
    pthread_mutex_lock(&sm->mu);
    *out = sm->evicted;
    pthread_mutex_unlock(&sm->mu);
}

static void mem_free(kp_stats *st)
{
    stats_memory *sm = (stats_memory *)st;
    for (size_t i = 0; i < sm->nbuckets; i++) {
        for (user_counts *u = sm->buckets[i], *next; u; u = next) {
            next = u->next;
            free(u->username);
            free(u->minutes);
            free(u);
        }
    }
    free(sm->buckets);
    pthread_mutex_destroy(&sm->mu);
    free(sm);
}

int kp_stats_memory_open_limits(const kp_stats_memory_limits *lim, kp_stats **out)
{
    *out = NULL;
    if (lim->retention_s <= 0 || lim->max_users == 0 || lim->max_entries == 0)
        return KP_EINVAL;
    stats_memory *sm = calloc(1, sizeof(*sm));
    if (!sm)
        return KP_ENOMEM;
    sm->lim = *lim;
    sm->newest = INT64_MIN;
    sm->nbuckets = 64;
    sm->buckets = calloc(sm->nbuckets, sizeof(*sm->buckets));
    if (!sm->buckets) {
        free(sm);
        return KP_ENOMEM;
    }
    pthread_mutex_init(&sm->mu, NULL);
    sm->parent = (kp_stats){
        .version = KP_STATS_VERSION,
        .name = "memory",
        .record = mem_record,
        .query = mem_query,
        .free = mem_free,
        .evictions = mem_evictions,
    };
    *out = &sm->parent;
    return 0;
}

int kp_stats_memory_open(const kp_config *cfg, kp_stats **out)
{
    const kp_stats_memory_limits lim = {
        .retention_s = KP_STATS_MEMORY_RETENTION_S,
        .max_users = KP_STATS_MEMORY_MAX_USERS,
        .max_entries = KP_STATS_MEMORY_MAX_ENTRIES,
    };
    return kp_stats_memory_open_limits(&lim, out);
}
