/* Socket addresses as the programs take and show them: one "host:port" splitter for every
 * address a flag takes, one resolver for every listener (-addr, -ws_addr, -http_addr,
 * kupool-mock srv) and one "host:port" formatter for logs. */
#ifndef KP_NET_ADDR_H
#define KP_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Splits "host:port", ":port" or "[v6]:port" into host (empty for ":port") and port, as Go's
 * net.SplitHostPort does, except that the port must be decimal and within 0..65535. host may be
 * NULL (validate only). Returns 0 or KP_EINVAL. */
int kp_split_host_port(const char *addr, char *host, size_t host_cap, int *port);

/* Resolves a listen address split by kp_split_host_port(): an empty host means every IPv4
 * interface (":8080"), as most deployments expect. Blocking (getaddrinfo), so call it only while
 * starting, before serving. Returns 0 or KP_EINVAL. */
int kp_resolve_listen(const char *host, int port, struct sockaddr_storage *out);

/* Writes "a.b.c.d:port" or "[v6]:port" into buf; returns the port. */
int kp_format_sockaddr(const struct sockaddr *sa, char *buf, size_t cap);

#endif
