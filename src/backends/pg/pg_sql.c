/* The PostgreSQL stats store's statement text and parameter encoding (see pg_sql.h). */
#include "pg_sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

#define STR_(x) #x
#define STR(x) STR_(x)

const char KP_PG_SQL_SCHEMA_PRESENT[] =
    "SELECT to_regclass('submissions') IS NOT NULL"
    " AND to_regclass('kupool_processed_events') IS NOT NULL"
    " AND to_regclass('kupool_processed_events_processed_at_idx') IS NOT NULL";

/* Checked first so a role without CREATE privilege works once the tables exist; the advisory
 * lock keeps two connections (or daemons) creating at once from colliding in the catalog. */
const char KP_PG_SQL_SCHEMA_CREATE[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(" KP_PG_SCHEMA_LOCK_KEY ");"
    "CREATE TABLE IF NOT EXISTS submissions ("
    " username VARCHAR(255), timestamp TIMESTAMP, submission_count INT,"
    " PRIMARY KEY (username, timestamp));"
    "CREATE TABLE IF NOT EXISTS kupool_processed_events ("
    " event_id TEXT PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS kupool_processed_events_processed_at_idx"
    " ON kupool_processed_events (processed_at);"
    "COMMIT";

/* $1 event_ids, $2 usernames, $3 minutes as Unix seconds: parallel arrays, one entry per event.
 * DISTINCT ON makes an id repeated inside the batch count once; the ORDER BYs make concurrent
 * writers take row locks in the same order. `timestamp` holds the UTC wall-clock minute whatever
 * the session's TimeZone. */
const char KP_PG_SQL_RECORD[] =
    "WITH batch AS ("
    " SELECT DISTINCT ON (event_id) event_id, username, minute"
    " FROM unnest($1::text[], $2::text[], $3::int8[]) AS b(event_id, username, minute)),"
    " fresh AS ("
    " INSERT INTO kupool_processed_events (event_id)"
    " SELECT event_id FROM batch ORDER BY event_id"
    " ON CONFLICT (event_id) DO NOTHING"
    " RETURNING event_id),"
    " counts AS ("
    " SELECT batch.username, batch.minute, count(*) AS n"
    " FROM batch JOIN fresh USING (event_id)"
    " GROUP BY batch.username, batch.minute)"
    " INSERT INTO submissions (username, timestamp, submission_count)"
    " SELECT username, to_timestamp(minute) AT TIME ZONE 'UTC', n FROM counts"
    " ORDER BY username, minute"
    " ON CONFLICT (username, timestamp) DO UPDATE"
    " SET submission_count = submissions.submission_count + EXCLUDED.submission_count";

const char KP_PG_SQL_PRUNE[] =
    "DELETE FROM kupool_processed_events WHERE event_id IN ("
    " SELECT event_id FROM kupool_processed_events"
    " WHERE processed_at < now() - interval '" KP_PG_PRUNE_AGE "'"
    " ORDER BY processed_at LIMIT " STR(KP_PG_PRUNE_CHUNK) ")";

const char KP_PG_SQL_QUERY[] =
    "SELECT EXTRACT(EPOCH FROM timestamp)::int8, submission_count::int8"
    " FROM submissions WHERE username = $1 ORDER BY timestamp";

const kp_pg_stmt kp_pg_record_stmts[KP_PG_RECORD_STMTS] = {
    {"kp_record", KP_PG_SQL_RECORD},
    {"kp_prune", KP_PG_SQL_PRUNE},
};
const kp_pg_stmt kp_pg_query_stmts[KP_PG_QUERY_STMTS] = {{"kp_query", KP_PG_SQL_QUERY}};

/* ---- array literals ------------------------------------------------------------------------ */

static int tb_reserve(kp_pg_text *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return KP_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Appends `s` as a double-quoted array element: inside quotes only `"` and `\` are special. The
 * caller reserved 2 * strlen(s) + 3 bytes. */
static void tb_put_quoted(kp_pg_text *b, const char *s)
{
    b->p[b->len++] = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            b->p[b->len++] = '\\';
        b->p[b->len++] = *s;
    }
    b->p[b->len++] = '"';
}

/* Bounds are fixed by kp_event's field sizes, so each buffer is reserved once per batch. */
int kp_pg_arrays_build(kp_pg_arrays *a, const kp_event *events, size_t n)
{
    if (tb_reserve(&a->ids, n * (2 * KP_EVENT_ID_MAX + 4) + 3) != 0 ||
        tb_reserve(&a->users, n * (2 * KP_USERNAME_MAX + 4) + 3) != 0 ||
        tb_reserve(&a->minutes, n * 22 + 3) != 0)
        return KP_ENOMEM;
    a->ids.len = a->users.len = a->minutes.len = 0;
    a->ids.p[a->ids.len++] = '{';
    a->users.p[a->users.len++] = '{';
    a->minutes.p[a->minutes.len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            a->ids.p[a->ids.len++] = ',';
            a->users.p[a->users.len++] = ',';
            a->minutes.p[a->minutes.len++] = ',';
        }
        tb_put_quoted(&a->ids, events[i].event_id);
        tb_put_quoted(&a->users, events[i].username);
        a->minutes.len += (size_t)snprintf(a->minutes.p + a->minutes.len, 22, "%" PRId64,
                                            kp_event_minute(&events[i]));
    }
    memcpy(a->ids.p + a->ids.len, "}", 2);
    memcpy(a->users.p + a->users.len, "}", 2);
    memcpy(a->minutes.p + a->minutes.len, "}", 2);
    return 0;
}

void kp_pg_arrays_free(kp_pg_arrays *a)
{
    free(a->ids.p);
    free(a->users.p);
    free(a->minutes.p);
    *a = (kp_pg_arrays){0};
}
