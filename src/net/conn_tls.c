/* TLS under the connection seam (conn_tls.h): OpenSSL over a custom BIO that reads the lent
 * bytes of the inner read being handled and writes into the loop's ciphertext scratch. */
#include "conn_tls.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "tls.server"

/* The largest TLS record's plaintext, and a generous per-record overhead (header, AEAD tag,
 * TLS 1.3 inner type, CBC padding) used for the queue bound's estimate. */
#define RECORD_PLAIN 16384u
#define RECORD_OVERHEAD 320u
#define OUT_SCRATCH (RECORD_PLAIN + RECORD_OVERHEAD)

static kp_conn_tls *tls_of(kp_conn *c)
{
    return (kp_conn_tls *)c;
}

/* ---- the BIO: no buffer of its own ---- */

/* What OpenSSL wrote so far in this operation goes to the inner conn (which writes now what the
 * socket takes and queues a copy of the rest). The first failure is kept for the caller. */
static void flush_out(kp_conn_tls *t)
{
    kp_tls_io *io = t->io;
    if (!io->out_len)
        return;
    size_t n = io->out_len;
    io->out_len = 0;
    if (io->write_rc != 0 || t->closing)
        return;
    io->write_rc = kp_conn_write(t->inner, io->out, n, NULL);
}

static int bio_write(BIO *b, const char *data, int len)
{
    kp_conn_tls *t = BIO_get_data(b);
    kp_tls_io *io = t->io;
    BIO_clear_retry_flags(b);
    size_t left = (size_t)len;
    while (left) {
        if (io->out_len == io->out_cap)
            flush_out(t);
        size_t n = io->out_cap - io->out_len;
        n = n < left ? n : left;
        memcpy(io->out + io->out_len, data, n);
        io->out_len += n;
        data += n;
        left -= n;
    }
    /* Always taken: a failed inner write is reported by the operation, not as a BIO retry
     * that would leave OpenSSL holding a half-written record. */
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    kp_conn_tls *t = BIO_get_data(b);
    kp_tls_io *io = t->io;
    BIO_clear_retry_flags(b);
    if (!io->in_len) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = io->in_len < (size_t)len ? io->in_len : (size_t)len;
    memcpy(buf, io->in, n);
    io->in += n;
    io->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- the loop's shared part ---- */

int kp_tls_io_init(kp_tls_io *io, size_t read_size)
{
    memset(io, 0, sizeof(*io));
    /* One inner read is at most read_size ciphertext bytes, and a record begun in an earlier
     * read adds at most one record's plaintext: all of it fits, so it is delivered at once. */
    io->plain_cap = read_size + RECORD_PLAIN;
    io->plain = malloc(io->plain_cap);
    io->out_cap = OUT_SCRATCH;
    io->out = malloc(io->out_cap);
    io->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kupool conn");
    if (!io->plain || !io->out || !io->bio_method || !BIO_meth_set_write(io->bio_method, bio_write) ||
        !BIO_meth_set_read(io->bio_method, bio_read) || !BIO_meth_set_ctrl(io->bio_method, bio_ctrl) ||
        !BIO_meth_set_create(io->bio_method, bio_create)) {
        kp_tls_io_free(io);
        return KP_ENOMEM;
    }
    return 0;
}

void kp_tls_io_free(kp_tls_io *io)
{
    free(io->plain);
    free(io->out);
    BIO_meth_free(io->bio_method);
    io->plain = io->out = NULL;
    io->bio_method = NULL;
}

/* ---- OpenSSL's verdicts ---- */

/* The reason of OpenSSL's last error, for a log line; clears the queue. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return why ? why : "tls error";
}

/* The stream is over for `why`: one on_end, then only close. */
static void end(kp_conn_tls *t, const char *why)
{
    if (t->ended || t->closing)
        return;
    t->ended = true;
    t->base.events->on_end(t->base.owner, why);
}

/* A fatal TLS error: the alert OpenSSL wrote goes out, the stream ends. No SSL_shutdown may
 * follow (OpenSSL forbids it after SSL_ERROR_SSL or SSL_ERROR_SYSCALL). */
static void fail(kp_conn_tls *t, const char *why)
{
    t->failed = true;
    flush_out(t);
    KP_DEBUG(MODULE, t->handshake_done ? "tls error" : "handshake failed", KP_QSTR("error", why));
    end(t, why);
}

/* ---- reading ---- */

/* Runs the handshake on what arrived. Returns true when application data may follow. */
static bool handshake(kp_conn_tls *t)
{
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->handshake_done = true;
        t->io->counters.handshakes_ok++;
        return true;
    }
    int err = SSL_get_error(t->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        flush_out(t);
        return false;
    }
    fail(t, err == SSL_ERROR_SSL ? ssl_reason() : "handshake aborted");
    return false;
}

static void deliver(kp_conn_tls *t, size_t n)
{
    if (n && t->reading && !t->closing && !t->ended)
        t->base.events->on_read(t->base.owner, t->io->plain, n);
}

static void inner_on_read(void *owner, const char *data, size_t len)
{
    kp_conn_tls *t = owner;
    kp_tls_io *io = t->io;
    if (t->closing || t->ended || t->failed)
        return;
    t->got_bytes = true;
    ERR_clear_error();
    io->in = data;
    io->in_len = len;
    io->out_len = 0;
    io->write_rc = 0;
    if (!t->handshake_done && !handshake(t)) {
        io->in_len = 0;
        return;
    }
    size_t n = 0;
    const char *peer_end = NULL;
    for (;;) {
        size_t got = 0;
        if (n == io->plain_cap) { /* cannot happen (kp_tls_io_init's sizing), stays correct */
            deliver(t, n);
            n = 0;
            if (!t->reading || t->closing || t->ended)
                break;
        }
        if (SSL_read_ex(t->ssl, io->plain + n, io->plain_cap - n, &got) == 1) {
            n += got;
            continue;
        }
        int err = SSL_get_error(t->ssl, 0);
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_ZERO_RETURN) {
            peer_end = "peer closed (close_notify)";
            break;
        }
        io->in_len = 0;
        /* What was decrypted before the bad record is still the peer's. */
        flush_out(t);
        deliver(t, n);
        fail(t, err == SSL_ERROR_SSL ? ssl_reason() : "tls read failed");
        return;
    }
    io->in_len = 0;
    /* Post-handshake messages (a TLS 1.3 KeyUpdate, our session tickets) may have written. */
    flush_out(t);
    int wrc = io->write_rc;
    deliver(t, n);
    if (wrc != 0)
        end(t, wrc == KP_EAGAIN ? "slow reader" : "write failed");
    else if (peer_end)
        end(t, peer_end);
}

static void inner_on_end(void *owner, const char *why)
{
    end(owner, why);
}

static void inner_on_closed(void *owner)
{
    kp_conn_tls *t = owner;
    if (t->got_bytes && !t->handshake_done)
        t->io->counters.handshakes_failed++;
    SSL_free(t->ssl); /* frees the BIO too */
    SSL_CTX_free(t->ctx);
    t->ssl = NULL;
    t->ctx = NULL;
    t->base.events->on_closed(t->base.owner);
}

static const kp_conn_events inner_events = {
    .on_read = inner_on_read,
    .on_end = inner_on_end,
    .on_closed = inner_on_closed,
};

/* ---- the seam ---- */

/* The SSL object and its BIO, at the first read_start; the SSL takes over the context
 * reference (it holds its own). */
static int make_ssl(kp_conn_tls *t)
{
    SSL *ssl = SSL_new(t->ctx);
    BIO *bio = BIO_new(t->io->bio_method);
    if (!ssl || !bio) {
        SSL_free(ssl);
        BIO_free(bio);
        return KP_ENOMEM;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_accept_state(ssl);
    t->ssl = ssl;
    SSL_CTX_free(t->ctx);
    t->ctx = NULL;
    return 0;
}

static int tls_read_start(kp_conn *c)
{
    kp_conn_tls *t = tls_of(c);
    if (!t->ssl) {
        int rc = make_ssl(t);
        if (rc != 0)
            return rc;
    }
    t->reading = true;
    return kp_conn_read_start(t->inner);
}

static void tls_read_stop(kp_conn *c)
{
    kp_conn_tls *t = tls_of(c);
    t->reading = false;
    kp_conn_read_stop(t->inner);
}

static int tls_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    (void)line; /* ciphertext is per session: nothing to share */
    kp_conn_tls *t = tls_of(c);
    kp_tls_io *io = t->io;
    if (t->closing || t->ended || len == 0)
        return 0;
    if (!t->handshake_done || t->failed)
        return KP_EIO;
    size_t records = (len + RECORD_PLAIN - 1) / RECORD_PLAIN;
    if (kp_conn_queued(t->inner) + len + records * RECORD_OVERHEAD > t->max_queued)
        return KP_EAGAIN;
    ERR_clear_error();
    io->out_len = 0;
    io->write_rc = 0;
    size_t written = 0;
    int ok = SSL_write_ex(t->ssl, data, len, &written);
    flush_out(t);
    if (io->write_rc != 0)
        return io->write_rc;
    if (ok != 1) {
        t->failed = true;
        KP_DEBUG(MODULE, "tls write failed", KP_QSTR("error", ssl_reason()));
        return KP_EIO;
    }
    return 0;
}

/* close_notify first, then the inner conn's FIN once its queue is written. */
static void send_close_notify(kp_conn_tls *t)
{
    if (!t->ssl || !t->handshake_done || t->failed)
        return;
    ERR_clear_error();
    t->io->out_len = 0;
    t->io->write_rc = 0;
    SSL_shutdown(t->ssl);
    flush_out(t);
    ERR_clear_error();
}

static int tls_shutdown(kp_conn *c)
{
    kp_conn_tls *t = tls_of(c);
    t->reading = false;
    send_close_notify(t);
    return kp_conn_shutdown(t->inner);
}

static void tls_close(kp_conn *c, bool reset)
{
    kp_conn_tls *t = tls_of(c);
    if (t->closing)
        return;
    /* A clean close still tells the peer (if the socket takes the alert now); a reset is for
     * a peer that stopped reading, which would not read it. */
    if (!reset)
        send_close_notify(t);
    t->closing = true;
    kp_conn_close(t->inner, reset);
}

static size_t tls_queued(const kp_conn *c)
{
    return kp_conn_queued(((const kp_conn_tls *)c)->inner);
}

static int tls_peer_address(const kp_conn *c, struct sockaddr_storage *out)
{
    return kp_conn_peer_address(((const kp_conn_tls *)c)->inner, out);
}

static const kp_conn_ops tls_ops = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .queued = tls_queued,
    .peer_address = tls_peer_address,
};

void kp_conn_tls_init(kp_conn_tls *t, kp_conn *inner, SSL_CTX *ctx, kp_tls_io *io,
                      size_t max_queued)
{
    memset(t, 0, sizeof(*t));
    t->base.ops = &tls_ops;
    t->inner = inner;
    SSL_CTX_up_ref(ctx);
    t->ctx = ctx;
    t->io = io;
    t->max_queued = (uint32_t)max_queued;
    kp_conn_bind(inner, &inner_events, t);
}
