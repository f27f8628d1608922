/* The server's front door (SPEC §9): which connections must begin with a PROXY header, and the
 * per-address rules (address_book.h) applied at accept, on junk, on judged submits and at close.
 * It is part of the server (it walks the server's session lists to close a banned address's
 * sessions) and is off, costing nothing but one branch per accept, unless -proxy_from,
 * -max_conns_per_ip or -ban_time is set.
 *
 * Order on a connection: TCP accept → -max_conns → (trusted peer: PROXY header, then) the
 * per-address limit and bans → the session. A TLS listener stacks its conn above the PROXY one. */
#ifndef KP_FRONT_DOOR_H
#define KP_FRONT_DOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address_book.h"
#include "cidr.h"
#include "conn_tcp.h"
#include "session.h"

typedef struct kp_server kp_server;

typedef struct kp_front_door {
    kp_cidr_list proxy_from; /* empty: no PROXY headers expected */
    kp_addr_book *book;      /* NULL without -max_conns_per_ip and -ban_time */
    bool on;                 /* either of the above */
    bool sweep_pending;      /* a ban was made: close its address's sessions before the poll */
    uint64_t refused_per_ip;
    uint64_t refused_banned;
    uint64_t refused_proxy_header;
} kp_front_door;

/* What a session's room holds while the front door is on: its TCP conn, then its address's
 * entry in the book (NULL until admitted). */
typedef struct kp_door_room {
    kp_conn_tcp tcp; /* first: the room is the TCP conn */
    kp_addr_entry *addr;
} kp_door_room;

/* From the server's config: parses the CIDR lists, opens the book, adds the junk and answered
 * hooks to s->hooks. Returns 0, KP_EINVAL (a list that does not parse: config.c checked it) or
 * KP_ENOMEM. */
int kp_front_door_init(kp_server *s);
void kp_front_door_free(kp_server *s);

/* Bytes of session room a connection needs. */
size_t kp_front_door_room(const kp_server *s);

/* A new session past -max_conns, its TCP conn accepted and attached: stacks a PROXY reader on
 * the TCP conn when the peer is a trusted proxy (the checks then wait for the header) and sets
 * `*inner` to it, else applies the per-address checks at once and leaves `*inner` alone. The
 * caller stacks the rest (TLS) on `*inner` and attaches the session to the top. Returns 0 to
 * start the session, or a KP_E* after which it is closing (refused). */
int kp_front_door_accept(kp_server *s, kp_session *sess, kp_conn **inner);

/* The session is closing: its address has one connection less. */
void kp_front_door_closing(kp_server *s, kp_session *sess);

/* Closes the sessions of addresses banned since the last call; the server calls it once per
 * loop iteration while sweep_pending is set (never from inside a session's read). */
void kp_front_door_sweep(kp_server *s);

/* Each active ban, oldest first: the address as /bans shows it, its reason, its end (Unix ms). */
void kp_front_door_each_ban(kp_server *s,
                            void (*fn)(void *arg, const char *addr, const char *reason,
                                       uint64_t until_unix_ms),
                            void *arg);

#endif
