/* The spool file on its own (src/spool.c): append, read back in order, commit, and recovery from
 * a run killed in the middle of an append. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kupool/event.h"
#include "spool.h"
#include "testsupport.h"

static kp_event make_event(uint64_t seq)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "spool-%" PRIu64, seq);
    snprintf(ev.username, sizeof(ev.username), "user%" PRIu64, seq % 3);
    ev.job_id = 5;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%016" PRIx64, seq);
    ev.ts_ms = 1764016200000 + (int64_t)seq;
    return ev;
}

static char *file_in(const char *dir, const char *name)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static void remove_dir(const char *dir)
{
    unlink(file_in(dir, "spool.jsonl"));
    unlink(file_in(dir, "spool.offset"));
    rmdir(dir);
}

/* Reads everything after the committed offset and checks it is exactly seqs[0..n). */
static void expect_events(kp_spool *sp, const uint64_t *seqs, size_t n)
{
    kp_event out[16];
    size_t got = 0, skipped = 0;
    assert_int_equal(kp_spool_read(sp, out, 16, &got, &skipped), 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) {
        kp_event want = make_event(seqs[i]);
        assert_string_equal(out[i].event_id, want.event_id);
        assert_string_equal(out[i].username, want.username);
        assert_string_equal(out[i].client_nonce, want.client_nonce);
        assert_int_equal(out[i].ts_ms, want.ts_ms);
    }
}

static void test_append_read_commit(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    kp_spool *sp = NULL;
    uint64_t left = 99;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 0);
    kp_event evs[4] = {make_event(1), make_event(2), make_event(3), make_event(4)};
    assert_int_equal(kp_spool_append(sp, evs, 2), 0);
    assert_int_equal(kp_spool_append(sp, evs + 2, 2), 0);
    expect_events(sp, (const uint64_t[]){1, 2, 3, 4}, 4);
    assert_int_equal(kp_spool_commit(sp), 0);
    kp_spool_close(sp);

    /* Everything was committed: the next run finds nothing to replay. */
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 0);
    expect_events(sp, NULL, 0);
    kp_spool_close(sp);
    remove_dir(dir);
}

/* A run killed in the middle of an append leaves part of a line. The next run must cut it off:
 * otherwise its own first appended event would be glued to the fragment and lost. */
static void test_torn_last_line_is_cut_before_appending(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char json[2][KP_EVENT_JSON_MAX];
    kp_event first[2] = {make_event(10), make_event(11)};
    for (int i = 0; i < 2; i++)
        assert_true(kp_event_to_json(&first[i], json[i], sizeof(json[i])) > 0);
    FILE *fp = fopen(file_in(dir, "spool.jsonl"), "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n%s\n{\"event_id\":\"spool-12\",\"user", json[0], json[1]);
    fclose(fp);

    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 2); /* the torn line was never a spooled event */
    kp_event more[3] = {make_event(20), make_event(21), make_event(22)};
    assert_int_equal(kp_spool_append(sp, more, 3), 0);
    expect_events(sp, (const uint64_t[]){10, 11, 20, 21, 22}, 5);
    kp_spool_close(sp);
    remove_dir(dir);
}

/* A line longer than the read buffer (garbage: no event is that long) must be skipped, not
 * stall the spool: before the fix kp_spool_read returned nothing for ever and the pipeline took
 * the spool for drained, so every event behind the line was lost. Found by fuzz_spool. */
static void test_overlong_line_is_skipped(void **state)
{
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char json[KP_EVENT_JSON_MAX];
    kp_event ev = make_event(30);
    assert_true(kp_event_to_json(&ev, json, sizeof(json)) > 0);
    FILE *fp = fopen(file_in(dir, "spool.jsonl"), "w");
    assert_non_null(fp);
    for (int i = 0; i < 600 * 1024; i++)
        fputc('x', fp);
    fprintf(fp, "\n%s\n", json);
    fclose(fp);

    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 2);
    kp_event out[4];
    size_t got = 0, skipped = 0;
    assert_int_equal(kp_spool_read(sp, out, 4, &got, &skipped), 0);
    assert_int_equal(got, 0);
    assert_int_equal(skipped, 1);
    assert_int_equal(kp_spool_commit(sp), 0);
    expect_events(sp, (const uint64_t[]){30}, 1);
    kp_spool_close(sp);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_commit),
        cmocka_unit_test(test_torn_last_line_is_cut_before_appending),
        cmocka_unit_test(test_overlong_line_is_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
