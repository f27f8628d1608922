/* The PostgreSQL stats store against a real server (tests/services/pg.sh, ctest fixture `pg`).
 *
 * The fixture passes KUP_TEST_PG_DSN and, for the restart test, KUP_TEST_PG_SCRIPT,
 * KUP_TEST_PG_DIR and KUP_TEST_PG_PORT. Without them the tests fail: a suite that silently skips
 * its database tests proves nothing. Each test starts from dropped tables and checks the store
 * through its own libpq connection, never only through the store's own query().
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <inttypes.h>
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backends.h"
#include "kupool/error.h"
#include "pg/pg_sql.h"
#include "testsupport.h"

#define NUSERS 7
#define NMINUTES 5
#define NEVENTS 10000
#define BATCH 1024 /* the consumer's batch size */

/* 2025-11-24T20:31:00Z: a minute boundary. */
#define BASE_MS INT64_C(1764016260000)

/* Usernames that would break a carelessly built array literal or encoding. */
static const char *const USERS[NUSERS] = {
    "alice", "b\"o\"b", "c\\arol", "{dave,eve}", "NULL", "ユーザー名", " spaced out ",
};

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set: run this test through ctest (fixture pg)", name);
    return v;
}

static PGconn *admin_connect(void)
{
    PGconn *c = PQconnectdb(env_or_fail("KUP_TEST_PG_DSN"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to the test server: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SET application_name = 'kupool_test_admin'");
    PQclear(r);
    return c;
}

static void sql_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* The single value of a one-row, one-column query, as an integer. */
static int64_t sql_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static void drop_tables(PGconn *c)
{
    sql_ok(c, "SET client_min_messages = warning");
    sql_ok(c, "DROP TABLE IF EXISTS submissions, kupool_processed_events,"
              " kupool_processed_ranges");
}

static kp_stats *open_store(const char *dsn)
{
    kp_config cfg;
    kp_config_defaults(&cfg);
    snprintf(cfg.store, sizeof(cfg.store), "pg");
    snprintf(cfg.pg_dsn, sizeof(cfg.pg_dsn), "%s", dsn);
    kp_stats *st = NULL;
    assert_int_equal(kp_stats_open(&cfg, &st), 0);
    assert_non_null(st);
    assert_string_equal(st->name, "pg");
    return st;
}

static kp_event make_event(const char *prefix, int seq, const char *user, int64_t ts_ms)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "%s-%d", prefix, seq);
    snprintf(ev.username, sizeof(ev.username), "%s", user);
    ev.job_id = 1;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%x", seq);
    ev.ts_ms = ts_ms;
    return ev;
}

/* Event i's difficulty: every fifth left unset (a v1 event: counts as 1), the others large and
 * uneven, so a sum that adds an event twice or misses one cannot come out right by accident. */
static uint64_t workload_difficulty(int i)
{
    return i % 5 == 0 ? 0 : 1 + (uint64_t)(i % 11) * 1000003;
}

/* Event i of a workload: user i % NUSERS, minute (i / NUSERS) % NMINUTES, a few seconds in. */
static kp_event workload_event(const char *prefix, int i)
{
    int64_t ts = BASE_MS + (int64_t)((i / NUSERS) % NMINUTES) * 60000 + (i * 7919) % 60000;
    kp_event ev = make_event(prefix, i, USERS[i % NUSERS], ts);
    ev.difficulty = workload_difficulty(i);
    return ev;
}

typedef struct expected {
    int64_t count[NUSERS][NMINUTES];
    double dsum[NUSERS][NMINUTES];
} expected;

static void expect_add(expected *e, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        e->count[i % NUSERS][(i / NUSERS) % NMINUTES]++;
        uint64_t d = workload_difficulty(i);
        e->dsum[i % NUSERS][(i / NUSERS) % NMINUTES] += d ? (double)d : 1;
    }
}

/* Records events[0..n) in consumer-sized batches; returns the elapsed milliseconds. */
static double record_all(kp_stats *st, const kp_event *events, int n)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i += BATCH) {
        int k = n - i < BATCH ? n - i : BATCH;
        assert_int_equal(kp_stats_record(st, events + i, (size_t)k), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

static int user_index(const char *name)
{
    for (int u = 0; u < NUSERS; u++)
        if (strcmp(USERS[u], name) == 0)
            return u;
    return -1;
}

/* The whole submissions table equals `e`: no row missing, none extra, every count right, and
 * `timestamp` the UTC minute as wall-clock text. */
static void expect_table(PGconn *c, const expected *e)
{
    PGresult *r = PQexec(c, "SELECT username, EXTRACT(EPOCH FROM timestamp)::int8,"
                            " to_char(timestamp, 'YYYY-MM-DD HH24:MI:SS'), submission_count,"
                            " difficulty_sum FROM submissions");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int want_rows = 0;
    for (int u = 0; u < NUSERS; u++)
        for (int m = 0; m < NMINUTES; m++)
            want_rows += e->count[u][m] > 0;
    assert_int_equal(PQntuples(r), want_rows);
    for (int i = 0; i < PQntuples(r); i++) {
        int u = user_index(PQgetvalue(r, i, 0));
        if (u < 0)
            fail_msg("unexpected username \"%s\"", PQgetvalue(r, i, 0));
        int64_t secs = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        int64_t m = (secs - BASE_MS / 1000) / 60;
        assert_true(secs % 60 == 0 && m >= 0 && m < NMINUTES);
        char want_text[32];
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want_text, sizeof want_text, "%Y-%m-%d %H:%M:%S", &tm);
        assert_string_equal(PQgetvalue(r, i, 2), want_text);
        int64_t count = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        if (count != e->count[u][m])
            fail_msg("%s minute %" PRId64 ": count %" PRId64 ", want %" PRId64, USERS[u], m,
                     count, e->count[u][m]);
        double dsum = strtod(PQgetvalue(r, i, 4), NULL);
        if (dsum != e->dsum[u][m])
            fail_msg("%s minute %" PRId64 ": difficulty_sum %.17g, want %.17g", USERS[u], m,
                     dsum, e->dsum[u][m]);
    }
    PQclear(r);
}

/* query() gives every user's minutes ascending with the counts of `e`. */
static void expect_query(kp_stats *st, const expected *e)
{
    for (int u = 0; u < NUSERS; u++) {
        kp_minute_count *rows = NULL;
        size_t n = 0;
        assert_int_equal(kp_stats_query(st, USERS[u], &rows, &n), 0);
        size_t k = 0;
        for (int m = 0; m < NMINUTES; m++) {
            if (e->count[u][m] == 0)
                continue;
            assert_true(k < n);
            assert_int_equal(rows[k].minute, BASE_MS / 1000 + m * 60);
            assert_int_equal(rows[k].count, e->count[u][m]);
            assert_true(rows[k].difficulty_sum == e->dsum[u][m]);
            k++;
        }
        assert_int_equal(k, n);
        free(rows);
    }
}

/* The test server's DSN with the store's sessions in an odd time zone, which must not move the
 * minutes: `timestamp` holds UTC whatever the session's TimeZone. */
static void dsn_in_chatham(char *buf, size_t cap)
{
    const char *dsn = env_or_fail("KUP_TEST_PG_DSN");
    snprintf(buf, cap, "%s%coptions=-c%%20TimeZone%%3DPacific%%2FChatham", dsn,
             strchr(dsn, '?') ? '&' : '?');
}

/* ---- tests -------------------------------------------------------------------------------- */

/* A DSN libpq cannot parse is KP_EINVAL at open, logged naming -pg_dsn without the password. */
static void test_bad_dsn_is_einval(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "postgresql://kupool:s3cr%zzet@db/kupool", /* libpq quotes the bad token: the password */
        "host=db password=s3cret port",            /* no '=' after port */
        "host=db bogus_option=1 password=s3cret",
        "postgresql://db/kupool?not_an_option=1&password=s3cret",
    };
    char path[] = "/tmp/kupool-test-pg-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kp_config cfg;
        kp_config_defaults(&cfg);
        snprintf(cfg.store, sizeof(cfg.store), "pg");
        snprintf(cfg.pg_dsn, sizeof(cfg.pg_dsn), "%s", bad[i]);
        kp_stats *st = NULL;
        assert_int_equal(kp_stats_open(&cfg, &st), KP_EINVAL);
        assert_null(st);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char log[8192] = {0};
    ssize_t got = pread(fd, log, sizeof(log) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(got > 0);
    assert_non_null(strstr(log, "-pg_dsn"));
    assert_null(strstr(log, "s3cr"));
}

/* Open never connects; with the server down, record and query fail with KP_EIO at once. */
static void test_server_down_is_eio(void **state)
{
    (void)state;
    kp_stats *st = open_store("postgresql://postgres@127.0.0.1:1/kupool_test"); /* closed port */
    kp_event ev = make_event("down", 1, "alice", BASE_MS);
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(kp_stats_record(st, &ev, 1), KP_EIO);
    assert_int_equal(kp_stats_record(st, &ev, 1), KP_EIO); /* and again: no stuck state */
    kp_minute_count *rows = NULL;
    size_t n = 1;
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), KP_EIO);
    assert_null(rows);
    assert_int_equal(n, 0);
    uint64_t took = kp_test_now_ms() - t0;
    printf("server down: record, record, query gave KP_EIO in %" PRIu64 " ms\n", took);
    assert_true(took < 3000);
    kp_stats_free(st);
}

/* A peer that takes the TCP connection but never answers (a hung server, a black hole behind a
 * proxy) is given up after the connect_timeout the store adds to a DSN without one. */
static void test_silent_server_times_out(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 8), 0); /* the kernel completes handshakes; nobody accepts */
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=kupool_test user=postgres",
             ntohs(addr.sin_port));
    kp_stats *st = open_store(dsn);
    kp_event ev = make_event("silent", 1, "alice", BASE_MS);
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(kp_stats_record(st, &ev, 1), KP_EIO);
    uint64_t took = kp_test_now_ms() - t0;
    printf("silent server: record gave KP_EIO after %" PRIu64 " ms\n", took);
    assert_true(took >= 4000 && took < 8000); /* connect_timeout=5 */
    kp_stats_free(st);
    close(fd);
}

/* The first record creates the Go original's table plus SPEC §8's difficulty_sum, and the
 * bookkeeping tables. */
static void test_tables_created_on_first_record(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    assert_int_equal(sql_int(c, "SELECT count(*) FROM pg_class WHERE relname = 'submissions'"),
                     0); /* open alone created nothing */
    kp_event ev = make_event("first", 1, "alice", BASE_MS + 5000);
    assert_int_equal(kp_stats_record(st, &ev, 1), 0);

    PGresult *r = PQexec(c, "SELECT column_name, data_type, character_maximum_length"
                            " FROM information_schema.columns"
                            " WHERE table_name = 'submissions' ORDER BY ordinal_position");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 4);
    assert_string_equal(PQgetvalue(r, 0, 0), "username");
    assert_string_equal(PQgetvalue(r, 0, 1), "character varying");
    assert_string_equal(PQgetvalue(r, 0, 2), "255");
    assert_string_equal(PQgetvalue(r, 1, 0), "timestamp");
    assert_string_equal(PQgetvalue(r, 1, 1), "timestamp without time zone");
    assert_string_equal(PQgetvalue(r, 2, 0), "submission_count");
    assert_string_equal(PQgetvalue(r, 2, 1), "integer");
    assert_string_equal(PQgetvalue(r, 3, 0), "difficulty_sum");
    assert_string_equal(PQgetvalue(r, 3, 1), "double precision");
    PQclear(r);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM information_schema.columns"
                                " WHERE table_name = 'submissions' AND column_name ="
                                " 'difficulty_sum' AND is_nullable = 'NO'"
                                " AND column_default = '0'::text"),
                     1);
    r = PQexec(c, "SELECT string_agg(a.attname, ',' ORDER BY k.i)"
                  " FROM pg_index x CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, i)"
                  " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum"
                  " WHERE x.indrelid = 'submissions'::regclass AND x.indisprimary");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "username,timestamp");
    PQclear(r);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"), 1);
    assert_int_equal(sql_int(c, "SELECT submission_count FROM submissions WHERE username = 'alice'"
                                " AND timestamp = '2025-11-24 20:31:00'"),
                     1);
    kp_stats_free(st);
    PQfinish(c);
}

/* 10,000 events over 7 users and 5 minutes are counted exactly; the same events again (a
 * redelivery) change nothing; query() agrees. Runs in a non-UTC session time zone. */
static void test_batch_counted_exactly_once(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    char dsn[1200];
    dsn_in_chatham(dsn, sizeof dsn);
    kp_stats *st = open_store(dsn);
    kp_event *events = malloc(NEVENTS * sizeof(*events));
    assert_non_null(events);
    for (int i = 0; i < NEVENTS; i++)
        events[i] = workload_event("bulk", i);
    expected e = {0};
    expect_add(&e, 0, NEVENTS);

    assert_int_equal(kp_stats_record(st, events, 1), 0); /* connect and create outside timing */
    double first = record_all(st, events, NEVENTS);
    expect_table(c, &e);
    double again = record_all(st, events, NEVENTS);
    expect_table(c, &e);
    expect_query(st, &e);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"), NEVENTS);
    printf("pg record: %d new events in %.1f ms (%.2f ms per %d-event batch);"
           " redelivered: %.1f ms\n",
           NEVENTS, first, first * BATCH / NEVENTS, BATCH, again);

    /* One batch of all 10,000 at once: new ids, same totals doubled. */
    for (int i = 0; i < NEVENTS; i++)
        events[i] = workload_event("one", i);
    expect_add(&e, 0, NEVENTS);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(kp_stats_record(st, events, NEVENTS), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("pg record: one %d-event batch in %.1f ms\n", NEVENTS,
           (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6);
    expect_table(c, &e);
    free(events);
    kp_stats_free(st);
    PQfinish(c);
}

/* An event_id repeated inside one batch, or half a batch seen before, counts once. */
static void test_duplicates_count_once(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    enum { N = 300 };
    kp_event *events = malloc(3 * N * sizeof(*events));
    assert_non_null(events);
    for (int i = 0; i < N; i++)
        events[3 * i] = events[3 * i + 1] = events[3 * i + 2] = workload_event("dup", i);
    assert_int_equal(kp_stats_record(st, events, 3 * N), 0);
    expected e = {0};
    expect_add(&e, 0, N);
    expect_table(c, &e);

    /* events 150..449: 150 seen, 150 new */
    for (int i = 0; i < N; i++)
        events[i] = workload_event("dup", N / 2 + i);
    assert_int_equal(kp_stats_record(st, events, N), 0);
    expect_add(&e, N, N / 2);
    expect_table(c, &e);
    expect_query(st, &e);
    free(events);
    kp_stats_free(st);
    PQfinish(c);
}

/* A batch the server rejects part of leaves no trace: no counts, no remembered ids, so the
 * good events count when they come again. */
static void test_failed_batch_is_all_or_nothing(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    kp_event events[3] = {
        make_event("atom", 1, "alice", BASE_MS),
        make_event("atom", 2, "\xff\xfe not utf-8", BASE_MS),
        make_event("atom", 3, "alice", BASE_MS + 60000),
    };
    assert_int_equal(kp_stats_record(st, events, 3), KP_EIO);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM submissions"), 0);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"), 0);
    events[1] = make_event("atom", 2, "alice", BASE_MS);
    assert_int_equal(kp_stats_record(st, events, 3), 0);
    assert_int_equal(sql_int(c, "SELECT sum(submission_count) FROM submissions"), 3);
    kp_stats_free(st);
    PQfinish(c);
}

/* Ids older than the prune window are forgotten on the first batch of a store, younger ones are
 * kept. */
static void test_old_ids_are_pruned(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    kp_event ev = make_event("prune", 0, "alice", BASE_MS);
    assert_int_equal(kp_stats_record(st, &ev, 1), 0);
    kp_stats_free(st);
    sql_ok(c, "INSERT INTO kupool_processed_events (event_id, processed_at) VALUES"
              " ('old-1', now() - interval '25 hours'), ('old-2', now() - interval '48 hours'),"
              " ('young-1', now() - interval '23 hours')");
    st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    ev = make_event("prune", 1, "alice", BASE_MS);
    assert_int_equal(kp_stats_record(st, &ev, 1), 0);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"
                                " WHERE event_id LIKE 'old-%'"),
                     0);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"), 3);
    kp_stats_free(st);
    PQfinish(c);
}

/* Our sessions are killed by the server: the next record and query still succeed. The store's
 * own application_name marks its sessions (and shows a DSN's setting wins over the fallback). */
static void test_killed_connections_reconnect(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    const char *base = env_or_fail("KUP_TEST_PG_DSN");
    char dsn[1200];
    snprintf(dsn, sizeof dsn, "%s%capplication_name=kupool_kill_test", base,
             strchr(base, '?') ? '&' : '?');
    kp_stats *st = open_store(dsn);
    kp_event events[200];
    for (int i = 0; i < 200; i++)
        events[i] = workload_event("kill", i);
    assert_int_equal(kp_stats_record(st, events, 100), 0);
    expected e = {0};
    expect_add(&e, 0, 100);
    expect_query(st, &e);
    assert_int_equal(sql_int(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE application_name = 'kupool_kill_test'"),
                     2); /* the record and the query connection */
    assert_int_equal(kp_stats_record(st, events + 100, 100), 0);
    expect_add(&e, 100, 100);
    expect_query(st, &e);
    expect_table(c, &e);
    kp_stats_free(st);
    PQfinish(c);
}

/* The server restarts between two batches: the next record succeeds at once, nothing is lost
 * and a redelivery of both batches adds nothing. */
static void test_server_restart(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    PQfinish(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    kp_event *events = malloc(4000 * sizeof(*events));
    assert_non_null(events);
    for (int i = 0; i < 4000; i++)
        events[i] = workload_event("restart", i);
    record_all(st, events, 2000);
    expected e = {0};
    expect_add(&e, 0, 2000);
    expect_query(st, &e);

    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' restart '%s' '%s'", env_or_fail("KUP_TEST_PG_SCRIPT"),
             env_or_fail("KUP_TEST_PG_DIR"), env_or_fail("KUP_TEST_PG_PORT"));
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(system(cmd), 0);
    printf("pg restart took %" PRIu64 " ms\n", kp_test_now_ms() - t0);

    record_all(st, events + 2000, 2000);
    expect_add(&e, 2000, 2000);
    expect_query(st, &e);
    record_all(st, events, 4000); /* redelivery of everything */
    c = admin_connect();
    expect_table(c, &e);
    PQfinish(c);
    free(events);
    kp_stats_free(st);
}

typedef struct query_loop {
    kp_stats *st;
    atomic_bool stop;
    int queries, failures;
} query_loop;

static void *run_queries(void *arg)
{
    query_loop *q = arg;
    /* At least one query each, even if record() finished before this thread got the CPU. */
    while (!atomic_load(&q->stop) || q->queries == 0) {
        kp_minute_count *rows = NULL;
        size_t n = 0;
        if (kp_stats_query(q->st, USERS[q->queries % NUSERS], &rows, &n) != 0)
            q->failures++;
        for (size_t i = 1; i < n; i++)
            if (rows[i - 1].minute >= rows[i].minute)
                q->failures++;
        free(rows);
        q->queries++;
    }
    return NULL;
}

/* query() from two other threads while record() runs: every call works, results stay sorted. */
static void test_query_beside_record(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    query_loop q[2] = {{.st = st}, {.st = st}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        atomic_init(&q[i].stop, false);
        assert_int_equal(pthread_create(&t[i], NULL, run_queries, &q[i]), 0);
    }
    kp_event *events = malloc(5000 * sizeof(*events));
    assert_non_null(events);
    for (int i = 0; i < 5000; i++)
        events[i] = workload_event("conc", i);
    record_all(st, events, 5000);
    for (int i = 0; i < 2; i++) {
        atomic_store(&q[i].stop, true);
        pthread_join(t[i], NULL);
        assert_int_equal(q[i].failures, 0);
        assert_true(q[i].queries > 0);
    }
    expected e = {0};
    expect_add(&e, 0, 5000);
    expect_table(c, &e);
    free(events);
    kp_stats_free(st);
    PQfinish(c);
}

/* The query path has its own client-side deadline (issue 9: the admin endpoint's single query
 * thread must not hang on a silent database): even with a DSN whose connect_timeout is far
 * longer, query() gives up after about 5 s with KP_ETIMEDOUT, and for a second afterwards fails
 * at once, so a queue of queries against a dead database empties quickly. */
static void test_query_deadline_silent_server(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    char dsn[160];
    snprintf(dsn, sizeof dsn,
             "host=127.0.0.1 port=%d dbname=kupool_test user=postgres connect_timeout=60",
             ntohs(addr.sin_port));
    kp_stats *st = open_store(dsn);
    kp_minute_count *rows = NULL;
    size_t n = 0;
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), KP_ETIMEDOUT);
    uint64_t took = kp_test_now_ms() - t0;
    printf("silent server: query gave KP_ETIMEDOUT after %" PRIu64 " ms\n", took);
    assert_true(took >= 4500 && took < 9000);
    t0 = kp_test_now_ms();
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), KP_EIO); /* backoff: at once */
    assert_true(kp_test_now_ms() - t0 < 500);
    assert_null(rows);
    kp_stats_free(st);
    close(fd);
}

/* A connected server that does not answer the statement (here: a lock held by another session)
 * is given up at the deadline too; the connection is dropped, and once the lock is gone and the
 * backoff passed, queries work again. */
static void test_query_deadline_blocked_statement(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    kp_event ev = make_event("lock", 1, "alice", BASE_MS);
    assert_int_equal(kp_stats_record(st, &ev, 1), 0);
    kp_minute_count *rows = NULL;
    size_t n = 0;
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), 0); /* connects the reader */
    assert_int_equal(n, 1);
    free(rows);
    rows = NULL;

    sql_ok(c, "BEGIN");
    sql_ok(c, "LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE");
    uint64_t t0 = kp_test_now_ms();
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), KP_ETIMEDOUT);
    uint64_t took = kp_test_now_ms() - t0;
    printf("blocked statement: query gave KP_ETIMEDOUT after %" PRIu64 " ms\n", took);
    assert_true(took >= 4500 && took < 9000);
    sql_ok(c, "COMMIT");

    usleep(1200 * 1000); /* past the backoff */
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].count, 1);
    free(rows);
    kp_stats_free(st);
    PQfinish(c);
}

/* ---- the bookkeeping: ranges of sequence numbers (issue 12) ------------------------------- */

#define NODE_A "0123456789abcdef"
#define NODE_B "fedcba9876543210" /* negative as BIGINT */

/* Workload event i with a KuPool id: node boot `node`, sequence i + 1. */
static kp_event seq_event(const char *node, int i)
{
    kp_event ev = workload_event("x", i);
    snprintf(ev.event_id, sizeof(ev.event_id), "%s-%d", node, i + 1);
    return ev;
}

/* Records workload events [first, first + n) of `node`, `batch` at a time. */
static void record_seq(kp_stats *st, const char *node, int first, int n, int batch)
{
    kp_event *evs = malloc((size_t)batch * sizeof(*evs));
    assert_non_null(evs);
    for (int i = first; i < first + n; i += batch) {
        int k = first + n - i < batch ? first + n - i : batch;
        for (int j = 0; j < k; j++)
            evs[j] = seq_event(node, i + j);
        assert_int_equal(kp_stats_record(st, evs, (size_t)k), 0);
    }
    free(evs);
}

/* The rows of kupool_processed_ranges as "node:lo-hi,..." ordered, nodes in hex. */
static void ranges_text(PGconn *c, char *buf, size_t cap)
{
    PGresult *r = PQexec(c, "SELECT coalesce(string_agg(lpad(to_hex(node), 16, '0') || ':' || lo"
                            " || '-' || hi, ',' ORDER BY lpad(to_hex(node), 16, '0'), lo), '')"
                            " FROM kupool_processed_ranges");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(buf, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* KuPool ids: in order, out of order, overlapping, redelivered whole, one at a time, repeated in
 * a batch, two boots in one batch. Each event counts once with its difficulty, the ranges end as
 * one row per boot, and no per-event row is written. */
static void test_ranges_exactly_once(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    expected e = {0};
    record_seq(st, NODE_A, 0, 2000, 1024);    /* in order */
    record_seq(st, NODE_A, 4000, 1000, 1000); /* ahead: a gap */
    char text[512];
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_A ":1-2000," NODE_A ":4001-5000");
    record_seq(st, NODE_A, 2000, 1000, 300);  /* part of the gap */
    record_seq(st, NODE_A, 2500, 2000, 700);  /* overlaps both sides */
    expect_add(&e, 0, 5000);
    expect_table(c, &e);
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_A ":1-5000");
    record_seq(st, NODE_A, 0, 5000, 5000);    /* redelivered whole */
    record_seq(st, NODE_A, 4990, 20, 1);      /* one at a time, half new */
    expect_add(&e, 5000, 10);
    expect_table(c, &e);

    /* Repeats inside a batch and two boots in one batch (a spool replayed after a restart). */
    kp_event evs[6] = {seq_event(NODE_B, 0), seq_event(NODE_A, 5010), seq_event(NODE_B, 0),
                       seq_event(NODE_A, 5011), seq_event(NODE_A, 5010), seq_event(NODE_B, 1)};
    assert_int_equal(kp_stats_record(st, evs, 6), 0);
    assert_int_equal(kp_stats_record(st, evs, 6), 0);
    expect_add(&e, 5010, 2);
    expect_add(&e, 0, 2); /* NODE_B's events 0 and 1 are workload events 0 and 1 again */
    expect_table(c, &e);
    expect_query(st, &e);
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_A ":1-5012," NODE_B ":1-2");
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"), 0);
    kp_stats_free(st);
    PQfinish(c);
}

typedef struct recorder {
    kp_stats *st;
    int nbatches, batch;
    bool descending;
    int failures;
} recorder;

/* Records every batch of the shared workload, in its own order. */
static void *run_recorder(void *arg)
{
    recorder *r = arg;
    kp_event *evs = malloc((size_t)r->batch * sizeof(*evs));
    for (int k = 0; evs && k < r->nbatches; k++) {
        int b = r->descending ? r->nbatches - 1 - k : k;
        for (int j = 0; j < r->batch; j++)
            evs[j] = seq_event(NODE_A, b * r->batch + j);
        if (kp_stats_record(r->st, evs, (size_t)r->batch) != 0)
            r->failures++;
    }
    free(evs);
    return NULL;
}

/* Two consumers of one queue (two stores, two connections, two threads) record the same node
 * boot's batches at once, one ascending and one descending, so every batch is recorded twice,
 * often concurrently: the node lock keeps every event counted exactly once. */
static void test_two_concurrent_recorders(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    recorder r[2] = {{.nbatches = 40, .batch = 500}, {.nbatches = 40, .batch = 500,
                                                      .descending = true}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        r[i].st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
        kp_event warm = seq_event(NODE_B, i); /* connect and create outside the race */
        assert_int_equal(kp_stats_record(r[i].st, &warm, 1), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, run_recorder, &r[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].failures, 0);
    }
    expected e = {0};
    expect_add(&e, 0, 20000);
    expect_add(&e, 0, 2); /* the two warm-up events */
    expect_table(c, &e);
    char text[256];
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_A ":1-20000," NODE_B ":1-2");
    for (int i = 0; i < 2; i++)
        kp_stats_free(r[i].st);
    PQfinish(c);
}

/* The prune horizon: a boot whose ranges were not extended for 24 h is forgotten, so a replay
 * of its events counts again (documented); one extended 23 h ago is remembered. Foreign ids
 * likewise by their own age. */
static void test_replay_after_prune_horizon(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    record_seq(st, NODE_A, 0, 100, 100);
    record_seq(st, NODE_B, 0, 100, 100);
    kp_stats_free(st);
    sql_ok(c, "UPDATE kupool_processed_ranges SET updated_at = now() - CASE"
              " WHEN node = x'" NODE_A "'::int8 THEN interval '25 hours'"
              " ELSE interval '23 hours' END");
    st = open_store(env_or_fail("KUP_TEST_PG_DSN")); /* a new store prunes after its first batch */
    kp_event other = make_event("other", 1, "alice", BASE_MS);
    assert_int_equal(kp_stats_record(st, &other, 1), 0);
    char text[256];
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_B ":1-100");
    int64_t before = sql_int(c, "SELECT sum(submission_count) FROM submissions");
    record_seq(st, NODE_A, 0, 100, 100); /* forgotten: counted again */
    record_seq(st, NODE_B, 0, 100, 100); /* remembered */
    assert_int_equal(sql_int(c, "SELECT sum(submission_count) FROM submissions"), before + 100);
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_A ":1-100," NODE_B ":1-100");
    kp_stats_free(st);
    PQfinish(c);
}

/* A redelivery racing a prune: a record extends an idle range (here: its write, held open in a
 * transaction) while the prune's DELETE waits for the row. READ COMMITTED re-checks the prune's
 * age test against the row's new version, so the range survives; before the extension commits
 * nothing the record read was removed under it, and after it the range is young. */
static void test_prune_spares_a_range_being_extended(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    record_seq(st, NODE_A, 0, 100, 100);
    kp_stats_free(st);
    sql_ok(c, "UPDATE kupool_processed_ranges SET updated_at = now() - interval '30 hours'");

    sql_ok(c, "BEGIN");
    sql_ok(c, "INSERT INTO kupool_processed_ranges (node, lo, hi)"
              " VALUES (x'" NODE_A "'::int8, 1, 150)"
              " ON CONFLICT (node, lo) DO UPDATE SET hi = EXCLUDED.hi, updated_at = now()");
    PGconn *pruner = admin_connect();
    assert_int_equal(PQsendQuery(pruner, KP_PG_SQL_PRUNE_RANGES), 1);
    usleep(300 * 1000);
    assert_int_equal(PQisBusy(pruner), 1); /* waiting for the row */
    sql_ok(c, "COMMIT");
    PGresult *r = PQgetResult(pruner);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    assert_string_equal(PQcmdTuples(r), "0");
    PQclear(r);
    while ((r = PQgetResult(pruner)))
        PQclear(r);
    char text[256];
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, NODE_A ":1-150");
    PQfinish(pruner);
    PQfinish(c);
}

/* A v1 database (the tables as v1 created them, with rows): the first connect adds
 * difficulty_sum in place, backfilled with each row's count (every v1 share was difficulty 1);
 * the counts stay; ids v1 counted are not counted again, whether KuPool's (probed in the
 * per-event table, then covered by a range) or foreign; a second store does not migrate again. */
static void test_v1_database_migrated(void **state)
{
    (void)state;
    PGconn *c = admin_connect();
    drop_tables(c);
    sql_ok(c, "CREATE TABLE submissions (username VARCHAR(255), timestamp TIMESTAMP,"
              " submission_count INT, PRIMARY KEY(username, timestamp))");
    sql_ok(c, "INSERT INTO submissions VALUES ('alice', '2025-11-24 20:31:00', 41),"
              " ('bob', '2025-11-24 20:32:00', 7)");
    sql_ok(c, "CREATE TABLE kupool_processed_events (event_id TEXT PRIMARY KEY,"
              " processed_at TIMESTAMPTZ NOT NULL DEFAULT now())");
    sql_ok(c, "CREATE INDEX kupool_processed_events_processed_at_idx"
              " ON kupool_processed_events (processed_at)");
    sql_ok(c, "INSERT INTO kupool_processed_events (event_id) VALUES"
              " ('00000000000000ab-1'), ('00000000000000ab-2'), ('v1-foreign-1')");

    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    kp_event evs[5] = {
        make_event("x", 0, "alice", BASE_MS), make_event("x", 0, "alice", BASE_MS + 1),
        make_event("x", 0, "bob", BASE_MS + 60000), make_event("x", 0, "alice", BASE_MS + 2),
        make_event("x", 0, "bob", BASE_MS + 60001),
    };
    snprintf(evs[0].event_id, sizeof evs[0].event_id, "00000000000000ab-1"); /* v1 counted */
    snprintf(evs[1].event_id, sizeof evs[1].event_id, "00000000000000ab-2"); /* v1 counted */
    snprintf(evs[2].event_id, sizeof evs[2].event_id, "v1-foreign-1");       /* v1 counted */
    snprintf(evs[3].event_id, sizeof evs[3].event_id, "00000000000000ab-3"); /* new */
    snprintf(evs[4].event_id, sizeof evs[4].event_id, "new-foreign-1");      /* new */
    evs[3].difficulty = 5;
    evs[4].difficulty = 2;
    assert_int_equal(kp_stats_record(st, evs, 5), 0);
    assert_int_equal(sql_int(c, "SELECT submission_count FROM submissions"
                                " WHERE username = 'alice'"), 42);
    assert_int_equal(sql_int(c, "SELECT difficulty_sum FROM submissions"
                                " WHERE username = 'alice'"), 46);
    assert_int_equal(sql_int(c, "SELECT submission_count FROM submissions"
                                " WHERE username = 'bob'"), 8);
    assert_int_equal(sql_int(c, "SELECT difficulty_sum FROM submissions"
                                " WHERE username = 'bob'"), 9);
    char text[256];
    ranges_text(c, text, sizeof text);
    assert_string_equal(text, "00000000000000ab:1-3");
    kp_stats_free(st);

    st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    assert_int_equal(kp_stats_record(st, evs, 5), 0); /* all seen: nothing changes */
    assert_int_equal(sql_int(c, "SELECT sum(submission_count) FROM submissions"), 50);
    assert_int_equal(sql_int(c, "SELECT sum(difficulty_sum) FROM submissions"), 55);
    kp_minute_count *rows = NULL;
    size_t n = 0;
    assert_int_equal(kp_stats_query(st, "alice", &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_true(rows[0].count == 42 && rows[0].difficulty_sum == 46);
    free(rows);
    kp_stats_free(st);
    PQfinish(c);
}

/* One batch of `n` events of `node` from sequence `first` (0-based), difficulty d: for the
 * bound test, which records far more events than it could keep. */
static void record_block(kp_stats *st, kp_event *buf, const char *node, int64_t first, int n)
{
    for (int j = 0; j < n; j++) {
        memset(&buf[j], 0, sizeof(buf[j]));
        snprintf(buf[j].event_id, sizeof(buf[j].event_id), "%s-%" PRId64, node, first + j + 1);
        snprintf(buf[j].username, sizeof(buf[j].username), "user%d", (int)((first + j) % 97));
        buf[j].ts_ms = BASE_MS + (first + j) / 20000 * 60000;
        buf[j].difficulty = (uint64_t)((first + j) % 3) + 1;
    }
    assert_int_equal(kp_stats_record(st, buf, (size_t)n), 0);
}

/* The row bound after 1,000,000 events (issue 12: at most one bookkeeping row per 256 counted
 * events): two node boots (a restart half-way), batches of 4096 delivered with each pair
 * swapped (two consumers taking turns), then batches of 1, again pairs swapped. Prints the rows
 * and bytes per event (pg_total_relation_size) for docs/benchmarks.md. */
static void test_row_bound_million(void **state)
{
    (void)state;
    enum { TOTAL = 1000000, BIG = 4096, SMALL = 3000 };
    PGconn *c = admin_connect();
    drop_tables(c);
    kp_stats *st = open_store(env_or_fail("KUP_TEST_PG_DSN"));
    kp_event *buf = malloc(BIG * sizeof(*buf));
    assert_non_null(buf);
    uint64_t t0 = kp_test_now_ms();
    int64_t done = 0;
    for (int boot = 0; boot < 2; boot++) {
        const char *node = boot == 0 ? NODE_A : NODE_B;
        int64_t n = TOTAL / 2;
        for (int64_t i = 0; i < n; i += 2 * BIG) {
            int64_t second = i + BIG;
            if (second < n)
                record_block(st, buf, node, second, (int)(n - second < BIG ? n - second : BIG));
            record_block(st, buf, node, i, (int)(n - i < BIG ? n - i : BIG));
        }
        done += n;
    }
    uint64_t big_ms = kp_test_now_ms() - t0;
    t0 = kp_test_now_ms();
    for (int64_t i = 0; i < SMALL; i += 2) {
        record_block(st, buf, NODE_B, TOTAL / 2 + i + 1, 1);
        record_block(st, buf, NODE_B, TOTAL / 2 + i, 1);
    }
    uint64_t small_ms = kp_test_now_ms() - t0;
    done += SMALL;
    assert_int_equal(sql_int(c, "SELECT sum(submission_count) FROM submissions"), done);
    /* difficulties 1, 2, 3 in turn from each boot's sequence 0 */
    int64_t want = 0;
    for (int64_t i = 0; i < TOTAL / 2; i++)
        want += 2 * (i % 3 + 1);
    for (int64_t i = TOTAL / 2; i < TOTAL / 2 + SMALL; i++)
        want += i % 3 + 1;
    assert_int_equal(sql_int(c, "SELECT sum(difficulty_sum)::int8 FROM submissions"), want);
    int64_t rows = sql_int(c, "SELECT count(*) FROM kupool_processed_ranges");
    int64_t bytes = sql_int(c, "SELECT pg_total_relation_size('kupool_processed_ranges')");
    int64_t ev_bytes = sql_int(c, "SELECT pg_total_relation_size('kupool_processed_events')");
    printf("row bound: %" PRId64 " events (%d at batch %d in %" PRIu64 " ms, %d at batch 1 in %"
           PRIu64 " ms): %" PRId64 " range rows, %" PRId64 " bytes (%.4f per event);"
           " per-event table %" PRId64 " bytes\n",
           done, TOTAL, BIG, big_ms, SMALL, small_ms, rows, bytes, (double)bytes / (double)done,
           ev_bytes);
    assert_int_equal(rows, 2);
    assert_true(rows * 256 <= done);
    assert_int_equal(sql_int(c, "SELECT count(*) FROM kupool_processed_events"), 0);
    free(buf);
    kp_stats_free(st);
    PQfinish(c);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_dsn_is_einval),
        cmocka_unit_test(test_server_down_is_eio),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_tables_created_on_first_record),
        cmocka_unit_test(test_batch_counted_exactly_once),
        cmocka_unit_test(test_duplicates_count_once),
        cmocka_unit_test(test_failed_batch_is_all_or_nothing),
        cmocka_unit_test(test_old_ids_are_pruned),
        cmocka_unit_test(test_killed_connections_reconnect),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_query_beside_record),
        cmocka_unit_test(test_query_deadline_silent_server),
        cmocka_unit_test(test_query_deadline_blocked_statement),
        cmocka_unit_test(test_ranges_exactly_once),
        cmocka_unit_test(test_two_concurrent_recorders),
        cmocka_unit_test(test_replay_after_prune_horizon),
        cmocka_unit_test(test_prune_spares_a_range_being_extended),
        cmocka_unit_test(test_v1_database_migrated),
        cmocka_unit_test(test_row_bound_million),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
