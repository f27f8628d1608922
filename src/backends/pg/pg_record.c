/* See pg_record.h. */
#include "pg_record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "pg_sql.h"

static void fail_with(kp_pg_failure *f, PGconn *c, const PGresult *res, const char *what)
{
    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    f->fatal = f->fatal || (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0));
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(c);
    snprintf(f->msg, sizeof f->msg, "%s: %s", what, m && *m ? m : "no result");
}

/* The next query's single result, which must have status `want`, and the NULL that ends it.
 * On success `*out` (when not NULL) holds it; else the failure is described. */
static bool take(PGconn *c, ExecStatusType want, PGresult **out, kp_pg_failure *f,
                 const char *what)
{
    PGresult *res = PQgetResult(c);
    if (PQresultStatus(res) != want) {
        fail_with(f, c, res, what);
        PQclear(res);
        return false;
    }
    PGresult *end = PQgetResult(c);
    if (end) {
        PQclear(end);
        PQclear(res);
        snprintf(f->msg, sizeof f->msg, "%s: more than one result", what);
        return false;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return true;
}

static bool send_prepared(PGconn *c, const char *stmt, int nparams, const char *const *params,
                          kp_pg_failure *f)
{
    if (PQsendQueryPrepared(c, stmt, nparams, params, NULL, NULL, 0))
        return true;
    fail_with(f, c, NULL, stmt);
    return false;
}

/* The rows of kp_read_ranges into r->read. */
static int read_ranges(kp_pg_recorder *r, const PGresult *res, size_t *n)
{
    int rows = PQntuples(res);
    *n = rows > 0 ? (size_t)rows : 0;
    if (*n > r->read_cap) {
        kp_pg_range *read = realloc(r->read, *n * sizeof(*read));
        if (!read)
            return KP_ENOMEM;
        r->read = read;
        r->read_cap = *n;
    }
    for (size_t i = 0; i < *n; i++)
        r->read[i] = (kp_pg_range){strtoll(PQgetvalue(res, (int)i, 0), NULL, 10),
                                    strtoll(PQgetvalue(res, (int)i, 1), NULL, 10),
                                    strtoll(PQgetvalue(res, (int)i, 2), NULL, 10)};
    return 0;
}

/* Round trip 1: lock the batch's node boots, read their ranges (and the legacy ids), resolve.
 * Pipelined without a sync, so it is the start of the transaction the write ends. */
static int lock_and_read(kp_pg_recorder *r, PGconn *c, bool legacy, const kp_event *events,
                         kp_pg_failure *f)
{
    kp_pg_dedupe *d = &r->dedupe;
    kp_pg_batch *b = &r->batch;
    int rc = kp_pg_batch_reads(b, events, d, legacy);
    if (rc != 0)
        return rc;
    const char *spans[3] = {b->span_nodes.p, b->span_los.p, b->span_his.p};
    if (!send_prepared(c, "kp_lock", 1, (const char *const *)&b->locks.p, f) ||
        !send_prepared(c, "kp_read_ranges", 3, spans, f) ||
        (legacy && !send_prepared(c, "kp_legacy", 1, (const char *const *)&b->seq_ids.p, f)))
        return KP_EIO;
    if (!PQsendFlushRequest(c) || PQflush(c) != 0) {
        fail_with(f, c, NULL, "flush");
        return KP_EIO;
    }
    PGresult *res = NULL;
    if (!take(c, PGRES_TUPLES_OK, NULL, f, "kp_lock") ||
        !take(c, PGRES_TUPLES_OK, &res, f, "kp_read_ranges"))
        return KP_EIO;
    size_t nread = 0;
    rc = read_ranges(r, res, &nread);
    PQclear(res);
    if (rc != 0)
        return rc;
    if (legacy) {
        if (!take(c, PGRES_TUPLES_OK, &res, f, "kp_legacy"))
            return KP_EIO;
        for (int i = 0; i < PQntuples(res); i++) {
            int64_t node, seq;
            if (kp_pg_seq_id(PQgetvalue(res, i, 0), &node, &seq))
                kp_pg_dedupe_mark_seen(d, node, seq);
        }
        PQclear(res);
    }
    rc = kp_pg_dedupe_resolve(d, r->read, nread);
    if (rc == KP_EINVAL) {
        snprintf(f->msg, sizeof f->msg,
                 "kupool_processed_ranges holds a row with lo < 1, lo > hi or hi = 2^63-1");
        return KP_EIO;
    }
    return rc;
}

/* Whether `d` continues r->tail: one node, one span starting right after it, and no legacy
 * probe due (the guard cannot see the per-event table). */
static bool continues_tail(const kp_pg_recorder *r, const kp_pg_dedupe *d, bool legacy)
{
    return r->have_tail && !legacy && d->nlocks == 1 && d->nspans == 1 &&
           d->locks[0] == r->tail.node && d->spans[0].lo == r->tail.hi + 1;
}

/* One attempt. `fast`: lock and guarded write, no read (the plan resolved against r->tail);
 * `*guard_ok` says whether its guard held. */
static int run_txn(kp_pg_recorder *r, PGconn *c, bool legacy, bool fast, const kp_event *events,
                   kp_pg_failure *f, bool *guard_ok)
{
    kp_pg_dedupe *d = &r->dedupe;
    int rc = 0;
    *guard_ok = true;
    if (!PQenterPipelineMode(c)) {
        fail_with(f, c, NULL, "pipeline mode");
        return KP_EIO;
    }
    char guard[4][24];
    const char *params[KP_PG_WRITE_PARAMS] = {0}; /* the guard NULL unless fast */
    if (fast) {
        if ((rc = kp_pg_dedupe_resolve(d, &r->tail, 1)) != 0)
            return rc;
        const int64_t g[4] = {r->tail.node, r->tail.lo, r->tail.hi, d->spans[0].hi + 1};
        for (int i = 0; i < 4; i++) {
            snprintf(guard[i], sizeof guard[i], "%lld", (long long)g[i]);
            params[KP_PG_WRITE_ARRAYS + i] = guard[i];
        }
        kp_pg_batch *b = &r->batch;
        if ((rc = kp_pg_batch_reads(b, events, d, false)) != 0)
            return rc;
        if (!send_prepared(c, "kp_lock", 1, (const char *const *)&b->locks.p, f))
            return KP_EIO;
    } else if (d->nordered > 0 && (rc = lock_and_read(r, c, legacy, events, f)) != 0) {
        return rc;
    }
    bool needed = false;
    rc = kp_pg_batch_writes(&r->batch, events, d, &needed);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < KP_PG_WRITE_ARRAYS; i++)
        params[i] = r->batch.write[i].p;
    if (needed && !send_prepared(c, "kp_write", KP_PG_WRITE_PARAMS, params, f))
        return KP_EIO;
    if (!PQpipelineSync(c)) {
        fail_with(f, c, NULL, "sync");
        return KP_EIO;
    }
    if (fast && !take(c, PGRES_TUPLES_OK, NULL, f, "kp_lock"))
        return KP_EIO;
    PGresult *res = NULL;
    if (needed) {
        if (!take(c, PGRES_TUPLES_OK, &res, f, "kp_write"))
            return KP_EIO;
        *guard_ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
    }
    PGresult *sync = PQgetResult(c); /* the commit */
    bool ok = PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    if (!ok)
        fail_with(f, c, sync, "commit");
    PQclear(sync);
    if (!ok)
        return KP_EIO;
    if (!PQexitPipelineMode(c)) {
        fail_with(f, c, NULL, "leaving pipeline mode");
        return KP_EIO;
    }
    return 0;
}

int kp_pg_record_txn(kp_pg_recorder *r, PGconn *c, bool legacy, const kp_event *events, size_t n,
                     kp_pg_failure *f)
{
    kp_pg_dedupe *d = &r->dedupe;
    int rc = kp_pg_dedupe_plan(d, events, n);
    if (rc != 0)
        return rc;
    bool fast = continues_tail(r, d, legacy), guard_ok = true;
    r->have_tail = false; /* set again only by a commit */
    rc = run_txn(r, c, legacy, fast, events, f, &guard_ok);
    if (rc == 0 && !guard_ok) {
        /* Someone else wrote this node's ranges since: committed nothing; read and decide. */
        r->fast_missed++;
        if ((rc = kp_pg_dedupe_plan(d, events, n)) == 0)
            rc = run_txn(r, c, legacy, false, events, f, &guard_ok);
    } else if (rc == 0 && fast) {
        r->fast++;
    }
    if (rc == 0 && d->nlocks == 1 && d->nupserts > 0) {
        r->have_tail = true;
        r->tail = d->upserts[d->nupserts - 1]; /* ascending: the one reaching furthest */
    }
    return rc;
}

void kp_pg_recorder_free(kp_pg_recorder *r)
{
    kp_pg_dedupe_free(&r->dedupe);
    kp_pg_batch_free(&r->batch);
    free(r->read);
    *r = (kp_pg_recorder){0};
}
