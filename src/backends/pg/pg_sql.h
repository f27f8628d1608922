/* The PostgreSQL stats store's statement text and the text-format array literals its parameters
 * travel as, apart from its connection handling (stats_pg.c): what is sent, not how. Pure: no
 * libpq, so the encoding is unit-tested without a database (tests/test_pg_sql.c). The tables and
 * why each event is counted exactly once: docs/architecture.md, "PostgreSQL stats". */
#ifndef KP_PG_SQL_H
#define KP_PG_SQL_H

#include <stddef.h>
#include <stdint.h>

#define KP_PG_PRUNE_AGE "24 hours"      /* how long idle bookkeeping is remembered */
#define KP_PG_PRUNE_CHUNK 100000        /* per-event ids deleted per prune statement */
#define KP_PG_SCHEMA_LOCK_KEY "4242001" /* pg_advisory_xact_lock key for CREATE TABLE */

extern const char KP_PG_SQL_SCHEMA_PRESENT[];
extern const char KP_PG_SQL_SCHEMA_CREATE[];

/* One record() is one transaction of these, pipelined (stats_pg.c):
 *   LOCK         $1 nodes int8[] (ascending)      -- pg_advisory_xact_lock per node boot
 *   READ_RANGES  $1 nodes, $2 lo, $3 hi int8[]    -- the rows overlapping or touching each span
 *   LEGACY       $1 event_ids text[]              -- those a v1 store already counted
 *   WRITE        see pg_batch.h                   -- per-event ids, ranges, counts: one statement
 * The transaction is implicit: it ends at the pipeline's sync, so the locks are held until the
 * counts are committed. A batch that continues the range this store wrote last skips the read:
 * LOCK then a guarded WRITE, one round trip (the guard: KP_PG_SQL_WRITE's comment). */
extern const char KP_PG_SQL_LOCK[];
extern const char KP_PG_SQL_READ_RANGES[];
extern const char KP_PG_SQL_LEGACY[];
extern const char KP_PG_SQL_WRITE[];
#define KP_PG_WRITE_PARAMS 17 /* 13 arrays, then the fast path's guard (NULLs after a read) */
#define KP_PG_WRITE_ARRAYS 13

extern const char KP_PG_SQL_PRUNE[];        /* per-event ids idle 24 h, one chunk */
extern const char KP_PG_SQL_PRUNE_RANGES[]; /* ranges not extended for 24 h */
extern const char KP_PG_SQL_LEGACY_PRESENT[]; /* does the per-event table hold any row? */
extern const char KP_PG_SQL_QUERY[];        /* $1 username */

/* A statement each connection prepares under `name`. */
typedef struct kp_pg_stmt {
    const char *name;
    const char *sql;
} kp_pg_stmt;

#define KP_PG_RECORD_STMTS 7
#define KP_PG_QUERY_STMTS 1
/* kp_lock, kp_read_ranges, kp_legacy, kp_write, kp_prune, kp_prune_ranges, kp_legacy_present */
extern const kp_pg_stmt kp_pg_record_stmts[KP_PG_RECORD_STMTS];
extern const kp_pg_stmt kp_pg_query_stmts[KP_PG_QUERY_STMTS]; /* kp_query */

/* A growing, NUL-terminated text buffer holding one array literal: {e1,e2,...}. */
typedef struct kp_pg_text {
    char *p;
    size_t len, cap;
} kp_pg_text;

/* Starts an empty literal "{}" with room for `room` more bytes of elements. 0 or KP_ENOMEM. */
int kp_pg_text_begin(kp_pg_text *t, size_t room);

/* Append one element; the caller reserved room (the KP_PG_*_ROOM bound per element). Strings
 * are double-quoted with `"` and `\` escaped, so no username (spaces, quotes, braces, commas,
 * "NULL") can change the array's shape; doubles are written so they read back exactly. */
void kp_pg_text_str(kp_pg_text *t, const char *s);
void kp_pg_text_int(kp_pg_text *t, int64_t v);
void kp_pg_text_double(kp_pg_text *t, double v);
#define KP_PG_INT_ROOM 21    /* ",-9223372036854775808" */
#define KP_PG_DOUBLE_ROOM 26 /* ",-1.2345678901234567e+308" */
#define KP_PG_STR_ROOM(maxlen) (2 * (size_t)(maxlen) + 3)

void kp_pg_text_free(kp_pg_text *t);

#endif
