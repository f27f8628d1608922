/* The server's TLS context: loading, settings and reload (tls_context.h). */
#include "tls_context.h"

#include <openssl/err.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "tls.server"

/* One log line naming the flag whose file is at fault, with OpenSSL's reason. */
static int load_failed(const char *flag, const char *file, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    KP_ERROR(MODULE, what, KP_STR("flag", flag), KP_QSTR("file", file),
             KP_QSTR("error", why ? why : "unknown"));
    return KP_EINVAL;
}

static void apply_settings(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Renegotiation is a denial-of-service lever (a client makes the server redo the costly
     * half of a handshake at will) and nothing here needs it; compression is CRIME. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle sessions give their record buffers back: most of an idle TLS session's memory. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* A server-side cache would keep a session per client (20,480 by default); tickets carry
     * the resumption state to the client instead. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* One ticket per full handshake is enough for a miner that reconnects (OpenSSL sends two). */
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}

int kp_tls_context_new(const char *cert_file, const char *key_file, SSL_CTX **out)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return KP_ENOMEM;
    apply_settings(ctx);
    int rc = 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        rc = load_failed("-tls_cert", cert_file, "cannot load the certificate chain");
    else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        rc = load_failed("-tls_key", key_file, "cannot load the private key");
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = load_failed("-tls_key", key_file, "the private key does not match the certificate");
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int kp_tls_context_reload(const char *cert_file, const char *key_file, SSL_CTX **ctx)
{
    SSL_CTX *fresh = NULL;
    int rc = kp_tls_context_new(cert_file, key_file, &fresh);
    if (rc != 0) {
        KP_ERROR(MODULE, "reload failed; new connections keep the previous certificate");
        return rc;
    }
    SSL_CTX_free(*ctx); /* open connections hold their own references */
    *ctx = fresh;
    KP_INFO(MODULE, "certificate reloaded", KP_QSTR("cert", cert_file));
    return 0;
}
