/* Hasher tests: hex(sha256(a || b)) and the result check (SPEC §2 "Invalid result"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hasher.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static int setup(void **state)
{
    static kp_hasher h;
    if (kp_hasher_init(&h) != 0)
        return -1;
    *state = &h;
    return 0;
}

static int teardown(void **state)
{
    kp_hasher_free(*state);
    return 0;
}

static void test_hex_known_vector(void **state)
{
    kp_hasher *h = *state;
    char out[65];
    assert_int_equal(kp_hasher_hex(h, "a", 1, "bc", 2, out), 0);
    assert_string_equal(out, ABC_HEX);
    /* The context is reused: a second call must not carry state over. */
    assert_int_equal(kp_hasher_hex(h, "ab", 2, "c", 1, out), 0);
    assert_string_equal(out, ABC_HEX);
    assert_int_equal(kp_hasher_hex(h, "", 0, "", 0, out), 0);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static bool check(kp_hasher *h, const char *result)
{
    return kp_hasher_check(h, "a", 1, "bc", 2, result, strlen(result));
}

static void test_check_accepts_either_case(void **state)
{
    kp_hasher *h = *state;
    assert_true(check(h, ABC_HEX));
    assert_true(check(h, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
    assert_true(check(h, "Ba7816bF8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aD"));
}

static void test_check_rejects(void **state)
{
    kp_hasher *h = *state;
    char buf[66];

    /* wrong length: one short, one long (a valid prefix does not help) */
    assert_false(kp_hasher_check(h, "a", 1, "bc", 2, ABC_HEX, 63));
    memcpy(buf, ABC_HEX "0", 66);
    assert_false(kp_hasher_check(h, "a", 1, "bc", 2, buf, 65));
    assert_false(check(h, ""));

    /* one wrong digit, at the start and at the end */
    memcpy(buf, ABC_HEX, 65);
    buf[0] = 'c';
    assert_false(check(h, buf));
    memcpy(buf, ABC_HEX, 65);
    buf[63] = 'c';
    assert_false(check(h, buf));

    /* non-hex characters, including ones that differ from a digit only in the 0x20 bit */
    memcpy(buf, ABC_HEX, 65);
    buf[0] = 'G';
    assert_false(check(h, buf));
    memcpy(buf, ABC_HEX, 65);
    buf[2] = 0x17; /* '7' without 0x20 */
    assert_false(check(h, buf));

    /* right result for different inputs */
    assert_false(kp_hasher_check(h, "ab", 2, "bc", 2, ABC_HEX, 64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_known_vector),
        cmocka_unit_test(test_check_accepts_either_case),
        cmocka_unit_test(test_check_rejects),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
