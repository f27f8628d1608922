/* The PostgreSQL stats store's statement text and parameter encoding, apart from its connection
 * handling (stats_pg.c): what is sent, not how. Pure: no libpq, so the array literals a batch
 * travels as are unit-tested without a database (tests/test_pg_sql.c). The tables and why the
 * record statement counts each event exactly once: stats_pg.c's top comment. */
#ifndef KP_PG_SQL_H
#define KP_PG_SQL_H

#include <stddef.h>

#include "kupool/event.h"

#define KP_PG_PRUNE_AGE "24 hours"      /* how long an event_id is remembered */
#define KP_PG_PRUNE_CHUNK 100000        /* ids deleted per prune statement */
#define KP_PG_SCHEMA_LOCK_KEY "4242001" /* pg_advisory_xact_lock key for CREATE TABLE */

extern const char KP_PG_SQL_SCHEMA_PRESENT[];
extern const char KP_PG_SQL_SCHEMA_CREATE[];
extern const char KP_PG_SQL_RECORD[]; /* $1 event_ids, $2 usernames, $3 minutes (arrays) */
extern const char KP_PG_SQL_PRUNE[];
extern const char KP_PG_SQL_QUERY[]; /* $1 username */

/* A statement each connection prepares under `name`. */
typedef struct kp_pg_stmt {
    const char *name;
    const char *sql;
} kp_pg_stmt;

#define KP_PG_RECORD_STMTS 2
#define KP_PG_QUERY_STMTS 1
extern const kp_pg_stmt kp_pg_record_stmts[KP_PG_RECORD_STMTS]; /* kp_record, kp_prune */
extern const kp_pg_stmt kp_pg_query_stmts[KP_PG_QUERY_STMTS];   /* kp_query */

/* A growing, NUL-terminated text buffer. */
typedef struct kp_pg_text {
    char *p;
    size_t len, cap;
} kp_pg_text;

/* A batch as the three text-format array literals KP_PG_SQL_RECORD takes, one element per event:
 * {"id1","id2"}, {"user1","user2"}, {minute1,minute2}. Strings are double-quoted with `"` and
 * `\` escaped, so no username (spaces, quotes, braces, commas, "NULL") can change the array's
 * shape. Kept between batches so the steady state allocates nothing. */
typedef struct kp_pg_arrays {
    kp_pg_text ids, users, minutes;
} kp_pg_arrays;

/* Fills `a` for events[0..n). Returns 0 or KP_ENOMEM (then `a` may hold a partial batch). */
int kp_pg_arrays_build(kp_pg_arrays *a, const kp_event *events, size_t n);

/* Releases the buffers; `a` is empty again. */
void kp_pg_arrays_free(kp_pg_arrays *a);

#endif
