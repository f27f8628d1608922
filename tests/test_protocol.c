/* Every SPEC §2 error string and the check order, through kp_protocol_handle() with a job book
 * driven by a fake clock. No loop and no libuv: accepted submits land in a counting event sink
 * (this test links only the protocol layer and the core). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "protocol.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/evp.h>

/* hex(sha256(a || b)) into out[65], computed here rather than by the code under test. */
static void kp_test_result(const char *a, const char *b, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    EVP_DigestUpdate(ctx, a, strlen(a));
    EVP_DigestUpdate(ctx, b, strlen(b));
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The event sink: counts what the protocol accepted. */
typedef struct counting_sink {
    uint64_t accepted;
    kp_event last;
} counting_sink;

static int count_event(void *ctx, const kp_event *ev)
{
    counting_sink *c = ctx;
    c->accepted++;
    c->last = *ev;
    return 0;
}

typedef struct fixture {
    counting_sink sink;
    kp_job_book jobs;
    kp_protocol proto;
    kp_peer peer;
    uint64_t now;  /* fake monotonic clock, ms */
    kp_reply reply;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    /* interval 1000 ms, expire 2000 ms, rate limit 1000 ms, 3 errors close */
    assert_int_equal(kp_job_book_init(&f->jobs, 1000, 2000, NULL), 0);
    kp_event_sink sink = {.push = count_event, .ctx = &f->sink};
    assert_int_equal(kp_protocol_init(&f->proto, &f->jobs, sink, 1000, 3), 0);
    f->now = 100000;
    const kp_job *job;
    assert_int_equal(kp_job_book_rotate(&f->jobs, f->now, 0, &job), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kp_peer_free(&f->peer);
    kp_protocol_free(&f->proto);
    kp_job_book_free(&f->jobs);
    free(f);
    return 0;
}

/* Sends one line; returns the response line (without "\n"). */
static const char *send_line(fixture *f, const char *line)
{
    kp_protocol_handle(&f->proto, &f->peer, line, strlen(line), f->now, &f->reply);
    static char out[KP_RESPONSE_MAX + 1];
    size_t n = f->reply.len ? f->reply.len - 1 : 0;
    memcpy(out, f->reply.line, n);
    out[n] = '\0';
    return out;
}

static void authorize(fixture *f)
{
    assert_string_equal(send_line(f, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"alice\"}}"),
                        "{\"id\":1,\"result\":true}");
    assert_true(f->reply.actions & KP_REPLY_SEND_JOB);
}

static const char *submit(fixture *f, int id, int64_t job_id, const char *nonce, const char *result)
{
    char line[512];
    char computed[65];
    if (!result) {
        const kp_job *job = NULL;
        assert_int_equal(kp_job_book_lookup(&f->jobs, job_id, f->now, &job), KP_OUTCOME_OK);
        kp_test_result(job->server_nonce, nonce, computed);
        result = computed;
    }
    snprintf(line, sizeof(line),
             "{\"id\":%d,\"method\":\"submit\",\"params\":{\"job_id\":%" PRId64
             ",\"client_nonce\":\"%s\",\"result\":\"%s\"}}",
             id, job_id, nonce, result);
    return send_line(f, line);
}

static void test_envelope_errors(void **state)
{
    fixture *f = *state;
    assert_string_equal(send_line(f, "[1,2]"), "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}");
    assert_string_equal(send_line(f, "{\"id\":\"x\",\"method\":\"submit\",\"params\":{}}"),
                        "{\"id\":null,\"result\":false,\"error\":\"Invalid request\"}");
    assert_false(f->reply.actions & KP_REPLY_CLOSE);
    /* the third malformed message in a row closes (max_errors = 3) */
    assert_string_equal(send_line(f, "{\"id\":4,\"params\":{}}"),
                        "{\"id\":4,\"result\":false,\"error\":\"Invalid request\"}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
}

static void test_well_formed_message_resets_error_run(void **state)
{
    fixture *f = *state;
    assert_string_equal(send_line(f, "not json"), "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}");
    send_line(f, "garbage");
    authorize(f);
    send_line(f, "garbage");
    send_line(f, "garbage");
    assert_false(f->reply.actions & KP_REPLY_CLOSE);
    send_line(f, "garbage");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
}

static void test_unauthorized_submit_closes(void **state)
{
    fixture *f = *state;
    /* authorized comes before params: even a submit with broken params is Unauthorized */
    assert_string_equal(send_line(f, "{\"id\":2,\"method\":\"submit\",\"params\":{}}"),
                        "{\"id\":2,\"result\":false,\"error\":\"Unauthorized\"}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
}

static void test_authorize_rules(void **state)
{
    fixture *f = *state;
    assert_string_equal(send_line(f, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"\"}}"),
                        "{\"id\":1,\"result\":false,\"error\":\"Invalid username\"}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
    assert_null(f->peer.username);
    authorize(f);
    assert_string_equal(send_line(f, "{\"id\":3,\"method\":\"authorize\",\"params\":{\"username\":\"bob\"}}"),
                        "{\"id\":3,\"result\":false,\"error\":\"Already authorized\"}");
    assert_false(f->reply.actions & KP_REPLY_CLOSE);
    assert_string_equal(f->peer.username, "alice");
}

static void test_invalid_params(void **state)
{
    fixture *f = *state;
    authorize(f);
    const char *bad[] = {
        "{\"id\":5,\"method\":\"submit\",\"params\":{\"job_id\":\"1\",\"client_nonce\":\"ab\",\"result\":\"x\"}}",
        "{\"id\":5,\"method\":\"submit\",\"params\":{\"job_id\":1,\"client_nonce\":\"xyz\",\"result\":\"x\"}}",
        "{\"id\":5,\"method\":\"submit\",\"params\":{\"job_id\":1,\"client_nonce\":\"ab\",\"result\":5}}",
        "{\"id\":5,\"method\":\"submit\",\"params\":{\"job_id\":1,\"client_nonce\":\"ab\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_string_equal(send_line(f, bad[i]), "{\"id\":5,\"result\":false,\"error\":\"Invalid params\"}");
}

static void test_check_order_and_accept(void **state)
{
    fixture *f = *state;
    authorize(f);
    /* job exists: 0 and current+1 never issued */
    assert_string_equal(submit(f, 10, 0, "aa", "00"), "{\"id\":10,\"result\":false,\"error\":\"Task does not exist\"}");
    assert_string_equal(submit(f, 11, 2, "aa", "00"), "{\"id\":11,\"result\":false,\"error\":\"Task does not exist\"}");
    /* the job check comes before the result check */
    assert_string_equal(submit(f, 12, 1, "aa", "00"), "{\"id\":12,\"result\":false,\"error\":\"Invalid result\"}");
    /* a wrong result did not start the rate limit */
    assert_string_equal(submit(f, 13, 1, "aa", NULL), "{\"id\":13,\"result\":true}");
    assert_int_equal(f->sink.accepted, 1);
    /* rate comes before duplicate and result */
    f->now += 999;
    assert_string_equal(submit(f, 14, 1, "aa", "00"), "{\"id\":14,\"result\":false,\"error\":\"Submission too frequent\"}");
    f->now += 1;
    /* duplicate comes before result */
    assert_string_equal(submit(f, 15, 1, "aa", "00"), "{\"id\":15,\"result\":false,\"error\":\"Duplicate submission\"}");
    /* the same nonce in upper case is another nonce; the result may be upper case too */
    char upper[65];
    const kp_job *job;
    kp_job_book_lookup(&f->jobs, 1, f->now, &job);
    kp_test_result(job->server_nonce, "AA", upper);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 32);
    assert_string_equal(submit(f, 16, 1, "AA", upper), "{\"id\":16,\"result\":true}");
    assert_int_equal(f->proto.outcomes[KP_OUTCOME_OK], 2 + 1 /* authorize */);
}

static void test_expiry(void **state)
{
    fixture *f = *state;
    authorize(f);
    const kp_job *job;
    f->now += 1000;
    kp_job_book_rotate(&f->jobs, f->now, 0, &job); /* job 2 at +1000 */
    f->now += 1000;                                 /* job 1 is 2000 old: still valid */
    assert_string_equal(submit(f, 20, 1, "01", NULL), "{\"id\":20,\"result\":true}");
    f->now += 1000;
    kp_job_book_rotate(&f->jobs, f->now, 0, &job); /* job 3; job 1 now 3000 old */
    assert_string_equal(submit(f, 21, 1, "02", "00"), "{\"id\":21,\"result\":false,\"error\":\"Task expired\"}");
    /* the expiry check comes before the rate check */
    f->now += 10;
    assert_string_equal(submit(f, 22, 1, "03", "00"), "{\"id\":22,\"result\":false,\"error\":\"Task expired\"}");
    assert_string_equal(submit(f, 23, 3, "03", NULL), "{\"id\":23,\"result\":true}");
}

static void test_event_carries_the_submit(void **state)
{
    fixture *f = *state;
    authorize(f);
    assert_string_equal(submit(f, 30, 1, "abcdef", NULL), "{\"id\":30,\"result\":true}");
    f->now += 1000;
    assert_string_equal(submit(f, 31, 1, "abcdef01", NULL), "{\"id\":31,\"result\":true}");
    assert_int_equal(f->sink.accepted, 2);
    assert_string_equal(f->sink.last.username, "alice");
    assert_string_equal(f->sink.last.client_nonce, "abcdef01");
    assert_int_equal(f->sink.last.job_id, 1);
    assert_int_equal(strlen(f->proto.node_id), 16);
    assert_int_equal(f->proto.next_seq, 3);
}

/* Issue 9 item 12: before authorize, a well-formed request with any other method is Unauthorized
 * and closes, like a submit; a broken envelope is still answered with what is wrong with it. */
static void test_unknown_method_before_authorize_closes(void **state)
{
    fixture *f = *state;
    assert_string_equal(send_line(f, "{\"id\":4,\"method\":\"mine\",\"params\":{}}"),
                        "{\"id\":4,\"result\":false,\"error\":\"Unauthorized\"}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
    assert_int_equal(f->proto.outcomes[KP_OUTCOME_UNAUTHORIZED], 1);
    assert_int_equal(f->peer.errors_in_row, 0);
    f->reply.actions = 0;
    assert_string_equal(send_line(f, "{\"id\":5,\"method\":\"submit\\u0000x\",\"params\":{}}"),
                        "{\"id\":5,\"result\":false,\"error\":\"Unauthorized\"}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
    assert_string_equal(send_line(f, "{\"id\":6,\"method\":\"mine\"}"),
                        "{\"id\":6,\"result\":false,\"error\":\"Invalid request\"}");
    assert_false(f->reply.actions & KP_REPLY_CLOSE);
}

/* After authorize an unknown method stays Unknown method: malformed, counted, not closed. */
static void test_unknown_method_after_authorize(void **state)
{
    fixture *f = *state;
    authorize(f);
    assert_string_equal(send_line(f, "{\"id\":4,\"method\":\"mine\",\"params\":{}}"),
                        "{\"id\":4,\"result\":false,\"error\":\"Unknown method\"}");
    assert_false(f->reply.actions & KP_REPLY_CLOSE);
    assert_string_equal(send_line(f, "{\"id\":5,\"method\":\"submit\\u0000x\",\"params\":{}}"),
                        "{\"id\":5,\"result\":false,\"error\":\"Unknown method\"}");
    assert_false(f->reply.actions & KP_REPLY_CLOSE);
    send_line(f, "{\"id\":6,\"method\":\"\",\"params\":{}}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE); /* the third in a row (max_errors = 3) */
}

/* Issue 9 item 9: an escaped NUL is seen, so it fails the check of the field it is in. */
static void test_escaped_nul_fails_its_check(void **state)
{
    fixture *f = *state;
    assert_string_equal(send_line(f, "{\"id\":1,\"method\":\"authorize\",\"params\":{\"username\":\"a\\u0000b\"}}"),
                        "{\"id\":1,\"result\":false,\"error\":\"Invalid username\"}");
    assert_true(f->reply.actions & KP_REPLY_CLOSE);
    assert_null(f->peer.username);
    authorize(f);
    assert_string_equal(submit(f, 2, 1, "a3\\u0000zz!!", "00"),
                        "{\"id\":2,\"result\":false,\"error\":\"Invalid params\"}");
    /* the right hash of "a3", then an escaped NUL and junk */
    const kp_job *job = NULL;
    assert_int_equal(kp_job_book_lookup(&f->jobs, 1, f->now, &job), KP_OUTCOME_OK);
    char result[128];
    kp_test_result(job->server_nonce, "a3", result);
    strcat(result, "\\u0000junk");
    assert_string_equal(submit(f, 3, 1, "a3", result),
                        "{\"id\":3,\"result\":false,\"error\":\"Invalid result\"}");
    assert_int_equal(f->sink.accepted, 0);
    /* and the plain "a3" is still a fresh nonce */
    kp_test_result(job->server_nonce, "a3", result);
    assert_string_equal(submit(f, 4, 1, "a3", result), "{\"id\":4,\"result\":true}");
}

/* Issue 9 item 10: an integer is written without fraction or exponent. */
static void test_integral_doubles_are_not_integers(void **state)
{
    fixture *f = *state;
    assert_string_equal(send_line(f, "{\"id\":3.0,\"method\":\"authorize\",\"params\":{\"username\":\"a\"}}"),
                        "{\"id\":null,\"result\":false,\"error\":\"Invalid request\"}");
    assert_null(f->peer.username);
    assert_string_equal(send_line(f, "{\"id\":0001,\"method\":\"authorize\",\"params\":{\"username\":\"a\"}}"),
                        "{\"id\":null,\"result\":false,\"error\":\"Invalid JSON\"}");
    authorize(f);
    const kp_job *job = NULL;
    assert_int_equal(kp_job_book_lookup(&f->jobs, 1, f->now, &job), KP_OUTCOME_OK);
    char result[65];
    kp_test_result(job->server_nonce, "ab", result);
    char line[256];
    snprintf(line, sizeof(line),
             "{\"id\":7,\"method\":\"submit\",\"params\":{\"job_id\":1.0,\"client_nonce\":\"ab\",\"result\":\"%s\"}}",
             result);
    assert_string_equal(send_line(f, line), "{\"id\":7,\"result\":false,\"error\":\"Invalid params\"}");
    snprintf(line, sizeof(line),
             "{\"id\":8,\"method\":\"submit\",\"params\":{\"job_id\":1e0,\"client_nonce\":\"ab\",\"result\":\"%s\"}}",
             result);
    assert_string_equal(send_line(f, line), "{\"id\":8,\"result\":false,\"error\":\"Invalid params\"}");
}

/* The decode scratch grows with the longest message and keeps working for short ones after. */
static void test_long_messages(void **state)
{
    fixture *f = *state;
    authorize(f);
    static char line[8192];
    int n = snprintf(line, sizeof(line), "{\"id\":9,\"method\":\"submit\",\"params\":{\"job_id\":1,"
                                         "\"client_nonce\":\"ab\",\"result\":\"");
    memset(line + n, 'f', 7000);
    strcpy(line + n + 7000, "\"}}");
    assert_string_equal(send_line(f, line), "{\"id\":9,\"result\":false,\"error\":\"Invalid result\"}");
    assert_true(f->proto.scratch_cap >= strlen(line));
    assert_string_equal(submit(f, 10, 1, "ab", NULL), "{\"id\":10,\"result\":true}");
}

/* ---- SPEC §8: difficulty ---- */

/* The number of leading zero bits of sha256(server_nonce || nonce), computed here. */
static int zero_bits(const char *server_nonce, const char *nonce)
{
    char hex[65];
    kp_test_result(server_nonce, nonce, hex);
    int bits = 0;
    for (const char *c = hex; *c; c++) {
        int v = *c <= '9' ? *c - '0' : *c - 'a' + 10;
        if (v == 0) {
            bits += 4;
            continue;
        }
        while (!(v & 8))
            bits++, v <<= 1;
        break;
    }
    return bits;
}

/* A client nonce for `job_id` whose digest has at least `min_bits` and fewer than `max_bits`
 * leading zero bits: it meets 2^min_bits and not 2^max_bits (for a power of two D = 2^k the
 * target is 2^(256-k) - 1, so meeting it is exactly k leading zero bits). */
static void find_nonce(fixture *f, int64_t job_id, int min_bits, int max_bits, char out[17])
{
    const kp_job *job = NULL;
    assert_int_equal(kp_job_book_lookup(&f->jobs, job_id, f->now, &job), KP_OUTCOME_OK);
    for (uint64_t i = 0; i < 10000000; i++) {
        snprintf(out, 17, "%016" PRIx64, i);
        int z = zero_bits(job->server_nonce, out);
        if (z >= min_bits && z < max_bits)
            return;
    }
    fail_msg("no nonce found");
}

static void test_defaults_send_nothing(void **state)
{
    fixture *f = *state;
    authorize(f);
    char line[KP_SET_DIFFICULTY_MAX];
    assert_int_equal(kp_protocol_job_sent(&f->proto, &f->peer, 1, f->now, line), 0);
    assert_string_equal(submit(f, 2, 1, "ab", NULL), "{\"id\":2,\"result\":true}");
    assert_int_equal(f->sink.last.difficulty, 1);
    assert_int_equal(f->proto.difficulty.sessions[0], 1);
    assert_true(f->proto.difficulty.shares_sum == 1);
}

static void test_fixed_difficulty(void **state)
{
    fixture *f = *state;
    kp_protocol_set_difficulty(&f->proto, 256, (kp_vardiff_params){0});
    authorize(f);
    char line[KP_SET_DIFFICULTY_MAX];
    size_t n = kp_protocol_job_sent(&f->proto, &f->peer, 1, f->now, line);
    assert_true(n > 0);
    line[n] = '\0';
    assert_string_equal(line, "{\"id\":null,\"method\":\"set_difficulty\",\"params\":{\"difficulty\":256,"
                              "\"target\":\"00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\"}}\n");
    /* told once: the next job needs no notification */
    assert_int_equal(kp_protocol_job_sent(&f->proto, &f->peer, 2, f->now, line), 0);
    assert_int_equal(f->proto.difficulty.sessions[kp_difficulty_bucket(256)], 1);

    char low[17], good[17];
    find_nonce(f, 1, 0, 8, low);
    find_nonce(f, 1, 8, 256, good);
    /* Invalid result first, then Low difficulty share */
    assert_string_equal(submit(f, 3, 1, low, "00"), "{\"id\":3,\"result\":false,\"error\":\"Invalid result\"}");
    assert_string_equal(submit(f, 4, 1, low, NULL), "{\"id\":4,\"result\":false,\"error\":\"Low difficulty share\"}");
    /* neither the nonce set nor the rate limit saw it */
    assert_string_equal(submit(f, 5, 1, low, NULL), "{\"id\":5,\"result\":false,\"error\":\"Low difficulty share\"}");
    assert_string_equal(submit(f, 6, 1, good, NULL), "{\"id\":6,\"result\":true}");
    assert_int_equal(f->sink.accepted, 1);
    assert_int_equal(f->sink.last.difficulty, 256);
    assert_true(f->proto.difficulty.shares_sum == 256);
    assert_int_equal(f->proto.submits[KP_OUTCOME_LOW_DIFFICULTY], 2);
    f->now += 1000;
    assert_string_equal(submit(f, 7, 1, good, NULL), "{\"id\":7,\"result\":false,\"error\":\"Duplicate submission\"}");
    kp_protocol_peer_free(&f->proto, &f->peer);
    assert_int_equal(f->proto.difficulty.sessions[kp_difficulty_bucket(256)], 0);
}

/* With vardiff a submit is judged at the difficulty its job was sent at: a silence lowers the
 * session from 1024 to 256 with job 2; a share of 8 zero bits is low for job 1, good for job 2. */
static void test_judged_at_the_jobs_difficulty(void **state)
{
    fixture *f = *state;
    kp_protocol_set_difficulty(&f->proto, 1024,
                               (kp_vardiff_params){.target_ms = 100, .min = 1, .max = 1 << 20});
    authorize(f);
    char line[KP_SET_DIFFICULTY_MAX];
    assert_true(kp_protocol_job_sent(&f->proto, &f->peer, 1, f->now, line) > 0);
    assert_int_equal(f->proto.difficulty.sessions[kp_difficulty_bucket(1024)], 1);
    f->now += 1000;
    const kp_job *job;
    kp_job_book_rotate(&f->jobs, f->now, 0, &job);
    assert_int_equal(job->id, 2);
    size_t n = kp_protocol_job_sent(&f->proto, &f->peer, 2, f->now, line);
    assert_true(n > 0);
    line[n] = '\0';
    assert_non_null(strstr(line, "\"difficulty\":256,"));
    assert_int_equal(f->peer.difficulty, 256);
    assert_int_equal(f->proto.difficulty.sessions[kp_difficulty_bucket(1024)], 0);
    assert_int_equal(f->proto.difficulty.sessions[kp_difficulty_bucket(256)], 1);

    char eight[17];
    find_nonce(f, 1, 8, 10, eight);
    assert_string_equal(submit(f, 2, 1, eight, NULL), "{\"id\":2,\"result\":false,\"error\":\"Low difficulty share\"}");
    find_nonce(f, 2, 8, 10, eight);
    assert_string_equal(submit(f, 3, 2, eight, NULL), "{\"id\":3,\"result\":true}");
    assert_int_equal(f->sink.last.difficulty, 256);
    /* the history keeps what valid jobs need and no more: one older step (job 1 at 1024) until
     * job 1 expires, then none, and no heap */
    assert_int_equal(f->peer.job_difficulty.n, 1);
    assert_int_equal(kp_job_difficulty_of(&f->peer.job_difficulty, 1, 256), 1024);
    kp_peer_prune(&f->peer, 2);
    assert_int_equal(f->peer.job_difficulty.n, 0);
    assert_null(f->peer.job_difficulty.older);
    assert_int_equal(kp_job_difficulty_of(&f->peer.job_difficulty, 2, 256), 256);
    /* a valid job never sent to the session (older than its first): its current difficulty */
    assert_int_equal(kp_job_difficulty_of(&f->peer.job_difficulty, 1, 256), 256);
}

static void test_difficulty_buckets(void **state)
{
    (void)state;
    assert_int_equal(kp_difficulty_bucket(1), 0);
    assert_int_equal(kp_difficulty_bucket(2), 1);
    assert_int_equal(kp_difficulty_bucket(4), 1);
    assert_int_equal(kp_difficulty_bucket(5), 2);
    assert_int_equal(kp_difficulty_bucket(256), 4);
    assert_int_equal(kp_difficulty_bucket(257), 5);
    assert_int_equal(kp_difficulty_bucket(UINT64_C(1) << 52), 26);
    assert_int_equal(kp_difficulty_bucket((UINT64_C(1) << 52) + 1), 27);
    assert_int_equal(kp_difficulty_bucket(UINT64_C(1) << 53), 27);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_envelope_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_well_formed_message_resets_error_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthorized_submit_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authorize_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_order_and_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_carries_the_submit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method_before_authorize_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method_after_authorize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaped_nul_fails_its_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integral_doubles_are_not_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults_send_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_difficulty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_judged_at_the_jobs_difficulty, setup, teardown),
        cmocka_unit_test(test_difficulty_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
