/* The backend registry (src/backends/backends.c) with fake constructors: a vtable built for
 * another interface version, or with a mandatory slot left NULL, is refused with KP_EINVAL and
 * one ERROR line naming the backend and the slot, and is released through its own `free`; a
 * valid one, with its optional slots NULL, is handed out. Also: the real memory backends pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends.h"
#include "kupool/error.h"

/* ---- stderr capture: before kp_log_open, log lines go straight to stderr ---- */

typedef struct capture {
    FILE *file;
    int saved;
    char text[4096];
} capture;

static void capture_begin(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

static const char *capture_end(capture *c)
{
    fflush(stderr);
    assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    rewind(c->file);
    size_t n = fread(c->text, 1, sizeof(c->text) - 1, c->file);
    c->text[n] = '\0';
    fclose(c->file);
    return c->text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- fakes ---- */

static int frees; /* calls of a fake's free slot */

static int fake_publish(kp_mq *mq, const kp_mq_batch *batches, size_t n)
{
    (void)mq, (void)batches, (void)n;
    return 0;
}
static int fake_consume(kp_mq *mq, kp_event *out, size_t cap, size_t *n, int timeout_ms)
{
    (void)mq, (void)out, (void)cap, (void)timeout_ms;
    *n = 0;
    return 0;
}
static int fake_ack(kp_mq *mq)
{
    (void)mq;
    return 0;
}
static void fake_mq_free(kp_mq *mq)
{
    frees++;
    free(mq);
}

static int fake_record(kp_stats *st, const kp_event *ev, size_t n)
{
    (void)st, (void)ev, (void)n;
    return 0;
}
static int fake_query(kp_stats *st, const char *user, kp_minute_count **out, size_t *n)
{
    (void)st, (void)user;
    *out = NULL;
    *n = 0;
    return 0;
}
static void fake_stats_free(kp_stats *st)
{
    frees++;
    free(st);
}

static const kp_mq valid_mq = {
    .version = KP_MQ_VERSION,
    .name = "fake",
    .publish = fake_publish,
    .consume = fake_consume,
    .ack = fake_ack,
    .free = fake_mq_free, /* .pending optional */
};

static const kp_stats valid_stats = {
    .version = KP_STATS_VERSION,
    .name = "fake",
    .record = fake_record,
    .query = fake_query,
    .free = fake_stats_free, /* .evictions optional */
};

/* What the next fake constructor returns: a heap copy of this. The last one made is kept so a
 * test can release a fake the registry could not (one without a free slot). */
static kp_mq next_mq;
static kp_stats next_stats;
static void *last_made;

static int fake_mq_open(const kp_config *cfg, kp_mq **out)
{
    (void)cfg;
    kp_mq *mq = malloc(sizeof(*mq));
    assert_non_null(mq);
    *mq = next_mq;
    *out = mq;
    last_made = mq;
    return 0;
}

static int fake_stats_open(const kp_config *cfg, kp_stats **out)
{
    (void)cfg;
    kp_stats *st = malloc(sizeof(*st));
    assert_non_null(st);
    *st = next_stats;
    *out = st;
    last_made = st;
    return 0;
}

static int failing_open(const kp_config *cfg, kp_mq **out)
{
    (void)cfg, (void)out;
    return KP_ENOMEM;
}

static const kp_mq_backend mq_table[] = {{"fake", fake_mq_open}, {"broken", failing_open}};
static const kp_stats_backend stats_table[] = {{"fake", fake_stats_open}};

static kp_config config_for(const char *mq, const char *store)
{
    kp_config cfg;
    kp_config_defaults(&cfg);
    snprintf(cfg.mq, sizeof(cfg.mq), "%s", mq);
    snprintf(cfg.store, sizeof(cfg.store), "%s", store);
    return cfg;
}

/* Opens `fake` through the mq table; returns the status and the captured log. */
static int open_mq(kp_mq **mq, capture *c, const char **log)
{
    kp_config cfg = config_for("fake", "fake");
    *mq = NULL;
    capture_begin(c);
    int rc = kp_mq_open_from(mq_table, 2, &cfg, mq);
    *log = capture_end(c);
    return rc;
}

static void test_valid_mq_is_handed_out(void **state)
{
    (void)state;
    capture c;
    const char *log;
    kp_mq *mq;
    next_mq = valid_mq;
    frees = 0;
    assert_int_equal(open_mq(&mq, &c, &log), 0);
    assert_non_null(mq);
    assert_string_equal(log, "");
    assert_int_equal(kp_mq_pending(mq), -1); /* the optional slot left NULL */
    kp_mq_free(mq);
    assert_int_equal(frees, 1);
}

static void test_mq_wrong_version_is_refused(void **state)
{
    (void)state;
    capture c;
    const char *log;
    kp_mq *mq;
    next_mq = valid_mq;
    next_mq.version = KP_MQ_VERSION + 1;
    frees = 0;
    assert_int_equal(open_mq(&mq, &c, &log), KP_EINVAL);
    assert_null(mq);
    assert_int_equal(frees, 1); /* released through its own free */
    assert_int_equal(count_lines(log), 1);
    assert_non_null(strstr(log, "ERROR"));
    assert_non_null(strstr(log, "backend=\"fake\""));
    char want[64];
    snprintf(want, sizeof(want), "version=%u want=%u", KP_MQ_VERSION + 1, KP_MQ_VERSION);
    assert_non_null(strstr(log, want));
}

static void test_mq_missing_slot_is_refused(void **state)
{
    (void)state;
    static const char *const slots[] = {"name", "publish", "consume", "ack", "free"};
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        capture c;
        const char *log;
        kp_mq *mq;
        next_mq = valid_mq;
        switch (i) {
        case 0: next_mq.name = NULL; break;
        case 1: next_mq.publish = NULL; break;
        case 2: next_mq.consume = NULL; break;
        case 3: next_mq.ack = NULL; break;
        case 4: next_mq.free = NULL; break;
        }
        frees = 0;
        assert_int_equal(open_mq(&mq, &c, &log), KP_EINVAL);
        assert_null(mq);
        /* Without a free slot the registry cannot release it; else it does. */
        assert_int_equal(frees, i == 4 ? 0 : 1);
        if (i == 4)
            free(last_made);
        assert_int_equal(count_lines(log), 1);
        assert_non_null(strstr(log, "kind=mq"));
        assert_non_null(strstr(log, "backend=\"fake\""));
        char want[32];
        snprintf(want, sizeof(want), "slot=%s", slots[i]);
        assert_non_null(strstr(log, want));
    }
}

static void test_mq_unknown_name_and_constructor_error(void **state)
{
    (void)state;
    kp_mq *mq = NULL;
    kp_config cfg = config_for("nope", "fake");
    assert_int_equal(kp_mq_open_from(mq_table, 2, &cfg, &mq), KP_EINVAL);
    cfg = config_for("broken", "fake");
    assert_int_equal(kp_mq_open_from(mq_table, 2, &cfg, &mq), KP_ENOMEM);
    assert_null(mq);
}

static void test_stats_checks(void **state)
{
    (void)state;
    kp_config cfg = config_for("fake", "fake");
    kp_stats *st = NULL;

    next_stats = valid_stats;
    frees = 0;
    assert_int_equal(kp_stats_open_from(stats_table, 1, &cfg, &st), 0);
    kp_stats_evictions ev;
    assert_int_equal(kp_stats_get_evictions(st, &ev), KP_ENOTSUP); /* optional slot */
    kp_stats_free(st);
    assert_int_equal(frees, 1);

    static const char *const slots[] = {"version", "name", "record", "query", "free"};
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        next_stats = valid_stats;
        switch (i) {
        case 0: next_stats.version = 0; break;
        case 1: next_stats.name = NULL; break;
        case 2: next_stats.record = NULL; break;
        case 3: next_stats.query = NULL; break;
        case 4: next_stats.free = NULL; break;
        }
        capture c;
        st = NULL;
        frees = 0;
        capture_begin(&c);
        int rc = kp_stats_open_from(stats_table, 1, &cfg, &st);
        const char *log = capture_end(&c);
        assert_int_equal(rc, KP_EINVAL);
        assert_null(st);
        assert_int_equal(frees, i == 4 ? 0 : 1);
        if (i == 4)
            free(last_made);
        assert_int_equal(count_lines(log), 1);
        assert_non_null(strstr(log, "kind=stats"));
        assert_non_null(strstr(log, "backend=\"fake\""));
        char want[32];
        snprintf(want, sizeof(want), i == 0 ? "version=0" : "slot=%s", slots[i]);
        assert_non_null(strstr(log, want));
    }
}

/* The built-in backends pass their own checks (the default config names the memory ones). */
static void test_builtin_memory_backends_pass(void **state)
{
    (void)state;
    kp_config cfg;
    kp_config_defaults(&cfg);
    kp_mq *mq = NULL;
    kp_stats *st = NULL;
    assert_int_equal(kp_mq_open(&cfg, &mq), 0);
    assert_int_equal(kp_stats_open(&cfg, &st), 0);
    assert_int_equal(kp_mq_check(mq, "memory"), 0);
    assert_int_equal(kp_stats_check(st, "memory"), 0);
    kp_stats_free(st);
    kp_mq_free(mq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_mq_is_handed_out),
        cmocka_unit_test(test_mq_wrong_version_is_refused),
        cmocka_unit_test(test_mq_missing_slot_is_refused),
        cmocka_unit_test(test_mq_unknown_name_and_constructor_error),
        cmocka_unit_test(test_stats_checks),
        cmocka_unit_test(test_builtin_memory_backends_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
