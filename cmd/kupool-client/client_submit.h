/* What a submit carries (SPEC §2): a fresh client nonce, the result
 * hex(sha256(server_nonce || client_nonce)), and the request line around them.
 *
 * Nonces come from a per-session SplitMix64 sequence seeded from the OS CSPRNG: SplitMix64's
 * output function is a bijection of its counter, so a session never repeats a nonce (no
 * accidental "Duplicate submission"), and no syscall is spent per submit. */
#ifndef KC_CLIENT_SUBMIT_H
#define KC_CLIENT_SUBMIT_H

#include <stddef.h>
#include <stdint.h>

#include "hasher.h"

#define KC_NONCE_HEX 16       /* client nonces are 8 random bytes in hex */
#define KC_RESULT_HEX 64
#define KC_SUBMIT_LINE_MAX 256 /* the longest line kc_format_submit writes, "\n" included */

typedef struct kc_nonce_seq {
    uint64_t state;
} kc_nonce_seq;

/* Seeds from the OS random source (uv_random); returns 0 or a negative uv error. */
int kc_nonce_seq_seed(kc_nonce_seq *seq);

/* Writes the next nonce: 16 lowercase hex chars and a NUL. */
void kc_nonce_next(kc_nonce_seq *seq, char out[KC_NONCE_HEX + 1]);

/* A uniform double in [0, 1) from the same generator (for jitter and -mix draws). */
double kc_random_unit(kc_nonce_seq *seq);

/* hex(sha256(server_nonce || client_nonce)) into out[65]. Returns 0 or KP_EIO. */
int kc_compute_result(kp_hasher *h, const char *server_nonce, const char *client_nonce,
                      char out[KC_RESULT_HEX + 1]);

/* Formats {"id":ID,"method":"submit","params":{"job_id":J,"client_nonce":"N","result":"R"}}\n
 * into buf (KC_SUBMIT_LINE_MAX bytes). Returns the length, or 0 if it would not fit. */
size_t kc_format_submit(char *buf, int64_t id, int64_t job_id, const char *client_nonce,
                        const char *result);

/* Formats the authorize request line into buf (cap bytes). Returns the length, or 0 if the
 * username (already JSON-safe: see kc_username_ok) would not fit. */
size_t kc_format_authorize(char *buf, size_t cap, int64_t id, const char *username);

/* True when `name` can be sent inside a JSON string as is and the server would accept it:
 * 1..255 bytes, no control characters, no '"' or '\\' (escaping is not worth the code). */
int kc_username_ok(const char *name);

#endif
