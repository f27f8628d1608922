/* See pg_ranges.h. */
#include "pg_ranges.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool kp_pg_seq_id(const char *id, int64_t *node, int64_t *seq)
{
    uint64_t n = 0;
    for (int i = 0; i < 16; i++) {
        int v = hexval(id[i]);
        if (v < 0)
            return false;
        n = n << 4 | (uint64_t)v;
    }
    const char *s = id + 16;
    if (*s++ != '-' || *s < '1' || *s > '9')
        return false;
    uint64_t q = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (q > ((uint64_t)KP_PG_SEQ_MAX - d) / 10)
            return false;
        q = q * 10 + d;
    }
    memcpy(node, &n, sizeof(n)); /* the bit pattern, as BIGINT keeps it */
    *seq = (int64_t)q;
    return true;
}

/* ---- buffers -------------------------------------------------------------------------------- */

static int grow(void **p, size_t count, size_t size)
{
    void *q = realloc(*p, count * size);
    if (!q)
        return KP_ENOMEM;
    *p = q;
    return 0;
}

static int reserve(kp_pg_dedupe *d, size_t n)
{
    if (n <= d->cap)
        return 0;
    size_t cap = d->cap ? d->cap : 64;
    while (cap < n)
        cap *= 2;
    /* Upserts and deletes: at most one per event and one per range read (each new range holds
     * at least one event; each deleted row was read). Reads are bounded separately. */
    if (grow((void **)&d->fate, cap, sizeof(*d->fate)) || grow((void **)&d->node, cap, 8) ||
        grow((void **)&d->seq, cap, 8) || grow((void **)&d->order, cap, sizeof(*d->order)) ||
        grow((void **)&d->locks, cap, 8) || grow((void **)&d->spans, cap, sizeof(*d->spans)))
        return KP_ENOMEM;
    d->cap = cap;
    return 0;
}

/* ---- plan ------------------------------------------------------------------------------------ */

/* qsort has no context argument: the comparison reads the plan through this, set for the one
 * call. record() runs on the consumer thread only, and every store has its own plan; the pointer
 * is thread-local so two stores on two threads (tests) stay apart. */
static _Thread_local const kp_pg_dedupe *sorting;

static int by_node_seq(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    const kp_pg_dedupe *d = sorting;
    if (d->node[i] != d->node[j])
        return d->node[i] < d->node[j] ? -1 : 1;
    if (d->seq[i] != d->seq[j])
        return d->seq[i] < d->seq[j] ? -1 : 1;
    return i < j ? -1 : i > j; /* the first occurrence first: it is the one counted */
}

int kp_pg_dedupe_plan(kp_pg_dedupe *d, const kp_event *events, size_t n)
{
    if (n > UINT32_MAX)
        return KP_EINVAL;
    int rc = reserve(d, n);
    if (rc != 0)
        return rc;
    d->n = n;
    d->nordered = d->nforeign = d->nlocks = d->nspans = d->nupserts = d->ndeletes = 0;
    for (size_t i = 0; i < n; i++) {
        if (kp_pg_seq_id(events[i].event_id, &d->node[i], &d->seq[i])) {
            d->fate[i] = KP_PG_FRESH;
            d->order[d->nordered++] = (uint32_t)i;
        } else {
            d->fate[i] = KP_PG_FOREIGN;
            d->nforeign++;
        }
    }
    if (d->nordered > 1) { /* qsort's base may not be NULL, even for nothing */
        sorting = d;
        qsort(d->order, d->nordered, sizeof(*d->order), by_node_seq);
        sorting = NULL;
    }
    for (size_t k = 0; k < d->nordered; k++) {
        uint32_t i = d->order[k];
        kp_pg_range *last = d->nspans ? &d->spans[d->nspans - 1] : NULL;
        if (last && last->node == d->node[i] && last->hi == d->seq[i]) {
            d->fate[i] = KP_PG_REPEAT;
            continue;
        }
        if (!last || last->node != d->node[i])
            d->locks[d->nlocks++] = d->node[i];
        if (last && last->node == d->node[i] && last->hi + 1 == d->seq[i])
            last->hi = d->seq[i];
        else
            d->spans[d->nspans++] = (kp_pg_range){d->node[i], d->seq[i], d->seq[i]};
    }
    return 0;
}

/* The position in `order` of (node, seq)'s first occurrence, or -1. */
static long find(const kp_pg_dedupe *d, int64_t node, int64_t seq)
{
    size_t lo = 0, hi = d->nordered;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t i = d->order[mid];
        if (d->node[i] < node || (d->node[i] == node && d->seq[i] < seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < d->nordered && d->node[d->order[lo]] == node && d->seq[d->order[lo]] == seq)
        return (long)lo;
    return -1;
}

void kp_pg_dedupe_mark_seen(kp_pg_dedupe *d, int64_t node, int64_t seq)
{
    long k = find(d, node, seq);
    if (k >= 0)
        d->fate[d->order[k]] = KP_PG_SEEN;
}

/* ---- resolve --------------------------------------------------------------------------------- */

static int by_node_lo(const void *a, const void *b)
{
    const kp_pg_range *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* One coalesced interval being built: its bounds, whether it takes a new sequence number, and
 * the rows read that it swallows (d->existing[first .. first + rows)). */
typedef struct interval {
    kp_pg_range r;
    bool grows;
    size_t first, rows;
} interval;

/* Writes what `iv` needs: nothing when it is one row read and unchanged; else the row at its
 * lo, and every other swallowed row deleted. The lo of a new range is an event's sequence
 * number, never a row read (those are inside ranges), so a key is never both deleted and
 * upserted in one statement. */
static void emit(kp_pg_dedupe *d, const interval *iv)
{
    if (!iv->grows && iv->rows <= 1)
        return;
    d->upserts[d->nupserts++] = iv->r;
    for (size_t k = iv->first; k < iv->first + iv->rows; k++)
        if (d->existing[k].lo != iv->r.lo)
            d->deletes[d->ndeletes++] = d->existing[k];
}

/* Adds [lo, hi] (a row read, or one new sequence number) to the interval being built, or closes
 * it and starts the next. Input arrives sorted by lo within one node. */
static void take(kp_pg_dedupe *d, interval *iv, bool *open, kp_pg_range r, bool is_row,
                 size_t row)
{
    if (*open && iv->r.node == r.node && r.lo <= iv->r.hi + 1) {
        if (r.hi > iv->r.hi)
            iv->r.hi = r.hi;
    } else {
        if (*open)
            emit(d, iv);
        *iv = (interval){.r = r, .first = row};
        *open = true;
    }
    if (is_row)
        iv->rows++;
    else
        iv->grows = true;
}

int kp_pg_dedupe_resolve(kp_pg_dedupe *d, const kp_pg_range *read, size_t nread)
{
    if (nread > d->existing_cap) {
        if (grow((void **)&d->existing, nread, sizeof(*d->existing)) != 0)
            return KP_ENOMEM;
        d->existing_cap = nread;
    }
    size_t bound = d->nordered + nread;
    if (bound > 0 && (grow((void **)&d->upserts, bound, sizeof(*d->upserts)) != 0 ||
                      grow((void **)&d->deletes, bound, sizeof(*d->deletes)) != 0))
        return KP_ENOMEM;
    size_t ne = 0;
    for (size_t k = 0; k < nread; k++) {
        const kp_pg_range *r = &read[k];
        if (r->lo < 1 || r->hi < r->lo || r->hi > KP_PG_SEQ_MAX)
            return KP_EINVAL;
        d->existing[ne++] = *r;
    }
    if (ne > 1)
        qsort(d->existing, ne, sizeof(*d->existing), by_node_lo);
    size_t w = 0; /* the same row read for two spans (one key: keep the widest, to be safe) */
    for (size_t k = 0; k < ne; k++) {
        if (w > 0 && by_node_lo(&d->existing[w - 1], &d->existing[k]) == 0) {
            if (d->existing[k].hi > d->existing[w - 1].hi)
                d->existing[w - 1].hi = d->existing[k].hi;
            continue;
        }
        d->existing[w++] = d->existing[k];
    }
    ne = w;

    /* Merge the rows read and the batch's sequence numbers, both sorted by (node, lo). A number
     * inside a row is SEEN; any other becomes part of a range (FRESH ones are counted, those the
     * legacy table had stay SEEN). `cover` is the furthest hi of the rows so far on this node,
     * so overlapping rows (never written by this code) still hide what they cover. */
    d->nupserts = d->ndeletes = 0;
    interval iv;
    bool open = false;
    size_t e = 0;
    int64_t cover_node = 0, cover = 0;
    bool covering = false;
    for (size_t k = 0; k < d->nordered; k++) {
        uint32_t i = d->order[k];
        if (d->fate[i] == KP_PG_REPEAT)
            continue;
        int64_t node = d->node[i], seq = d->seq[i];
        while (e < ne && (d->existing[e].node < node ||
                          (d->existing[e].node == node && d->existing[e].lo <= seq))) {
            const kp_pg_range *r = &d->existing[e];
            if (!covering || cover_node != r->node) {
                cover_node = r->node;
                cover = r->hi;
                covering = true;
            } else if (r->hi > cover) {
                cover = r->hi;
            }
            take(d, &iv, &open, *r, true, e);
            e++;
        }
        if (covering && cover_node == node && seq <= cover) {
            d->fate[i] = KP_PG_SEEN;
            continue;
        }
        take(d, &iv, &open, (kp_pg_range){node, seq, seq}, false, e);
    }
    for (; e < ne; e++)
        take(d, &iv, &open, d->existing[e], true, e);
    if (open)
        emit(d, &iv);
    return 0;
}

void kp_pg_dedupe_free(kp_pg_dedupe *d)
{
    free(d->fate);
    free(d->node);
    free(d->seq);
    free(d->order);
    free(d->locks);
    free(d->spans);
    free(d->upserts);
    free(d->deletes);
    free(d->existing);
    *d = (kp_pg_dedupe){0};
}
