/* The memory stats store: per (username, minute) counters in a hash table of users, each with
 * its minutes in ascending order (events arrive almost in time order, so an insert is nearly
 * always an append). A mutex makes `query` safe beside the consumer's `record`.
 *
 * Deduplication on event_id is not done here: with the memory mq an event is delivered exactly
 * once, and the set of seen ids would grow without bound. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "kupool/error.h"

typedef struct user_counts {
    struct user_counts *next; /* hash chain */
    char *username;
    kp_minute_count *minutes; /* ascending by minute */
    size_t len, cap;
} user_counts;

typedef struct stats_memory {
    kp_stats parent; /* first: a kp_stats * is a stats_memory * */
    pthread_mutex_t mu;
    user_counts **buckets;
    size_t nbuckets, nusers;
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

static user_counts *get_user(stats_memory *sm, const char *name)
{
    user_counts *u = find_user(sm, name);
    if (u)
        return u;
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
    return u;
}

static int add_minute(user_counts *u, int64_t minute, int64_t count)
{
    size_t i = u->len;
    while (i > 0 && u->minutes[i - 1].minute > minute)
        i--;
    if (i > 0 && u->minutes[i - 1].minute == minute) {
        u->minutes[i - 1].count += count;
        return 0;
    }
    if (u->len == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 4;
        kp_minute_count *m = realloc(u->minutes, cap * sizeof(*m));
        if (!m)
            return KP_ENOMEM;
        u->minutes = m;
        u->cap = cap;
    }
    memmove(u->minutes + i + 1, u->minutes + i, (u->len - i) * sizeof(*u->minutes));
    u->minutes[i] = (kp_minute_count){.minute = minute, .count = count};
    u->len++;
    return 0;
}

static int mem_record(kp_stats *st, const kp_event *events, size_t n)
{
    stats_memory *sm = (stats_memory *)st;
    pthread_mutex_lock(&sm->mu);
    size_t done = 0;
    int rc = 0;
    for (; done < n; done++) {
        user_counts *u = get_user(sm, events[done].username);
        rc = u ? add_minute(u, kp_event_minute(&events[done]), 1) : KP_ENOMEM;
        if (rc != 0)
            break;
    }
    /* All or nothing: the consumer retries a failed batch whole, so undo the part counted.
     * Those (user, minute) slots exist now, so undoing allocates nothing and cannot fail. */
    for (size_t i = 0; rc != 0 && i < done; i++)
        add_minute(find_user(sm, events[i].username), kp_event_minute(&events[i]), -1);
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
    if (u && u->len) {
        *out = malloc(u->len * sizeof(**out));
        if (*out) {
            memcpy(*out, u->minutes, u->len * sizeof(**out));
            *n = u->len;
        } else {
            rc = KP_ENOMEM;
        }
    }
    pthread_mutex_unlock(&sm->mu);
    return rc;
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

int kp_stats_memory_open(const kp_config *cfg, kp_stats **out)
{
    stats_memory *sm = calloc(1, sizeof(*sm));
    if (!sm)
        return KP_ENOMEM;
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
    };
    *out = &sm->parent;
    return 0;
}
