/* TLS under the connection seam (conn.h): a kp_conn that owns an inner kp_conn (TCP, or a PROXY
 * header reader in front of it), binds itself as the inner conn's owner, runs OpenSSL over the
 * bytes it reads and writes, and reports plaintext upward. libuv has no TLS, so OpenSSL never
 * touches a socket: one small custom BIO hands it the bytes of the read being handled (lent, no
 * copy) and collects what it writes in a loop-wide scratch buffer that goes to the inner conn's
 * write (which sends what the socket takes and copies only the rest into its bounded queue).
 *
 * Memory per connection: this struct (embedded in the session's allocation), the SSL object
 * and one BIO. There is no per-connection BIO buffer: with SSL_MODE_RELEASE_BUFFERS (set on the
 * context) OpenSSL frees its record buffers whenever they are empty, and the handshake's buffers
 * go once it is done, so an idle session holds only the SSL object's state (docs/benchmarks.md,
 * "TLS", has the measured figure).
 *
 * Reads: each inner read is decrypted whole into the shared plaintext buffer and delivered in
 * one on_read, so the session's read budget and backlog work exactly as over TCP, and nothing
 * is held here between reads (a partial record stays inside OpenSSL).
 *
 * Writes: encrypted per call (a broadcast's shared line cannot be shared once encrypted: each
 * session has its own keys), so `line` is not passed down. The queue bound is checked before
 * encrypting, so KP_EAGAIN still means nothing was queued. The session must not write before
 * the handshake is done; it never does, since it writes only answers to input and jobs after
 * authorize.
 *
 * Loop thread only. */
#ifndef KP_CONN_TLS_H
#define KP_CONN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "conn.h"

/* Handshake outcomes (kupool_tls_handshakes_total). */
typedef struct kp_tls_counters {
    uint64_t handshakes_ok;
    uint64_t handshakes_failed; /* sent handshake bytes, then closed or failed before the end */
} kp_tls_counters;

/* What every TLS conn of one loop shares: scratch buffers (one conn runs at a time) and the
 * counters. The server owns it. */
typedef struct kp_tls_io {
    BIO_METHOD *bio_method; /* the custom BIO (conn_tls.c), made once per loop */
    char *plain;      /* decrypted bytes of one inner read */
    size_t plain_cap; /* the inner read size plus one record: one read is one delivery */
    char *out;        /* ciphertext of one operation, flushed to the inner conn when full */
    size_t out_len, out_cap;
    /* The operation in progress: the inner read being handled (lent) and the first error of
     * an inner write during it. */
    const char *in;
    size_t in_len;
    int write_rc;
    kp_tls_counters counters;
} kp_tls_io;

/* Buffers for inner reads of at most `read_size` bytes. Returns 0 or KP_ENOMEM. */
int kp_tls_io_init(kp_tls_io *io, size_t read_size);
void kp_tls_io_free(kp_tls_io *io);

typedef struct kp_conn_tls {
    kp_conn base; /* first: a kp_conn * is a kp_conn_tls * */
    kp_conn *inner;
    SSL_CTX *ctx;  /* a reference, held until the SSL exists (it holds its own then) */
    SSL *ssl;      /* NULL until the first read_start */
    kp_tls_io *io; /* borrowed from the server */
    uint32_t max_queued; /* the slow-reader bound, on ciphertext queued in the inner conn */
    bool reading;        /* the owner wants on_read */
    bool got_bytes;      /* the peer sent something: a handshake that ends now failed */
    bool handshake_done;
    bool failed;         /* a fatal TLS error: no more SSL calls but SSL_free */
    bool closing;
    bool ended;          /* on_end was reported: nothing else is */
} kp_conn_tls;

/* Builds the TLS conn in `t` (memory the caller keeps until on_closed) over `inner`, which it
 * binds to itself. Takes a reference on `ctx`. Never fails: the SSL object is made at the first
 * read_start (which returns KP_ENOMEM if it cannot be), so a connection refused at accept never
 * costs one. Bind `t` to its owner before anything can close it. */
void kp_conn_tls_init(kp_conn_tls *t, kp_conn *inner, SSL_CTX *ctx, kp_tls_io *io,
                      size_t max_queued);

/* The SSL object, NULL before the first read_start (tests, and the version in logs). */
static inline SSL *kp_conn_tls_ssl(kp_conn_tls *t) { return t->ssl; }

#endif
