/* The job book (SPEC §2 Jobs): a ring buffer of the jobs still valid, oldest first.
 *
 * Invariants: ids in the ring strictly increase from `head`; issued times never decrease (the
 * caller passes a monotonic clock); the newest entry is the current job and is never dropped
 * while the book is in use, so a session always has a job to work on. */
#include "job_book.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "kupool/error.h"

#define KP_NONCE_BYTES (KP_SERVER_NONCE_HEX / 2)

/* Enough for expire = 2 * interval (the default) plus the job being issued, so a book with the
 * default settings never reallocates. */
#define KP_JOB_BOOK_INITIAL_CAP 4

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static kp_job *slot(const kp_job_book *book, size_t i)
{
    return &book->jobs[(book->head + i) % book->cap];
}

/* Drops expired jobs from the old end, always keeping the newest one (the current job). Issued
 * times are ordered, so the first job still valid ends the scan. */
static void drop_expired(kp_job_book *book, uint64_t mono_ms)
{
    while (book->count > 1) {
        const kp_job *oldest = slot(book, 0);
        if (mono_ms < oldest->issued_mono_ms || mono_ms - oldest->issued_mono_ms <= book->expire_ms)
            break;
        book->head = (book->head + 1) % book->cap;
        book->count--;
    }
}

/* Doubles the ring. The wrapped part [0, head) moves to just past the old end, so the jobs stay
 * contiguous from `head` and `head` itself need not change. */
static int grow(kp_job_book *book)
{
    size_t old_cap = book->cap;
    if (old_cap > SIZE_MAX / 2 / sizeof(kp_job))
        return KP_ENOMEM;
    kp_job *jobs = realloc(book->jobs, 2 * old_cap * sizeof(kp_job));
    if (!jobs)
        return KP_ENOMEM;
    book->jobs = jobs;
    book->cap = 2 * old_cap;
    if (book->head + book->count > old_cap) {
        size_t wrapped = book->head + book->count - old_cap;
        memcpy(&jobs[old_cap], &jobs[0], wrapped * sizeof(kp_job));
    }
    return 0;
}

/* Scale-out nonce: every node with the same secret derives the same nonce for the same id. */
static int derive_nonce(const kp_job_book *book, int64_t id, char out[KP_SERVER_NONCE_HEX + 1])
{
    char msg[24];
    int msg_len = snprintf(msg, sizeof msg, "%" PRId64, id);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), book->secret, (int)book->secret_len, (const unsigned char *)msg,
              (size_t)msg_len, mac, &mac_len) ||
        mac_len < KP_NONCE_BYTES)
        return KP_EIO;
    hex_lower(mac, KP_NONCE_BYTES, out);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

int kp_job_book_init(kp_job_book *book, uint64_t interval_ms, uint64_t expire_ms,
                     const char *secret)
{
    memset(book, 0, sizeof *book);
    size_t secret_len = secret ? strlen(secret) : 0;
    if (interval_ms == 0 || secret_len > sizeof book->secret)
        return KP_EINVAL;
    book->jobs = calloc(KP_JOB_BOOK_INITIAL_CAP, sizeof(kp_job));
    if (!book->jobs)
        return KP_ENOMEM;
    book->cap = KP_JOB_BOOK_INITIAL_CAP;
    book->interval_ms = interval_ms;
    book->expire_ms = expire_ms;
    if (secret_len)
        memcpy(book->secret, secret, secret_len);
    book->secret_len = secret_len;
    return 0;
}

void kp_job_book_free(kp_job_book *book)
{
    free(book->jobs);
    /* The secret makes every future nonce predictable: do not leave it in freed memory. */
    OPENSSL_cleanse(book, sizeof *book);
}

int kp_job_book_rotate(kp_job_book *book, uint64_t mono_ms, uint64_t unix_ms, const kp_job **out)
{
    kp_job job = {.issued_mono_ms = mono_ms};
    int rc;

    if (book->secret_len) {
        uint64_t id = unix_ms / book->interval_ms;
        if (id > INT64_MAX)
            return KP_EINVAL;
        if ((int64_t)id <= book->last_id && book->count > 0) {
            /* The timer fired before the boundary: this id is already out, keep it. */
            drop_expired(book, mono_ms);
            *out = kp_job_book_current(book);
            return 0;
        }
        if ((int64_t)id <= book->last_id || id < 1)
            return KP_EINVAL; /* wall clock before the first boundary or gone backwards */
        job.id = (int64_t)id;
        rc = derive_nonce(book, job.id, job.server_nonce);
    } else {
        unsigned char raw[KP_NONCE_BYTES];
        job.id = book->last_id + 1;
        rc = RAND_bytes(raw, sizeof raw) == 1 ? 0 : KP_EIO;
        if (rc == 0)
            hex_lower(raw, sizeof raw, job.server_nonce);
    }
    if (rc)
        return rc;

    /* Drop first so the ring rarely grows; the current job survives until the new one is in,
     * so a failed grow leaves the book usable. */
    drop_expired(book, mono_ms);
    if (book->count == book->cap && (rc = grow(book)) != 0)
        return rc;
    *slot(book, book->count) = job;
    book->count++;
    book->last_id = job.id;
    drop_expired(book, mono_ms); /* the previous current job may itself be expired now */
    *out = kp_job_book_current(book);
    return 0;
}

const kp_job *kp_job_book_current(const kp_job_book *book)
{
    return book->count ? slot(book, book->count - 1) : NULL;
}

kp_outcome kp_job_book_lookup(const kp_job_book *book, int64_t job_id, uint64_t mono_ms,
                              const kp_job **out)
{
    if (out)
        *out = NULL;
    if (job_id < 1 || job_id > book->last_id)
        return KP_OUTCOME_TASK_NOT_EXIST;
    /* Newest first: nearly every submit is for the current job. The book holds only
     * expire / interval + 1 jobs, so a linear scan is enough. */
    for (size_t i = book->count; i-- > 0;) {
        const kp_job *job = slot(book, i);
        if (job->id < job_id)
            break; /* ids increase along the ring: it was dropped (or skipped in scale-out) */
        if (job->id != job_id)
            continue;
        bool current = i == book->count - 1;
        bool fresh = mono_ms < job->issued_mono_ms || mono_ms - job->issued_mono_ms <= book->expire_ms;
        if (!current && !fresh)
            return KP_OUTCOME_TASK_EXPIRED;
        if (out)
            *out = job;
        return KP_OUTCOME_OK;
    }
    return KP_OUTCOME_TASK_EXPIRED;
}

int64_t kp_job_book_oldest_id(const kp_job_book *book)
{
    return book->count ? slot(book, 0)->id : 0;
}

uint64_t kp_job_book_ms_to_boundary(const kp_job_book *book, uint64_t unix_ms)
{
    return book->interval_ms - unix_ms % book->interval_ms;
}
