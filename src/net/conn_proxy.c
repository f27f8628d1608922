/* See conn_proxy.h. */
#include "conn_proxy.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "proxy_header.h"

typedef struct kp_conn_proxy {
    kp_conn base; /* first: a kp_conn * is a kp_conn_proxy * */
    kp_conn *inner;
    kp_proxy_parser *parser; /* until the header is done */
    kp_proxy_header_cb on_header;
    void *ctx;
    void *arg; /* the callee's name for this connection (conn_proxy.h) */
    bool has_client;         /* the header carried an address: peer_address answers with it */
    bool closing;
    struct sockaddr_storage client;
} kp_conn_proxy;

static kp_conn_proxy *proxy_of(kp_conn *c)
{
    return (kp_conn_proxy *)c;
}

/* ---- the inner conn's events ---- */

static void header_done(kp_conn_proxy *p, const kp_proxy_result *res, const char *rest,
                        size_t rest_len)
{
    free(p->parser);
    p->parser = NULL;
    struct sockaddr_storage own;
    const struct sockaddr_storage *client = &res->src;
    if (res->has_src) {
        p->client = res->src;
        p->has_client = true;
    } else {
        /* LOCAL, UNKNOWN, another family: the proxy speaks for itself. */
        if (kp_conn_peer_address(p->inner, &own) != 0)
            memset(&own, 0, sizeof(own));
        client = &own;
    }
    if (!p->on_header(p->ctx, p->arg, client, NULL) || p->closing)
        return;
    if (rest_len)
        p->base.events->on_read(p->base.owner, rest, rest_len);
}

static void inner_read(void *owner, const char *data, size_t len)
{
    kp_conn_proxy *p = owner;
    if (p->closing)
        return;
    if (!p->parser) {
        p->base.events->on_read(p->base.owner, data, len);
        return;
    }
    size_t used = 0;
    kp_proxy_result res;
    switch (kp_proxy_feed(p->parser, data, len, &used, &res)) {
    case KP_PROXY_MORE:
        return;
    case KP_PROXY_DONE:
        header_done(p, &res, data + used, len - used);
        return;
    case KP_PROXY_ERROR:
        p->on_header(p->ctx, p->arg, NULL, p->parser->why);
        return;
    }
}

static void inner_end(void *owner, const char *why)
{
    kp_conn_proxy *p = owner;
    p->base.events->on_end(p->base.owner, why);
}

static void inner_closed(void *owner)
{
    kp_conn_proxy *p = owner;
    const kp_conn_events *events = p->base.events;
    void *up = p->base.owner;
    free(p->parser);
    free(p);
    events->on_closed(up);
}

static const kp_conn_events inner_events = {
    .on_read = inner_read,
    .on_end = inner_end,
    .on_closed = inner_closed,
};

/* ---- the seam, upward ---- */

static int proxy_read_start(kp_conn *c)
{
    return kp_conn_read_start(proxy_of(c)->inner);
}

static void proxy_read_stop(kp_conn *c)
{
    kp_conn_read_stop(proxy_of(c)->inner);
}

static int proxy_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    return kp_conn_write(proxy_of(c)->inner, data, len, line);
}

static int proxy_shutdown(kp_conn *c)
{
    return kp_conn_shutdown(proxy_of(c)->inner);
}

static void proxy_close(kp_conn *c, bool reset)
{
    kp_conn_proxy *p = proxy_of(c);
    if (p->closing)
        return;
    p->closing = true;
    kp_conn_close(p->inner, reset); /* its on_closed frees us and tells the owner */
}

static size_t proxy_queued(const kp_conn *c)
{
    return kp_conn_queued(((const kp_conn_proxy *)c)->inner);
}

static int proxy_peer_address(const kp_conn *c, struct sockaddr_storage *out)
{
    const kp_conn_proxy *p = (const kp_conn_proxy *)c;
    if (!p->has_client)
        return kp_conn_peer_address(p->inner, out);
    *out = p->client;
    return 0;
}

static const kp_conn_ops proxy_ops = {
    .read_start = proxy_read_start,
    .read_stop = proxy_read_stop,
    .write = proxy_write,
    .shutdown = proxy_shutdown,
    .close = proxy_close,
    .queued = proxy_queued,
    .peer_address = proxy_peer_address,
};

int kp_conn_proxy_new(kp_conn *inner, kp_proxy_header_cb on_header, void *ctx, void *arg,
                      kp_conn **out)
{
    kp_conn_proxy *p = calloc(1, sizeof(*p));
    kp_proxy_parser *parser = malloc(sizeof(*parser));
    if (!p || !parser) {
        free(p);
        free(parser);
        return KP_ENOMEM;
    }
    kp_proxy_parser_init(parser);
    p->base.ops = &proxy_ops;
    p->inner = inner;
    p->parser = parser;
    p->on_header = on_header;
    p->ctx = ctx;
    p->arg = arg;
    kp_conn_bind(inner, &inner_events, p);
    *out = &p->base;
    return 0;
}
