/* See difficulty.h. 128-bit intermediates use the compiler's unsigned __int128 (GCC and Clang on
 * every 64-bit target this builds on): one 64x64->128 multiply or 128/64 divide per limb. */
#include "difficulty.h"

#include "kupool/error.h"

typedef unsigned __int128 u128;

int kp_difficulty_target(uint64_t d, kp_u256 *out)
{
    if (!kp_difficulty_valid(d))
        return KP_EINVAL;
    /* Schoolbook long division of 2^256 - 1 (four all-ones limbs) by one 64-bit limb: the
     * remainder is always < d, so (rem << 64 | limb) / d fits in 64 bits. */
    uint64_t rem = 0;
    for (int i = 0; i < 4; i++) {
        u128 cur = ((u128)rem << 64) | UINT64_MAX;
        out->limb[i] = (uint64_t)(cur / d);
        rem = (uint64_t)(cur % d);
    }
    return 0;
}

kp_u256 kp_u256_from_digest(const unsigned char digest[KP_DIGEST_LEN])
{
    kp_u256 v;
    for (int i = 0; i < 4; i++) {
        uint64_t w = 0;
        for (int j = 0; j < 8; j++)
            w = (w << 8) | digest[8 * i + j];
        v.limb[i] = w;
    }
    return v;
}

bool kp_u256_le(const kp_u256 *a, const kp_u256 *b)
{
    for (int i = 0; i < 4; i++)
        if (a->limb[i] != b->limb[i])
            return a->limb[i] < b->limb[i];
    return true;
}

void kp_u256_hex(const kp_u256 *v, char out[KP_TARGET_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 16; j++)
            out[16 * i + j] = digits[(v->limb[i] >> (60 - 4 * j)) & 0xf];
    out[KP_TARGET_HEX] = '\0';
}

bool kp_difficulty_met(const unsigned char digest[KP_DIGEST_LEN], uint64_t d)
{
    if (d <= 1)
        return true;
    /* x <= floor(M / d)  <=>  x * d <= M  for integers (M = 2^256 - 1): multiply from the least
     * significant limb and fail on any carry out of the top one. */
    kp_u256 x = kp_u256_from_digest(digest);
    uint64_t carry = 0;
    for (int i = 3; i >= 0; i--) {
        u128 p = (u128)x.limb[i] * d + carry;
        carry = (uint64_t)(p >> 64);
    }
    return carry == 0;
}
