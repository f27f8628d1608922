/* End to end: `kupool-server -store pg -mq rabbit` against a real PostgreSQL and a real RabbitMQ
 * (ctest fixtures `pg` and `rabbit`, SPEC §3 guarantees and §6 lifecycle).
 *
 * Every scenario drives the real binary over TCP with many pipelining sessions, counts what the
 * server accepted and when, and then reads the `submissions` table through its own libpq
 * connection: the per-(username, minute) counts must equal exactly what was accepted, whatever
 * was broken on the way (a broker outage, a database restart, a consumer killed between commit
 * and ack, a shutdown with the broker down). The broker is checked too, through a separate AMQP
 * connection: a scenario ends with its queue empty.
 *
 * The environment comes from ctest (KUP_TEST_PG_*, KUP_TEST_MQ_URL, KUP_TEST_RABBIT_*); without
 * it the tests fail rather than skip. Each scenario has its own -data_dir (mkdtemp) and -mq_queue
 * and starts from dropped tables (RESOURCE_LOCK kupool_test_db). A scenario that stops a service
 * and then fails restarts it in the teardown, so the next one starts from a healthy pair.
 *
 * Buckets: an event's minute is the server's wall clock at acceptance. A round of pipelined
 * submits is sent at t0 and fully answered at t1, so each of its events lies in [t0, t1]; rounds
 * are kept off minute boundaries, and a round that still straddles one (a very slow machine) is
 * recorded as "minute m or m+1", which the check allows for while keeping per-user totals exact.
 *
 * Batches (issue 12): ctest runs this binary twice, at -mq_batch 1 and at the recommended size
 * (KUP_TEST_E2E_MQ_BATCH, docs/queue.md); the five fault scenarios run in both, and the batch
 * run adds a mixed queue (v1 messages and batches from two publishers) and the replay of a v1
 * spool.
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <libpq-fe.h>

#include "testsupport.h"

extern char **environ;

#define NSESS 8               /* client sessions per server */
#define ROUND_MAX 2000        /* submits in flight at once, over all sessions */
#define LINE_CAP 8192
#define REPLY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 60000
#define COUNT_TIMEOUT_MS 60000
#define MINUTE_MS INT64_C(60000)
#define EDGE_MARGIN_MS 1500   /* no round starts this close to a minute boundary */
#define MAX_PROCS 4
#define MAX_BUCKETS 256
#define SCRIPT_TIMEOUT_MS 90000

/* Usernames as the database stores them and as they go in the authorize JSON: a quote and
 * non-ASCII text travel through the event JSON, the broker and the array literals unchanged. */
#define NUSERS 4
/* Every scenario's servers run at this share difficulty (SPEC §8), so each accepted share adds 4
 * to difficulty_sum and an exact sum proves no share was lost or doubled there either. T(4) is
 * 2^254 - 1: a digest meets it when its first hex digit is 0..3. */
#define E2E_DIFFICULTY 4
#define E2E_DIFFICULTY_ARG "4"
static const char *const USER_DB[NUSERS] = {"alice", "bob", "ユーザー", "d\"q"};
static const char *const USER_WIRE[NUSERS] = {"alice", "bob", "ユーザー", "d\\\"q"};

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set: run this test through ctest (fixtures pg and rabbit)", name);
    return v;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- expected counts ------------------------------------------------------------------------ */

/* `exact` events of `user` fell in `minute` (Unix seconds); `straddle` more fell in `minute` or
 * the one after it. */
typedef struct bucket {
    int user;
    int64_t minute;
    uint64_t exact, straddle;
} bucket;

typedef struct tally {
    bucket b[MAX_BUCKETS];
    size_t n;
    uint64_t total;
    uint64_t difficulty_total; /* sum of the accepted events' difficulties */
    bool mixed_difficulty;     /* events of another difficulty than E2E_DIFFICULTY are in */
} tally;

static bucket *tally_bucket(tally *t, int user, int64_t minute)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->b[i].user == user && t->b[i].minute == minute)
            return &t->b[i];
    assert_true(t->n < MAX_BUCKETS);
    t->b[t->n] = (bucket){.user = user, .minute = minute};
    return &t->b[t->n++];
}

static int64_t minute_of(int64_t ms) { return ms / MINUTE_MS * 60; }

/* `n` events of `user`, each of `difficulty`, were accepted between wall-clock t0 and t1. */
static void tally_add(tally *t, int user, uint64_t n, uint64_t difficulty, int64_t t0, int64_t t1)
{
    t->difficulty_total += n * difficulty;
    if (difficulty != E2E_DIFFICULTY)
        t->mixed_difficulty = true;
    int64_t m0 = minute_of(t0), m1 = minute_of(t1);
    if (m1 - m0 > 60)
        fail_msg("a round took over a minute (%" PRId64 " ms)", t1 - t0);
    bucket *b = tally_bucket(t, user, m0);
    if (m0 == m1)
        b->exact += n;
    else
        b->straddle += n;
    t->total += n;
}

static uint64_t tally_exact(const tally *t, int user, int64_t minute)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->b[i].user == user && t->b[i].minute == minute)
            return t->b[i].exact;
    return 0;
}

static uint64_t tally_straddle(const tally *t, int user, int64_t minute)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->b[i].user == user && t->b[i].minute == minute)
            return t->b[i].straddle;
    return 0;
}

/* ---- PostgreSQL, seen from outside the server ------------------------------------------------ */

static PGconn *db_connect(void)
{
    PGconn *c = PQconnectdb(env_or_fail("KUP_TEST_PG_DSN"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to the test PostgreSQL: %s", PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

/* Runs a query that may meet a restarting server or missing tables; NULL on any failure (the
 * connection is reset when it broke, so the next call works again). */
static PGresult *db_try(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        return r;
    PQclear(r);
    if (PQstatus(c) != CONNECTION_OK)
        PQreset(c);
    return NULL;
}

static void db_exec(PGconn *c, const char *sql)
{
    PGresult *r = db_try(c, sql);
    if (!r)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* The counts and every table of the store's exactly-once bookkeeping (kupool_processed%: one
 * row per event in v1, ranges since issue 12), whatever their names. */
static void db_drop_tables(PGconn *c)
{
    db_exec(c, "DO $$ DECLARE t text; BEGIN"
               " FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
               "   AND (tablename = 'submissions' OR tablename LIKE 'kupool\\_processed%') LOOP"
               "   EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(t) || ' CASCADE';"
               " END LOOP; END $$");
}

/* Sum of submission_count; false while the table does not exist yet or the server is
 * unreachable. What the bookkeeping holds is the store's business (its own tests bound it):
 * these scenarios check the counts, which a lost or doubled event would change. */
static bool db_counts(PGconn *c, int64_t *total)
{
    PGresult *r = db_try(c, "SELECT coalesce(sum(submission_count), 0) FROM submissions");
    if (!r)
        return false;
    *total = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return true;
}

static int user_index(const char *name)
{
    for (int u = 0; u < NUSERS; u++)
        if (strcmp(USER_DB[u], name) == 0)
            return u;
    return -1;
}

/* The table holds exactly the accepted events: every row a known user and minute, per-user sums
 * equal, and every (user, minute) count exact up to rounds that straddled a minute boundary. */
static void db_expect_tally(PGconn *c, const tally *t)
{
    int64_t total = -1;
    if (!db_counts(c, &total))
        fail_msg("cannot read the counts: %s", PQerrorMessage(c));
    assert_int_equal(total, (int64_t)t->total);

    PGresult *r = db_try(c, "SELECT username, EXTRACT(EPOCH FROM timestamp)::int8, submission_count,"
                            " difficulty_sum FROM submissions ORDER BY 1, 2");
    if (!r)
        fail_msg("cannot read submissions: %s", PQerrorMessage(c));
    uint64_t per_user[NUSERS] = {0};
    double difficulty_total = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        int64_t minute = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        uint64_t count = strtoull(PQgetvalue(r, i, 2), NULL, 10);
        double difficulty_sum = strtod(PQgetvalue(r, i, 3), NULL);
        difficulty_total += difficulty_sum;
        /* SPEC §8: the sum of the difficulties, in the same transaction as the count. */
        if (!t->mixed_difficulty && difficulty_sum != (double)count * E2E_DIFFICULTY)
            fail_msg("user \"%s\" minute %" PRId64 ": difficulty_sum %.0f for %" PRIu64
                     " shares of difficulty %d", name, minute, difficulty_sum, count,
                     E2E_DIFFICULTY);
        int u = user_index(name);
        if (u < 0)
            fail_msg("row for a user nobody authorized as: \"%s\"", name);
        uint64_t lo = tally_exact(t, u, minute);
        uint64_t hi = lo + tally_straddle(t, u, minute) + tally_straddle(t, u, minute - 60);
        if (count < lo || count > hi)
            fail_msg("user \"%s\" minute %" PRId64 ": %" PRIu64 " counted, expected %" PRIu64
                     "..%" PRIu64, name, minute, count, lo, hi);
        per_user[u] += count;
    }
    PQclear(r);
    if (difficulty_total != (double)t->difficulty_total)
        fail_msg("difficulty_sum over all rows is %.0f, the accepted shares' difficulties sum to %"
                 PRIu64, difficulty_total, t->difficulty_total);
    for (size_t i = 0; i < t->n; i++) {
        const bucket *b = &t->b[i];
        if (b->exact == 0)
            continue;
        char minute[32];
        snprintf(minute, sizeof(minute), "%" PRId64, b->minute);
        const char *params[] = {USER_DB[b->user], minute};
        PGresult *row = PQexecParams(c,
                                     "SELECT 1 FROM submissions WHERE username = $1 AND timestamp"
                                     " = to_timestamp($2::int8) AT TIME ZONE 'UTC'",
                                     2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(row) != PGRES_TUPLES_OK)
            fail_msg("cannot read submissions: %s", PQresultErrorMessage(row));
        if (PQntuples(row) != 1)
            fail_msg("no row for user \"%s\" minute %" PRId64, USER_DB[b->user], b->minute);
        PQclear(row);
    }
    for (int u = 0; u < NUSERS; u++) {
        uint64_t want = 0;
        for (size_t i = 0; i < t->n; i++)
            if (t->b[i].user == u)
                want += t->b[i].exact + t->b[i].straddle;
        if (per_user[u] != want)
            fail_msg("user \"%s\": %" PRIu64 " counted, %" PRIu64 " accepted", USER_DB[u],
                     per_user[u], want);
    }
}

/* ---- RabbitMQ, seen from outside the server ------------------------------------------------ */

/* A short-lived AMQP connection with channel 1 open, or NULL when the broker is not there. */
static amqp_connection_state_t amqp_open_channel(void)
{
    char *url = strdup(env_or_fail("KUP_TEST_MQ_URL"));
    assert_non_null(url);
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(url, &ci) != AMQP_STATUS_OK)
        fail_msg("KUP_TEST_MQ_URL is not an AMQP URL");
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    struct timeval tv = {.tv_sec = 5};
    bool ok = sock && amqp_socket_open_noblock(sock, ci.host, ci.port, &tv) == AMQP_STATUS_OK;
    const char *vhost = ci.vhost[0] ? ci.vhost : "/";
    ok = ok && amqp_login(conn, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password)
                       .reply_type == AMQP_RESPONSE_NORMAL;
    ok = ok && amqp_channel_open(conn, 1) != NULL &&
         amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL;
    free(url);
    if (!ok) {
        amqp_destroy_connection(conn);
        return NULL;
    }
    return conn;
}

static void amqp_close_channel(amqp_connection_state_t conn)
{
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

/* Ready messages in `queue` (a passive declare), or -1 when the broker or the queue is not
 * there. Messages a consumer holds unacknowledged are not counted; *consumers (if not NULL)
 * gets the number of consumers. */
static int64_t mq_ready(const char *queue, int64_t *consumers)
{
    amqp_connection_state_t conn = amqp_open_channel();
    if (!conn)
        return -1;
    int64_t ready = -1;
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    if (ok && amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL) {
        ready = ok->message_count;
        if (consumers)
            *consumers = ok->consumer_count;
    }
    amqp_close_channel(conn);
    return ready;
}

static void mq_delete(const char *queue)
{
    amqp_connection_state_t conn = amqp_open_channel();
    if (!conn)
        return;
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(queue), 0, 0);
    amqp_close_channel(conn);
}

static void wait_mq_ready(const char *queue, int64_t want, int timeout_ms)
{
    uint64_t deadline = kp_test_now_ms() + (uint64_t)timeout_ms;
    int64_t got;
    while ((got = mq_ready(queue, NULL)) != want) {
        if (kp_test_now_ms() >= deadline)
            fail_msg("queue %s: %" PRId64 " ready messages, expected %" PRId64, queue, got, want);
        sleep_ms(200);
    }
}

/* ---- the service scripts ------------------------------------------------------------------- */

typedef enum service { SVC_PG, SVC_RABBIT } service;

/* Starts `SCRIPT cmd DIR PORT` for a service without waiting, so the load can go on meanwhile. */
static pid_t svc_spawn(service svc, const char *cmd)
{
    const char *pre = svc == SVC_PG ? "KUP_TEST_PG_" : "KUP_TEST_RABBIT_";
    char name[64];
    snprintf(name, sizeof(name), "%sSCRIPT", pre);
    const char *script = env_or_fail(name);
    snprintf(name, sizeof(name), "%sDIR", pre);
    const char *dir = env_or_fail(name);
    snprintf(name, sizeof(name), "%sPORT", pre);
    const char *port = env_or_fail(name);
    const char *argv[] = {script, cmd, dir, port, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, script, NULL, NULL, (char *const *)argv, environ);
    if (rc != 0)
        fail_msg("cannot run %s: %s", script, strerror(rc));
    return pid;
}

/* Waits for a script; returns its exit status (-1 after killing it at the timeout). */
static int svc_reap(pid_t pid)
{
    uint64_t deadline = kp_test_now_ms() + SCRIPT_TIMEOUT_MS;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) != pid) {
        if (kp_test_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(50);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct fixture {
    kp_proc *procs[MAX_PROCS];
    size_t nprocs;
    PGconn *db;
    char data_dir[64];
    char queue[96];
    bool rabbit_down; /* the scenario stopped the broker and has not started it again */
    bool pg_down;     /* a PostgreSQL restart was started and has not finished well */
    pid_t script;     /* a service script still running, 0 if none */
} fixture;

static unsigned scenario_seq;

/* -mq_batch of every server in this run ("1" unless KUP_TEST_E2E_MQ_BATCH says otherwise). */
static const char *run_mq_batch(void)
{
    const char *b = getenv("KUP_TEST_E2E_MQ_BATCH");
    return b && b[0] ? b : "1";
}

static int fixture_setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->data_dir, sizeof(fx->data_dir), "/tmp/kupool-e2e-XXXXXX");
    if (!mkdtemp(fx->data_dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->queue, sizeof(fx->queue), "kupool_e2e_%d_%u", (int)getpid(), ++scenario_seq);
    *state = fx;
    return 0;
}

static void remove_data_dir(const char *dir)
{
    static const char *const files[] = {"spool.jsonl", "spool.offset", "spool.offset.tmp"};
    char path[128];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int fixture_teardown(void **state)
{
    fixture *fx = *state;
    for (size_t i = 0; i < fx->nprocs; i++) {
        kp_proc *p = fx->procs[i];
        if (p->pid > 0) { /* still running: the scenario failed before stopping it */
            kill(p->pid, SIGKILL);
            kp_proc_stop(p, 0, 5000);
            fprintf(stderr, "---- server log (pid %d) ----\n%s\n----\n", (int)p->pid, p->log);
        }
        free(p);
    }
    if (fx->script > 0)
        svc_reap(fx->script);
    if (fx->rabbit_down)
        svc_reap(svc_spawn(SVC_RABBIT, "start"));
    if (fx->pg_down)
        svc_reap(svc_spawn(SVC_PG, "start"));
    mq_delete(fx->queue);
    if (fx->db)
        PQfinish(fx->db);
    remove_data_dir(fx->data_dir);
    free(fx);
    return 0;
}

/* Service scripts run one at a time per scenario; the fixture remembers the running one so a
 * failed scenario's teardown waits for it before repairing anything. */
static void svc_begin(fixture *fx, service svc, const char *cmd)
{
    assert_int_equal(fx->script, 0);
    if (svc == SVC_RABBIT && strcmp(cmd, "stop") == 0)
        fx->rabbit_down = true;
    if (svc == SVC_PG)
        fx->pg_down = true;
    fx->script = svc_spawn(svc, cmd);
}

static void svc_end(fixture *fx, service svc, const char *cmd)
{
    int status = svc_reap(fx->script);
    fx->script = 0;
    if (status != 0)
        fail_msg("%s %s failed (status %d)", svc == SVC_PG ? "pg.sh" : "rabbit.sh", cmd, status);
    if (svc == SVC_RABBIT && strcmp(cmd, "start") == 0)
        fx->rabbit_down = false;
    if (svc == SVC_PG)
        fx->pg_down = false;
}

static void svc_run(fixture *fx, service svc, const char *cmd)
{
    svc_begin(fx, svc, cmd);
    svc_end(fx, svc, cmd);
}

/* A fresh scenario: its own tables (dropped), queue and data dir. */
static fixture *scenario_begin(void **state)
{
    fixture *fx = *state;
    fx->db = db_connect();
    db_drop_tables(fx->db);
    mq_delete(fx->queue);
    return fx;
}

/* ---- servers -------------------------------------------------------------------------------- */

typedef struct server_opts {
    bool consume;
    const char *shutdown_timeout;
    const char *fault_env; /* "KUP_FAULT_DIE_AFTER_COMMIT=N" or NULL */
    const char *fault_env2; /* "KUP_FAULT_CONSUME_CAP=N" or NULL */
    const char *mq_batch;   /* NULL: run_mq_batch() */
} server_opts;

static kp_proc *server_start(fixture *fx, server_opts o)
{
    assert_true(fx->nprocs < MAX_PROCS);
    kp_proc *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    fx->procs[fx->nprocs++] = p;
    const char *args[] = {
        "-store", "pg", "-pg_dsn", env_or_fail("KUP_TEST_PG_DSN"),
        "-mq", "rabbit", "-mq_url", env_or_fail("KUP_TEST_MQ_URL"), "-mq_queue", fx->queue,
        "-data_dir", fx->data_dir,
        "-min_submit_interval", "0",
        "-interval", "10m", /* one job for the whole scenario */
        "-shutdown_timeout", o.shutdown_timeout ? o.shutdown_timeout : "10s",
        o.consume ? "-consume=true" : "-consume=false",
        "-mq_batch", o.mq_batch ? o.mq_batch : run_mq_batch(),
        "-difficulty", E2E_DIFFICULTY_ARG,
        NULL,
    };
    const char *env[4] = {"KUP_LOG_LEVEL=info"};
    size_t ne = 1;
    if (o.fault_env)
        env[ne++] = o.fault_env;
    if (o.fault_env2)
        env[ne++] = o.fault_env2;
    kp_proc_start(p, args, env);
    return p;
}

/* SIGTERM (or `sig`, or nothing with 0) and wait; returns the exit status. */
static int server_stop(kp_proc *p, int sig)
{
    int status = kp_proc_stop(p, sig, STOP_TIMEOUT_MS);
    p->pid = 0;
    bool verbose = getenv("KUP_TEST_VERBOSE") != NULL; /* every server log, not only failures' */
    if (verbose || (status != 0 && status != 128 + SIGKILL))
        fprintf(stderr, "---- server log (exit %d) ----\n%s\n----\n", status, p->log);
    return status;
}

/* Reads whatever the server logged so far, so its stderr pipe never fills. */
static void drain_log(kp_proc *p) { kp_proc_wait_log(p, "\x01never\x01", 1); }

/* The server logged `needle` (reading its stderr for up to a second more). */
static bool logged(kp_proc *p, const char *needle)
{
    return p->pid > 0 ? kp_proc_wait_log(p, needle, 1000) == 1 : strstr(p->log, needle) != NULL;
}

/* The numbers of the "stopped accepted=A published=P counted=C unpublished=U spooled=S" line. */
typedef struct stop_counts {
    unsigned long long accepted, published, counted, unpublished, spooled;
} stop_counts;

static stop_counts stopped_line(const kp_proc *p)
{
    stop_counts c = {0};
    const char *line = strstr(p->log, "stopped accepted=");
    if (!line)
        fail_msg("no \"stopped\" line in the log:\n%s", p->log);
    int n = sscanf(line,
                   "stopped accepted=%llu published=%llu counted=%llu unpublished=%llu"
                   " spooled=%llu",
                   &c.accepted, &c.published, &c.counted, &c.unpublished, &c.spooled);
    if (n != 5)
        fail_msg("cannot parse the stopped line: %.200s", line);
    return c;
}

/* Polls the table until `want` events are counted; more than `want` fails at once (a double). */
static void wait_counted(fixture *fx, kp_proc *p, int64_t want)
{
    uint64_t deadline = kp_test_now_ms() + COUNT_TIMEOUT_MS;
    int64_t total = -1;
    for (;;) {
        if (p && p->pid > 0)
            drain_log(p);
        bool ok = db_counts(fx->db, &total);
        if (ok && total > want)
            fail_msg("%" PRId64 " counted, only %" PRId64 " accepted", total, want);
        if (ok && total == want)
            break;
        if (kp_test_now_ms() >= deadline)
            fail_msg("%" PRId64 " of %" PRId64 " counted after %d ms; server log:\n%s", total, want,
                     COUNT_TIMEOUT_MS, p ? p->log : "");
        sleep_ms(100);
    }
}

/* ---- load: many sessions, pipelined submits -------------------------------------------------- */

typedef struct session {
    int fd;
    int user;
    int64_t next_id;
    int64_t job_id;
    char server_nonce[33];
} session;

typedef struct load {
    session s[NSESS];
    kp_proc *server;
    tally *t;
} load;

/* Every submit of the run gets a client_nonce never used before, whichever server takes it. */
static uint64_t nonce_seq;

/* Takes a job notification; returns false for any other line. */
static bool take_job(session *s, const char *line)
{
    static const char head[] = "{\"id\":null,\"method\":\"job\",\"params\":{\"job_id\":";
    if (strncmp(line, head, sizeof(head) - 1) != 0)
        return false;
    long long id = 0;
    char nonce[33];
    if (sscanf(line + sizeof(head) - 1, "%lld,\"server_nonce\":\"%32[0-9a-f]\"", &id, nonce) != 2)
        fail_msg("malformed job notification: %s", line);
    s->job_id = id;
    memcpy(s->server_nonce, nonce, sizeof(nonce));
    return true;
}

/* A set_difficulty notification (SPEC §8); the difficulty never changes in these scenarios. */
static bool is_set_difficulty(const char *line)
{
    return strncmp(line, "{\"id\":null,\"method\":\"set_difficulty\"", 36) == 0;
}

static void read_reply(session *s, char *buf, size_t cap)
{
    for (;;) {
        int n = kp_recv_line(s->fd, buf, cap, REPLY_TIMEOUT_MS);
        if (n < 0)
            fail_msg("no response on fd %d (%s)", s->fd, n == -1 ? "timeout" : "EOF");
        if (!take_job(s, buf) && !is_set_difficulty(buf))
            return;
    }
}

static void load_connect(load *L, kp_proc *server, tally *t)
{
    memset(L, 0, sizeof(*L));
    L->server = server;
    L->t = t;
    char buf[LINE_CAP];
    for (int i = 0; i < NSESS; i++) {
        session *s = &L->s[i];
        s->fd = kp_connect(server->port, 0);
        s->user = i % NUSERS;
        kp_sendf(s->fd, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"%s\"}}\n",
                 USER_WIRE[s->user]);
        kp_expect_line(s->fd, buf, sizeof(buf), REPLY_TIMEOUT_MS);
        assert_string_equal(buf, "{\"id\":1,\"result\":true}");
        kp_expect_line(s->fd, buf, sizeof(buf), REPLY_TIMEOUT_MS);
        if (!is_set_difficulty(buf) ||
            !strstr(buf, "\"params\":{\"difficulty\":" E2E_DIFFICULTY_ARG ","))
            fail_msg("expected set_difficulty %d after authorize, got: %s", E2E_DIFFICULTY, buf);
        kp_expect_line(s->fd, buf, sizeof(buf), REPLY_TIMEOUT_MS);
        if (!take_job(s, buf))
            fail_msg("expected the job after authorize, got: %s", buf);
        s->next_id = 2;
    }
}

static void load_close(load *L)
{
    for (int i = 0; i < NSESS; i++)
        if (L->s[i].fd >= 0)
            kp_close(L->s[i].fd);
}

/* Waits out the end of a minute so a round's events all land in one minute. */
static void avoid_minute_edge(void)
{
    int64_t left = MINUTE_MS - wall_ms() % MINUTE_MS;
    if (left < EDGE_MARGIN_MS)
        sleep_ms(left + 20);
}

/* One round: `n` submits spread over the sessions, each session's share written in one go, then
 * every response read and required to be `result: true`. */
static void load_round(load *L, size_t n)
{
    assert_true(n <= ROUND_MAX);
    size_t share[NSESS];
    for (int i = 0; i < NSESS; i++)
        share[i] = n / NSESS + ((size_t)i < n % NSESS ? 1 : 0);

    avoid_minute_edge();
    int64_t t0 = wall_ms();
    for (int i = 0; i < NSESS; i++) {
        session *s = &L->s[i];
        if (share[i] == 0)
            continue;
        size_t cap = share[i] * 256, len = 0;
        char *out = malloc(cap);
        assert_non_null(out);
        for (size_t k = 0; k < share[i]; k++) {
            char nonce[24], result[65];
            do { /* a share: the digest meets T(E2E_DIFFICULTY) */
                snprintf(nonce, sizeof(nonce), "e2e%016" PRIx64, nonce_seq++);
                kp_test_result(s->server_nonce, nonce, result);
            } while (result[0] > '3');
            int w = snprintf(out + len, cap - len,
                             "{\"id\":%" PRId64 ",\"method\":\"submit\",\"params\":{"
                             "\"job_id\":%" PRId64 ",\"client_nonce\":\"%s\",\"result\":\"%s\"}}\n",
                             s->next_id + (int64_t)k, s->job_id, nonce, result);
            assert_true(w > 0 && (size_t)w < cap - len);
            len += (size_t)w;
        }
        kp_send(s->fd, out, len);
        free(out);
    }
    char buf[LINE_CAP], want[64];
    for (int i = 0; i < NSESS; i++) {
        session *s = &L->s[i];
        for (size_t k = 0; k < share[i]; k++) {
            read_reply(s, buf, sizeof(buf));
            snprintf(want, sizeof(want), "{\"id\":%" PRId64 ",\"result\":true}", s->next_id++);
            if (strcmp(buf, want) != 0)
                fail_msg("session %d: expected %s, got %s", i, want, buf);
        }
    }
    int64_t t1 = wall_ms();
    for (int i = 0; i < NSESS; i++)
        if (share[i])
            tally_add(L->t, L->s[i].user, share[i], E2E_DIFFICULTY, t0, t1);
    drain_log(L->server);
}

/* `total` accepted submits in rounds of `round`, `gap_ms` apart. */
static void load_run(load *L, size_t total, size_t round, int gap_ms)
{
    while (total > 0) {
        size_t n = total < round ? total : round;
        load_round(L, n);
        total -= n;
        if (total > 0)
            sleep_ms(gap_ms);
    }
}

/* Event lines in DIR/spool.jsonl after the committed offset (the events a stopped server left;
 * batch markers are not events). */
static long spool_lines(const char *dir)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/spool.offset", dir);
    long offset = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld", &offset) != 1)
            offset = 0;
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    f = fopen(path, "r");
    if (!f)
        return -1;
    fseek(f, offset, SEEK_SET);
    long lines = 0;
    char line[LINE_CAP];
    while (fgets(line, sizeof(line), f))
        if (strchr(line, '\n') && strncmp(line, "{\"kupool_batch\"", 15) != 0)
            lines++;
    fclose(f);
    return lines;
}

/* The end of every scenario: a clean SIGTERM, the table exact, the queue empty. */
static stop_counts finish(fixture *fx, kp_proc *p, load *L, const tally *t)
{
    if (L)
        load_close(L);
    assert_int_equal(server_stop(p, SIGTERM), 0);
    stop_counts c = stopped_line(p);
    assert_int_equal(c.unpublished, 0);
    assert_int_equal(c.spooled, 0);
    db_expect_tally(fx->db, t);
    wait_mq_ready(fx->queue, 0, 10000);
    return c;
}

/* ---- 1. 10,000 accepted submits, counted exactly once in their buckets --------------------- */

static void test_ten_thousand(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    load L;
    kp_proc *p = server_start(fx, (server_opts){.consume = true});
    load_connect(&L, p, &t);

    uint64_t start = kp_test_now_ms();
    load_run(&L, 10000, ROUND_MAX, 0);
    uint64_t accepted_ms = kp_test_now_ms() - start;
    wait_counted(fx, p, 10000);
    fprintf(stderr, "10000 submits accepted in %llu ms, counted in %llu ms\n",
            (unsigned long long)accepted_ms, (unsigned long long)(kp_test_now_ms() - start));

    stop_counts c = finish(fx, p, &L, &t);
    assert_int_equal(c.accepted, 10000);
    assert_int_equal(c.published, 10000);
    assert_int_equal(c.counted, 10000);
    assert_int_equal(t.total, 10000);
    assert_int_equal(spool_lines(fx->data_dir), -1); /* never needed the disk */
}

/* ---- 2. the broker stopped for about 10 s mid-run ------------------------------------------- */

static void test_broker_outage(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    load L;
    kp_proc *p = server_start(fx, (server_opts){.consume = true});
    load_connect(&L, p, &t);

    load_run(&L, 600, 200, 20);
    svc_begin(fx, SVC_RABBIT, "stop");
    load_run(&L, 600, 100, 300); /* while the broker shuts down */
    svc_end(fx, SVC_RABBIT, "stop");
    uint64_t down_at = kp_test_now_ms();
    load_run(&L, 400, 100, 500); /* while it is down: accepted all the same */
    int64_t left = 10000 - (int64_t)(kp_test_now_ms() - down_at);
    sleep_ms(left);
    drain_log(p);
    assert_true(logged(p, "publish failed; retrying"));

    svc_begin(fx, SVC_RABBIT, "start");
    load_run(&L, 400, 100, 500); /* while it comes back */
    svc_end(fx, SVC_RABBIT, "start");
    wait_counted(fx, p, 2000);
    assert_true(logged(p, "publishing recovered"));

    stop_counts c = finish(fx, p, &L, &t);
    assert_int_equal(c.accepted, 2000);
    assert_int_equal(c.published, 2000);
    assert_int_equal(t.total, 2000);
}

/* ---- 3. PostgreSQL restarted mid-run -------------------------------------------------------- */

static void test_database_restart(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    load L;
    kp_proc *p = server_start(fx, (server_opts){.consume = true});
    load_connect(&L, p, &t);

    load_run(&L, 800, 200, 20);
    svc_begin(fx, SVC_PG, "restart");
    load_run(&L, 800, 100, 50); /* while the database goes down and comes back */
    svc_end(fx, SVC_PG, "restart");
    load_run(&L, 400, 200, 20);
    wait_counted(fx, p, 2000);
    /* The restart cut the store's connection under it: the consumer saw it and reconnected. */
    assert_true(logged(p, "connection lost; reconnecting") ||
                logged(p, "reconnected to PostgreSQL"));

    stop_counts c = finish(fx, p, &L, &t);
    assert_int_equal(c.accepted, 2000);
    assert_int_equal(c.published, 2000);
}

/* ---- 4. the consumer killed between commit and ack ------------------------------------------ */

#define KILL_EVENTS 4000

static void test_consumer_killed_before_ack(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    load L;

    /* A publisher only, so every accepted event is in the queue before any consumer runs. */
    kp_proc *pub = server_start(fx, (server_opts){.consume = false});
    load_connect(&L, pub, &t);
    load_run(&L, KILL_EVENTS, ROUND_MAX, 0);
    load_close(&L);
    assert_int_equal(server_stop(pub, SIGTERM), 0);
    stop_counts pc = stopped_line(pub);
    assert_int_equal(pc.accepted, KILL_EVENTS);
    assert_int_equal(pc.published, KILL_EVENTS);
    /* Ready counts messages: events only at -mq_batch 1 (a batch run checks events below). */
    bool v1 = strcmp(run_mq_batch(), "1") == 0;
    if (v1)
        wait_mq_ready(fx->queue, KILL_EVENTS, 10000);

    /* A consumer that SIGKILLs itself right after its second batch committed: the first was
     * acknowledged, the second counted and never acknowledged. Its writes are capped at 1024
     * events (whole messages: at -mq_batch above 1 a write is a few batches), so two are at
     * most 2048 events and some are left for the next consumer either way. */
    kp_proc *dying = server_start(fx, (server_opts){.consume = true,
                                                    .fault_env = "KUP_FAULT_DIE_AFTER_COMMIT=2",
                                                    .fault_env2 = "KUP_FAULT_CONSUME_CAP=1024"});
    assert_int_equal(server_stop(dying, 0), 128 + SIGKILL);
    assert_true(logged(dying, "fault injection: dying between commit and ack"));
    int64_t committed = 0;
    assert_true(db_counts(fx->db, &committed));
    assert_true(committed > 0 && committed < KILL_EVENTS);
    /* Once the broker has noticed the dead connection it holds every unacknowledged message
     * as ready again; ready + committed > KILL_EVENTS means the counted second batch is among
     * them. */
    int64_t ready = -1, consumers = -1;
    uint64_t deadline = kp_test_now_ms() + 15000;
    while ((ready = mq_ready(fx->queue, &consumers)) < 0 || consumers != 0) {
        if (kp_test_now_ms() >= deadline)
            fail_msg("queue %s still has %" PRId64 " consumers", fx->queue, consumers);
        sleep_ms(100);
    }
    int64_t recounted = v1 ? committed - (KILL_EVENTS - ready) : 0;
    if (v1)
        assert_true(recounted > 0);

    kp_proc *next = server_start(fx, (server_opts){.consume = true});
    wait_counted(fx, next, KILL_EVENTS);
    stop_counts c = finish(fx, next, NULL, &t);
    /* It consumed every redelivery, and the ones counted before added nothing (the table is
     * exact: wait_counted fails on a double, finish checks every bucket). */
    if (v1) {
        assert_int_equal(c.counted, ready);
    } else {
        /* Events, not messages: the redelivered batches held more than what was left. */
        recounted = (int64_t)c.counted - (KILL_EVENTS - committed);
        assert_true(recounted > 0);
    }
    fprintf(stderr,
            "killed consumer committed %" PRId64 " events, %" PRId64
            " of them unacknowledged; their redelivery added none\n",
            committed, recounted);
}

/* ---- 5. SIGTERM with the broker down: spooled, replayed at the next start -------------------- */

/* What a server killed in the middle of a spool append leaves: part of a line, no newline. */
static void append_torn_line(const char *dir)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/spool.jsonl", dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("{\"event_id\":\"torn-1\",\"username\":\"alice\",\"job_id\":1,\"client_no", f);
    assert_int_equal(fclose(f), 0);
}

static void test_shutdown_spools(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    load L;
    kp_proc *p = server_start(fx, (server_opts){.consume = true, .shutdown_timeout = "3s"});
    load_connect(&L, p, &t);

    load_run(&L, 1000, 500, 0);
    wait_counted(fx, p, 1000);
    svc_run(fx, SVC_RABBIT, "stop");
    load_run(&L, 1000, 500, 0); /* accepted; nowhere to publish them */
    load_close(&L);
    /* Down long enough for the publish backoff to reach its 5 s ceiling: the shutdown must not
     * wait for the next retry, and the whole stop stays within -shutdown_timeout (3 s). */
    assert_true(kp_proc_wait_log(p, "retry_ms=5000", 15000));
    uint64_t term_at = kp_test_now_ms();
    assert_int_equal(server_stop(p, SIGTERM), 0);
    uint64_t stop_ms = kp_test_now_ms() - term_at;
    fprintf(stderr, "SIGTERM with the broker down: exited in %llu ms\n",
            (unsigned long long)stop_ms);
    assert_true(stop_ms < 3000 + 1500);
    stop_counts c = stopped_line(p);
    assert_int_equal(c.accepted, 2000);
    assert_int_equal(c.published, 1000);
    assert_int_equal(c.spooled, 1000);
    assert_int_equal(c.unpublished, 1000); /* all of them in the spool, none only in memory */
    assert_false(logged(p, "events neither published nor spooled"));
    assert_int_equal(spool_lines(fx->data_dir), 1000);

    /* A later run killed mid-append leaves a torn line; the next run, with the broker still
     * down, spools more events after it. None of them may be lost. */
    append_torn_line(fx->data_dir);
    kp_proc *again = server_start(fx, (server_opts){.consume = true, .shutdown_timeout = "3s"});
    assert_true(kp_proc_wait_log(again, "replaying events spooled by an earlier run spooled=1000",
                                 5000));
    load_connect(&L, again, &t);
    load_run(&L, 500, 500, 0);
    load_close(&L);
    assert_int_equal(server_stop(again, SIGTERM), 0);
    c = stopped_line(again);
    assert_int_equal(c.accepted, 500);
    assert_int_equal(c.published, 0);
    assert_int_equal(c.spooled, 1500);

    svc_run(fx, SVC_RABBIT, "start");
    kp_proc *next = server_start(fx, (server_opts){.consume = true});
    assert_true(kp_proc_wait_log(next, "replaying events spooled by an earlier run spooled=1500",
                                 5000));
    wait_counted(fx, next, 2500);
    assert_true(kp_proc_wait_log(next, "spool drained", 5000));
    assert_false(logged(next, "unreadable spool lines skipped"));
    stop_counts c2 = finish(fx, next, NULL, &t);
    assert_int_equal(c2.accepted, 0);
    assert_int_equal(c2.published, 1500);
    assert_int_equal(spool_lines(fx->data_dir), 0);
}

/* ---- 6. a mixed queue: v1 messages and batches, from two publishers, one consumer ----------- */

static void test_mixed_queue(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    load L;
    /* A v1 publisher (one message per event) and a batching one fill the same queue, as in a
     * rolling upgrade; then one consumer takes both kinds. */
    const char *kinds[2] = {"1", "64"};
    for (int k = 0; k < 2; k++) {
        kp_proc *pub = server_start(fx, (server_opts){.consume = false, .mq_batch = kinds[k]});
        load_connect(&L, pub, &t);
        load_run(&L, 3000, ROUND_MAX, 0);
        load_close(&L);
        assert_int_equal(server_stop(pub, SIGTERM), 0);
        stop_counts pc = stopped_line(pub);
        assert_int_equal(pc.published, 3000);
    }
    /* 3000 single-event messages and ceil(3000 / 64) per publish job or fewer batches. */
    int64_t ready = mq_ready(fx->queue, NULL);
    assert_true(ready > 3000 && ready < 3000 + 3000 / 2);
    kp_proc *con = server_start(fx, (server_opts){.consume = true});
    wait_counted(fx, con, 6000);
    stop_counts c = finish(fx, con, NULL, &t);
    assert_int_equal(c.counted, 6000);
    assert_false(logged(con, "not an event"));
}

/* ---- 7. a v1 spool, as the previous version left it, replayed by this one -------------------- */

static void test_v1_spool_replayed(void **state)
{
    fixture *fx = scenario_begin(state);
    tally t = {0};
    enum { V1_EVENTS = 2500 };
    /* One event JSON per line, no batch markers: what 404c716's spool.c wrote. */
    char path[128];
    snprintf(path, sizeof(path), "%s/spool.jsonl", fx->data_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    avoid_minute_edge();
    int64_t now = wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000));
    for (int i = 0; i < V1_EVENTS; i++)
        fprintf(f,
                "{\"event_id\":\"00000000v1spool-%d\",\"username\":\"%s\",\"job_id\":1,"
                "\"client_nonce\":\"%08x\",\"ts\":\"%s\"}\n",
                i, USER_WIRE[i % NUSERS], (unsigned)i, ts);
    assert_int_equal(fclose(f), 0);
    for (int u = 0; u < NUSERS; u++)
        tally_add(&t, u, V1_EVENTS / NUSERS + (u < V1_EVENTS % NUSERS), 1, now, now); /* v1: no difficulty */

    kp_proc *p = server_start(fx, (server_opts){.consume = true});
    assert_true(kp_proc_wait_log(p, "replaying events spooled by an earlier run spooled=2500",
                                 5000));
    wait_counted(fx, p, V1_EVENTS);
    assert_true(kp_proc_wait_log(p, "spool drained", 5000));
    assert_false(logged(p, "unreadable spool lines skipped"));
    stop_counts c = finish(fx, p, NULL, &t);
    assert_int_equal(c.published, V1_EVENTS);
    assert_int_equal(spool_lines(fx->data_dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ten_thousand, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_broker_outage, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_database_restart, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_consumer_killed_before_ack, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_spools, fixture_setup, fixture_teardown),
    };
    const struct CMUnitTest batch_tests[] = {
        cmocka_unit_test_setup_teardown(test_mixed_queue, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_v1_spool_replayed, fixture_setup, fixture_teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (strcmp(run_mq_batch(), "1") != 0)
        failed += cmocka_run_group_tests(batch_tests, NULL, NULL);
    return failed;
}
