#include "client_run.h"

#include <string.h>

#include "client_tls.h"
#include "kupool/error.h"

int kc_target_init(kc_target *t, const kc_options *o, FILE *err)
{
    memset(t, 0, sizeof(*t));
    const char *why = NULL;
    if (kc_addr_resolve(&o->addr, &t->server, &why) != 0) {
        fprintf(err, "kupool-client: cannot resolve -addr host \"%s\": %s\n", o->addr.host, why);
        return KP_EINVAL;
    }
    if (o->has_src && t->server.ss_family != AF_INET) {
        fprintf(err, "kupool-client: flag -src needs an IPv4 server address\n");
        return KP_EINVAL;
    }
    if (kc_addr_host_header(&o->addr, t->host_header, sizeof(t->host_header)) != 0) {
        fprintf(err, "kupool-client: invalid value for flag -addr: host too long\n");
        return KP_EINVAL;
    }
    /* Fits by the size of url: the scheme, the Host header and the path, each bounded. */
    snprintf(t->url, sizeof(t->url), "%s://%s%s", kc_scheme_name(o->addr.scheme), t->host_header,
             o->addr.path);
    if (o->addr.scheme == KC_SCHEME_TLS || o->addr.scheme == KC_SCHEME_WSS) {
        t->tls_ctx = kc_tls_ctx_new(o->tls_ca, o->tls_insecure, &why);
        if (!t->tls_ctx) {
            fprintf(err, "kupool-client: invalid value \"%s\" for flag -tls_ca: %s\n", o->tls_ca, why);
            return KP_EINVAL;
        }
    }
    return 0;
}

void kc_target_free(kc_target *t)
{
    SSL_CTX_free(t->tls_ctx);
    t->tls_ctx = NULL;
}

void kc_client_setup(kc_client *c, uv_loop_t *loop, const kc_options *o, const kc_target *t)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    memcpy(&c->server, &t->server, sizeof(c->server));
    c->websocket = o->addr.scheme == KC_SCHEME_WS || o->addr.scheme == KC_SCHEME_WSS;
    c->tls_ctx = t->tls_ctx;
    c->tls_host = o->addr.host;
    c->ws_host = t->host_header;
    c->ws_path = o->addr.path;
    c->src = o->has_src ? &o->src : NULL;
}
