/* libFuzzer harness for the TLS conn (src/net/conn_tls.c): arbitrary bytes from a "client" into a
 * server-side kp_conn_tls over a fake inner conn, in slices the input chooses, with the owner
 * writing back whenever it is handed plaintext. What must hold: no crash, no leak (ASan), every
 * byte the conn writes goes to the inner conn, and a conn that ended reports nothing more.
 *
 * The server certificate is made once in memory (a self-signed P-256 certificate written to a
 * temporary PEM file), so the context is built by the same kp_tls_context_new the server uses.
 * Seeds: tests/fuzz/corpus/tls/ (a real ClientHello). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conn_tls.h"
#include "kupool/error.h"
#include "tls_context.h"

typedef struct fake {
    kp_conn base;
    size_t written;
    bool closed;
} fake;

static int fake_read_start(kp_conn *c) { (void)c; return 0; }
static void fake_read_stop(kp_conn *c) { (void)c; }
static int fake_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    (void)data, (void)line;
    ((fake *)c)->written += len;
    return 0;
}
static int fake_shutdown(kp_conn *c) { (void)c; return 0; }
static void fake_close(kp_conn *c, bool reset) { (void)reset; ((fake *)c)->closed = true; }
static size_t fake_queued(const kp_conn *c) { (void)c; return 0; }
static int fake_peer(const kp_conn *c, struct sockaddr_storage *out)
{
    (void)c;
    memset(out, 0, sizeof(*out));
    return 0;
}

static const kp_conn_ops fake_ops = {
    .read_start = fake_read_start, .read_stop = fake_read_stop, .write = fake_write,
    .shutdown = fake_shutdown,     .close = fake_close,         .queued = fake_queued,
    .peer_address = fake_peer,
};

typedef struct owner {
    kp_conn_tls *tls;
    bool ended, closed;
} owner;

static void own_read(void *o, const char *data, size_t len)
{
    owner *ow = o;
    if (ow->ended)
        abort(); /* nothing after on_end */
    kp_conn_write(&ow->tls->base, data, len, NULL); /* echo: writes inside a read */
}
static void own_end(void *o, const char *why)
{
    (void)why;
    ((owner *)o)->ended = true;
}
static void own_closed(void *o) { ((owner *)o)->closed = true; }

static const kp_conn_events owner_events = {
    .on_read = own_read, .on_end = own_end, .on_closed = own_closed};

static SSL_CTX *ctx;
static kp_tls_io io;

static void make_context(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    char cert_path[] = "/tmp/kp_fuzz_tls_certXXXXXX", key_path[] = "/tmp/kp_fuzz_tls_keyXXXXXX";
    FILE *cf = fdopen(mkstemp(cert_path), "w");
    FILE *kf = fdopen(mkstemp(key_path), "w");
    if (!key || !cert || !cf || !kf || !PEM_write_X509(cf, cert) ||
        !PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL))
        abort();
    fclose(cf);
    fclose(kf);
    if (kp_tls_context_new(cert_path, key_path, &ctx) != 0)
        abort();
    unlink(cert_path);
    unlink(key_path);
    X509_free(cert);
    EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    make_context();
    if (kp_tls_io_init(&io, 64 * 1024) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fake inner = {.base.ops = &fake_ops};
    kp_conn_tls tls;
    owner ow = {.tls = &tls};
    kp_conn_tls_init(&tls, &inner.base, ctx, &io, 256 * 1024);
    kp_conn_bind(&tls.base, &owner_events, &ow);
    if (kp_conn_read_start(&tls.base) != 0)
        abort();
    /* The first byte picks the slice size (1..256): every split of the records gets tried. */
    size_t slice = size ? (size_t)data[0] + 1 : 1;
    for (size_t off = size ? 1 : 0; off < size && !ow.ended && !inner.closed; off += slice) {
        size_t n = size - off < slice ? size - off : slice;
        inner.base.events->on_read(inner.base.owner, (const char *)data + off, n);
    }
    kp_conn_close(&tls.base, (size & 1) != 0);
    if (!inner.closed)
        abort();
    inner.base.events->on_closed(inner.base.owner);
    if (!ow.closed)
        abort();
    return 0;
}
