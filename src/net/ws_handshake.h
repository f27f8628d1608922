/* The WebSocket opening handshake for ws.c (internal to the net layer): parse an HTTP head,
 * then check it as a server (the client's upgrade request) or as a client (the server's 101). */
#ifndef KP_WS_HANDSHAKE_H
#define KP_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_KEY_LEN 24    /* base64 of the 16-byte nonce */
#define WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */

typedef struct ws_handshake ws_handshake;

enum ws_hs_status {
    WS_HS_MORE,      /* the head is not complete yet: every byte was taken */
    WS_HS_COMPLETE,  /* the head is complete; *used bytes of this call belonged to it */
    WS_HS_MALFORMED, /* not HTTP */
    WS_HS_TOO_LONG,  /* the head passed max(max_msg, 8192) bytes */
};

/* What a server answers a request it refuses, and the on_close code and reason. */
typedef struct ws_hs_refusal {
    const char *status; /* the status line, CRLF included */
    bool version_hint;  /* add "Sec-WebSocket-Version: 13" */
    uint16_t code;
    const char *why;
} ws_hs_refusal;

/* A handshake to parse: a response when `client`, else a request. Returns 0 or KP_ENOMEM. */
int ws_hs_new(bool client, size_t max_msg, ws_handshake **out);
void ws_hs_free(ws_handshake *hs);
size_t ws_hs_size(void);

enum ws_hs_status ws_hs_feed(ws_handshake *hs, const char *data, size_t len, size_t *used);

/* Server, after WS_HS_COMPLETE: true for a valid upgrade (`accept` gets the
 * Sec-WebSocket-Accept value), else false with the refusal in *r. */
bool ws_hs_check_request(const ws_handshake *hs, char accept[WS_ACCEPT_LEN + 1], ws_hs_refusal *r);

/* Server: the refusal for WS_HS_MALFORMED (too_long false) or WS_HS_TOO_LONG. */
void ws_hs_refuse_malformed(ws_hs_refusal *r, bool too_long);

/* Client, after WS_HS_COMPLETE: NULL when the 101 accepts our key, else why not. */
const char *ws_hs_check_response(const ws_handshake *hs);

/* Client: a fresh Sec-WebSocket-Key (CSPRNG), kept to check the answer; NULL when the CSPRNG
 * failed. */
const char *ws_hs_make_key(ws_handshake *hs);

#endif
