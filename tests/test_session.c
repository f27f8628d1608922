/* The session's framing and protocol over a fake connection (conn.h): no socket, no loop. The
 * fake counts every call and collects what is written; the fake server hooks record what the
 * session told them. Covers split and merged reads, answers batched per read, an over-long
 * line, a slow reader closed in the middle of a read, the read budget and its resume, the job
 * line's zero-copy write, and WebSocket framing above the same connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kupool/error.h"
#include "session.h"

#define MAX_MSG 512
#define AUTH "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"alice\"}}\n"
#define AUTH_OK "{\"id\":1,\"result\":true}\n"
#define JOB "{\"method\":\"job\",\"params\":{\"job_id\":7}}\n"

/* What the fake connection saw; it outlives the connection (which lives in the session). */
typedef struct record {
    char out[256 * 1024];
    size_t out_len;
    int writes, line_writes, read_starts, read_stops, shutdowns, closes, resets;
    int fail_writes_from; /* the write number (1-based) from which write returns KP_EAGAIN */
    bool closed;          /* close was called: the test delivers on_closed */
} record;

typedef struct fake_conn {
    kp_conn base;
    record *rec;
} fake_conn;

static int fake_read_start(kp_conn *c)
{
    ((fake_conn *)c)->rec->read_starts++;
    return 0;
}

static void fake_read_stop(kp_conn *c)
{
    ((fake_conn *)c)->rec->read_stops++;
}

static int fake_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    record *r = ((fake_conn *)c)->rec;
    r->writes++;
    if (r->fail_writes_from && r->writes >= r->fail_writes_from)
        return KP_EAGAIN;
    if (line)
        r->line_writes++;
    assert_true(r->out_len + len <= sizeof(r->out));
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
    return 0;
}

static int fake_shutdown(kp_conn *c)
{
    ((fake_conn *)c)->rec->shutdowns++;
    return 0;
}

static void fake_close(kp_conn *c, bool reset)
{
    record *r = ((fake_conn *)c)->rec;
    r->closes++;
    r->resets += reset;
    r->closed = true;
}

static size_t fake_queued(const kp_conn *c)
{
    (void)c;
    return 0;
}

static int fake_peer_address(const kp_conn *c, struct sockaddr_storage *out)
{
    (void)c;
    memset(out, 0, sizeof(*out));
    return 0;
}

static const kp_conn_ops fake_ops = {
    .read_start = fake_read_start,
    .read_stop = fake_read_stop,
    .write = fake_write,
    .shutdown = fake_shutdown,
    .close = fake_close,
    .queued = fake_queued,
    .peer_address = fake_peer_address,
};

/* ---- the fake server ---- */

typedef struct fixture {
    record rec;
    kp_job_book jobs;
    kp_protocol proto;
    kp_session_env env;
    kp_out_batch batch;
    char batch_buf[64 * 1024];
    kp_session *sess;
    fake_conn *conn;
    kp_shared_line *job;
    uint64_t now;
    int authorized, draining, deferred, closing, closed;
} fixture;

static uint64_t hook_now(void *ctx)
{
    return ((fixture *)ctx)->now;
}

static const kp_shared_line *hook_authorized(void *ctx, kp_session *sess, int64_t *job_id)
{
    (void)sess;
    fixture *f = ctx;
    f->authorized++;
    *job_id = 7;
    return f->job;
}

static void hook_draining(void *ctx, kp_session *sess)
{
    (void)sess;
    ((fixture *)ctx)->draining++;
}

static void hook_deferred(void *ctx)
{
    ((fixture *)ctx)->deferred++;
}

static void hook_closing(void *ctx, kp_session *sess)
{
    (void)sess;
    ((fixture *)ctx)->closing++;
}

static void hook_closed(void *ctx)
{
    ((fixture *)ctx)->closed++;
}

static const kp_session_hooks hooks = {
    .now_ms = hook_now,
    .authorized = hook_authorized,
    .draining = hook_draining,
    .deferred = hook_deferred,
    .closing = hook_closing,
    .closed = hook_closed,
};

static int no_events(void *ctx, const kp_event *ev)
{
    (void)ctx;
    (void)ev;
    return 0;
}

static void open_session(fixture *f, bool websocket)
{
    void *room;
    f->sess = kp_session_new(&f->env, sizeof(fake_conn), &room);
    assert_non_null(f->sess);
    f->conn = room;
    f->conn->base.ops = &fake_ops;
    f->conn->rec = &f->rec;
    kp_session_attach(f->sess, &f->conn->base);
    assert_int_equal(kp_session_start(f->sess, websocket), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(kp_job_book_init(&f->jobs, 1000, 2000, NULL), 0);
    kp_event_sink sink = {.push = no_events};
    /* no rate limit, three malformed messages in a row close */
    assert_int_equal(kp_protocol_init(&f->proto, &f->jobs, sink, 0, 3), 0);
    f->now = 100000;
    const kp_job *job;
    assert_int_equal(kp_job_book_rotate(&f->jobs, f->now, 0, &job), 0);
    f->batch = (kp_out_batch){.buf = f->batch_buf, .cap = sizeof(f->batch_buf)};
    f->env = (kp_session_env){.protocol = &f->proto, .max_msg = MAX_MSG, .hooks = &hooks,
                              .ctx = f, .batch = &f->batch};
    f->job = malloc(sizeof(*f->job) + sizeof(JOB));
    f->job->refs = 1;
    f->job->len = (uint32_t)strlen(JOB);
    memcpy(f->job->data, JOB, sizeof(JOB));
    *state = f;
    return 0;
}

/* Delivers the connection's on_closed, as the transport would once its close finished. */
static void finish_close(fixture *f)
{
    if (f->sess && f->rec.closed) {
        f->conn->base.events->on_closed(f->conn->base.owner);
        f->sess = NULL;
        f->conn = NULL;
    }
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->sess) {
        kp_session_close(f->sess, "test over");
        finish_close(f);
    }
    assert_int_equal(f->closed, 1);
    kp_shared_line_release(f->job);
    kp_protocol_free(&f->proto);
    kp_job_book_free(&f->jobs);
    free(f);
    return 0;
}

static void feed(fixture *f, const char *data, size_t len)
{
    f->conn->base.events->on_read(f->conn->base.owner, data, len);
}

static void feed_str(fixture *f, const char *s)
{
    feed(f, s, strlen(s));
}

static void assert_output(fixture *f, const char *want)
{
    f->rec.out[f->rec.out_len] = '\0';
    assert_string_equal(f->rec.out, want);
}

/* ---- tests ---- */

static void test_split_read_is_one_message(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    assert_int_equal(f->rec.read_starts, 1);
    const char *line = AUTH;
    feed(f, line, 10);
    feed(f, line + 10, 20);
    assert_int_equal(f->rec.writes, 0); /* nothing to answer yet */
    feed_str(f, line + 30);
    assert_int_equal(f->authorized, 1);
    /* the reply and the job that follows it leave in one write: the batch of that read */
    assert_output(f, AUTH_OK JOB);
    assert_int_equal(f->rec.writes, 1);
}

static void test_merged_read_answers_in_one_write(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    feed_str(f, AUTH "\r\n\n{\"id\":2,\"method\":\"nope\"}\r\n");
    f->rec.out[f->rec.out_len] = '\0';
    assert_non_null(strstr(f->rec.out, AUTH_OK JOB "{\"id\":2,"));
    assert_int_equal(f->rec.writes, 1);
    assert_int_equal(f->proto.outcomes[KP_OUTCOME_OK], 1);
}

static void test_over_long_line_closes_after_writes(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    char big[MAX_MSG + 10];
    memset(big, 'x', sizeof(big));
    feed_str(f, AUTH);
    feed(f, big, 100); /* a partial line, kept */
    assert_int_equal(f->draining, 0);
    feed(f, big, sizeof(big)); /* now over -max_msg without a newline */
    assert_int_equal(f->env.counters.closed_too_long, 1);
    assert_int_equal(f->draining, 1);
    assert_int_equal(f->rec.read_stops, 1);
    assert_int_equal(f->rec.shutdowns, 1);
    assert_int_equal(f->rec.closes, 0); /* the shutdown ends it, after the answers */
    /* a draining session reads nothing more */
    feed_str(f, AUTH);
    assert_int_equal(f->authorized, 1);
    /* the transport reports the end of the shutdown */
    f->conn->base.events->on_end(f->conn->base.owner, "closed after response");
    assert_int_equal(f->rec.closes, 1);
    finish_close(f);
}

static void test_slow_reader_is_reset_mid_read(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    feed_str(f, AUTH);
    f->rec.fail_writes_from = 2; /* the next write finds the queue full */
    feed_str(f, "{\"id\":2,\"method\":\"nope\"}\n{\"id\":3,\"method\":\"nope\"}\n");
    assert_int_equal(f->env.counters.closed_slow, 1);
    assert_int_equal(f->rec.resets, 1);
    assert_int_equal(f->closing, 1);
    /* the rest of that read is not handled once the session is closing */
    feed_str(f, "{\"id\":4,\"method\":\"nope\"}\n");
    finish_close(f);
    assert_int_equal(f->closed, 1);
}

static void test_max_errors_closes_and_counts(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    feed_str(f, "x\ny\nz\nw\n");
    assert_int_equal(f->env.counters.closed_max_errors, 1);
    assert_int_equal(f->draining, 1);
    /* three answers, then nothing for the line after the closing one */
    int lines = 0;
    for (size_t i = 0; i < f->rec.out_len; i++)
        lines += f->rec.out[i] == '\n';
    assert_int_equal(lines, 3);
}

static void test_read_budget_defers_and_resumes(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    feed_str(f, AUTH);
    /* 40 KiB of keep-alive blank lines and one message at the end: more than a round's budget */
    static char flood[40 * 1024 + 64];
    memset(flood, '\n', 40 * 1024);
    strcpy(flood + 40 * 1024, "{\"id\":9,\"method\":\"nope\"}\n");
    feed_str(f, flood);
    assert_int_equal(f->deferred, 1);
    assert_int_equal(f->rec.read_stops, 1);
    assert_ptr_equal(f->env.resume_head, f->sess);
    int rounds = 0;
    while (f->env.resume_head) {
        f->env.round++;
        kp_session_resume_step(&f->env);
        rounds++;
        assert_true(rounds < 10);
    }
    assert_true(rounds >= 2); /* 40 KiB at 16 KiB a round */
    assert_int_equal(f->rec.read_starts, 2); /* reading again once the backlog is handled */
    f->rec.out[f->rec.out_len] = '\0';
    assert_non_null(strstr(f->rec.out, "{\"id\":9,"));
}

static void test_job_line_goes_out_zero_copy(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    feed_str(f, AUTH);
    size_t before = f->rec.out_len;
    kp_session_send_job(f->sess, f->job, 7); /* already sent at authorization: skipped */
    assert_int_equal(f->rec.out_len, before);
    kp_session_send_job(f->sess, f->job, 8);
    assert_int_equal(f->rec.line_writes, 1); /* outside a read: direct, with the line's ref */
    assert_int_equal(f->rec.out_len, before + strlen(JOB));
}

/* SPEC §8: with difficulty on, the session writes its own set_difficulty right before the job:
 * after the authorize response, and before a later job only when its difficulty changed; the job
 * line itself still goes out as the shared one. */
#define SET_256 "{\"id\":null,\"method\":\"set_difficulty\",\"params\":{\"difficulty\":256,\"target\":" \
                "\"00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\"}}\n"

static void test_set_difficulty_before_the_job(void **state)
{
    fixture *f = *state;
    kp_protocol_set_difficulty(&f->proto, 256, (kp_vardiff_params){0});
    open_session(f, false);
    feed_str(f, AUTH);
    assert_output(f, AUTH_OK SET_256 JOB);
    assert_int_equal(f->rec.writes, 1);
    size_t before = f->rec.out_len;
    kp_session_send_job(f->sess, f->job, 8); /* unchanged: the job alone, zero copy */
    assert_int_equal(f->rec.line_writes, 1);
    assert_int_equal(f->rec.out_len, before + strlen(JOB));

    /* vardiff lowers it after a silence: the new set_difficulty, then the shared job line */
    kp_protocol_set_difficulty(&f->proto, 256, (kp_vardiff_params){.target_ms = 100, .min = 1,
                                                                    .max = 1 << 20});
    f->now += 1000;
    before = f->rec.out_len;
    int writes_before = f->rec.writes;
    kp_session_send_job(f->sess, f->job, 9);
    f->rec.out[f->rec.out_len] = '\0';
    const char *sent = f->rec.out + before;
    assert_memory_equal(sent, "{\"id\":null,\"method\":\"set_difficulty\",\"params\":{\"difficulty\":64,",
                        strlen("{\"id\":null,\"method\":\"set_difficulty\",\"params\":{\"difficulty\":64,"));
    assert_string_equal(strchr(sent, '\n') + 1, JOB);
    /* one write for both: the notification and a copy of the job line */
    assert_int_equal(f->rec.line_writes, 1);
    assert_int_equal(f->rec.writes, writes_before + 1);
}

static void test_websocket_frames_above_the_same_conn(void **state)
{
    fixture *f = *state;
    open_session(f, true);
    feed_str(f, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    f->rec.out[f->rec.out_len] = '\0';
    assert_non_null(strstr(f->rec.out, "101 Switching Protocols"));
    assert_non_null(strstr(f->rec.out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    size_t before = f->rec.out_len;
    /* a masked text frame: the authorize message without its "\n" */
    const char *msg = AUTH;
    size_t len = strlen(msg) - 1;
    uint8_t frame[256] = {0x81, (uint8_t)(0x80 | len), 1, 2, 3, 4};
    for (size_t i = 0; i < len; i++)
        frame[6 + i] = (uint8_t)msg[i] ^ frame[2 + i % 4];
    feed(f, (const char *)frame, 6 + len);
    assert_int_equal(f->authorized, 1);
    /* two text frames: the reply and the job, each without the "\n" */
    const uint8_t *out = (const uint8_t *)f->rec.out + before;
    assert_int_equal(out[0], 0x81);
    assert_int_equal(out[1], strlen(AUTH_OK) - 1);
    assert_memory_equal(out + 2, AUTH_OK, strlen(AUTH_OK) - 1);
    out += 2 + strlen(AUTH_OK) - 1;
    assert_int_equal(out[0], 0x81);
    assert_memory_equal(out + 2, JOB, strlen(JOB) - 1);
}

static void test_end_of_stream_closes(void **state)
{
    fixture *f = *state;
    open_session(f, false);
    f->conn->base.events->on_end(f->conn->base.owner, "peer closed");
    assert_int_equal(f->closing, 1);
    assert_int_equal(f->rec.closes, 1);
    assert_int_equal(f->rec.resets, 0);
    finish_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_split_read_is_one_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merged_read_answers_in_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_over_long_line_closes_after_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_is_reset_mid_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_errors_closes_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_budget_defers_and_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_line_goes_out_zero_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_websocket_frames_above_the_same_conn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_difficulty_before_the_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_of_stream_closes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
