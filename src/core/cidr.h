/* Client addresses and CIDR lists (SPEC §9: -proxy_from, -ban_exempt, per-address limits).
 *
 * A kp_ip is an IPv4 or IPv6 address in network byte order; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, what a dual-stack listener reports for an IPv4 peer) is stored as the IPv4
 * address it maps, so "10.0.0.0/8" matches it and both forms count as one client. A list is a
 * small fixed array (KP_CIDR_LIST_MAX entries): flags hold a handful of ranges, not a table. */
#ifndef KP_CIDR_H
#define KP_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct kp_ip {
    uint8_t family; /* 4 or 6; 0 = none */
    uint8_t bytes[16]; /* IPv4 in bytes[0..3], the rest zero */
} kp_ip;

typedef struct kp_cidr {
    kp_ip net;      /* host bits cleared */
    uint8_t prefix; /* 0..32 or 0..128 */
} kp_cidr;

#define KP_CIDR_LIST_MAX 64

typedef struct kp_cidr_list {
    kp_cidr items[KP_CIDR_LIST_MAX];
    size_t count;
} kp_cidr_list;

/* The address of an AF_INET or AF_INET6 sockaddr. Returns 0 or KP_EINVAL (another family). */
int kp_ip_from_sockaddr(const struct sockaddr *sa, kp_ip *out);

/* Parses "a.b.c.d" or an IPv6 address (inet_pton's forms, no brackets, no zone). Returns 0 or
 * KP_EINVAL. */
int kp_ip_parse(const char *text, kp_ip *out);

/* "a.b.c.d" or the IPv6 text form; `cap` of 46 (INET6_ADDRSTRLEN) always suffices. */
void kp_ip_format(const kp_ip *ip, char *buf, size_t cap);

/* Parses "ADDR" (a host: /32 or /128) or "ADDR/N". Host bits set beyond the prefix are
 * refused (10.1.2.3/8 is more likely a typo than a wish). Returns 0 or KP_EINVAL. */
int kp_cidr_parse(const char *text, kp_cidr *out);

/* Parses "CIDR[,CIDR...]" (spaces around commas allowed); "" is the empty list. Returns 0 or
 * KP_EINVAL (a bad entry, or more than KP_CIDR_LIST_MAX). */
int kp_cidr_list_parse(const char *text, kp_cidr_list *out);

bool kp_cidr_contains(const kp_cidr *c, const kp_ip *ip);
bool kp_cidr_list_contains(const kp_cidr_list *l, const kp_ip *ip);

#endif
