/* Batches on the queue (src/proto/event_batch.c, SPEC §3 v1.1): the id, cutting events into
 * batches, and the NDJSON body both ways, including what other producers may send. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "event_batch.h"
#include "kupool/error.h"
#include "testsupport.h"

static kp_event make_event(uint64_t seq)
{
    kp_event ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "5f1e9c0a7b3d2e41-%" PRIu64, seq);
    snprintf(ev.username, sizeof(ev.username), "user\"%" PRIu64, seq % 3); /* needs escaping */
    ev.job_id = 12;
    snprintf(ev.client_nonce, sizeof(ev.client_nonce), "%016" PRIx64, seq);
    ev.ts_ms = 1764016265123 + (int64_t)seq;
    ev.difficulty = seq % 2 ? 0 : 4;
    return ev;
}

static void test_id(void **state)
{
    (void)state;
    kp_event ev = make_event(1000);
    char id[KP_BATCH_ID_MAX + 1];
    assert_int_equal(kp_batch_id(&ev, 256, id, sizeof(id)), (int)strlen("5f1e9c0a7b3d2e41-1000+256"));
    assert_string_equal(id, "5f1e9c0a7b3d2e41-1000+256");
    assert_int_equal(kp_batch_id(&ev, 0, id, sizeof(id)), KP_EINVAL);
    assert_int_equal(kp_batch_id(&ev, 256, id, 10), KP_EINVAL);
    /* The longest event id with the largest count still fits. */
    memset(ev.event_id, 'a', KP_EVENT_ID_MAX);
    ev.event_id[KP_EVENT_ID_MAX] = '\0';
    assert_true(kp_batch_id(&ev, KP_MQ_BATCH_MAX, id, sizeof(id)) > 0);
}

static void test_seal(void **state)
{
    (void)state;
    kp_event evs[10];
    for (int i = 0; i < 10; i++)
        evs[i] = make_event((uint64_t)i);
    kp_mq_batch out[8];
    assert_int_equal(kp_batch_seal(evs, 10, 4, out, 8), 3);
    assert_string_equal(out[0].id, "5f1e9c0a7b3d2e41-0+4");
    assert_string_equal(out[1].id, "5f1e9c0a7b3d2e41-4+4");
    assert_string_equal(out[2].id, "5f1e9c0a7b3d2e41-8+2");
    assert_ptr_equal(out[2].events, evs + 8);
    assert_int_equal(out[2].n, 2);
    /* -mq_batch 1: one v1 batch, no id. */
    assert_int_equal(kp_batch_seal(evs, 10, 1, out, 8), 1);
    assert_string_equal(out[0].id, "");
    assert_int_equal(out[0].n, 10);
    assert_int_equal(kp_batch_seal(evs, 10, 2, out, 4), 0); /* 5 batches do not fit */
    assert_int_equal(kp_batch_seal(evs, 0, 2, out, 4), 0);
}

static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    enum { N = 5 };
    kp_event evs[N], back[N];
    for (int i = 0; i < N; i++)
        evs[i] = make_event((uint64_t)i);
    char body[KP_BATCH_BODY_MAX(N)];
    size_t len = 0;
    assert_int_equal(kp_batch_encode(evs, N, body, sizeof(body), &len), 0);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += body[i] == '\n';
    assert_int_equal(lines, N);
    assert_int_equal(body[len - 1], '\n');
    char one[KP_EVENT_JSON_MAX];
    int first = kp_event_to_json(&evs[0], one, sizeof(one));
    assert_memory_equal(body, one, (size_t)first); /* each line is the SPEC §3 object */
    kp_batch_decoded res;
    assert_int_equal(kp_batch_decode(body, len, back, N, &res), 0);
    assert_int_equal(res.events, N);
    assert_int_equal(res.bad, 0);
    for (int i = 0; i < N; i++) {
        assert_string_equal(back[i].event_id, evs[i].event_id);
        assert_string_equal(back[i].username, evs[i].username);
        assert_int_equal(back[i].ts_ms, evs[i].ts_ms);
        assert_int_equal(kp_event_difficulty(&back[i]), kp_event_difficulty(&evs[i]));
    }
    /* Too small a buffer is an error, not a cut body. */
    assert_int_equal(kp_batch_encode(evs, N, body, (size_t)first, &len), KP_EINVAL);
}

/* Other producers: CRLF, no final newline, blank lines; a bad line costs only itself; more
 * lines than the caller can take is refused whole. */
static void test_decode_tolerance(void **state)
{
    (void)state;
    kp_event a = make_event(1), b = make_event(2), out[4];
    char ja[KP_EVENT_JSON_MAX], jb[KP_EVENT_JSON_MAX], body[4 * KP_EVENT_JSON_MAX];
    assert_true(kp_event_to_json(&a, ja, sizeof(ja)) > 0);
    assert_true(kp_event_to_json(&b, jb, sizeof(jb)) > 0);
    kp_batch_decoded res;

    int len = snprintf(body, sizeof(body), "%s\r\n\n  \r\n%s", ja, jb);
    assert_int_equal(kp_batch_decode(body, (size_t)len, out, 4, &res), 0);
    assert_int_equal(res.events, 2);
    assert_int_equal(res.bad, 0);
    assert_string_equal(out[1].event_id, b.event_id);

    len = snprintf(body, sizeof(body), "%s\n{\"event_id\":3}\n%s\n", ja, jb);
    assert_int_equal(kp_batch_decode(body, (size_t)len, out, 4, &res), 0);
    assert_int_equal(res.events, 2);
    assert_int_equal(res.bad, 1);
    assert_int_equal(res.first_bad, strlen(ja) + 1);

    len = snprintf(body, sizeof(body), "%s\n%s\n%s\n", ja, jb, ja);
    assert_int_equal(kp_batch_decode(body, (size_t)len, out, 2, &res), KP_EINVAL);
    assert_int_equal(res.events, 0);

    assert_int_equal(kp_batch_decode("", 0, out, 4, &res), 0);
    assert_int_equal(res.events, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id),
        cmocka_unit_test(test_seal),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_decode_tolerance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
