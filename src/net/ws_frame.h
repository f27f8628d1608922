/* RFC 6455 frames below the connection: the header decoder (incremental, byte by byte if need
 * be, no allocation), the header encoder, masking, and the two validity checks the connection
 * needs (UTF-8, close codes). No state about messages or the close handshake: that is ws.c's.
 *
 * The decoder refuses only what is wrong whatever the connection's state (reserved bits, an
 * unknown opcode, a fragmented or over-long control frame, a length not in its shortest form
 * or with the 64-bit form's top bit set); it stops after the first two bytes, and again once
 * the length is known, so the caller can refuse a frame from its start (masking, fragmentation
 * order, binary) and its length (over max_msg) before the rest of the header arrives. */
#ifndef KP_WS_FRAME_H
#define KP_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xa,
};

/* Close codes we send or report (RFC 6455 §7.4.1). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_ABNORMAL = 1006,
    WS_CLOSE_BAD_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

#define WS_HEADER_MAX 14  /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WS_CONTROL_MAX 125

static inline bool ws_opcode_is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

typedef struct ws_frame_header {
    bool fin;
    uint8_t opcode;
    bool masked;
    uint8_t mask[4]; /* when masked */
    uint64_t len;    /* payload bytes; complete headers only */
} ws_frame_header;

/* The bytes of a header that has not fully arrived: 16 bytes, inside the connection. */
typedef struct ws_header_decoder {
    uint8_t buf[WS_HEADER_MAX];
    uint8_t have;
    uint8_t reported; /* the last status reported for this header */
} ws_header_decoder;

enum ws_header_status {
    WS_HDR_MORE,   /* every byte offered was taken; the header needs more */
    WS_HDR_START,  /* the first two bytes are in: fin, opcode, masked are set */
    WS_HDR_LENGTH, /* ... and len too (the mask key may still be missing) */
    WS_HDR_DONE,   /* the header is complete: every field is set; reset before the next frame */
    WS_HDR_BAD,    /* malformed: *why says how; a protocol error (1002) */
};

static inline void ws_header_reset(ws_header_decoder *d)
{
    d->have = 0;
    d->reported = WS_HDR_MORE;
}

/* Takes header bytes from data[0..len) into d and says where the header stands; *used is how
 * many bytes were taken. WS_HDR_START and WS_HDR_LENGTH are reported once each per frame (even
 * when one byte completes both, or the whole header), then the next call carries on, with
 * len 0 if need be; bytes after a complete header are not taken. h must be the same across
 * the calls for one header. */
enum ws_header_status ws_header_feed(ws_header_decoder *d, const uint8_t *data, size_t len,
                                     size_t *used, ws_frame_header *h, const char **why);

/* Writes a header for a frame with fin set; `mask` NULL for an unmasked (server) frame. Returns
 * its size (at most WS_HEADER_MAX). */
size_t ws_header_encode(uint8_t out[WS_HEADER_MAX], uint8_t opcode, uint64_t len,
                        const uint8_t mask[4]);

/* XORs n bytes from src into dst with the key, starting at payload offset `pos` (the key
 * position carries across calls); dst may be src. */
void ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], uint64_t pos);

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * over U+10FFFF). */
bool ws_utf8_valid(const uint8_t *s, size_t len);

/* Whether a peer may send `code` in a close frame: 1000-1003, 1007-1014 (RFC 6455 and the IANA
 * registry), 3000-4999 (libraries and applications). */
bool ws_close_code_valid(uint16_t code);

#endif
