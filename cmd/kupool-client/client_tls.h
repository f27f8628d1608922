/* kupool-client's TLS (tls:// and wss://): OpenSSL on memory BIOs under one connection. The
 * session hands it the socket's bytes and its plaintext to send; it hands back ciphertext to
 * write and plaintext to parse, and says when the handshake is done (then the session sends the
 * WebSocket upgrade or authorize, as it would right after connect). */
#ifndef KC_CLIENT_TLS_H
#define KC_CLIENT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* A client context: verifies the server against `ca_file` (PEM; NULL or "" = the system's
 * store), or not at all with `insecure` (self-signed test certificates). Returns NULL with *why
 * set when the CA file cannot be loaded. */
SSL_CTX *kc_tls_ctx_new(const char *ca_file, bool insecure, const char **why);

typedef struct kc_tls_events {
    void (*out)(void *user, const char *data, size_t len);   /* ciphertext for the socket */
    void (*plain)(void *user, const char *data, size_t len); /* decrypted bytes */
    void (*ready)(void *user);                               /* the handshake is done */
    void (*fail)(void *user, const char *why);               /* the stream is unusable */
} kc_tls_events;

typedef struct kc_tls kc_tls;

/* A connection to `host` (SNI, and the name verified unless insecure). NULL when out of
 * memory. */
kc_tls *kc_tls_new(SSL_CTX *ctx, const char *host, const kc_tls_events *events, void *user);

/* Sends the ClientHello. */
void kc_tls_start(kc_tls *t);

/* Bytes read from the socket. Callbacks run inside; after kc_tls_stop none does. */
void kc_tls_feed(kc_tls *t, const char *data, size_t len);

/* Encrypts and hands the records to events->out. */
void kc_tls_write(kc_tls *t, const char *data, size_t len);

/* No callback from here on (the connection is closing). */
void kc_tls_stop(kc_tls *t);

void kc_tls_free(kc_tls *t);

#endif
