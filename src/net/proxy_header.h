/* The PROXY protocol header (HAProxy's doc/proxy-protocol.txt, versions 1 and 2) that a trusted
 * load balancer sends before anything else on a connection: who the client really is.
 *
 * Pure (no libuv, no I/O), incremental: feed bytes as they arrive, split anywhere; the parser
 * says "need more", "done" or "error" and how many bytes of this call were header, so the rest
 * goes to the next layer (TLS or the protocol). It refuses as early as a byte proves the header
 * wrong (a first byte that starts neither version, a v1 line past 107 bytes, a v2 length past
 * 2,048) instead of waiting for a length it will never accept.
 *
 * Memory: the struct holds at most a v1 line or the 16-byte v2 prefix plus its addresses
 * (108 bytes of buffer); v2 TLVs and address blocks of other families are skipped, counted, not
 * kept. The owner frees it once the header is done. */
#ifndef KP_PROXY_HEADER_H
#define KP_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A v1 line is at most 107 bytes with its CRLF (the spec's worst case, TCP6 with full ports). */
#define KP_PROXY_V1_MAX 107
/* Longest v2 address-and-TLV block accepted. The spec allows 65,535; real balancers send a few
 * hundred bytes at most, and SPEC §9 draws the line here. */
#define KP_PROXY_V2_MAX_LEN 2048

typedef enum kp_proxy_status {
    KP_PROXY_MORE = 0, /* everything given was header; feed more */
    KP_PROXY_DONE,     /* the header ended within this call; see the result */
    KP_PROXY_ERROR     /* not a valid header; `why` says what */
} kp_proxy_status;

typedef struct kp_proxy_result {
    /* True: the header carries the client's address in `src`. False: v1 UNKNOWN, v2 LOCAL or a
     * v2 family other than TCP over IPv4/IPv6: use the connection's own peer (the proxy). */
    bool has_src;
    struct sockaddr_storage src; /* AF_INET or AF_INET6, with the source port */
    int version;                 /* 1 or 2 */
} kp_proxy_result;

typedef struct kp_proxy_parser {
    uint8_t buf[KP_PROXY_V1_MAX + 1]; /* a v1 line, or v2's 16 bytes plus its address block */
    uint16_t len;       /* bytes in buf */
    uint8_t version;    /* 0 until the first byte decided */
    uint16_t v2_len;    /* v2: the length field, once read */
    uint16_t v2_keep;   /* v2: bytes of the block to keep in buf (the addresses we read) */
    uint16_t v2_seen;   /* v2: bytes of the block consumed so far (kept or skipped) */
    const char *why;    /* static text once KP_PROXY_ERROR was returned */
} kp_proxy_parser;

void kp_proxy_parser_init(kp_proxy_parser *p);

/* Feeds `len` bytes. Sets *used to the bytes of `data` that belonged to the header (all of them
 * with KP_PROXY_MORE; with KP_PROXY_DONE, the rest data[*used..len) is the next layer's). After
 * DONE or ERROR, do not feed again. On DONE, *out is filled. */
kp_proxy_status kp_proxy_feed(kp_proxy_parser *p, const char *data, size_t len, size_t *used,
                              kp_proxy_result *out);

#endif
