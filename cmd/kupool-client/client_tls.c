/* kupool-client's TLS (client_tls.h). The client is a test and load tool, not a server: plain
 * memory BIOs suffice here (the server's conn_tls.c avoids them to keep idle sessions small). */
#include "client_tls.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

struct kc_tls {
    SSL *ssl;
    BIO *in;  /* what the socket brought, for OpenSSL to read */
    BIO *out; /* what OpenSSL wrote, for the socket */
    const kc_tls_events *ev;
    void *user;
    bool ready, stopped;
};

SSL_CTX *kc_tls_ctx_new(const char *ca_file, bool insecure, const char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        *why = "out of memory";
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        unsigned long e = ERR_peek_last_error();
        *why = e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "cannot load";
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

kc_tls *kc_tls_new(SSL_CTX *ctx, const char *host, const kc_tls_events *events, void *user)
{
    kc_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* An empty memory BIO is "try again", not end of file. */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_connect_state(t->ssl);
    /* SNI only for a name: an address literal must not be sent as one (RFC 6066). */
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    if (ip)
        ASN1_OCTET_STRING_free(ip);
    else
        SSL_set_tlsext_host_name(t->ssl, host);
    SSL_set1_host(t->ssl, host); /* a name or an IP literal, checked against the certificate */
    t->ev = events;
    t->user = user;
    return t;
}

/* What OpenSSL wrote goes to the socket. */
static void drain_out(kc_tls *t)
{
    char buf[16 * 1024];
    int n;
    while (!t->stopped && (n = BIO_read(t->out, buf, sizeof(buf))) > 0)
        t->ev->out(t->user, buf, (size_t)n);
}

static void failed(kc_tls *t, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : what;
    ERR_clear_error();
    drain_out(t); /* the alert */
    if (!t->stopped)
        t->ev->fail(t->user, why);
    t->stopped = true;
}

static void handshake(kc_tls *t)
{
    int r = SSL_do_handshake(t->ssl);
    drain_out(t);
    if (r == 1) {
        t->ready = true;
        if (!t->stopped)
            t->ev->ready(t->user);
        return;
    }
    int err = SSL_get_error(t->ssl, r);
    if (err != SSL_ERROR_WANT_READ)
        failed(t, "tls handshake failed");
}

void kc_tls_start(kc_tls *t)
{
    ERR_clear_error();
    handshake(t);
}

void kc_tls_feed(kc_tls *t, const char *data, size_t len)
{
    if (t->stopped)
        return;
    ERR_clear_error();
    BIO_write(t->in, data, (int)len);
    if (!t->ready) {
        handshake(t);
        if (!t->ready || t->stopped)
            return;
    }
    char buf[16 * 1024];
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(t->ssl, buf, sizeof(buf), &got) == 1) {
            t->ev->plain(t->user, buf, got);
            if (t->stopped)
                return;
            continue;
        }
        int err = SSL_get_error(t->ssl, 0);
        drain_out(t); /* a KeyUpdate answer, an alert */
        if (err == SSL_ERROR_WANT_READ)
            return;
        if (err == SSL_ERROR_ZERO_RETURN) {
            if (!t->stopped)
                t->ev->fail(t->user, "server closed the TLS stream");
            t->stopped = true;
            return;
        }
        failed(t, "tls read failed");
        return;
    }
}

void kc_tls_write(kc_tls *t, const char *data, size_t len)
{
    if (t->stopped || !t->ready)
        return;
    ERR_clear_error();
    size_t w;
    if (SSL_write_ex(t->ssl, data, len, &w) != 1) {
        failed(t, "tls write failed");
        return;
    }
    drain_out(t);
}

void kc_tls_stop(kc_tls *t)
{
    if (t)
        t->stopped = true;
}

void kc_tls_free(kc_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* and both BIOs */
    free(t);
}
