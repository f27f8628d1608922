/* Baseline for bench/backends.sh: the fastest this machine's PostgreSQL takes batched
 * per-(username, minute) upserts from one libpq connection, without KuPool's event-id dedupe.
 *
 *   raw_pg_upsert DSN COUNT BATCH
 *
 * Creates bench_submissions (the shape of SPEC §3's `submissions`), then sends COUNT events in
 * batches of BATCH: each batch is one statement, one transaction, the events as parallel text
 * arrays (the same transport src/stats_pg.c uses) that the server unnests, groups and upserts
 * with ON CONFLICT DO UPDATE. Checks the total at the end and drops the table. Prints one line:
 *   raw_pg_upsert events=N seconds=S per_second=R
 * Exit status 1 on a database error or a wrong total. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void exec_or_die(PGconn *db, const char *sql)
{
    PGresult *r = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "raw_pg_upsert: %s: %s", sql, PQerrorMessage(db));
        exit(1);
    }
    PQclear(r);
}

/* Appends `"text"` and a separator to an array literal being built in buf. */
static size_t put_elem(char *buf, size_t at, const char *text, int last)
{
    return at + (size_t)sprintf(buf + at, "\"%s\"%s", text, last ? "}" : ",");
}

static const char SQL_UPSERT[] =
    "INSERT INTO bench_submissions (username, timestamp, submission_count)"
    " SELECT username, to_timestamp(minute) AT TIME ZONE 'UTC', count(*)"
    " FROM unnest($1::text[], $2::text[], $3::int8[]) AS b(event_id, username, minute)"
    " GROUP BY username, minute ORDER BY username, minute"
    " ON CONFLICT (username, timestamp) DO UPDATE"
    " SET submission_count = bench_submissions.submission_count + EXCLUDED.submission_count";

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: raw_pg_upsert DSN COUNT BATCH\n");
        return 2;
    }
    long count = atol(argv[2]), batch = atol(argv[3]);
    if (count <= 0 || batch <= 0) {
        fprintf(stderr, "raw_pg_upsert: COUNT and BATCH must be positive\n");
        return 2;
    }
    PGconn *db = PQconnectdb(argv[1]);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "raw_pg_upsert: %s", PQerrorMessage(db));
        return 1;
    }
    exec_or_die(db, "SET client_min_messages = warning");
    exec_or_die(db, "DROP TABLE IF EXISTS bench_submissions");
    exec_or_die(db, "CREATE TABLE bench_submissions (username VARCHAR(255), timestamp TIMESTAMP,"
                    " submission_count INT, PRIMARY KEY(username, timestamp))");
    PGresult *prep = PQprepare(db, "upsert", SQL_UPSERT, 3, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
        fprintf(stderr, "raw_pg_upsert: prepare: %s", PQerrorMessage(db));
        return 1;
    }
    PQclear(prep);

    /* Three array literals, each element at most ~40 bytes. */
    size_t cap = (size_t)batch * 48 + 16;
    char *ids = malloc(cap), *users = malloc(cap), *minutes = malloc(cap);
    if (!ids || !users || !minutes)
        return 1;
    long long base_minute = 1795000000LL / 60 * 60;
    double start = now_s();
    for (long sent = 0; sent < count;) {
        long n = count - sent < batch ? count - sent : batch;
        size_t a = 1, b = 1, c = 1;
        ids[0] = users[0] = minutes[0] = '{';
        for (long i = 0; i < n; i++, sent++) {
            char text[48];
            int last = i == n - 1;
            snprintf(text, sizeof(text), "00000000deadbeef-%ld", sent);
            a = put_elem(ids, a, text, last);
            snprintf(text, sizeof(text), "user%ld", sent % 100);
            b = put_elem(users, b, text, last);
            snprintf(text, sizeof(text), "%lld", base_minute + 60 * (sent / 20000));
            c = put_elem(minutes, c, text, last);
        }
        ids[a] = users[b] = minutes[c] = '\0';
        const char *params[3] = {ids, users, minutes};
        PGresult *r = PQexecPrepared(db, "upsert", 3, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "raw_pg_upsert: upsert: %s", PQerrorMessage(db));
            return 1;
        }
        PQclear(r);
    }
    double seconds = now_s() - start;
    PGresult *r = PQexec(db, "SELECT coalesce(sum(submission_count), 0) FROM bench_submissions");
    long total = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    exec_or_die(db, "DROP TABLE bench_submissions");
    PQfinish(db);
    free(ids);
    free(users);
    free(minutes);
    if (total != count) {
        fprintf(stderr, "raw_pg_upsert: counted %ld of %ld events\n", total, count);
        return 1;
    }
    printf("raw_pg_upsert events=%ld seconds=%.3f per_second=%.0f\n", count, seconds,
           (double)count / seconds);
    return 0;
}
