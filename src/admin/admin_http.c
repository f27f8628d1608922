/* Admin request parsing: http-parser for the head, then routing and /stats query decoding. No
 * sockets and no loop, so the fuzz harness and unit tests drive exactly what the server runs. */
#include "admin_http.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* ---- verdicts ---- */

static void verdict_error(kp_admin_verdict *v, unsigned status, const char *message)
{
    v->status = status;
    v->message = message;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes one application/x-www-form-urlencoded component into out[cap] (NUL-terminated).
 * Returns the decoded length, or -1 when an escape is malformed or it does not fit. */
static long form_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (len - i < 3)
                return -1;
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (w + 1 >= cap)
            return -1;
        out[w++] = ch;
    }
    out[w] = '\0';
    return (long)w;
}

bool kp_admin_query_username(const char *query, size_t len, char out[KP_USERNAME_MAX + 1])
{
    const char *p = query, *end = query + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        char key[16];
        if (form_decode(p, (size_t)(kend - p), key, sizeof(key)) == 8 &&
            memcmp(key, "username", 8) == 0) {
            /* The first `username` decides, so a later one cannot smuggle a second value. */
            const char *v = eq ? eq + 1 : stop;
            long n = form_decode(v, (size_t)(stop - v), out, KP_USERNAME_MAX + 1);
            return n > 0 && kp_utf8_text_ok((const unsigned char *)out, (size_t)n);
        }
        p = stop + 1;
    }
    return false;
}

/* ---- routing ---- */

const char *kp_admin_route_name(kp_admin_route route)
{
    switch (route) {
    case KP_ADMIN_ROUTE_METRICS:
        return "/metrics";
    case KP_ADMIN_ROUTE_HEALTHZ:
        return "/healthz";
    case KP_ADMIN_ROUTE_STATS:
        return "/stats";
    case KP_ADMIN_ROUTE_BANS:
        return "/bans";
    case KP_ADMIN_ROUTE_NONE:
        break;
    }
    return "other";
}

static kp_admin_route route_of(const char *path, size_t len)
{
    static const struct {
        const char *path;
        kp_admin_route route;
    } routes[] = {
        {"/metrics", KP_ADMIN_ROUTE_METRICS},
        {"/healthz", KP_ADMIN_ROUTE_HEALTHZ},
        {"/stats", KP_ADMIN_ROUTE_STATS},
        {"/bans", KP_ADMIN_ROUTE_BANS},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strlen(routes[i].path) == len && memcmp(routes[i].path, path, len) == 0)
            return routes[i].route;
    return KP_ADMIN_ROUTE_NONE;
}

/* The verdict on a complete head. */
static void judge(kp_admin_request *r)
{
    kp_admin_verdict *v = &r->verdict;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!r->url || http_parser_parse_url(r->url, r->url_len, 0, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH))) {
        verdict_error(v, 400, "bad request target");
        return;
    }
    v->route = route_of(r->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (v->route == KP_ADMIN_ROUTE_NONE) {
        verdict_error(v, 404, "not found");
        return;
    }
    if (r->parser.method != HTTP_GET) {
        verdict_error(v, 405, "method not allowed");
        v->allow_get = true;
        return;
    }
    bool has_body = (r->parser.flags & F_CHUNKED) ||
                    (r->parser.content_length > 0 && r->parser.content_length != ULLONG_MAX);
    if (has_body) {
        verdict_error(v, 400, "a request body is not accepted");
        return;
    }
    if (v->route != KP_ADMIN_ROUTE_STATS)
        return;
    const char *q = "";
    size_t qlen = 0;
    if (u.field_set & (1u << UF_QUERY)) {
        q = r->url + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }
    if (!kp_admin_query_username(q, qlen, v->username)) {
        v->username[0] = '\0';
        verdict_error(v, 400,
                      "username: 1..255 bytes of UTF-8 without control characters required");
        v->json_error = true;
    }
}

/* ---- http-parser callbacks ---- */

static int on_url(http_parser *p, const char *at, size_t len)
{
    kp_admin_request *r = p->data;
    r->have_method = true; /* the method precedes the target */
    if (r->url_len + len + 1 > r->url_cap) {
        size_t cap = r->url_cap ? r->url_cap : 128;
        while (cap < r->url_len + len + 1)
            cap *= 2;
        char *grown = realloc(r->url, cap);
        if (!grown) {
            r->oom = true;
            return 1;
        }
        r->url = grown;
        r->url_cap = cap;
    }
    memcpy(r->url + r->url_len, at, len);
    r->url_len += len;
    r->url[r->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    kp_admin_request *r = p->data;
    r->head_complete = true;
    judge(r);
    /* Nothing after the head is parsed: one response, then the connection closes. */
    http_parser_pause(p, 1);
    return 0;
}

/* Read-only after initialisation: the callbacks keep their state in the request. */
static const http_parser_settings SETTINGS = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
};

void kp_admin_request_init(kp_admin_request *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

void kp_admin_request_free(kp_admin_request *r)
{
    free(r->url);
    r->url = NULL;
    r->url_len = r->url_cap = 0;
}

kp_admin_feed kp_admin_request_feed(kp_admin_request *r, const char *data, size_t len)
{
    if (len == 0)
        return KP_ADMIN_FEED_MORE; /* http-parser reads a zero length as end of input */
    size_t room = KP_ADMIN_MAX_HEAD - r->head_bytes;
    size_t n = len < room ? len : room;
    r->head_bytes += http_parser_execute(&r->parser, &SETTINGS, data, n);
    if (r->head_complete)
        return KP_ADMIN_FEED_DONE;
    if (r->oom) {
        verdict_error(&r->verdict, 500, "out of memory");
        return KP_ADMIN_FEED_DONE;
    }
    if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK) {
        verdict_error(&r->verdict, 400, "bad request");
        return KP_ADMIN_FEED_DONE;
    }
    if (r->head_bytes >= KP_ADMIN_MAX_HEAD) {
        verdict_error(&r->verdict, 431, "request line and headers exceed 8 KiB");
        return KP_ADMIN_FEED_DONE;
    }
    return KP_ADMIN_FEED_MORE;
}

const char *kp_admin_request_method(const kp_admin_request *r)
{
    return r->have_method ? http_method_str((enum http_method)r->parser.method) : "-";
}
