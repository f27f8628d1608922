/* SPEC §8 target math: T(D) = floor((2^256 - 1) / D) exactly, and digest-vs-target at the
 * boundary. The expected targets were computed independently with Python's integers:
 *   python3 -c "M=(1<<256)-1; print('%064x' % (M//D))"
 * for each D below, and pasted here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "difficulty.h"
#include "kupool/error.h"

static const struct {
    uint64_t d;
    const char *hex;
} known[] = {
    {1, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
    {2, "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
    {3, "5555555555555555555555555555555555555555555555555555555555555555"},
    {256, "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
    {1000, "004189374bc6a7ef9db22d0e5604189374bc6a7ef9db22d0e5604189374bc6a7"},
    {9007199254740991, "0000000000000800000000000040000000000002000000000000100000000000"},
    {9007199254740992, "00000000000007ffffffffffffffffffffffffffffffffffffffffffffffffff"},
};

static void digest_of(const kp_u256 *v, unsigned char out[32])
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            out[8 * i + j] = (unsigned char)(v->limb[i] >> (56 - 8 * j));
}

/* v + 1 (no overflow for the targets used: none is 2^256 - 1 except D = 1). */
static kp_u256 plus_one(kp_u256 v)
{
    for (int i = 3; i >= 0; i--)
        if (++v.limb[i] != 0)
            break;
    return v;
}

static void test_known_targets(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        kp_u256 t;
        char hex[KP_TARGET_HEX + 1];
        assert_int_equal(kp_difficulty_target(known[i].d, &t), 0);
        kp_u256_hex(&t, hex);
        assert_string_equal(hex, known[i].hex);
    }
}

static void test_out_of_range(void **state)
{
    (void)state;
    kp_u256 t;
    assert_int_equal(kp_difficulty_target(0, &t), KP_EINVAL);
    assert_int_equal(kp_difficulty_target(KP_DIFFICULTY_MAX + 1, &t), KP_EINVAL);
    assert_true(kp_difficulty_valid(1));
    assert_true(kp_difficulty_valid(KP_DIFFICULTY_MAX));
    assert_false(kp_difficulty_valid(0));
}

/* T itself meets D, T + 1 does not: both through the target compare and through the
 * multiplication the submit path uses. */
static void test_boundary(void **state)
{
    (void)state;
    for (size_t i = 1; i < sizeof known / sizeof known[0]; i++) {
        uint64_t d = known[i].d;
        kp_u256 t, t1;
        assert_int_equal(kp_difficulty_target(d, &t), 0);
        t1 = plus_one(t);
        unsigned char at[32], above[32];
        digest_of(&t, at);
        digest_of(&t1, above);

        kp_u256 x = kp_u256_from_digest(at);
        assert_true(kp_u256_le(&x, &t));
        x = kp_u256_from_digest(above);
        assert_false(kp_u256_le(&x, &t));

        assert_true(kp_difficulty_met(at, d));
        assert_false(kp_difficulty_met(above, d));
    }
    /* D = 1: every digest, the largest included. */
    unsigned char ones[32];
    memset(ones, 0xff, sizeof ones);
    assert_true(kp_difficulty_met(ones, 1));
    unsigned char zero[32] = {0};
    assert_true(kp_difficulty_met(zero, KP_DIFFICULTY_MAX));
}

/* The multiplication and the explicit target agree on pseudo-random digests near and far from
 * the boundary, for difficulties of every size. */
static void test_met_agrees_with_target(void **state)
{
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 20000; round++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint64_t d = (s % KP_DIFFICULTY_MAX) + 1;
        if (round % 4 == 0)
            d = (uint64_t)1 << (round / 4 % 54); /* powers of two up to 2^53 */
        kp_u256 t;
        assert_int_equal(kp_difficulty_target(d, &t), 0);
        unsigned char dg[32];
        for (int i = 0; i < 32; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            dg[i] = (unsigned char)s;
        }
        /* Leading zero bytes like a real share's, so both verdicts occur. */
        int zeros = (int)(s % 9);
        memset(dg, 0, (size_t)zeros);
        kp_u256 x = kp_u256_from_digest(dg);
        assert_int_equal(kp_difficulty_met(dg, d), kp_u256_le(&x, &t));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_targets),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_boundary),
        cmocka_unit_test(test_met_agrees_with_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
