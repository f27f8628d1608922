/* The admin endpoint's request parsing, without sockets: bytes in (split anywhere), and once the
 * head is complete a verdict out — serve a route (with the decoded /stats username) or answer an
 * error status. admin.c feeds it from the loop; tests/fuzz/fuzz_admin.c feeds it arbitrary bytes.
 *
 * Only the request head is parsed: whatever follows it (a body, a pipelined request) is never
 * looked at, since the endpoint answers one request per connection and closes. */
#ifndef KP_ADMIN_HTTP_H
#define KP_ADMIN_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#include "kupool/event.h"

/* Request line + headers; more is answered 431. */
#define KP_ADMIN_MAX_HEAD (8u * 1024u)

typedef enum kp_admin_route {
    KP_ADMIN_ROUTE_NONE = 0,
    KP_ADMIN_ROUTE_METRICS,
    KP_ADMIN_ROUTE_HEALTHZ,
    KP_ADMIN_ROUTE_STATS,
    KP_ADMIN_ROUTE_BANS,
} kp_admin_route;

typedef struct kp_admin_verdict {
    unsigned status;      /* 0: serve `route`; otherwise the HTTP error status to answer */
    kp_admin_route route; /* the route named by the target, NONE when none matched */
    const char *message;  /* with an error status: a static one-line reason for the body */
    bool json_error;      /* the error belongs to /stats, whose errors are JSON */
    bool allow_get;       /* 405: the answer carries `Allow: GET` */
    char username[KP_USERNAME_MAX + 1]; /* route STATS: decoded, valid UTF-8, no controls */
} kp_admin_verdict;

typedef enum kp_admin_feed {
    KP_ADMIN_FEED_MORE, /* every byte consumed, the head is not complete yet */
    KP_ADMIN_FEED_DONE, /* the verdict is filled; feed no more */
} kp_admin_feed;

/* One request being parsed. Owns `url`; free with kp_admin_request_free(). */
typedef struct kp_admin_request {
    http_parser parser;
    char *url; /* the request target, NUL-terminated; at most KP_ADMIN_MAX_HEAD bytes */
    size_t url_len, url_cap;
    size_t head_bytes;  /* bytes given to the parser */
    bool have_method;   /* the parser got past the method (for logs) */
    bool head_complete; /* on_headers_complete ran; the verdict is in `verdict` */
    bool oom;
    kp_admin_verdict verdict;
} kp_admin_request;

void kp_admin_request_init(kp_admin_request *r);
void kp_admin_request_free(kp_admin_request *r);

/* Feeds the next bytes of the connection. Returns MORE, or DONE with `r->verdict` filled (a
 * malformed or over-long head is DONE with an error status). Once DONE, must not be called
 * again. */
kp_admin_feed kp_admin_request_feed(kp_admin_request *r, const char *data, size_t len);

/* The method's name for logs ("-" before the parser read one). */
const char *kp_admin_request_method(const kp_admin_request *r);

/* "/metrics", "/healthz", "/stats", "/bans" or "other", for logs. */
const char *kp_admin_route_name(kp_admin_route route);

/* Finds `username` in a query string and form-decodes it ('+' is a space, %XX a byte). Returns
 * true and fills out when it is present, 1..255 bytes, strict UTF-8 and free of control
 * characters (the rule SPEC §2 sets for authorize, so it can name any user that exists). */
bool kp_admin_query_username(const char *query, size_t len, char out[KP_USERNAME_MAX + 1]);


#endif
