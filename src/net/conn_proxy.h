/* A PROXY protocol reader under the connection seam (conn.h): stacked on the TCP conn of a
 * connection from a trusted proxy (-proxy_from), it takes the header off the front of the byte
 * stream (proxy_header.c), tells the server what it carried, then passes every later byte, in
 * both directions, through unchanged. peer_address() answers with the carried address, so
 * everything above (logs, limits, bans) sees the client, never the proxy.
 *
 * On a TLS listener it sits between the TCP conn and the TLS conn: the header comes first, in
 * clear, before the handshake (SPEC §9).
 *
 * Memory: one allocation of its own (the seam's base, the inner conn, the carried address:
 * 192 bytes) and, until the header is done, the parser's 128 bytes, freed as soon as it is.
 * The proxy conn is freed right before it reports on_closed to its owner. */
#ifndef KP_CONN_PROXY_H
#define KP_CONN_PROXY_H

#include <stdbool.h>
#include <sys/socket.h>

#include "conn.h"

/* The header is in (`client`: the address it carried, or the proxy's own for LOCAL, UNKNOWN and
 * other families) or was refused (`client` NULL, `why` says what). Called once, before any byte
 * reaches the owner, with the `ctx` and `arg` given to kp_conn_proxy_new (`arg` names the
 * connection for the callee: its owner may be another conn, e.g. TLS above the PROXY reader).
 * Returns true to go on; false after the callee closed the connection (it must close it on a
 * refusal). */
typedef bool (*kp_proxy_header_cb)(void *ctx, void *arg, const struct sockaddr_storage *client,
                                   const char *why);

/* Stacks a PROXY reader on `inner` (which it then owns: it binds itself as inner's owner and
 * closes it with itself). Bind the result to its owner (kp_conn_bind) before reads start.
 * Returns 0 or KP_ENOMEM (nothing changed: the caller still owns `inner`). */
int kp_conn_proxy_new(kp_conn *inner, kp_proxy_header_cb on_header, void *ctx, void *arg,
                      kp_conn **out);

#endif
