/* The PostgreSQL stats store's record() on its own (issue 12): events/s at a given batch size
 * and the exactly-once bookkeeping it leaves, through the real store (src/backends/pg/).
 *
 *   stats_record DSN COUNT BATCH [foreign]
 *
 * DROPS AND RECREATES the store's tables (submissions, kupool_processed_ranges,
 * kupool_processed_events) in DSN's database: point it at a scratch database. Sends COUNT events
 * of one node boot in order, BATCH per record() call, 100 users, a new minute every 20,000
 * events, difficulty 1..3 in turn; with `foreign`, ids that are not KuPool's ("bench-N"), which
 * take the per-event table. Checks the totals, and prints one line:
 *   stats_record events=N batch=B seconds=S per_second=R bookkeeping_rows=K bookkeeping_bytes=Y
 *                bytes_per_event=Z
 * where the bookkeeping is both tables, sized with pg_total_relation_size after VACUUM (what
 * stays, not dead versions awaiting autovacuum). The same source builds against an older tree
 * (only kp_config_defaults, kp_stats_open, kp_stats_record), for same-run comparisons. Exit 1 on
 * a store error or a wrong total. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static PGresult *sql(PGconn *db, const char *q)
{
    PGresult *r = PQexec(db, q);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "stats_record: %s: %s", q, PQerrorMessage(db));
        exit(1);
    }
    return r;
}

static long long sql_ll(PGconn *db, const char *q)
{
    PGresult *r = sql(db, q);
    long long v = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "foreign") != 0)) {
        fprintf(stderr, "usage: stats_record DSN COUNT BATCH [foreign]\n");
        return 2;
    }
    long count = atol(argv[2]), batch = atol(argv[3]);
    bool foreign = argc == 5;
    if (count <= 0 || batch <= 0) {
        fprintf(stderr, "stats_record: COUNT and BATCH must be positive\n");
        return 2;
    }
    PGconn *db = PQconnectdb(argv[1]);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "stats_record: %s", PQerrorMessage(db));
        return 1;
    }
    PQclear(sql(db, "SET client_min_messages = warning"));
    PQclear(sql(db, "DROP TABLE IF EXISTS submissions, kupool_processed_events,"
                    " kupool_processed_ranges"));

    kp_config cfg;
    kp_config_defaults(&cfg);
    snprintf(cfg.store, sizeof(cfg.store), "pg");
    snprintf(cfg.pg_dsn, sizeof(cfg.pg_dsn), "%s", argv[1]);
    kp_stats *st = NULL;
    if (kp_stats_open(&cfg, &st) != 0)
        return 1;
    kp_event *evs = calloc((size_t)batch, sizeof(*evs));
    if (!evs)
        return 1;
    const int64_t base_ms = INT64_C(1795000020) * 1000; /* a minute boundary */
    long long want_sum = 0;
    double start = now_s();
    for (long sent = 0; sent < count;) {
        long n = count - sent < batch ? count - sent : batch;
        for (long i = 0; i < n; i++, sent++) {
            kp_event *ev = &evs[i];
            if (foreign)
                snprintf(ev->event_id, sizeof(ev->event_id), "bench-%ld", sent + 1);
            else
                snprintf(ev->event_id, sizeof(ev->event_id), "00000000deadbeef-%ld", sent + 1);
            snprintf(ev->username, sizeof(ev->username), "user%ld", sent % 100);
            ev->ts_ms = base_ms + 60000 * (sent / 20000) + sent % 60000;
            ev->job_id = 1;
            snprintf(ev->client_nonce, sizeof(ev->client_nonce), "%lx", (unsigned long)sent);
            ev->difficulty = (uint64_t)(sent % 3) + 1;
            want_sum += sent % 3 + 1;
        }
        int rc = kp_stats_record(st, evs, (size_t)n);
        if (rc != 0) {
            fprintf(stderr, "stats_record: record failed: %d\n", rc);
            return 1;
        }
    }
    double seconds = now_s() - start;
    kp_stats_free(st);
    free(evs);

    long long total = sql_ll(db, "SELECT coalesce(sum(submission_count), 0) FROM submissions");
    PQclear(sql(db, "VACUUM submissions, kupool_processed_events"));
    long long rows = sql_ll(db, "SELECT count(*) FROM kupool_processed_events");
    long long bytes = sql_ll(db, "SELECT pg_total_relation_size('kupool_processed_events')");
    if (sql_ll(db, "SELECT (to_regclass('kupool_processed_ranges') IS NOT NULL)::int") == 1) {
        PQclear(sql(db, "VACUUM kupool_processed_ranges"));
        rows += sql_ll(db, "SELECT count(*) FROM kupool_processed_ranges");
        bytes += sql_ll(db, "SELECT pg_total_relation_size('kupool_processed_ranges')");
    }
    bool sums = sql_ll(db, "SELECT count(*) FROM information_schema.columns WHERE"
                           " table_name = 'submissions' AND column_name = 'difficulty_sum'") == 1;
    long long got_sum = sums ? sql_ll(db, "SELECT sum(difficulty_sum)::int8 FROM submissions")
                             : want_sum;
    PQfinish(db);
    if (total != count || got_sum != want_sum) {
        fprintf(stderr, "stats_record: counted %lld of %ld events, difficulty %lld of %lld\n",
                total, count, got_sum, want_sum);
        return 1;
    }
    printf("stats_record events=%ld batch=%ld seconds=%.3f per_second=%.0f bookkeeping_rows=%lld"
           " bookkeeping_bytes=%lld bytes_per_event=%.4f\n",
           count, batch, seconds, (double)count / seconds, rows, bytes,
           (double)bytes / (double)count);
    return 0;
}
