/* Share difficulty (SPEC §8): the 256-bit target of a difficulty, and whether a digest meets it.
 *
 * A share meets difficulty D when its SHA-256 digest, read as a 256-bit big-endian integer x, is
 * <= T(D) = floor((2^256 - 1) / D). Everything here is exact integer arithmetic on 64-bit limbs
 * (no doubles: a double has 53 bits and T has 256). Pure: no state, no allocation. */
#ifndef KP_DIFFICULTY_H
#define KP_DIFFICULTY_H

#include <stdbool.h>
#include <stdint.h>

#include "kupool/event.h" /* KP_DIFFICULTY_MAX */

#define KP_DIGEST_LEN 32
#define KP_TARGET_HEX 64

/* A 256-bit unsigned integer, most significant limb first. */
typedef struct kp_u256 {
    uint64_t limb[4];
} kp_u256;

/* True for 1..KP_DIFFICULTY_MAX (2^53), the difficulties SPEC §8 allows. */
static inline bool kp_difficulty_valid(uint64_t d)
{
    return d >= 1 && d <= KP_DIFFICULTY_MAX;
}

/* T(d) = floor((2^256 - 1) / d) into *out. Returns 0, or KP_EINVAL when d is not valid. */
int kp_difficulty_target(uint64_t d, kp_u256 *out);

/* The 32 bytes of a digest as a big-endian integer. */
kp_u256 kp_u256_from_digest(const unsigned char digest[KP_DIGEST_LEN]);

/* True when a <= b. */
bool kp_u256_le(const kp_u256 *a, const kp_u256 *b);

/* 64 lowercase hex digits and a NUL (the set_difficulty notification's "target"). */
void kp_u256_hex(const kp_u256 *v, char out[KP_TARGET_HEX + 1]);

/* True when `digest` meets difficulty d, i.e. x <= T(d). Computed as x * d <= 2^256 - 1 (the
 * product does not carry out of 256 bits), which is the same for integers and costs four
 * multiplications instead of a 256-by-64-bit division per submit. d = 1 is always met. */
bool kp_difficulty_met(const unsigned char digest[KP_DIGEST_LEN], uint64_t d);

#endif
