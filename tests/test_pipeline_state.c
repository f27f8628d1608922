/* The pipeline's decisions on their own (src/pipeline/pipeline_state.c), from tables: no loop, no
 * worker, no mq. Each row is one situation the loop can be in and what it must do next; the
 * overload, backoff, drain and spool scenarios of test_pipeline are the same rules end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "pipeline_state.h"

enum { BOUND = 100, BATCH = KP_PIPELINE_BATCH_MAX, CHUNK = KP_PIPELINE_SPOOL_CHUNK };

typedef struct next_row {
    const char *what;
    kp_pipeline_phase phase;
    kp_pipeline_inputs in;
    kp_pipeline_action_kind kind;
    size_t count;
} next_row;

/* Inputs: .job_running .backing_off .have_spool .spool_paused .appended_last .in_memory .spooled
 * .memory_bound */
#define IN(...) {.memory_bound = BOUND, __VA_ARGS__}
/* The same with a bound too high to matter. */
#define IN_UNBOUNDED(...) {.memory_bound = 1000000, __VA_ARGS__}

static const next_row next_rows[] = {
    /* serving */
    {"nothing waits", KP_PIPELINE_SERVING, IN(.in_memory = 0), KP_PIPELINE_WAIT, 0},
    {"a few events publish at once", KP_PIPELINE_SERVING, IN(.in_memory = 3),
     KP_PIPELINE_PUBLISH_MEMORY, 3},
    {"a publish takes at most one batch", KP_PIPELINE_SERVING,
     IN_UNBOUNDED(.in_memory = BATCH + 5), KP_PIPELINE_PUBLISH_MEMORY, BATCH},
    /* issue 12: with -mq_batch above 1 the pipeline asks for larger jobs, capped at JOB_MAX. */
    {"a batching job is larger", KP_PIPELINE_SERVING,
     IN_UNBOUNDED(.in_memory = KP_PIPELINE_JOB_MAX + 5, .job_max = KP_PIPELINE_JOB_MAX),
     KP_PIPELINE_PUBLISH_MEMORY, KP_PIPELINE_JOB_MAX},
    {"a job is never over JOB_MAX", KP_PIPELINE_SERVING,
     IN_UNBOUNDED(.in_memory = KP_PIPELINE_JOB_MAX * 2, .job_max = KP_PIPELINE_JOB_MAX * 2),
     KP_PIPELINE_PUBLISH_MEMORY, KP_PIPELINE_JOB_MAX},
    {"a batching append is larger too", KP_PIPELINE_SERVING,
     IN(.have_spool = true, .in_memory = BOUND + KP_PIPELINE_JOB_MAX, .job_max = KP_PIPELINE_JOB_MAX),
     KP_PIPELINE_SPOOL_APPEND, KP_PIPELINE_JOB_MAX},
    {"one job at a time", KP_PIPELINE_SERVING, IN(.job_running = true, .in_memory = 50),
     KP_PIPELINE_WAIT, 0},
    {"a failed publish waits for its retry", KP_PIPELINE_SERVING,
     IN(.backing_off = true, .in_memory = 50), KP_PIPELINE_WAIT, 0},
    {"spooled events go before memory", KP_PIPELINE_SERVING, IN(.have_spool = true,
     .in_memory = 50, .spooled = 7), KP_PIPELINE_PUBLISH_SPOOL, 0},
    {"a spool left by the last run replays", KP_PIPELINE_SERVING,
     IN(.have_spool = true, .spooled = 7), KP_PIPELINE_PUBLISH_SPOOL, 0},
    {"at the bound nothing spools", KP_PIPELINE_SERVING, IN(.have_spool = true,
     .in_memory = BOUND), KP_PIPELINE_PUBLISH_MEMORY, BOUND},
    {"over the bound the excess spools", KP_PIPELINE_SERVING, IN(.have_spool = true,
     .in_memory = BOUND + 30), KP_PIPELINE_SPOOL_APPEND, 30},
    {"an append takes at most one chunk", KP_PIPELINE_SERVING, IN(.have_spool = true,
     .in_memory = BOUND + CHUNK + 1), KP_PIPELINE_SPOOL_APPEND, CHUNK},
    {"over the bound without a spool, publish", KP_PIPELINE_SERVING,
     IN(.in_memory = BOUND + 30), KP_PIPELINE_PUBLISH_MEMORY, BOUND + 30},
    {"overload: a publish after an append", KP_PIPELINE_SERVING, IN(.have_spool = true,
     .appended_last = true, .in_memory = BOUND + 30), KP_PIPELINE_PUBLISH_MEMORY, BOUND + 30},
    {"overload: after an append, the spool publishes", KP_PIPELINE_SERVING,
     IN(.have_spool = true, .appended_last = true, .in_memory = BOUND + 30, .spooled = 9),
     KP_PIPELINE_PUBLISH_SPOOL, 0},
    {"mq down: appends do not wait for the retry", KP_PIPELINE_SERVING,
     IN(.have_spool = true, .backing_off = true, .appended_last = true, .in_memory = BOUND + 30),
     KP_PIPELINE_SPOOL_APPEND, 30},
    {"mq down, under the bound: wait", KP_PIPELINE_SERVING,
     IN(.have_spool = true, .backing_off = true, .in_memory = BOUND, .spooled = 9),
     KP_PIPELINE_WAIT, 0},
    {"a failed disk is not tried again yet", KP_PIPELINE_SERVING,
     IN(.have_spool = true, .spool_paused = true, .in_memory = BOUND + 30),
     KP_PIPELINE_PUBLISH_MEMORY, BOUND + 30},
    {"disk paused and mq down: wait", KP_PIPELINE_SERVING, IN(.have_spool = true,
     .spool_paused = true, .backing_off = true, .in_memory = BOUND + 30), KP_PIPELINE_WAIT, 0},

    /* draining */
    {"drained when nothing waits", KP_PIPELINE_DRAINING, IN(.in_memory = 0),
     KP_PIPELINE_FINISH_DRAIN, 0},
    {"draining waits for the job in flight", KP_PIPELINE_DRAINING, IN(.job_running = true),
     KP_PIPELINE_WAIT, 0},
    {"draining publishes memory", KP_PIPELINE_DRAINING, IN(.in_memory = 5),
     KP_PIPELINE_PUBLISH_MEMORY, 5},
    {"draining publishes the spool too", KP_PIPELINE_DRAINING, IN(.have_spool = true,
     .spooled = 5), KP_PIPELINE_PUBLISH_SPOOL, 0},
    {"draining, a failed publish waits for its retry", KP_PIPELINE_DRAINING,
     IN(.backing_off = true, .in_memory = 5), KP_PIPELINE_WAIT, 0},
    {"draining still spools over the bound", KP_PIPELINE_DRAINING, IN(.have_spool = true,
     .in_memory = BOUND + 1), KP_PIPELINE_SPOOL_APPEND, 1},

    /* draining to the spool: the mq failed or time ran out */
    {"to spool: everything in memory spools", KP_PIPELINE_DRAIN_TO_SPOOL,
     IN(.have_spool = true, .in_memory = 5, .spooled = 3), KP_PIPELINE_SPOOL_APPEND, 5},
    {"to spool: turns do not apply, nothing publishes", KP_PIPELINE_DRAIN_TO_SPOOL,
     IN(.have_spool = true, .appended_last = true, .in_memory = 5), KP_PIPELINE_SPOOL_APPEND, 5},
    {"to spool: at most a chunk per append", KP_PIPELINE_DRAIN_TO_SPOOL,
     IN_UNBOUNDED(.have_spool = true, .in_memory = CHUNK + 2),
     KP_PIPELINE_SPOOL_APPEND, CHUNK},
    {"to spool: done when memory is empty, spool kept", KP_PIPELINE_DRAIN_TO_SPOOL,
     IN(.have_spool = true, .spooled = 3), KP_PIPELINE_FINISH_DRAIN, 0},
    {"to spool: a paused disk waits", KP_PIPELINE_DRAIN_TO_SPOOL,
     IN(.have_spool = true, .spool_paused = true, .in_memory = 5), KP_PIPELINE_WAIT, 0},

    /* over */
    {"drained: nothing more", KP_PIPELINE_DRAINED, IN(.in_memory = 5, .spooled = 3),
     KP_PIPELINE_WAIT, 0},
    {"closed: nothing more", KP_PIPELINE_CLOSED, IN(.in_memory = 5), KP_PIPELINE_WAIT, 0},
};

static void test_next_from_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(next_rows) / sizeof(next_rows[0]); i++) {
        const next_row *r = &next_rows[i];
        kp_pipeline_action a = kp_pipeline_next(r->phase, &r->in);
        if (a.kind != r->kind || a.count != r->count) {
            print_error("row %zu \"%s\" (%s): got %s %zu, want %s %zu\n", i, r->what,
                        kp_pipeline_phase_name(r->phase), kp_pipeline_action_name(a.kind),
                        a.count, kp_pipeline_action_name(r->kind), r->count);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

typedef struct phase_row {
    kp_pipeline_phase from;
    kp_pipeline_event ev;
    bool have_spool, mq_failing;
    kp_pipeline_phase to;
} phase_row;

#define S KP_PIPELINE_SERVING
#define D KP_PIPELINE_DRAINING
#define T KP_PIPELINE_DRAIN_TO_SPOOL
#define X KP_PIPELINE_DRAINED
#define C KP_PIPELINE_CLOSED

static const phase_row phase_rows[] = {
    /* from, event, spool, failing, to */
    {S, KP_PIPELINE_DRAIN_STARTED, false, false, D},
    {S, KP_PIPELINE_DRAIN_STARTED, true, false, D},
    {S, KP_PIPELINE_DRAIN_STARTED, false, true, D}, /* no spool: retry until the deadline */
    {S, KP_PIPELINE_DRAIN_STARTED, true, true, T},  /* the mq is failing: spool at once */
    {S, KP_PIPELINE_PUBLISH_FAILED, true, true, S},
    {S, KP_PIPELINE_APPEND_FAILED, true, false, S}, /* keep in memory, try the disk later */
    {S, KP_PIPELINE_DRAIN_DEADLINE, true, false, S}, /* no drain timer while serving */
    {S, KP_PIPELINE_CLOSE, false, false, C},
    {D, KP_PIPELINE_PUBLISH_FAILED, false, true, D},
    {D, KP_PIPELINE_PUBLISH_FAILED, true, true, T},
    {D, KP_PIPELINE_DRAIN_DEADLINE, false, false, X}, /* caller finishes with KP_ETIMEDOUT */
    {D, KP_PIPELINE_DRAIN_DEADLINE, true, false, T},
    {D, KP_PIPELINE_APPEND_FAILED, true, false, X}, /* caller finishes with KP_EIO */
    {D, KP_PIPELINE_DRAIN_FINISHED, false, false, X},
    {D, KP_PIPELINE_CLOSE, false, false, C},
    {T, KP_PIPELINE_DRAIN_DEADLINE, true, true, T},
    {T, KP_PIPELINE_PUBLISH_FAILED, true, true, T},
    {T, KP_PIPELINE_DRAIN_STARTED, true, false, T},
    {T, KP_PIPELINE_APPEND_FAILED, true, true, X},
    {T, KP_PIPELINE_DRAIN_FINISHED, true, true, X},
    {X, KP_PIPELINE_PUBLISH_FAILED, true, true, X}, /* a job that outlived a timed-out drain */
    {X, KP_PIPELINE_DRAIN_DEADLINE, false, false, X},
    {X, KP_PIPELINE_APPEND_FAILED, true, false, X},
    {X, KP_PIPELINE_DRAIN_STARTED, true, true, X},
    {X, KP_PIPELINE_CLOSE, false, false, C},
    {C, KP_PIPELINE_DRAIN_STARTED, false, false, C},
    {C, KP_PIPELINE_DRAIN_FINISHED, false, false, C},
    {C, KP_PIPELINE_PUBLISH_FAILED, true, true, C},
};

static void test_phase_from_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(phase_rows) / sizeof(phase_rows[0]); i++) {
        const phase_row *r = &phase_rows[i];
        kp_pipeline_facts f = {.have_spool = r->have_spool, .mq_failing = r->mq_failing};
        kp_pipeline_phase got = kp_pipeline_phase_after(r->from, r->ev, f);
        if (got != r->to) {
            print_error("row %zu: %s + event %d (spool %d, failing %d): got %s, want %s\n", i,
                        kp_pipeline_phase_name(r->from), (int)r->ev, r->have_spool,
                        r->mq_failing, kp_pipeline_phase_name(got),
                        kp_pipeline_phase_name(r->to));
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* The phase only moves forward: from any phase, any event leads to the same phase or a later
 * one, so a drain can never be undone by a late job. */
static void test_phase_never_moves_back(void **state)
{
    (void)state;
    for (int from = S; from <= C; from++)
        for (int ev = KP_PIPELINE_DRAIN_STARTED; ev <= KP_PIPELINE_CLOSE; ev++)
            for (int bits = 0; bits < 4; bits++) {
                kp_pipeline_facts f = {.have_spool = bits & 1, .mq_failing = bits & 2};
                kp_pipeline_phase to = kp_pipeline_phase_after(from, ev, f);
                assert_true(to >= (kp_pipeline_phase)from);
                /* Draining to the spool needs a spool. */
                if (to == T && from != T)
                    assert_true(f.have_spool);
            }
}

static void test_retries_until_drained(void **state)
{
    (void)state;
    assert_true(kp_pipeline_retries(S));
    assert_true(kp_pipeline_retries(D));
    assert_true(kp_pipeline_retries(T));
    assert_false(kp_pipeline_retries(X));
    assert_false(kp_pipeline_retries(C));
}

/* A job is never started while another runs, and a job never asks for more events than exist
 * or than the batch buffer holds, whatever the inputs. */
static void test_next_respects_limits(void **state)
{
    (void)state;
    static const size_t mems[] = {0, 1, 99, 100, 101, 4095, 4096, 4097, 10000};
    static const uint64_t spools[] = {0, 1, 5000};
    for (int phase = S; phase <= C; phase++)
        for (size_t m = 0; m < sizeof(mems) / sizeof(mems[0]); m++)
            for (size_t s = 0; s < sizeof(spools) / sizeof(spools[0]); s++)
                for (int bits = 0; bits < 32; bits++) {
                    kp_pipeline_inputs in = {
                        .job_running = bits & 1,
                        .backing_off = bits & 2,
                        .have_spool = bits & 4,
                        .spool_paused = bits & 8,
                        .appended_last = bits & 16,
                        .in_memory = mems[m],
                        .spooled = (bits & 4) ? spools[s] : 0,
                        .memory_bound = BOUND,
                    };
                    kp_pipeline_action a = kp_pipeline_next(phase, &in);
                    if (in.job_running)
                        assert_int_equal(a.kind, KP_PIPELINE_WAIT);
                    assert_true(a.count <= in.in_memory);
                    assert_true(a.count <= KP_PIPELINE_BATCH_MAX);
                    if (a.kind == KP_PIPELINE_PUBLISH_MEMORY || a.kind == KP_PIPELINE_SPOOL_APPEND)
                        assert_true(a.count > 0);
                    if (a.kind == KP_PIPELINE_SPOOL_APPEND || a.kind == KP_PIPELINE_PUBLISH_SPOOL)
                        assert_true(in.have_spool);
                    if (a.kind == KP_PIPELINE_PUBLISH_MEMORY)
                        assert_int_equal(in.spooled, 0); /* order: the spool is older */
                    if (a.kind == KP_PIPELINE_FINISH_DRAIN)
                        assert_int_equal(in.in_memory, 0);
                }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_from_table),
        cmocka_unit_test(test_phase_from_table),
        cmocka_unit_test(test_phase_never_moves_back),
        cmocka_unit_test(test_retries_until_drained),
        cmocka_unit_test(test_next_respects_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
