#include "net_addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "flags.h"
#include "kupool/error.h"

int kp_split_host_port(const char *addr, char *host, size_t host_cap, int *port)
{
    if (addr == NULL)
        return KP_EINVAL;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return KP_EINVAL; /* missing port */

    const char *host_start;
    const char *host_end;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        /* "[v6]:port" exactly: "[::1]", "[::1]x:1" and "[::1]:1:2" all fail here. */
        if (close == NULL || close + 1 != colon)
            return KP_EINVAL;
        host_start = addr + 1;
        host_end = close;
        if (memchr(host_start, '[', (size_t)(host_end - host_start)) != NULL)
            return KP_EINVAL;
    } else {
        host_start = addr;
        host_end = colon;
        size_t n = (size_t)(host_end - host_start);
        /* Several colons without brackets: an IPv6 literal whose port cannot be told apart. */
        if (memchr(host_start, ':', n) != NULL || memchr(host_start, '[', n) != NULL ||
            memchr(host_start, ']', n) != NULL)
            return KP_EINVAL;
    }

    uint64_t port_value;
    if (kp_parse_decimal(colon + 1, 65535, &port_value) != NULL)
        return KP_EINVAL;

    size_t host_len = (size_t)(host_end - host_start);
    if (host != NULL) {
        if (host_len >= host_cap)
            return KP_EINVAL;
        memcpy(host, host_start, host_len);
        host[host_len] = '\0';
    }
    if (port != NULL)
        *port = (int)port_value;
    return 0;
}

int kp_resolve_listen(const char *host, int port, struct sockaddr_storage *out)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res) != 0 || !res)
        return KP_EINVAL;
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; !host[0] && ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int kp_format_sockaddr(const struct sockaddr *sa, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(buf, cap, "[%s]:%d", host, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(buf, cap, "%s:%d", host, port);
    }
    return port;
}
