/* The job book: the current job and every older job that is still valid (SPEC §2 Jobs).
 *
 * Time is always passed in by the caller (`now_ms`), so tests drive it with a fake clock.
 * `mono_ms` is a monotonic clock for expiry; `unix_ms` the wall clock used only by scale-out mode
 * to derive job ids. The book keeps only valid jobs: each rotate drops the expired ones, so its
 * size is bounded by expire / interval + 1. */
#ifndef KP_JOB_BOOK_H
#define KP_JOB_BOOK_H

#include <stddef.h>
#include <stdint.h>

#include "outcome.h"

#define KP_SERVER_NONCE_HEX 32

typedef struct kp_job {
    int64_t id;
    char server_nonce[KP_SERVER_NONCE_HEX + 1]; /* lowercase hex of 16 bytes */
    uint64_t issued_mono_ms;
} kp_job;

typedef struct kp_job_book {
    kp_job *jobs;    /* ring buffer, oldest first from `head` */
    size_t cap, head, count;
    uint64_t expire_ms;
    uint64_t interval_ms;
    int64_t last_id;           /* id of the newest job ever issued, 0 before the first */
    unsigned char secret[256]; /* scale-out HMAC key */
    size_t secret_len;         /* 0 = local mode: ids 1, 2, 3, nonces from RAND_bytes */
} kp_job_book;

/* secret may be NULL/"" for local mode. Returns 0, KP_EINVAL or KP_ENOMEM. */
int kp_job_book_init(kp_job_book *book, uint64_t interval_ms, uint64_t expire_ms,
                     const char *secret);
void kp_job_book_free(kp_job_book *book);

/* Issues the next job and drops the jobs that have expired. Local mode: id = last + 1, nonce from
 * the CSPRNG. Scale-out mode: id = floor(unix_ms / interval_ms), nonce = hex of the first 16
 * bytes of HMAC-SHA256(secret, decimal id); if that id was already issued (timer fired early) the
 * current job is returned unchanged. On success *out points at the new current job (valid until
 * the next rotate). Returns 0, KP_EIO (CSPRNG failure) or KP_ENOMEM. */
int kp_job_book_rotate(kp_job_book *book, uint64_t mono_ms, uint64_t unix_ms, const kp_job **out);

/* The current job, or NULL before the first rotate. */
const kp_job *kp_job_book_current(const kp_job_book *book);

/* Looks a submitted job id up: KP_OUTCOME_OK with *out set, KP_OUTCOME_TASK_NOT_EXIST (id < 1 or
 * greater than the current id) or KP_OUTCOME_TASK_EXPIRED (issued, but now - issued > expire and
 * not the current job, or already dropped). */
kp_outcome kp_job_book_lookup(const kp_job_book *book, int64_t job_id, uint64_t mono_ms,
                              const kp_job **out);

/* Smallest id still in the book (0 when empty): sessions drop nonce sets of older jobs. */
int64_t kp_job_book_oldest_id(const kp_job_book *book);

/* Milliseconds from unix_ms to the next scale-out boundary (multiple of interval). */
uint64_t kp_job_book_ms_to_boundary(const kp_job_book *book, uint64_t unix_ms);

#endif
