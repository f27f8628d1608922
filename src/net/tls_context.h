/* The server's TLS context (SPEC §9): certificate chain and key loaded from PEM files, with the
 * settings every TLS connection shares: TLS 1.2 and 1.3 only, renegotiation refused, OpenSSL's
 * record buffers released while idle, no server-side session cache (resumption works through
 * stateless tickets, so no memory grows with the number of clients), no client certificate
 * asked for.
 *
 * A context is an OpenSSL SSL_CTX, which is reference-counted: the server holds one reference
 * to the current context, each connection's SSL object holds its own. A reload (SIGHUP) swaps
 * the server's reference; open connections keep the context they began with until they close.
 * Loop thread only. */
#ifndef KP_TLS_CONTEXT_H
#define KP_TLS_CONTEXT_H

#include <openssl/ssl.h>

/* Loads `cert_file` (PEM, the server certificate first, then its chain) and `key_file` (PEM)
 * into a new context in *out. Returns 0, KP_EINVAL (a file missing, unreadable or not PEM, or a
 * key that does not match the certificate: one log line names the flag, -tls_cert or
 * -tls_key), or KP_ENOMEM. */
int kp_tls_context_new(const char *cert_file, const char *key_file, SSL_CTX **out);

/* Loads the files again into a new context; on success drops the reference in *ctx and puts the
 * new one there, otherwise keeps *ctx and logs an error. Returns what kp_tls_context_new did. */
int kp_tls_context_reload(const char *cert_file, const char *key_file, SSL_CTX **ctx);

#endif
