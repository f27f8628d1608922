/* See pg_batch.h. */
#include "pg_batch.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

struct kp_pg_cell {
    const char *username; /* borrowed from the batch; NULL: empty */
    uint64_t hash;
    int64_t minute;
    int64_t count;
    double difficulty_sum;
};

enum { F_IDS, F_USERS, F_MINUTES, F_DIFFS, D_NODES, D_LOS, U_NODES, U_LOS, U_HIS,
       C_USERS, C_MINUTES, C_COUNTS, C_SUMS };

int kp_pg_batch_reads(kp_pg_batch *b, const kp_event *events, const kp_pg_dedupe *d,
                      bool legacy)
{
    if (kp_pg_text_begin(&b->locks, d->nlocks * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&b->span_nodes, d->nspans * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&b->span_los, d->nspans * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&b->span_his, d->nspans * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&b->seq_ids, legacy ? d->nordered * KP_PG_STR_ROOM(KP_EVENT_ID_MAX) : 0))
        return KP_ENOMEM;
    for (size_t i = 0; i < d->nlocks; i++)
        kp_pg_text_int(&b->locks, d->locks[i]);
    for (size_t i = 0; i < d->nspans; i++) {
        kp_pg_text_int(&b->span_nodes, d->spans[i].node);
        kp_pg_text_int(&b->span_los, d->spans[i].lo);
        kp_pg_text_int(&b->span_his, d->spans[i].hi);
    }
    for (size_t k = 0; legacy && k < d->nordered; k++)
        if (d->fate[d->order[k]] != KP_PG_REPEAT)
            kp_pg_text_str(&b->seq_ids, events[d->order[k]].event_id);
    return 0;
}

static uint64_t hash_key(const char *s, int64_t minute)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then the minute mixed in */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h ^= (uint64_t)minute * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* Adds one FRESH event to its (username, minute) cell. The table has at least twice as many
 * cells as the batch has events, so it never fills. */
static void aggregate(kp_pg_batch *b, const kp_event *ev)
{
    int64_t minute = kp_event_minute(ev);
    uint64_t h = hash_key(ev->username, minute);
    size_t mask = b->ncells - 1;
    for (size_t k = h & mask;; k = (k + 1) & mask) {
        kp_pg_cell *c = &b->cells[k];
        if (!c->username) {
            *c = (kp_pg_cell){.username = ev->username, .hash = h, .minute = minute};
            b->used[b->nused++] = (uint32_t)k;
        } else if (c->hash != h || c->minute != minute || strcmp(c->username, ev->username)) {
            continue;
        }
        c->count++;
        c->difficulty_sum += (double)kp_event_difficulty(ev);
        return;
    }
}

static int reserve_cells(kp_pg_batch *b, size_t n)
{
    size_t want = 16;
    while (want < 2 * n)
        want *= 2;
    if (want <= b->ncells)
        return 0;
    kp_pg_cell *cells = calloc(want, sizeof(*cells));
    uint32_t *used = malloc(want * sizeof(*used));
    if (!cells || !used) {
        free(cells);
        free(used);
        return KP_ENOMEM;
    }
    free(b->cells);
    free(b->used);
    b->cells = cells;
    b->used = used;
    b->ncells = want;
    return 0;
}

int kp_pg_batch_writes(kp_pg_batch *b, const kp_event *events, const kp_pg_dedupe *d,
                       bool *needed)
{
    *needed = false;
    if (reserve_cells(b, d->n) != 0)
        return KP_ENOMEM;
    kp_pg_text *w = b->write;
    size_t nf = d->nforeign, nd = d->ndeletes, nu = d->nupserts;
    if (kp_pg_text_begin(&w[F_IDS], nf * KP_PG_STR_ROOM(KP_EVENT_ID_MAX)) ||
        kp_pg_text_begin(&w[F_USERS], nf * KP_PG_STR_ROOM(KP_USERNAME_MAX)) ||
        kp_pg_text_begin(&w[F_MINUTES], nf * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[F_DIFFS], nf * KP_PG_DOUBLE_ROOM) ||
        kp_pg_text_begin(&w[D_NODES], nd * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[D_LOS], nd * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[U_NODES], nu * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[U_LOS], nu * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[U_HIS], nu * KP_PG_INT_ROOM))
        return KP_ENOMEM;
    for (size_t i = 0; i < d->n; i++) {
        if (d->fate[i] == KP_PG_FOREIGN) {
            kp_pg_text_str(&w[F_IDS], events[i].event_id);
            kp_pg_text_str(&w[F_USERS], events[i].username);
            kp_pg_text_int(&w[F_MINUTES], kp_event_minute(&events[i]));
            kp_pg_text_double(&w[F_DIFFS], (double)kp_event_difficulty(&events[i]));
        } else if (d->fate[i] == KP_PG_FRESH) {
            aggregate(b, &events[i]);
        }
    }
    for (size_t i = 0; i < nd; i++) {
        kp_pg_text_int(&w[D_NODES], d->deletes[i].node);
        kp_pg_text_int(&w[D_LOS], d->deletes[i].lo);
    }
    for (size_t i = 0; i < nu; i++) {
        kp_pg_text_int(&w[U_NODES], d->upserts[i].node);
        kp_pg_text_int(&w[U_LOS], d->upserts[i].lo);
        kp_pg_text_int(&w[U_HIS], d->upserts[i].hi);
    }
    size_t nc = b->nused;
    int rc = 0;
    if (kp_pg_text_begin(&w[C_USERS], nc * KP_PG_STR_ROOM(KP_USERNAME_MAX)) ||
        kp_pg_text_begin(&w[C_MINUTES], nc * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[C_COUNTS], nc * KP_PG_INT_ROOM) ||
        kp_pg_text_begin(&w[C_SUMS], nc * KP_PG_DOUBLE_ROOM))
        rc = KP_ENOMEM;
    for (size_t i = 0; i < nc; i++) {
        kp_pg_cell *c = &b->cells[b->used[i]];
        if (rc == 0) {
            kp_pg_text_str(&w[C_USERS], c->username);
            kp_pg_text_int(&w[C_MINUTES], c->minute);
            kp_pg_text_int(&w[C_COUNTS], c->count);
            kp_pg_text_double(&w[C_SUMS], c->difficulty_sum);
        }
        c->username = NULL; /* emptied for the next batch, also after a failure */
    }
    b->nused = 0;
    *needed = rc == 0 && (nf > 0 || nd > 0 || nu > 0 || nc > 0);
    return rc;
}

void kp_pg_batch_free(kp_pg_batch *b)
{
    kp_pg_text_free(&b->locks);
    kp_pg_text_free(&b->span_nodes);
    kp_pg_text_free(&b->span_los);
    kp_pg_text_free(&b->span_his);
    kp_pg_text_free(&b->seq_ids);
    for (size_t i = 0; i < KP_PG_WRITE_ARRAYS; i++)
        kp_pg_text_free(&b->write[i]);
    free(b->cells);
    free(b->used);
    *b = (kp_pg_batch){0};
}
