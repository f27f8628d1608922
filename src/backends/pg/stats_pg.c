/* The PostgreSQL stats store (`-store pg -pg_dsn ...`, SPEC §3, §6 and §8).
 *
 * Tables, created on every fresh connection when missing (a v1 database is migrated in place):
 *   submissions(username VARCHAR(255), timestamp TIMESTAMP, submission_count INT,
 *               difficulty_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
 *               PRIMARY KEY(username, timestamp))    -- the Go original's table, UTC minutes
 *   kupool_processed_ranges(node, lo, hi, updated_at) -- KuPool event ids counted, as ranges of
 *                                                        sequence numbers per node boot
 *   kupool_processed_events(event_id TEXT PRIMARY KEY, processed_at TIMESTAMPTZ)
 *                                                     -- other producers' event ids counted
 *
 * Exactly once: `record` is one transaction of a few pipelined statements, two round trips:
 * the batch's node boots are locked (pg_advisory_xact_lock, ascending) and the ranges touching
 * its sequence numbers read; pg_ranges.c decides which events are new and how the ranges change;
 * one statement then writes the ranges, the foreign ids (ON CONFLICT DO NOTHING: only the new
 * ones are counted) and the counts, aggregated per (username, minute) in C. Every table changes
 * or none, so a batch redelivered after a crash, or retried after a lost commit reply, adds
 * nothing the second time; the node locks keep two consumers of one queue exact. Bookkeeping
 * idle for KP_PG_PRUNE_AGE is pruned, at most every PRUNE_EVERY_MS. The reasoning and the
 * failure analysis: docs/architecture.md, "PostgreSQL stats". The transaction itself is
 * pg_record.c; this file is the connections, their deadlines and retries, and the vtable (a
 * little over 600 lines: both connection slots share that machinery, which reads best whole).
 *
 * The arrays travel as text-format array literals with every element quoted, so no username
 * (any UTF-8 without control characters: spaces, quotes, braces, commas, "NULL") can change the
 * array's shape; the text format also needs no element OIDs or byte-order code, and the
 * connection's client_encoding is forced to UTF8 so the server reads the bytes as the server
 * validated them.
 *
 * Connections: none at open (a database that is down must not stop the daemon); each slot
 * connects on first use and again after any failure, so a connection is either NULL or idle,
 * with the schema checked and its statements prepared. `record` runs on the consumer thread
 * with its own connection; `query` may run on any thread, so it has a second connection behind
 * a mutex: a slow batch never holds up a query, and queries from several threads take turns.
 * A statement that fails because a connection that was already open turns out to be dead (the
 * server restarted) is retried once on a new connection; the dedupe makes that safe
 * even when the first attempt committed but its reply was lost.
 *
 * Query deadline: the admin endpoint runs queries one at a time on one thread, so a database
 * that accepts connections and never answers must not hold that thread. Each `query` call has
 * QUERY_DEADLINE_MS for everything (connecting, schema check, prepare, the statement): libpq's
 * non-blocking calls are driven with poll() against it, and a connection that runs out of time
 * is dropped (KP_ETIMEDOUT). After a failed query, queries fail at once for QUERY_BACKOFF_MS,
 * so a queue of them against a dead database empties quickly instead of each waiting its own
 * deadline. The writer keeps libpq's blocking calls (connect_timeout and keepalives bound
 * them); it has its own thread and retries with backoff. */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends.h"
#include "clock.h"
#include "kupool/error.h"
#include "log.h"
#include "pg_record.h"
#include "pg_sql.h"

#define MODULE "stats.pg"

#define PRUNE_EVERY_MS (5u * 60u * 1000u) /* how often old ids are pruned */
#define WARN_EVERY_MS 10000u              /* one failure warning per slot per 10 s */
#define QUERY_DEADLINE_MS 5000u           /* one query() call, connecting included */
#define QUERY_BACKOFF_MS 1000u            /* after a failed query(), fail at once this long */

/* ---- types -------------------------------------------------------------------------------- */

/* One connection and the statements it prepares. */
typedef struct pg_slot {
    const char *role; /* "record" or "query", for logs */
    const kp_pg_stmt *stmts;
    size_t nstmts;
    const char *tune; /* a SET run on each new connection, or NULL; failing is harmless */
    PGconn *conn;         /* NULL, or connected, idle, schema checked, statements prepared */
    bool failing;         /* the last attempt failed: say so when it works again */
    uint64_t warn_after;  /* monotonic ms before which failures are only counted */
    uint64_t suppressed;  /* failures not logged since the last warning */
    uint64_t deadline_ms; /* 0: libpq's blocking calls; else the monotonic ms the call must end by */
    bool timed_out;       /* the current call ran out of deadline_ms */
} pg_slot;

typedef struct stats_pg {
    kp_stats parent; /* first: a kp_stats * is a stats_pg * */
    PQconninfoOption *opts; /* the parsed -pg_dsn; owns the strings `values` points to */
    const char **keywords;  /* NULL-terminated connection parameters for PQconnectdbParams */
    const char **values;
    char target[256]; /* host, port, dbname and user for logs: never the password */

    pg_slot writer; /* record(): the consumer thread only; what follows, too */
    kp_pg_recorder recorder; /* the batch's plan, parameters and ranges read, kept between calls */
    bool legacy;         /* the per-event table may hold ids a v1 store counted: probe them */
    uint64_t next_prune; /* monotonic ms */

    pthread_mutex_t query_mu; /* guards `reader` and `reader_retry_at` */
    pg_slot reader;           /* query(): any thread */
    uint64_t reader_retry_at; /* monotonic ms before which query() fails at once */
} stats_pg;

/* ---- small helpers ------------------------------------------------------------------------ */

/* libpq's text made fit for one key="value" log field: whitespace runs (its messages span lines
 * and end in "\n") become one space, and `"` and `\` are escaped. When `mask_quoted` is set,
 * whatever libpq quoted is replaced by ***: a DSN parse error quotes the offending fragment,
 * which may be the password. */
static void log_text(const char *msg, bool mask_quoted, char *buf, size_t cap)
{
    size_t w = 0;
    bool space = false, quoted = false;
    for (const char *s = msg ? msg : ""; *s && w + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = w > 0;
            continue;
        }
        if (space) {
            buf[w++] = ' ';
            space = false;
        }
        if (c == '"') {
            quoted = !quoted;
            buf[w++] = '\\';
            buf[w++] = '"';
            if (mask_quoted && quoted) {
                memcpy(buf + w, "***", 3);
                w += 3;
            }
            continue;
        }
        if (mask_quoted && quoted)
            continue;
        if (c == '\\')
            buf[w++] = '\\';
        buf[w++] = (char)c;
    }
    buf[w] = '\0';
}

/* ---- connections -------------------------------------------------------------------------- */

/* A failure on `slot`: logged at most once per WARN_EVERY_MS, with how many were not. */
static void slot_warn(stats_pg *sp, pg_slot *slot, const char *what, const char *pg_msg)
{
    slot->failing = true;
    uint64_t now = kp_clock_mono_ms();
    if (now < slot->warn_after) {
        slot->suppressed++;
        return;
    }
    char msg[512];
    log_text(pg_msg, false, msg, sizeof msg);
    KP_WARN(MODULE, what, KP_STR("conn", slot->role), KP_QSTR("target", sp->target),
            KP_QSTR("error", msg), KP_UINT("suppressed", slot->suppressed));
    slot->suppressed = 0;
    slot->warn_after = now + WARN_EVERY_MS;
}

static void slot_close(pg_slot *slot)
{
    PQfinish(slot->conn);
    slot->conn = NULL;
}

/* The error of a failed result, or of the connection when there is no result. */
static const char *result_error(const pg_slot *slot, const PGresult *res)
{
    if (slot->timed_out)
        return "no answer within the query deadline";
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    return msg && *msg ? msg : PQerrorMessage(slot->conn);
}

/* Waits until slot->conn's socket is ready for `events` or the slot's deadline passes. Returns
 * 1 when ready, 0 on timeout (slot->timed_out set), -1 on a poll error. */
static int wait_socket(pg_slot *slot, short events)
{
    for (;;) {
        uint64_t now = kp_clock_mono_ms();
        if (now >= slot->deadline_ms) {
            slot->timed_out = true;
            return 0;
        }
        uint64_t left = slot->deadline_ms - now;
        struct pollfd p = {.fd = PQsocket(slot->conn), .events = events};
        if (p.fd < 0)
            return -1;
        int rc = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* The result of the command just sent on a slot with a deadline: the last one of a
 * multi-statement string (after an error the server runs no more). NULL after a timeout or a
 * broken connection. */
static PGresult *await_result(pg_slot *slot)
{
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(slot->conn)) {
            if (wait_socket(slot, POLLIN) <= 0 || !PQconsumeInput(slot->conn)) {
                PQclear(last);
                return NULL;
            }
        }
        PGresult *res = PQgetResult(slot->conn);
        if (!res)
            return last;
        PQclear(last);
        last = res;
    }
}

/* PQexec, PQprepare and PQexecPrepared, bounded by slot->deadline_ms when it is set. */
static PGresult *run_sql(pg_slot *slot, const char *sql)
{
    if (!slot->deadline_ms)
        return PQexec(slot->conn, sql);
    return PQsendQuery(slot->conn, sql) ? await_result(slot) : NULL;
}

static PGresult *run_prepare(pg_slot *slot, const kp_pg_stmt *stmt)
{
    if (!slot->deadline_ms)
        return PQprepare(slot->conn, stmt->name, stmt->sql, 0, NULL);
    return PQsendPrepare(slot->conn, stmt->name, stmt->sql, 0, NULL) ? await_result(slot) : NULL;
}

static PGresult *run_prepared(pg_slot *slot, const char *stmt, int nparams,
                              const char *const *params)
{
    if (!slot->deadline_ms)
        return PQexecPrepared(slot->conn, stmt, nparams, params, NULL, NULL, 0);
    return PQsendQueryPrepared(slot->conn, stmt, nparams, params, NULL, NULL, 0)
               ? await_result(slot)
               : NULL;
}

/* PQconnectdbParams, bounded by slot->deadline_ms when it is set (libpq ignores connect_timeout
 * in its non-blocking connect, so the deadline is the only bound there). */
static PGconn *connect_slot(stats_pg *sp, pg_slot *slot)
{
    if (!slot->deadline_ms)
        return PQconnectdbParams(sp->keywords, sp->values, 0);
    slot->conn = PQconnectStartParams(sp->keywords, sp->values, 0);
    if (!slot->conn || PQstatus(slot->conn) == CONNECTION_BAD)
        return slot->conn;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        if (wait_socket(slot, st == PGRES_POLLING_READING ? POLLIN : POLLOUT) <= 0)
            break; /* PQstatus stays short of CONNECTION_OK: the caller reports the failure */
        st = PQconnectPoll(slot->conn);
    }
    return slot->conn;
}

/* Runs a statement that returns nothing or a boolean; true when it worked. */
static bool exec_ok(stats_pg *sp, pg_slot *slot, const char *sql, bool *value, const char *what)
{
    PGresult *res = run_sql(slot, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (ok && value)
        *value = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (!ok)
        slot_warn(sp, slot, what, result_error(slot, res));
    PQclear(res);
    return ok;
}

/* Creates the tables when missing and prepares the slot's statements on a new connection. */
static bool setup(stats_pg *sp, pg_slot *slot)
{
    bool present = false;
    if (!exec_ok(sp, slot, KP_PG_SQL_SCHEMA_PRESENT, &present, "cannot check tables"))
        return false;
    if (!present && !exec_ok(sp, slot, KP_PG_SQL_SCHEMA_CREATE, NULL, "cannot create tables"))
        return false;
    if (slot->tune) {
        PGresult *res = run_sql(slot, slot->tune);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            KP_DEBUG(MODULE, "session setting refused", KP_STR("conn", slot->role),
                     KP_QSTR("sql", slot->tune));
        PQclear(res);
    }
    for (size_t i = 0; i < slot->nstmts; i++) {
        PGresult *res = run_prepare(slot, &slot->stmts[i]);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            slot_warn(sp, slot, "cannot prepare statement", result_error(slot, res));
        PQclear(res);
        if (!ok)
            return false;
    }
    return true;
}

/* Server notices ("relation already exists, skipping" when two connections create the tables at
 * once) are routine: debug level, never libpq's default print to stderr. */
static void on_notice(void *arg, const char *message)
{
    const pg_slot *slot = arg;
    if (!kp_log_enabled(KP_LOG_DEBUG))
        return;
    char msg[512];
    log_text(message, false, msg, sizeof msg);
    KP_DEBUG(MODULE, "server notice", KP_STR("conn", slot->role), KP_QSTR("notice", msg));
}

/* Makes slot->conn usable. `*reused` says whether it was already open (and so may be stale).
 * Returns 0, KP_EIO / KP_ETIMEDOUT (logged) or KP_ENOMEM. */
static int slot_ensure(stats_pg *sp, pg_slot *slot, bool *reused)
{
    *reused = slot->conn != NULL;
    if (slot->conn)
        return 0;
    slot->conn = connect_slot(sp, slot);
    if (!slot->conn)
        return KP_ENOMEM;
    PQsetNoticeProcessor(slot->conn, on_notice, slot);
    if (PQstatus(slot->conn) != CONNECTION_OK) {
        slot_warn(sp, slot, "cannot connect to PostgreSQL", result_error(slot, NULL));
        slot_close(slot);
        return slot->timed_out ? KP_ETIMEDOUT : KP_EIO;
    }
    if (!setup(sp, slot)) {
        slot_close(slot);
        return slot->timed_out ? KP_ETIMEDOUT : KP_EIO;
    }
    KP_INFO(MODULE, slot->failing ? "reconnected to PostgreSQL" : "connected to PostgreSQL",
            KP_STR("conn", slot->role), KP_QSTR("target", sp->target),
            KP_INT("server_version", PQserverVersion(slot->conn)));
    slot->failing = false;
    slot->suppressed = 0;
    slot->warn_after = 0;
    return 0;
}

/* Runs a prepared statement on `slot`, connecting first if needed. A connection that was open
 * before the call and turns out dead (the server restarted, or killed our backend) is replaced
 * and the statement run once more: callers only run statements that are safe to repeat. On
 * success returns 0 with `*out` set (PQclear it); otherwise KP_EIO, KP_ETIMEDOUT (a slot with a
 * deadline ran out of it) or KP_ENOMEM, connection
 * dropped so the next call starts clean. */
static int slot_exec(stats_pg *sp, pg_slot *slot, const char *stmt, int nparams,
                     const char *const *params, PGresult **out)
{
    for (int attempt = 0;; attempt++) {
        bool reused;
        int rc = slot_ensure(sp, slot, &reused);
        if (rc != 0)
            return rc;
        PGresult *res = run_prepared(slot, stmt, nparams, params);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            *out = res;
            return 0;
        }
        bool lost = PQstatus(slot->conn) == CONNECTION_BAD;
        if (lost && reused && attempt == 0) {
            char msg[512];
            log_text(result_error(slot, res), false, msg, sizeof msg);
            KP_INFO(MODULE, "connection lost; reconnecting", KP_STR("conn", slot->role),
                    KP_QSTR("target", sp->target), KP_QSTR("error", msg));
            PQclear(res);
            slot_close(slot);
            continue;
        }
        slot_warn(sp, slot, lost ? "connection lost" : "statement failed",
                  result_error(slot, res));
        PQclear(res);
        slot_close(slot);
        return slot->timed_out ? KP_ETIMEDOUT : KP_EIO;
    }
}

/* ---- the slots ---------------------------------------------------------------------------- */

/* Forgets per-event ids older than KP_PG_PRUNE_AGE, one chunk at a time (again at the next
 * batch while chunks come back full), and ranges not extended for as long; then asks whether the
 * per-event table still holds anything, which is what keeps the legacy probe on. The batch it
 * follows is already committed, so a failure here is only logged. */
static void maybe_prune(stats_pg *sp)
{
    uint64_t now = kp_clock_mono_ms();
    if (now < sp->next_prune)
        return;
    sp->next_prune = now + PRUNE_EVERY_MS;
    PGresult *res = NULL;
    if (slot_exec(sp, &sp->writer, "kp_prune", 0, NULL, &res) != 0)
        return;
    long deleted = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    if (deleted >= KP_PG_PRUNE_CHUNK)
        sp->next_prune = now;
    if (slot_exec(sp, &sp->writer, "kp_prune_ranges", 0, NULL, &res) != 0)
        return;
    long ranges = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    if (slot_exec(sp, &sp->writer, "kp_legacy_present", 0, NULL, &res) != 0)
        return;
    bool legacy = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (legacy != sp->legacy)
        KP_DEBUG(MODULE, legacy ? "per-event ids present: probing them"
                                : "per-event table empty: no more probes",
                 KP_STR("table", "kupool_processed_events"));
    sp->legacy = legacy;
    if (deleted > 0 || ranges > 0)
        KP_DEBUG(MODULE, "pruned bookkeeping", KP_INT("event_ids", deleted),
                 KP_INT("ranges", ranges), KP_QSTR("idle_for", KP_PG_PRUNE_AGE));
}

static int pg_record(kp_stats *st, const kp_event *events, size_t n)
{
    stats_pg *sp = (stats_pg *)st;
    if (n == 0)
        return 0;
    pg_slot *slot = &sp->writer;
    for (int attempt = 0;; attempt++) {
        bool reused;
        int rc = slot_ensure(sp, slot, &reused);
        if (rc != 0)
            return rc;
        kp_pg_failure f = {.fatal = false};
        rc = kp_pg_record_txn(&sp->recorder, slot->conn, sp->legacy, events, n, &f);
        if (rc == 0)
            break;
        /* In a pipeline libpq may hand over a FATAL before it has read the EOF behind it. */
        bool lost = PQstatus(slot->conn) == CONNECTION_BAD || f.fatal;
        slot_close(slot); /* mid-pipeline whatever failed: rolled back, and the next starts clean */
        if (rc == KP_ENOMEM || (rc == KP_EINVAL && !f.msg[0]))
            return rc;
        if (lost && reused && attempt == 0) {
            char msg[512];
            log_text(f.msg, false, msg, sizeof msg);
            KP_INFO(MODULE, "connection lost; reconnecting", KP_STR("conn", slot->role),
                    KP_QSTR("target", sp->target), KP_QSTR("error", msg));
            continue; /* safe: the failed attempt committed nothing, or all of it */
        }
        slot_warn(sp, slot, lost ? "connection lost" : "statement failed", f.msg);
        return KP_EIO;
    }
    maybe_prune(sp);
    return 0;
}

static int read_rows(const PGresult *res, kp_minute_count **out, size_t *n)
{
    int rows = PQntuples(res);
    if (rows <= 0)
        return 0;
    kp_minute_count *m = malloc((size_t)rows * sizeof(*m));
    if (!m)
        return KP_ENOMEM;
    for (int i = 0; i < rows; i++) {
        m[i].minute = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        m[i].count = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        m[i].difficulty_sum = strtod(PQgetvalue(res, i, 2), NULL); /* shortest exact text */
    }
    *out = m;
    *n = (size_t)rows;
    return 0;
}

static int pg_query(kp_stats *st, const char *username, kp_minute_count **out, size_t *n)
{
    stats_pg *sp = (stats_pg *)st;
    *out = NULL;
    *n = 0;
    PGresult *res = NULL;
    pthread_mutex_lock(&sp->query_mu);
    uint64_t now = kp_clock_mono_ms();
    int rc = KP_EIO;
    if (now >= sp->reader_retry_at) {
        sp->reader.deadline_ms = now + QUERY_DEADLINE_MS;
        sp->reader.timed_out = false;
        rc = slot_exec(sp, &sp->reader, "kp_query", 1, &username, &res);
        sp->reader_retry_at = rc != 0 ? kp_clock_mono_ms() + QUERY_BACKOFF_MS : 0;
    }
    pthread_mutex_unlock(&sp->query_mu);
    if (rc != 0)
        return rc;
    rc = read_rows(res, out, n);
    PQclear(res);
    return rc;
}

static void pg_free(kp_stats *st)
{
    stats_pg *sp = (stats_pg *)st;
    KP_DEBUG(MODULE, "record paths", KP_UINT("fast", sp->recorder.fast),
             KP_UINT("fast_guard_failed", sp->recorder.fast_missed));
    slot_close(&sp->writer);
    slot_close(&sp->reader);
    pthread_mutex_destroy(&sp->query_mu);
    kp_pg_recorder_free(&sp->recorder);
    free(sp->keywords);
    free(sp->values);
    PQconninfoFree(sp->opts);
    free(sp);
}

/* ---- open --------------------------------------------------------------------------------- */

static const char *opt_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp(o->keyword, keyword) == 0)
            return o->val;
    return NULL;
}

/* Settings added when the DSN leaves them out: a dead host must not hold the consumer for
 * minutes (connect_timeout), a peer that vanished mid-statement is noticed in about a minute
 * rather than hours (keepalives), and the server can tell our sessions apart. */
static const struct {
    const char *keyword, *value, *env;
} DEFAULTS[] = {
    {"connect_timeout", "5", "PGCONNECT_TIMEOUT"},
    {"keepalives_idle", "30", NULL},
    {"keepalives_interval", "10", NULL},
    {"keepalives_count", "3", NULL},
    {"fallback_application_name", "kupool", NULL},
};

/* Builds keywords/values from the parsed DSN plus DEFAULTS, with client_encoding forced to
 * UTF8. The values point into sp->opts or at string literals. */
static int build_params(stats_pg *sp)
{
    size_t n = 0;
    for (const PQconninfoOption *o = sp->opts; o->keyword; o++)
        n++;
    n += sizeof(DEFAULTS) / sizeof(DEFAULTS[0]) + 2;
    sp->keywords = calloc(n, sizeof(*sp->keywords));
    sp->values = calloc(n, sizeof(*sp->values));
    if (!sp->keywords || !sp->values)
        return KP_ENOMEM;
    size_t k = 0;
    for (const PQconninfoOption *o = sp->opts; o->keyword; o++) {
        if (!o->val || strcmp(o->keyword, "client_encoding") == 0)
            continue;
        sp->keywords[k] = o->keyword;
        sp->values[k++] = o->val;
    }
    for (size_t i = 0; i < sizeof(DEFAULTS) / sizeof(DEFAULTS[0]); i++) {
        if (opt_value(sp->opts, DEFAULTS[i].keyword))
            continue;
        if (DEFAULTS[i].env && getenv(DEFAULTS[i].env))
            continue;
        sp->keywords[k] = DEFAULTS[i].keyword;
        sp->values[k++] = DEFAULTS[i].value;
    }
    sp->keywords[k] = "client_encoding";
    sp->values[k++] = "UTF8";
    return 0;
}

/* "host=db port=5432 dbname=kupool user=kupool", from what the DSN names. */
static void describe_target(stats_pg *sp)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
    size_t w = 0;
    sp->target[0] = '\0';
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
        const char *v = opt_value(sp->opts, shown[i]);
        if (!v || w >= sizeof(sp->target))
            continue;
        int len = snprintf(sp->target + w, sizeof(sp->target) - w, "%s%s=%s", w ? " " : "",
                           shown[i], v);
        if (len > 0)
            w += (size_t)len;
    }
    /* The value goes out as key="...": keep it free of quotes. */
    for (char *c = sp->target; *c; c++)
        if (*c == '"' || *c == '\\')
            *c = '\'';
    if (sp->target[0] == '\0')
        snprintf(sp->target, sizeof(sp->target), "libpq defaults");
}

int kp_stats_pg_open(const kp_config *cfg, kp_stats **out)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->pg_dsn, &err);
    if (!opts) {
        char msg[512];
        log_text(err ? err : "out of memory", true, msg, sizeof msg);
        KP_ERROR(MODULE, "invalid -pg_dsn", KP_QSTR("error", msg));
        PQfreemem(err);
        return err ? KP_EINVAL : KP_ENOMEM;
    }
    stats_pg *sp = calloc(1, sizeof(*sp));
    if (!sp) {
        PQconninfoFree(opts);
        return KP_ENOMEM;
    }
    sp->opts = opts;
    sp->legacy = true; /* until the first prune has looked: a v1 table may hold counted ids */
    pthread_mutex_init(&sp->query_mu, NULL);
    /* The record statements' best plans do not depend on their arrays' contents (index scans
     * by primary key), and PostgreSQL's default re-plans a prepared statement whose generic
     * plan it estimates dearer: for the write, with its five CTEs, the planning cost more than
     * the execution at small batches (bench/stats_record: 865 -> 1,794 events/s at batch 1,
     * 51k -> 70k at 256). PostgreSQL 11 and older have no such setting: harmless. */
    sp->writer = (pg_slot){.role = "record", .stmts = kp_pg_record_stmts,
                           .nstmts = KP_PG_RECORD_STMTS,
                           .tune = "SET plan_cache_mode = force_generic_plan"};
    sp->reader = (pg_slot){.role = "query", .stmts = kp_pg_query_stmts,
                           .nstmts = KP_PG_QUERY_STMTS};
    sp->parent = (kp_stats){
        .version = KP_STATS_VERSION,
        .name = "pg",
        .record = pg_record,
        .query = pg_query,
        .free = pg_free,
    };
    if (build_params(sp) != 0) {
        pg_free(&sp->parent);
        return KP_ENOMEM;
    }
    describe_target(sp);
    *out = &sp->parent;
    return 0;
}
