#include "client_addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kupool/config.h"
#include "net_addr.h"
#include "kupool/error.h"

#define SRC_RANGE_MAX 65536u

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return KP_EINVAL;
}

const char *kc_scheme_name(kc_scheme scheme)
{
    switch (scheme) {
    case KC_SCHEME_WS:
        return "ws";
    case KC_SCHEME_WSS:
        return "wss";
    case KC_SCHEME_TLS:
        return "tls";
    case KC_SCHEME_TCP:
    default:
        return "tcp";
    }
}

/* Splits "host[:port]" (the authority of a URL, or a bare address) into host and port;
 * `default_port` 0 means the port is required. */
static int parse_authority(const char *auth, size_t len, int default_port, kc_addr *out,
                           const char **why)
{
    char buf[KC_HOST_MAX + 16];
    if (len == 0)
        return fail(why, "missing host:port");
    if (len >= sizeof(buf))
        return fail(why, "host too long");
    if (memchr(auth, '@', len))
        return fail(why, "user information (user@host) is not supported");
    memcpy(buf, auth, len);
    buf[len] = '\0';

    /* Without a port after the last ':' (or after a "]"), a URL may fall back to its scheme's. */
    const char *colon = strrchr(buf, ':');
    const char *bracket = strrchr(buf, ']');
    bool has_port = colon && (!bracket || colon > bracket);
    if (buf[0] != '[' && colon && strchr(buf, ':') != colon)
        return fail(why, "an IPv6 address needs brackets: [v6]:port");
    if (!has_port) {
        if (!default_port)
            return fail(why, "missing port: want host:port");
        size_t n = strlen(buf);
        if (buf[0] == '[') {
            if (n < 3 || buf[n - 1] != ']')
                return fail(why, "bad bracketed IPv6 address");
            memmove(buf, buf + 1, n - 2);
            buf[n - 2] = '\0';
        }
        size_t host_len = strlen(buf);
        if (host_len >= sizeof(out->host))
            return fail(why, "host too long");
        memcpy(out->host, buf, host_len + 1);
        out->port = default_port;
        return 0;
    }
    int port = 0;
    if (kp_split_host_port(buf, out->host, sizeof(out->host), &port) != 0)
        return fail(why, "want host:port with a port in 1..65535");
    if (port < 1)
        return fail(why, "port must be in 1..65535");
    out->port = port;
    if (out->host[0] == '\0') /* ":8080" dials this machine, as Go's net.Dial does */
        snprintf(out->host, sizeof(out->host), "127.0.0.1");
    return 0;
}

int kc_addr_parse(const char *text, kc_addr *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (!text || !text[0])
        return fail(why, "empty address");
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return fail(why, "spaces or control characters in the address");

    const char *sep = strstr(text, "://");
    if (!sep) { /* a bare host:port: TCP */
        if (strchr(text, '/'))
            return fail(why, "a path needs a ws:// address");
        out->scheme = KC_SCHEME_TCP;
        return parse_authority(text, strlen(text), 0, out, why);
    }

    size_t scheme_len = (size_t)(sep - text);
    int default_port;
    if (scheme_len == 3 && strncasecmp(text, "tcp", 3) == 0) {
        out->scheme = KC_SCHEME_TCP;
        default_port = 0;
    } else if (scheme_len == 2 && strncasecmp(text, "ws", 2) == 0) {
        out->scheme = KC_SCHEME_WS;
        default_port = 80;
    } else if (scheme_len == 3 && strncasecmp(text, "wss", 3) == 0) {
        out->scheme = KC_SCHEME_WSS;
        default_port = 443;
    } else if (scheme_len == 3 && strncasecmp(text, "tls", 3) == 0) {
        out->scheme = KC_SCHEME_TLS; /* the TCP protocol over TLS: no default port, no path */
        default_port = 0;
    } else {
        return fail(why, "unknown scheme: want tcp://, tls://, ws:// or wss://");
    }

    const char *auth = sep + 3;
    const char *rest = auth + strcspn(auth, "/?#");
    int rc = parse_authority(auth, (size_t)(rest - auth), default_port, out, why);
    if (rc != 0)
        return rc;

    if (out->scheme == KC_SCHEME_TCP || out->scheme == KC_SCHEME_TLS) {
        if (rest[0] && strcmp(rest, "/") != 0)
            return fail(why, out->scheme == KC_SCHEME_TLS ? "a tls:// address has no path"
                                                         : "a tcp:// address has no path");
        return 0;
    }
    if (strchr(rest, '#'))
        return fail(why, "a WebSocket address has no fragment");
    /* The request target: the path with its query; "ws://h:1?x" means "/?x". */
    int n = snprintf(out->path, sizeof(out->path), "%s%s", rest[0] == '/' ? "" : "/", rest);
    if (n < 0 || (size_t)n >= sizeof(out->path))
        return fail(why, "path too long");
    return 0;
}

static int parse_ipv4(const char *text, size_t len, uint32_t *out)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len == 0 || len >= sizeof(buf))
        return KP_EINVAL;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1)
        return KP_EINVAL;
    *out = ntohl(a.s_addr);
    return 0;
}

int kc_src_range_parse(const char *text, kc_src_range *out, const char **why)
{
    if (!text || !text[0])
        return fail(why, "empty range");
    const char *dash = strchr(text, '-');
    size_t first_len = dash ? (size_t)(dash - text) : strlen(text);
    if (parse_ipv4(text, first_len, &out->first) != 0)
        return fail(why, "want an IPv4 address or a range A.B.C.D-E.F.G.H");
    out->last = out->first;
    if (dash && parse_ipv4(dash + 1, strlen(dash + 1), &out->last) != 0)
        return fail(why, "want an IPv4 address or a range A.B.C.D-E.F.G.H");
    if (out->last < out->first)
        return fail(why, "the range ends before it starts");
    if (out->last - out->first >= SRC_RANGE_MAX)
        return fail(why, "at most 65536 source addresses");
    return 0;
}

uint32_t kc_src_range_count(const kc_src_range *r)
{
    return r->last - r->first + 1;
}

int kc_addr_host_header(const kc_addr *a, char *buf, size_t cap)
{
    bool v6 = strchr(a->host, ':') != NULL;
    int n = snprintf(buf, cap, "%s%s%s:%d", v6 ? "[" : "", a->host, v6 ? "]" : "", a->port);
    return n > 0 && (size_t)n < cap ? 0 : KP_EINVAL;
}

int kc_addr_resolve(const kc_addr *a, struct sockaddr_storage *out, const char **why)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", a->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0)
        return fail(why, gai_strerror(rc));
    /* Prefer IPv4: "localhost" often lists ::1 first, and a KuPool server listens on IPv4. */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    memset(out, 0, sizeof(*out));
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}
