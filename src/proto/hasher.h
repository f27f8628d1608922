/* Computes and checks submit results: hex(sha256(server_nonce || client_nonce)) (SPEC §2).
 *
 * Allocates nothing per hash (hasher.c says how). Holds state only when OpenSSL lacks the
 * low-level SHA-256 calls: then one fetched implementation and one reused EVP context. Not
 * thread safe: one per thread. */
#ifndef KP_HASHER_H
#define KP_HASHER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct kp_hasher {
    void *md;  /* EVP_MD *, or NULL when the low-level calls are used */
    void *ctx; /* EVP_MD_CTX *, likewise */
} kp_hasher;

int kp_hasher_init(kp_hasher *h); /* 0 or KP_ENOMEM */
void kp_hasher_free(kp_hasher *h);

/* Writes the 64 lowercase hex chars (and a NUL) of sha256(a || b) into out[65]. Returns 0 or
 * KP_EIO. */
int kp_hasher_hex(kp_hasher *h, const char *a, size_t a_len, const char *b, size_t b_len,
                  char out[65]);

/* True when `result` is the 64-char hex (either case) of sha256(server_nonce || client_nonce). */
bool kp_hasher_check(kp_hasher *h, const char *server_nonce, size_t sn_len, const char *client_nonce,
                     size_t cn_len, const char *result, size_t result_len);

/* The same check, and the 32-byte digest it computed into `digest` (SPEC §8 compares it with the
 * target: no second hash). The digest is written whenever hashing ran, whatever the verdict. */
bool kp_hasher_check_digest(kp_hasher *h, const char *server_nonce, size_t sn_len,
                            const char *client_nonce, size_t cn_len, const char *result,
                            size_t result_len, unsigned char digest[32]);

#endif
