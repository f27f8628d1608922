/* The PostgreSQL stats store's statement text and array literals (see pg_sql.h). */
#include "pg_sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Everything the store needs, the v1.1 column included, so a v1 database is migrated. */
const char KP_PG_SQL_SCHEMA_PRESENT[] =
    "SELECT to_regclass('submissions') IS NOT NULL"
    " AND to_regclass('kupool_processed_events') IS NOT NULL"
    " AND to_regclass('kupool_processed_events_processed_at_idx') IS NOT NULL"
    " AND to_regclass('kupool_processed_ranges') IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('submissions')"
    " AND attname = 'difficulty_sum' AND NOT attisdropped)";

/* Checked first so a role without CREATE privilege works once the tables exist; the advisory
 * lock keeps two connections (or daemons) creating at once from colliding in the catalog, and
 * makes the v1 migration run once. A v1 `submissions` gains difficulty_sum in place, and its
 * rows are backfilled with their count: every v1 share was difficulty 1, so that is their true
 * sum (docs/architecture.md, "Migrating a v1 database"). */
const char KP_PG_SQL_SCHEMA_CREATE[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(" KP_PG_SCHEMA_LOCK_KEY ");"
    "CREATE TABLE IF NOT EXISTS submissions ("
    " username VARCHAR(255), timestamp TIMESTAMP, submission_count INT,"
    " difficulty_sum DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " PRIMARY KEY (username, timestamp));"
    "DO $$ BEGIN"
    " IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'submissions'::regclass"
    "  AND attname = 'difficulty_sum' AND NOT attisdropped) THEN"
    "  ALTER TABLE submissions ADD COLUMN difficulty_sum DOUBLE PRECISION NOT NULL DEFAULT 0;"
    "  UPDATE submissions SET difficulty_sum = submission_count;"
    " END IF;"
    " END $$;"
    "CREATE TABLE IF NOT EXISTS kupool_processed_events ("
    " event_id TEXT PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS kupool_processed_events_processed_at_idx"
    " ON kupool_processed_events (processed_at);"
    "CREATE TABLE IF NOT EXISTS kupool_processed_ranges ("
    " node BIGINT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL,"
    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
    " PRIMARY KEY (node, lo), CHECK (lo >= 1 AND lo <= hi));"
    "COMMIT";

/* unnest keeps the array's order, and the store sends the nodes ascending: two consumers lock
 * the nodes they share in the same order, so they wait for each other but never deadlock. */
const char KP_PG_SQL_LOCK[] = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS u(k)";

/* Per span [a, b] of one node: the row starting before a, if it reaches a - 1, and every row
 * starting in [a, b + 1]. Rows are disjoint, so that is every row that overlaps or touches the
 * span, found with two index scans on (node, lo) whatever the number of rows before. */
const char KP_PG_SQL_READ_RANGES[] =
    "SELECT r.node, r.lo, r.hi"
    " FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS q(node, a, b)"
    " CROSS JOIN LATERAL ("
    " (SELECT p.node, p.lo, p.hi FROM kupool_processed_ranges p"
    "  WHERE p.node = q.node AND p.lo < q.a ORDER BY p.lo DESC LIMIT 1)"
    " UNION ALL"
    " (SELECT p.node, p.lo, p.hi FROM kupool_processed_ranges p"
    "  WHERE p.node = q.node AND p.lo >= q.a AND p.lo <= q.b + 1)) AS r"
    " WHERE r.hi >= q.a - 1";

const char KP_PG_SQL_LEGACY[] =
    "SELECT event_id FROM kupool_processed_events WHERE event_id = ANY($1::text[])";

/* $1..$4 foreign events (event_id, username, minute, difficulty), counted only when their id is
 * new to the per-event table (DISTINCT ON: an id repeated in the batch counts once); $5, $6 the
 * range rows (node, lo) merged away; $7..$9 the ranges written (node, lo, hi); $10..$13 the
 * counts of the KuPool events, already aggregated per (username, minute): count and difficulty
 * sum. One statement: every table changes or none. The ORDER BYs make concurrent writers take
 * row locks in the same order. `timestamp` holds the UTC wall-clock minute whatever the
 * session's TimeZone.
 *
 * $14..$17 (node, lo, hi, end), all NULL after a read: the guard of the fast path, which writes
 * without reading because it expects the node's ranges touching the batch's span to be exactly
 * the row (node, lo, hi) it wrote last, with the span starting at hi + 1 and ending before
 * `end`. Under the node's lock (taken by the statement before, so this snapshot sees every
 * commit of the previous holder) the guard checks that row is there unchanged and no row starts
 * in (lo, end]; rows never overlap, so no other row can touch the span. If it fails, nothing is
 * written and the statement returns false; the store then reads and decides as usual. */
const char KP_PG_SQL_WRITE[] =
    "WITH guard AS ("
    " SELECT $14::int8 IS NULL OR ("
    "  EXISTS (SELECT 1 FROM kupool_processed_ranges"
    "   WHERE node = $14 AND lo = $15::int8 AND hi = $16::int8)"
    "  AND NOT EXISTS (SELECT 1 FROM kupool_processed_ranges"
    "   WHERE node = $14 AND lo > $15::int8 AND lo <= $17::int8)) AS ok),"
    " foreign_batch AS ("
    " SELECT DISTINCT ON (event_id) event_id, username, minute, difficulty"
    " FROM unnest($1::text[], $2::text[], $3::int8[], $4::float8[])"
    "  AS f(event_id, username, minute, difficulty)"
    " WHERE (SELECT ok FROM guard)),"
    " fresh AS ("
    " INSERT INTO kupool_processed_events (event_id)"
    " SELECT event_id FROM foreign_batch ORDER BY event_id"
    " ON CONFLICT (event_id) DO NOTHING"
    " RETURNING event_id),"
    " merged AS ("
    " DELETE FROM kupool_processed_ranges r USING unnest($5::int8[], $6::int8[]) AS m(node, lo)"
    " WHERE r.node = m.node AND r.lo = m.lo AND (SELECT ok FROM guard)),"
    " extended AS ("
    " INSERT INTO kupool_processed_ranges (node, lo, hi)"
    " SELECT * FROM unnest($7::int8[], $8::int8[], $9::int8[]) AS u(node, lo, hi)"
    " WHERE (SELECT ok FROM guard) ORDER BY 1, 2"
    " ON CONFLICT (node, lo) DO UPDATE SET hi = EXCLUDED.hi, updated_at = now()),"
    " counts AS ("
    " SELECT username, minute, sum(n) AS n, sum(d) AS d FROM ("
    "  SELECT b.username, b.minute, 1::int8, b.difficulty"
    "  FROM foreign_batch b JOIN fresh USING (event_id)"
    "  UNION ALL"
    "  SELECT * FROM unnest($10::text[], $11::int8[], $12::int8[], $13::float8[])"
    "  WHERE (SELECT ok FROM guard)"
    " ) AS c(username, minute, n, d)"
    " GROUP BY username, minute),"
    " counted AS ("
    " INSERT INTO submissions (username, timestamp, submission_count, difficulty_sum)"
    " SELECT username, to_timestamp(minute) AT TIME ZONE 'UTC', n, d FROM counts"
    " ORDER BY username, minute"
    " ON CONFLICT (username, timestamp) DO UPDATE"
    " SET submission_count = submissions.submission_count + EXCLUDED.submission_count,"
    " difficulty_sum = submissions.difficulty_sum + EXCLUDED.difficulty_sum)"
    " SELECT ok FROM guard";

const char KP_PG_SQL_PRUNE[] =
    "DELETE FROM kupool_processed_events WHERE event_id IN ("
    " SELECT event_id FROM kupool_processed_events"
    " WHERE processed_at < now() - interval '" KP_PG_PRUNE_AGE "'"
    " ORDER BY processed_at LIMIT " STR(KP_PG_PRUNE_CHUNK) ")";

/* The age test is on the target row itself, not only in a subquery: when a record extends a
 * range while this runs, READ COMMITTED re-checks the qualification against the row's new
 * version (fresh updated_at) and keeps it. The table holds a few rows per node boot: a
 * sequential scan, no index (which would also cost the in-place updates of `hi`). */
const char KP_PG_SQL_PRUNE_RANGES[] =
    "DELETE FROM kupool_processed_ranges"
    " WHERE updated_at < now() - interval '" KP_PG_PRUNE_AGE "'";

const char KP_PG_SQL_LEGACY_PRESENT[] = "SELECT EXISTS (SELECT 1 FROM kupool_processed_events)";

const char KP_PG_SQL_QUERY[] =
    "SELECT EXTRACT(EPOCH FROM timestamp)::int8, submission_count::int8, difficulty_sum"
    " FROM submissions WHERE username = $1 ORDER BY timestamp";

const kp_pg_stmt kp_pg_record_stmts[KP_PG_RECORD_STMTS] = {
    {"kp_lock", KP_PG_SQL_LOCK},
    {"kp_read_ranges", KP_PG_SQL_READ_RANGES},
    {"kp_legacy", KP_PG_SQL_LEGACY},
    {"kp_write", KP_PG_SQL_WRITE},
    {"kp_prune", KP_PG_SQL_PRUNE},
    {"kp_prune_ranges", KP_PG_SQL_PRUNE_RANGES},
    {"kp_legacy_present", KP_PG_SQL_LEGACY_PRESENT},
};
const kp_pg_stmt kp_pg_query_stmts[KP_PG_QUERY_STMTS] = {{"kp_query", KP_PG_SQL_QUERY}};

/* ---- array literals ------------------------------------------------------------------------ */

int kp_pg_text_begin(kp_pg_text *t, size_t room)
{
    size_t need = room + 3; /* "{", "}", NUL */
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p)
            return KP_ENOMEM;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p, "{}", 3);
    t->len = 1; /* elements go before the closing brace */
    return 0;
}

/* The separator, and the closing brace and NUL moved past what `put` writes next. */
static char *elem_start(kp_pg_text *t)
{
    if (t->len > 1)
        t->p[t->len++] = ',';
    return t->p + t->len;
}

static void elem_end(kp_pg_text *t, size_t written)
{
    t->len += written;
    memcpy(t->p + t->len, "}", 2);
}

void kp_pg_text_str(kp_pg_text *t, const char *s)
{
    char *w = elem_start(t), *start = w;
    *w++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            *w++ = '\\';
        *w++ = *s;
    }
    *w++ = '"';
    elem_end(t, (size_t)(w - start));
}

void kp_pg_text_int(kp_pg_text *t, int64_t v)
{
    char *w = elem_start(t);
    elem_end(t, (size_t)snprintf(w, KP_PG_INT_ROOM, "%" PRId64, v));
}

/* 17 significant digits read back as the same double; an integral value below 10^17 (every
 * difficulty, and every sum short of 2^56) is written as its plain digits. */
void kp_pg_text_double(kp_pg_text *t, double v)
{
    char *w = elem_start(t);
    elem_end(t, (size_t)snprintf(w, KP_PG_DOUBLE_ROOM, "%.17g", v));
}

void kp_pg_text_free(kp_pg_text *t)
{
    free(t->p);
    *t = (kp_pg_text){0};
}
