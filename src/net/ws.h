/* WebSocket (RFC 6455) for one connection, without any I/O of its own: the owner feeds received
 * bytes in and gets framed bytes out through callbacks, so the same code serves the server's
 * sessions (libuv), kupool-client, kupool-mock and unit tests (memory only).
 *
 * The HTTP upgrade is parsed with http-parser (Debian libhttp-parser-dev); frames with our own
 * RFC 6455 framer (ws_frame.c), which keeps an idle connection down to this struct and a
 * message in progress down to its bytes (see ws.c for why). Ping/pong, fragmentation and the
 * close handshake are handled here; the owner only ever sees whole text messages.
 *
 * Memory: an idle open connection holds only its struct (144 bytes on x86-64, no heap buffers); a
 * text message in progress holds one buffer of at most max_msg bytes however it is
 * fragmented, freed once delivered; a control frame in progress at most 125 bytes. */
#ifndef KP_WS_H
#define KP_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kp_ws kp_ws;

typedef struct kp_ws_callbacks {
    /* Bytes to put on the wire, in order (handshake and frames), handed over before the
     * kp_ws_* call that produced them returns; one frame may take several calls (header,
     * payload in pieces of at most 1 KiB; a frame up to about 1 KiB is one call), so append to
     * an output buffer rather than write each. Return 0, or a negative
     * value if the transport is gone (the connection then fails). */
    int (*send)(void *user, const char *data, size_t len);
    /* One complete text message, reassembled from its fragments. `msg` is borrowed for the
     * call. Called only after the handshake. */
    void (*on_text)(void *user, const char *msg, size_t len);
    /* The handshake completed (client: 101 received; server: 101 sent). Optional. */
    void (*on_open)(void *user);
    /* The connection is over: after a close handshake, a protocol error (a close frame with the
     * code was sent first when possible: 1002, or 1007 for invalid UTF-8), a bad handshake (an
     * HTTP error response was sent), a message over max_msg (1009, at the frame header that
     * announces it), or a binary frame (1003). The owner closes the transport
     * once pending bytes are written; no callback follows. Called only from within
     * kp_ws_feed, exactly once for a connection that kp_ws_feed ended; never kp_ws_free from a
     * callback. */
    void (*on_close)(void *user, uint16_t code, const char *why);
} kp_ws_callbacks;

/* A server-side connection awaiting the client's HTTP upgrade request. Requests other than a
 * valid GET upgrade (path any, Sec-WebSocket-Version 13) get 400 and on_close; a request head
 * over max(max_msg, 8192) bytes gets 431. max_msg bounds each message. Returns 0 or KP_ENOMEM. */
int kp_ws_server_new(const kp_ws_callbacks *cb, void *user, size_t max_msg, kp_ws **out);

/* A client-side connection; sends the upgrade request for ws://host/path through cb->send
 * at once. `host` is the Host header ("example.org:8000"), `path` starts with '/' (NULL or ""
 * mean "/"). Returns 0, KP_EINVAL (spaces or control characters in host or path), KP_ENOMEM or
 * KP_EIO (CSPRNG for the key, or cb->send failed). */
int kp_ws_client_new(const kp_ws_callbacks *cb, void *user, const char *host, const char *path,
                     size_t max_msg, kp_ws **out);

/* Feeds received bytes. Returns 0, or a negative KP_E* when the connection must close now
 * (on_close has been called). */
int kp_ws_feed(kp_ws *ws, const char *data, size_t len);

/* Sends one text message (masked on the client side with a fresh CSPRNG key, as RFC 6455
 * requires); allocates nothing. Returns 0, KP_ECLOSED (not open / closing), or KP_EIO when
 * cb->send or the CSPRNG failed (the connection is over; on_close follows only if this was
 * called from a callback inside kp_ws_feed). */
int kp_ws_send_text(kp_ws *ws, const char *msg, size_t len);

/* Starts the close handshake with `code` (e.g. 1000 or 1001 at shutdown); `reason` may be NULL
 * and is cut to 123 bytes. on_close follows from kp_ws_feed when the peer's close arrives; the
 * owner bounds that wait. Before the handshake completed, nothing is sent, the connection is
 * just over and no callback follows. No-op once closing or closed. */
void kp_ws_close(kp_ws *ws, uint16_t code, const char *reason);

bool kp_ws_is_open(const kp_ws *ws);

/* Heap bytes the connection holds now: its struct and whatever buffers it has (handshake,
 * message in progress, control frame). For tests and accounting; 0 for NULL. */
size_t kp_ws_memory(const kp_ws *ws);

void kp_ws_free(kp_ws *ws);

#endif
