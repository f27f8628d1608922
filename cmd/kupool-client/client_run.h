/* What both modes share: where to connect (resolved once, before the loop runs) and how the
 * kc_client is set up from the flags. */
#ifndef KC_CLIENT_RUN_H
#define KC_CLIENT_RUN_H

#include <stdio.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "client_addr.h"
#include "clock.h"
#include "client_options.h"
#include "client_session.h"

typedef struct kc_target {
    struct sockaddr_storage server;      /* -addr, resolved */
    char host_header[KC_HOST_MAX + 16];  /* ws:// only: the Host header */
    /* -addr as logged: scheme://host[:port][/path] */
    char url[sizeof("wss://") + KC_HOST_MAX + 16 + KC_PATH_MAX];
    SSL_CTX *tls_ctx; /* tls:// and wss://, else NULL; kc_target_free frees it */
} kc_target;

/* Resolves -addr and checks that the flags fit together (no wss://, -src only toward an IPv4
 * server). Prints one line to `err` and returns KP_EINVAL when they do not. */
int kc_target_init(kc_target *t, const kc_options *o, FILE *err);

/* Fills the transport part of `c` (loop, server, WebSocket, -src); the mode sets the rest
 * (events, in-flight bound, timeouts, backoff) and calls kc_client_init. */
/* Frees what kc_target_init made. */
void kc_target_free(kc_target *t);

void kc_client_setup(kc_client *c, uv_loop_t *loop, const kc_options *o, const kc_target *t);

/* Monotonic milliseconds, with a fraction (not the loop's cached clock). */
static inline double kc_now_ms(void)
{
    return (double)kp_clock_mono_ns() / 1e6;
}

#endif
