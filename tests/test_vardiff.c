/* The vardiff rule (SPEC §8) on a fake clock: a client hashing steadily converges within 6
 * retargets and stays in the band, bursts move D by at most x4, silence lowers D, min and max
 * hold. Shares are simulated: a client at H hashes/s finds a share at difficulty D every D/H s
 * on average (exactly that for the steady client, exponentially distributed for the random one),
 * and submits it no sooner than 1 s after its last accepted one (the default rate limit). */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "vardiff.h"

#define RATE_LIMIT_MS 1000.0

typedef struct sim {
    kp_vardiff_params p;
    kp_vardiff v;
    uint64_t d;
    double hashrate;  /* H */
    bool random;      /* exponential share intervals (seeded) instead of exact means */
    uint64_t seed;
    double next_share_ms, last_accept_ms;
    unsigned changes;
    unsigned changes_to_band; /* retargets until D first entered the band, 0 = not yet */
} sim;

static double uniform(sim *s)
{
    s->seed ^= s->seed << 13, s->seed ^= s->seed >> 7, s->seed ^= s->seed << 17;
    return ((double)(s->seed >> 11) + 0.5) / 9007199254740992.0;
}

static double share_gap_ms(sim *s)
{
    double mean = (double)s->d / s->hashrate * 1000.0;
    return s->random ? -log(uniform(s)) * mean : mean;
}

static bool in_band(const sim *s)
{
    double ratio = (double)s->d / (s->hashrate * (double)s->p.target_ms / 1000.0);
    return ratio >= 0.72 && ratio <= 2.16;
}

static void sim_start(sim *s, double hashrate, uint64_t target_ms, uint64_t d0)
{
    *s = (sim){.p = {.target_ms = target_ms, .min = 1, .max = UINT64_C(1) << 53},
               .hashrate = hashrate, .seed = 0x2545f4914f6cdd1du, .last_accept_ms = -1e9};
    s->d = d0;
    kp_vardiff_start(&s->v, 0);
    s->next_share_ms = share_gap_ms(s);
}

/* Runs shares until `until_ms`, then one job (one retarget). */
static void sim_job(sim *s, double until_ms)
{
    for (;;) {
        double at = s->next_share_ms;
        if (at < s->last_accept_ms + RATE_LIMIT_MS)
            at = s->last_accept_ms + RATE_LIMIT_MS;
        if (at >= until_ms)
            break;
        kp_vardiff_share(&s->v, &s->p, s->d, s->d, (uint64_t)at);
        s->last_accept_ms = at;
        s->next_share_ms = at + share_gap_ms(s);
    }
    uint64_t next = kp_vardiff_retarget(&s->v, &s->p, s->d, (uint64_t)until_ms);
    if (next != s->d) {
        /* at most x4 either way, every step */
        assert_true(next <= 4 * s->d);
        assert_true(4 * next >= s->d);
        s->d = next;
        s->changes++;
        /* memoryless: the search restarts at the new difficulty */
        s->next_share_ms = until_ms + share_gap_ms(s);
        if (!s->changes_to_band && in_band(s))
            s->changes_to_band = s->changes;
    }
}

/* A steady client: in the band within 6 retargets, then never out of it. With the x4 cap a start
 * can only be 4^6 = 4096 times too low at most for that, so every case starts within it. */
static void steady_case(double hashrate, uint64_t target_ms, uint64_t interval_ms, uint64_t d0)
{
    sim s;
    sim_start(&s, hashrate, target_ms, d0);
    double t = 0;
    for (int job = 0; job < 20000 && !s.changes_to_band; job++)
        sim_job(&s, t += (double)interval_ms);
    assert_true(s.changes_to_band >= 1);
    if (s.changes_to_band > 6)
        fail_msg("H=%g target=%" PRIu64 " ms: %u retargets to the band", hashrate, target_ms,
                 s.changes_to_band);
    for (int job = 0; job < 3600 * 1000 / (int)interval_ms; job++) { /* an hour */
        sim_job(&s, t += (double)interval_ms);
        assert_true(in_band(&s));
    }
}

static void test_steady_rate_converges_and_stays(void **state)
{
    (void)state;
    steady_case(100, 10000, 2000, 1);    /* the load client's default rate, 10 s, 2 s jobs */
    steady_case(100, 10000, 30000, 1);   /* the default -interval */
    steady_case(1e4, 10000, 5000, 64);
    steady_case(1e5, 30000, 30000, 100000);
    steady_case(50, 10000, 2000, 5000);  /* starting too high: silence brings it down */
}

/* Random (Poisson) shares: the estimate is noisy, so "stays" means most of the time; the seed is
 * fixed, so this is deterministic. */
static void test_random_shares_stay_near(void **state)
{
    (void)state;
    sim s;
    sim_start(&s, 100, 10000, 1);
    s.random = true;
    s.next_share_ms = share_gap_ms(&s);
    double t = 0;
    for (int job = 0; job < 900; job++) /* 30 minutes of 2 s jobs to settle */
        sim_job(&s, t += 2000);
    assert_true(s.changes_to_band >= 1 && s.changes_to_band <= 8);
    int inside = 0, jobs = 5400; /* then three hours */
    for (int job = 0; job < jobs; job++) {
        sim_job(&s, t += 2000);
        inside += in_band(&s);
    }
    assert_true(inside >= jobs * 8 / 10);
}

/* A burst of shares far above the estimate's band moves D by x4 exactly, not more. */
static void test_burst_capped(void **state)
{
    (void)state;
    kp_vardiff_params p = {.target_ms = 10000, .min = 1, .max = UINT64_C(1) << 53};
    kp_vardiff v;
    kp_vardiff_start(&v, 1000);
    for (int i = 0; i < 1000; i++)
        kp_vardiff_share(&v, &p, 100, 100, 1000 + (uint64_t)i);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 100, 2000), 400);
    /* once per job: the window restarted, so the next job alone does not move it again */
    assert_int_equal(kp_vardiff_retarget(&v, &p, 400, 2001), 400);
}

/* Fast climb: 8 shares at one a second with a 10 s target (a session held by the rate limit) ask
 * for x14; even read pessimistically that is over x4, so D goes x4 at once. 8 shares that ask
 * for x3, or 3 shares whatever they ask, wait for more. */
static void test_fast_climb(void **state)
{
    (void)state;
    kp_vardiff_params p = {.target_ms = 10000, .min = 1, .max = UINT64_C(1) << 53};
    kp_vardiff v;
    kp_vardiff_start(&v, 0);
    for (int i = 1; i <= 8; i++)
        kp_vardiff_share(&v, &p, 10, 10, (uint64_t)i * 1000);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 10, 8000), 40);

    kp_vardiff_start(&v, 0);
    for (int i = 1; i <= 8; i++) /* a share every 4.8 s: x3 wanted */
        kp_vardiff_share(&v, &p, 10, 10, (uint64_t)i * 4800);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 10, 38400), 10);

    kp_vardiff_start(&v, 0);
    for (int i = 1; i <= 3; i++)
        kp_vardiff_share(&v, &p, 10, 10, (uint64_t)i);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 10, 4), 10);
}

/* Fewer than 16 shares asking for x2 (outside the dead band, far from the fast climb's x4 read
 * pessimistically), and no long silence: no change until the 16th share. */
static void test_no_evidence_no_change(void **state)
{
    (void)state;
    kp_vardiff_params p = {.target_ms = 10000, .min = 1, .max = 1000000};
    kp_vardiff v;
    kp_vardiff_start(&v, 0);
    for (int i = 1; i < KP_VARDIFF_MIN_SHARES; i++)
        kp_vardiff_share(&v, &p, 50, 50, (uint64_t)i * 7000);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 50, 108000), 50);
    kp_vardiff_share(&v, &p, 50, 50, 108500);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 50, 109000), 105); /* 1.44 x 800 / 109 s x 10 s / 50: x2.1 */
}

/* Silence of 2 x target lowers D at the next job, the longer the more (x4 at most), and only once
 * per 2 x target. */
static void test_silence_lowers(void **state)
{
    (void)state;
    kp_vardiff_params p = {.target_ms = 10000, .min = 1, .max = UINT64_C(1) << 53};
    kp_vardiff v;
    kp_vardiff_start(&v, 0);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 1000, 19999), 1000); /* not yet */
    uint64_t d = kp_vardiff_retarget(&v, &p, 1000, 20000);
    assert_true(d < 1000);
    assert_true(d >= 250);
    assert_int_equal(kp_vardiff_retarget(&v, &p, d, 30000), d); /* the silence restarts */
    uint64_t d2 = kp_vardiff_retarget(&v, &p, d, 40000);
    assert_true(d2 < d);
    /* a long silence: capped at /4 */
    kp_vardiff_start(&v, 0);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 1000, 1000000), 250);
    /* small difficulties still go down */
    kp_vardiff_start(&v, 0);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 2, 20000), 1);
}

static void test_min_max_hold(void **state)
{
    (void)state;
    kp_vardiff_params p = {.target_ms = 10000, .min = 64, .max = 256};
    assert_int_equal(kp_vardiff_clamp(&p, 1), 64);
    assert_int_equal(kp_vardiff_clamp(&p, 1000), 256);
    kp_vardiff v;
    kp_vardiff_start(&v, 0);
    for (int i = 0; i < 100; i++)
        kp_vardiff_share(&v, &p, 200, 200, (uint64_t)i * 10);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 200, 1000), 256); /* x4 wanted, max holds */
    kp_vardiff_start(&v, 0);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 64, 1000000), 64); /* silence at min: stays */
    kp_vardiff_start(&v, 0);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 100, 1000000), 64);
    /* the full range's top */
    kp_vardiff_params wide = {.target_ms = 1000, .min = 1, .max = UINT64_C(1) << 53};
    kp_vardiff_start(&v, 0);
    for (int i = 0; i < 64; i++)
        kp_vardiff_share(&v, &wide, UINT64_C(1) << 52, UINT64_C(1) << 52, (uint64_t)i);
    assert_int_equal(kp_vardiff_retarget(&v, &wide, UINT64_C(1) << 52, 100), UINT64_C(1) << 53);
}

static void test_off_never_changes(void **state)
{
    (void)state;
    kp_vardiff_params p = {.target_ms = 0, .min = 1, .max = 100};
    kp_vardiff v;
    kp_vardiff_start(&v, 0);
    assert_int_equal(kp_vardiff_retarget(&v, &p, 7, 1000000), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_rate_converges_and_stays),
        cmocka_unit_test(test_random_shares_stay_near),
        cmocka_unit_test(test_burst_capped),
        cmocka_unit_test(test_fast_climb),
        cmocka_unit_test(test_no_evidence_no_change),
        cmocka_unit_test(test_silence_lowers),
        cmocka_unit_test(test_min_max_hold),
        cmocka_unit_test(test_off_never_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
