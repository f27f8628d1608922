/* Submit result checking: hex(sha256(server_nonce || client_nonce)) (SPEC §2 "Invalid result").
 *
 * The digest is OpenSSL's SHA256_Init/Update/Final on a context on the stack. Why not EVP: in
 * OpenSSL 3.0 EVP_DigestInit_ex2 frees and allocates the provider's context on every call, even
 * with a fetched digest and a reused EVP_MD_CTX (valgrind: one allocation per hash), and the
 * provider dispatch around it costs more than the compression of the one block a submit hashes
 * (bench/nonce_set_bench's +sha rows and bench/floor_submit measure it). The low-level calls are
 * deprecated in 3.0 but present and use the same assembly (SHA-NI where the CPU has it); an
 * OpenSSL built without the deprecated API (OPENSSL_NO_DEPRECATED_3_0) gets the EVP path, with
 * the digest fetched once and the context reused. */
#include "hasher.h"

#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_*: see above */
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "kupool/error.h"

#define KP_SHA256_LEN 32
#define KP_SHA256_HEX (2 * KP_SHA256_LEN)

static const char hex_digits[] = "0123456789abcdef";

/* ASCII-only case folding: tolower() depends on the locale, and the wire format does not. */
static char fold(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

#ifndef OPENSSL_NO_DEPRECATED_3_0
int kp_hasher_init(kp_hasher *h)
{
    h->md = NULL; /* the low-level calls need no state between hashes */
    h->ctx = NULL;
    return 0;
}

void kp_hasher_free(kp_hasher *h)
{
    h->md = NULL;
    h->ctx = NULL;
}

/* sha256(a || b) into digest. */
static int digest2(kp_hasher *h, const char *a, size_t a_len, const char *b, size_t b_len,
                   unsigned char digest[KP_SHA256_LEN])
{
    (void)h;
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, a, a_len) != 1 ||
        SHA256_Update(&c, b, b_len) != 1 || SHA256_Final(digest, &c) != 1)
        return KP_EIO;
    return 0;
}
#else
int kp_hasher_init(kp_hasher *h)
{
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    if (!h->md || !h->ctx) {
        kp_hasher_free(h);
        return KP_ENOMEM;
    }
    return 0;
}

void kp_hasher_free(kp_hasher *h)
{
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    h->ctx = NULL;
    h->md = NULL;
}

static int digest2(kp_hasher *h, const char *a, size_t a_len, const char *b, size_t b_len,
                   unsigned char digest[KP_SHA256_LEN])
{
    unsigned int digest_len = 0;
    if (EVP_DigestInit_ex2(h->ctx, h->md, NULL) != 1 || EVP_DigestUpdate(h->ctx, a, a_len) != 1 ||
        EVP_DigestUpdate(h->ctx, b, b_len) != 1 ||
        EVP_DigestFinal_ex(h->ctx, digest, &digest_len) != 1 || digest_len != KP_SHA256_LEN)
        return KP_EIO;
    return 0;
}
#endif

int kp_hasher_hex(kp_hasher *h, const char *a, size_t a_len, const char *b, size_t b_len,
                  char out[65])
{
    unsigned char digest[KP_SHA256_LEN];
    if (digest2(h, a, a_len, b, b_len, digest) != 0)
        return KP_EIO;
    for (size_t i = 0; i < KP_SHA256_LEN; i++) {
        out[2 * i] = hex_digits[digest[i] >> 4];
        out[2 * i + 1] = hex_digits[digest[i] & 0x0f];
    }
    out[KP_SHA256_HEX] = '\0';
    return 0;
}

bool kp_hasher_check_digest(kp_hasher *h, const char *server_nonce, size_t sn_len,
                            const char *client_nonce, size_t cn_len, const char *result,
                            size_t result_len, unsigned char digest[KP_SHA256_LEN])
{
    if (result_len != KP_SHA256_HEX ||
        digest2(h, server_nonce, sn_len, client_nonce, cn_len, digest) != 0)
        return false;
    /* Nothing here is secret (the client knows every input), so an early exit is fine. A
     * non-hex byte never folds onto a lowercase hex digit, so it always mismatches. */
    for (size_t i = 0; i < KP_SHA256_LEN; i++)
        if (fold(result[2 * i]) != hex_digits[digest[i] >> 4] ||
            fold(result[2 * i + 1]) != hex_digits[digest[i] & 0x0f])
            return false;
    return true;
}

bool kp_hasher_check(kp_hasher *h, const char *server_nonce, size_t sn_len, const char *client_nonce,
                     size_t cn_len, const char *result, size_t result_len)
{
    unsigned char digest[KP_SHA256_LEN];
    return kp_hasher_check_digest(h, server_nonce, sn_len, client_nonce, cn_len, result,
                                  result_len, digest);
}
