/* libFuzzer harness: an arbitrary spool file, as a crash or a corrupt disk may leave it, opened
 * and replayed through the real spool code (src/pipeline/spool.c), batch markers included.
 *
 * Properties beyond "no crash, no leak":
 *   - without batch markers (a v1 spool): every complete line of the input that is a well-formed
 *     event (kp_event_from_json accepts it, which is exactly what kp_spool_read applies) is
 *     returned, in order, and nothing else is; garbage, torn and over-long lines around the good
 *     ones never lose them;
 *   - with markers: what comes back is a subsequence of those events, in order, each once; every
 *     batch is 1..KP_MQ_BATCH_MAX events, covers the events in order, and its id is either the one
 *     its marker recorded (then it has the marker's count) or kp_batch_id of its own events, so an
 *     id never names other events; reads end.
 * The spool file lives in one temp dir made at start and removed at exit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdbool.h>

#include "event_batch.h"
#include "kupool/event.h"
#include "log.h"
#include "spool.h"

enum { READ_BATCH = KP_MQ_BATCH_MAX, PER = 3 };

static char dir[64];
static char file[96];
static char offset_file[96];

static void cleanup(void)
{
    unlink(file);
    unlink(offset_file);
    rmdir(dir);
    kp_log_close();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "%s/kp_fuzz_spool.XXXXXX", "/tmp");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(file, sizeof file, "%s/spool.jsonl", dir);
    snprintf(offset_file, sizeof offset_file, "%s/spool.offset", dir);
    /* The spool warns about every torn line; a harness must not print per input. */
    kp_log_options opts = {.level = KP_LOG_ERROR, .format = KP_LOG_TEXT};
    if (kp_log_open(&opts) != 0)
        abort();
    atexit(cleanup);
    return 0;
}

static bool same_event(const kp_event *a, const kp_event *b)
{
    return strcmp(a->event_id, b->event_id) == 0 && strcmp(a->username, b->username) == 0 &&
           strcmp(a->client_nonce, b->client_nonce) == 0 && a->job_id == b->job_id &&
           a->ts_ms == b->ts_ms;
}

/* The events of every complete, well-formed line of data, in order (caller frees). */
static kp_event *expected_events(const uint8_t *data, size_t size, size_t *count, size_t *lines)
{
    kp_event *want = malloc((size / 2 + 1) * sizeof *want); /* a line is at least "x\n" */
    if (want == NULL)
        abort();
    *count = *lines = 0;
    const char *p = (const char *)data, *end = p + size;
    const char *nl;
    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (kp_event_from_json(p, (size_t)(nl - p), &want[*count]) == 0)
            (*count)++;
        (*lines)++;
        p = nl + 1;
    }
    return want;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unlink(offset_file);
    FILE *f = fopen(file, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();

    size_t want_n, lines;
    kp_event *want = expected_events(data, size, &want_n, &lines);

    bool markers = memmem(data, size, "{\"kupool_batch\"", 15) != NULL;
    kp_spool *sp = NULL;
    uint64_t left = 0;
    if (kp_spool_open(dir, &sp, &left) != 0)
        abort();
    if (!markers && left != lines) /* the events the previous run left: one per complete line */
        abort();
    if (left > lines)
        abort();

    static kp_event got[READ_BATCH];
    static kp_mq_batch batches[READ_BATCH];
    size_t seen = 0, skipped_total = 0, want_at = 0;
    /* Each read makes progress (a line returned or skipped), so lines + 1 reads end it. */
    for (size_t round = 0; round <= lines + 1; round++) {
        kp_spool_chunk c = {.events = got, .cap = READ_BATCH, .batches = batches, .per = PER};
        if (kp_spool_read(sp, &c) != 0)
            abort();
        if (c.n == 0 && c.skipped == 0 && c.bad_markers == 0)
            break;
        size_t covered = 0;
        for (size_t b = 0; b < c.nbatches; b++) {
            const kp_mq_batch *bt = &c.batches[b];
            char id[KP_BATCH_ID_MAX + 1];
            if (bt->n == 0 || bt->n > KP_MQ_BATCH_MAX || bt->events != got + covered ||
                bt->id[0] == '\0' || kp_batch_id(bt->events, bt->n, id, sizeof id) < 0)
                abort();
            /* A recorded id must be the marker's: only then may it differ from kp_batch_id. */
            if (strcmp(id, bt->id) != 0 && !memmem(data, size, bt->id, strlen(bt->id)))
                abort();
            covered += bt->n;
        }
        if (covered != c.n)
            abort();
        for (size_t i = 0; i < c.n; i++, seen++) {
            if (!markers) {
                if (seen >= want_n || !same_event(&got[i], &want[seen]))
                    abort(); /* an event that is not in the input, or out of order */
                continue;
            }
            while (want_at < want_n && !same_event(&got[i], &want[want_at]))
                want_at++;
            if (want_at++ >= want_n)
                abort(); /* not in the input, out of order, or returned twice */
        }
        skipped_total += c.skipped;
        if (kp_spool_commit(sp) != 0)
            abort();
    }
    if (!markers && (seen != want_n || seen + skipped_total != lines))
        abort(); /* a good event was lost, or a line was neither returned nor skipped */
    kp_spool_close(sp);
    free(want);
    return 0;
}
