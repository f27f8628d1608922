/* The spool file on its own (src/pipeline/spool.c): append, read back in order, commit, recovery
 * from a run killed in the middle of an append, and batches (issue 12): a batch keeps its id and
 * events through the spool, a v1 spool (event lines only, as 404c716 wrote it) is still read. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event_batch.h"
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

/* One read of up to `cap` events into static buffers, fresh batches of `per`. */
static kp_spool_chunk read_chunk(kp_spool *sp, size_t cap, size_t per)
{
    static kp_event events[64];
    static kp_mq_batch batches[64];
    assert_true(cap <= 64);
    kp_spool_chunk c = {.events = events, .cap = cap, .batches = batches, .per = per};
    assert_int_equal(kp_spool_read(sp, &c), 0);
    size_t covered = 0;
    for (size_t b = 0; b < c.nbatches; b++) {
        assert_ptr_equal(c.batches[b].events, c.events + covered); /* in order, no gaps */
        covered += c.batches[b].n;
    }
    assert_int_equal(covered, c.n);
    return c;
}

static int append_events(kp_spool *sp, const kp_event *evs, size_t n)
{
    kp_mq_batch b = kp_mq_v1_batch(evs, n);
    return kp_spool_append(sp, &b, 1);
}

/* Reads everything after the committed offset and checks it is exactly seqs[0..n). */
static void expect_events(kp_spool *sp, const uint64_t *seqs, size_t n)
{
    kp_spool_chunk c = read_chunk(sp, 16, 1);
    const kp_event *out = c.events;
    size_t got = c.n;
    assert_int_equal(c.skipped, 0);
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
    assert_int_equal(append_events(sp, evs, 2), 0);
    assert_int_equal(append_events(sp, evs + 2, 2), 0);
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
    assert_int_equal(append_events(sp, more, 3), 0);
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
    for (int i = 0; i < 9 * 1024 * 1024; i++) /* more than one read (8 MiB) */
        fputc('x', fp);
    fprintf(fp, "\n%s\n", json);
    fclose(fp);

    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 2);
    kp_spool_chunk c = read_chunk(sp, 4, 1);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.skipped, 1);
    assert_int_equal(kp_spool_commit(sp), 0);
    expect_events(sp, (const uint64_t[]){30}, 1);
    kp_spool_close(sp);
    remove_dir(dir);
}

/* Writes `text` as the whole spool file. */
static void write_file(const char *dir, const char *text)
{
    FILE *fp = fopen(file_in(dir, "spool.jsonl"), "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void event_line(uint64_t seq, char *out, size_t cap)
{
    kp_event ev = make_event(seq);
    int n = kp_event_to_json(&ev, out, cap - 1);
    assert_true(n > 0);
    out[n] = '\n';
    out[n + 1] = '\0';
}

static void expect_batch(const kp_mq_batch *b, const char *id, uint64_t first_seq, size_t n)
{
    assert_string_equal(b->id, id);
    assert_int_equal(b->n, n);
    for (size_t i = 0; i < n; i++) {
        kp_event want = make_event(first_seq + i);
        assert_string_equal(b->events[i].event_id, want.event_id);
    }
}

/* A batch appended with its id comes back whole with that id, also after a restart; events
 * outside a batch come back as a v1 run (per 1) or cut into fresh batches (per > 1). */
static void test_batches_keep_their_ids(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    kp_event evs[7];
    for (int i = 0; i < 7; i++)
        evs[i] = make_event(40 + (uint64_t)i);
    kp_mq_batch bs[4];
    size_t nb = kp_batch_seal(evs, 5, 3, bs, 4); /* spool-40+3, spool-43+2 */
    assert_int_equal(nb, 2);
    bs[nb++] = kp_mq_v1_batch(evs + 5, 2); /* outside a batch */
    assert_int_equal(kp_spool_append(sp, bs, nb), 0);
    kp_spool_close(sp);

    for (int run = 0; run < 2; run++) { /* the same ids at every start */
        assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
        assert_int_equal(left, 7); /* events, not markers */
        kp_spool_chunk c = read_chunk(sp, 16, run == 0 ? 1 : 4);
        assert_int_equal(c.n, 7);
        assert_int_equal(c.nbatches, 3);
        expect_batch(&c.batches[0], "spool-40+3", 40, 3);
        expect_batch(&c.batches[1], "spool-43+2", 43, 2);
        expect_batch(&c.batches[2], run == 0 ? "" : "spool-45+2", 45, 2);
        kp_spool_close(sp);
    }
    remove_dir(dir);
}

/* A read takes whole batches only: one that does not fit in `cap` waits for the next read. */
static void test_read_never_splits_a_batch(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    kp_event evs[6];
    for (int i = 0; i < 6; i++)
        evs[i] = make_event(50 + (uint64_t)i);
    kp_mq_batch bs[2];
    assert_int_equal(kp_batch_seal(evs, 6, 3, bs, 2), 2);
    assert_int_equal(kp_spool_append(sp, bs, 2), 0);
    kp_spool_chunk c = read_chunk(sp, 5, 1);
    assert_int_equal(c.nbatches, 1);
    expect_batch(&c.batches[0], "spool-50+3", 50, 3);
    assert_int_equal(kp_spool_commit(sp), 0);
    c = read_chunk(sp, 5, 1);
    assert_int_equal(c.nbatches, 1);
    expect_batch(&c.batches[0], "spool-53+3", 53, 3);
    assert_int_equal(kp_spool_commit(sp), 0);
    c = read_chunk(sp, 5, 1);
    assert_int_equal(c.n, 0);
    kp_spool_close(sp);
    remove_dir(dir);
}

/* A v1 spool, exactly as 404c716's spool.c wrote it (one event JSON per line, no markers, and
 * the offset file), is replayed from its offset: cut into fresh batches at -mq_batch > 1. */
static void test_v1_spool_is_replayed(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[8 * KP_EVENT_JSON_MAX] = "", line[KP_EVENT_JSON_MAX + 2];
    size_t first_len = 0;
    for (uint64_t seq = 60; seq < 65; seq++) {
        event_line(seq, line, sizeof(line));
        if (seq == 60)
            first_len = strlen(line);
        strcat(text, line);
    }
    write_file(dir, text);
    FILE *fp = fopen(file_in(dir, "spool.offset"), "w"); /* event 60 was published */
    assert_non_null(fp);
    fprintf(fp, "%zu\n", first_len);
    fclose(fp);

    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 4);
    kp_spool_chunk c = read_chunk(sp, 16, 3);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.nbatches, 2);
    expect_batch(&c.batches[0], "spool-61+3", 61, 3);
    expect_batch(&c.batches[1], "spool-64+1", 64, 1);
    assert_int_equal(kp_spool_commit(sp), 0);
    kp_spool_close(sp);
    /* Everything published: the file is emptied and nothing is replayed again. */
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 0);
    kp_spool_close(sp);
    remove_dir(dir);
}

/* A run killed in the middle of appending a batch leaves its marker and some of its lines: they
 * were never counted as spooled, so the next start cuts the whole batch off, and the events
 * appended next are not glued onto it. */
static void test_torn_batch_is_cut(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[8 * KP_EVENT_JSON_MAX] = "", line[KP_EVENT_JSON_MAX + 2];
    event_line(70, line, sizeof(line));
    strcat(text, line);
    strcat(text, "{\"kupool_batch\":\"spool-71+3\",\"events\":3}\n");
    event_line(71, line, sizeof(line));
    strcat(text, line);
    event_line(72, line, sizeof(line));
    strcat(text, line);
    write_file(dir, text);

    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 1);
    kp_event more = make_event(80);
    assert_int_equal(append_events(sp, &more, 1), 0);
    expect_events(sp, (const uint64_t[]){70, 80}, 2);
    kp_spool_close(sp);
    remove_dir(dir);
}

/* A batch that lost a line (a corrupt disk) keeps its good events under the id of what is left:
 * an id never names other events than its own. A marker that does not parse is skipped and the
 * events after it come back outside a batch. */
static void test_damaged_batch_gets_its_own_id(void **state)
{
    (void)state;
    char dir[] = "/tmp/kp-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[8 * KP_EVENT_JSON_MAX] = "", line[KP_EVENT_JSON_MAX + 2];
    strcat(text, "{\"kupool_batch\":\"spool-90+3\",\"events\":3}\n");
    event_line(90, line, sizeof(line));
    strcat(text, line);
    strcat(text, "not an event\n");
    event_line(92, line, sizeof(line));
    strcat(text, line);
    strcat(text, "{\"kupool_batch\":\"x\",\"events\":99999}\n");
    event_line(93, line, sizeof(line));
    strcat(text, line);
    write_file(dir, text);

    kp_spool *sp = NULL;
    uint64_t left = 0;
    assert_int_equal(kp_spool_open(dir, &sp, &left), 0);
    assert_int_equal(left, 4); /* three lines of the batch, and 93 */
    kp_spool_chunk c = read_chunk(sp, 16, 1);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.skipped, 1);
    assert_int_equal(c.bad_markers, 1);
    assert_int_equal(c.nbatches, 2);
    assert_string_equal(c.batches[0].id, "spool-90+2");
    assert_int_equal(c.batches[0].n, 2);
    assert_string_equal(c.batches[0].events[1].event_id, "spool-92");
    expect_batch(&c.batches[1], "", 93, 1);
    kp_spool_close(sp);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_commit),
        cmocka_unit_test(test_torn_last_line_is_cut_before_appending),
        cmocka_unit_test(test_overlong_line_is_skipped),
        cmocka_unit_test(test_batches_keep_their_ids),
        cmocka_unit_test(test_read_never_splits_a_batch),
        cmocka_unit_test(test_v1_spool_is_replayed),
        cmocka_unit_test(test_torn_batch_is_cut),
        cmocka_unit_test(test_damaged_batch_gets_its_own_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
