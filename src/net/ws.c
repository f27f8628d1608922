/* WebSocket (RFC 6455) for one connection: the HTTP upgrade (ws_handshake.c, http-parser), frames
 * through our own framer (ws_frame.c). No I/O here: bytes come in
 * through kp_ws_feed and leave through cb->send, synchronously, before the call that produced
 * them returns.
 *
 * Life of a connection:
 *   HANDSHAKE  a small heap struct (ws_handshake) collects the few header values that matter;
 *              the head is bounded by max(max_msg, 8192) bytes. Freed when the head is answered.
 *   OPEN       frames. A header is collected inside the struct (at most 14 bytes); a text
 *              message is unmasked into ONE heap buffer that grows only with payload bytes,
 *              never past max_msg, however many fragments carry it, and is freed once the
 *              message is delivered; a control frame's payload (at most 125 bytes) gets a heap
 *              buffer while it arrives. An idle connection holds nothing but this struct.
 *   CLOSING    we sent a close frame (kp_ws_close); frames are still parsed, to find the peer's
 *              close, but data is dropped unbuffered and pings get no pong.
 *   CLOSED     on_close was called (or the owner closed first): every call is a no-op.
 *
 * Why our own framer rather than wslay: wslay's context embeds fixed buffers (about 9 KiB per
 * connection, 22x an idle TCP session) and allocates per fragment (a flood of one-byte
 * fragments cost 14x what was sent). Framing is small and fully specified; it is fuzzed
 * (tests/fuzz/fuzz_ws.c) like every parser of untrusted bytes.
 *
 * Choices where the RFC leaves room:
 *   - A wrong Sec-WebSocket-Version gets 400 with "Sec-WebSocket-Version: 13", as RFC 6455
 *     §4.2.2's own example does (§4.4 suggests 426; 400 keeps one status for every refusal).
 *   - A request head over the bound gets 431 Request Header Fields Too Large (RFC 6585).
 *   - Frame errors are refused as early as the bytes allow: a bad first two bytes (reserved
 *     bits, unknown opcode, wrong masking, fragmentation out of order, a binary frame) at the
 *     second byte; a length over max_msg (counting the fragments so far) as soon as its last
 *     byte arrives, before the mask key or any payload is read or stored.
 *   - on_close codes, and the close frame sent with them: 1002 for a refused or malformed
 *     handshake (server and client, no frame) and for every frame-level protocol error, 1003
 *     for a binary frame, 1007 for invalid UTF-8 (a text message, checked when it is complete,
 *     or a close reason), 1009 for an over-long head or message, 1011 when memory or the CSPRNG
 *     failed, 1006 when cb->send failed (nothing can be sent); after a close handshake the code
 *     the peer sent (1005 if none), or ours when we started it.
 *   - on_close is only ever called from kp_ws_feed, so an owner's callback never runs inside its
 *     own kp_ws_send_text or kp_ws_close. */
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "kupool/error.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#define WS_REASON_MAX 123 /* a close frame's reason: 125 bytes of payload less the code */
#define WS_SEND_CHUNK 1024 /* frames leave in pieces of this size, built on the stack */
#define WS_MSG_MIN_CAP 64 /* the reassembly buffer's first size; it doubles up to max_msg */

enum ws_state { WS_HANDSHAKE, WS_OPEN, WS_CLOSING, WS_CLOSED };

struct kp_ws {
    kp_ws_callbacks cb;
    void *user;
    size_t max_msg;
    ws_handshake *hs; /* HANDSHAKE only */
    /* the frame being received */
    ws_header_decoder hdr;  /* its header while it arrives */
    ws_frame_header frame;  /* its header once complete (the start fields after two bytes) */
    uint64_t frame_pos;     /* payload bytes of it received so far */
    uint8_t *ctl;           /* a control frame's payload (frame.len bytes) while it arrives */
    /* the text message being reassembled: msg_len <= msg_cap <= max_msg */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    bool msg_open;     /* a text frame started a message that no final frame ended yet */
    bool in_payload;   /* the header is complete: bytes are payload */
    bool client;
    bool notified;     /* on_close was called */
    bool closed_by_us; /* we sent the first close frame */
    uint8_t state;     /* enum ws_state */
    uint16_t our_code; /* the code of our close frame */
    uint16_t lost_code; /* why the transport was lost outside kp_ws_feed (1006, 1011) */
};

static int send_bytes(kp_ws *ws, const char *data, size_t len)
{
    return ws->cb.send(ws->user, data, len) < 0 ? KP_EIO : 0;
}

static int send_str(kp_ws *ws, const char *s)
{
    return send_bytes(ws, s, strlen(s));
}

static void msg_free(kp_ws *ws)
{
    free(ws->msg);
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
}

static void ctl_free(kp_ws *ws)
{
    free(ws->ctl);
    ws->ctl = NULL;
}

/* The one way out of kp_ws_feed: on_close, once; after it every call is a no-op and the
 * connection holds no buffer. */
static int finish(kp_ws *ws, uint16_t code, const char *why, int rc)
{
    ws->state = WS_CLOSED;
    msg_free(ws);
    ctl_free(ws);
    if (!ws->notified) {
        ws->notified = true;
        ws->cb.on_close(ws->user, code, why);
    }
    return rc;
}

/* ---- frames out ---- */

/* The transport (or the CSPRNG) failed: the connection is over. kp_ws_feed reports it with
 * on_close(code) when it happened inside it; outside, no callback follows. */
static int lose(kp_ws *ws, uint16_t code)
{
    ws->state = WS_CLOSED;
    ws->lost_code = code;
    return KP_EIO;
}

/* One whole frame to cb->send: the header and the payload (masked with a fresh CSPRNG key on
 * the client side, RFC 6455 §5.3) leave in pieces of at most WS_SEND_CHUNK bytes, so a frame
 * of up to about 1 KiB is one call and the payload is never copied to the heap. */
static int send_frame(kp_ws *ws, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t buf[WS_SEND_CHUNK];
    uint8_t key[4];
    const uint8_t *mask = NULL;
    if (ws->client) {
        if (RAND_bytes(key, sizeof(key)) != 1)
            return lose(ws, WS_CLOSE_INTERNAL);
        mask = key;
    }
    size_t n = ws_header_encode(buf, opcode, len, mask);
    size_t off = 0;
    do {
        size_t k = sizeof(buf) - n < len - off ? sizeof(buf) - n : len - off;
        if (k && mask)
            ws_mask(buf + n, payload + off, k, key, off);
        else if (k)
            memcpy(buf + n, payload + off, k);
        n += k;
        off += k;
        if (ws->cb.send(ws->user, (const char *)buf, n) < 0)
            return lose(ws, WS_CLOSE_ABNORMAL);
        n = 0;
    } while (off < len);
    return 0;
}

/* A close frame with `code` and up to 123 bytes of `reason`, cut at a character boundary. */
static int send_close(kp_ws *ws, uint16_t code, const char *reason)
{
    uint8_t payload[2 + WS_REASON_MAX];
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > WS_REASON_MAX) {
        rlen = WS_REASON_MAX;
        while (rlen && ((uint8_t)reason[rlen] & 0xc0) == 0x80)
            rlen--;
    }
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (rlen)
        memcpy(payload + 2, reason, rlen);
    return send_frame(ws, WS_OP_CLOSE, payload, 2 + rlen);
}

/* We fail the connection (RFC 6455 §7.1.7): a close frame with the code, unless ours is out
 * already, then on_close with it. Bytes after this are not read. */
static int fail(kp_ws *ws, uint16_t code, const char *why)
{
    if (ws->state == WS_OPEN)
        send_close(ws, code, why); /* if the transport is gone too, the code still says why */
    return finish(ws, code, why, KP_ECLOSED);
}

/* ---- frames in ---- */

/* The first two bytes of a frame: what ws_frame.c cannot judge without the connection. */
static int check_start(kp_ws *ws)
{
    const ws_frame_header *h = &ws->frame;
    if (h->masked == ws->client)
        return fail(ws, WS_CLOSE_PROTOCOL, ws->client ? "protocol error: a masked frame from the server"
                                                      : "protocol error: an unmasked frame from the client");
    if (ws_opcode_is_control(h->opcode))
        return 0;
    if (h->opcode == WS_OP_CONT && !ws->msg_open)
        return fail(ws, WS_CLOSE_PROTOCOL, "protocol error: a continuation without a message");
    if (h->opcode != WS_OP_CONT && ws->msg_open)
        return fail(ws, WS_CLOSE_PROTOCOL, "protocol error: a new message inside a fragmented one");
    if (h->opcode == WS_OP_BINARY)
        return fail(ws, WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
    return 0;
}

/* The length is known: refuse an over-long message before the rest of its header, let alone
 * its payload. While closing, data is dropped unread: it costs nothing whatever its length. */
static int check_length(kp_ws *ws)
{
    const ws_frame_header *h = &ws->frame;
    if (!ws_opcode_is_control(h->opcode) && ws->state == WS_OPEN &&
        h->len > (uint64_t)(ws->max_msg - ws->msg_len))
        return fail(ws, WS_CLOSE_TOO_BIG, "message too big");
    return 0;
}

/* The header is complete: payload bytes follow. */
static int begin_frame(kp_ws *ws)
{
    const ws_frame_header *h = &ws->frame;
    ws->frame_pos = 0;
    if (ws_opcode_is_control(h->opcode)) {
        if (h->len && !(ws->ctl = malloc((size_t)h->len)))
            return finish(ws, WS_CLOSE_INTERNAL, "out of memory", KP_ENOMEM);
        return 0;
    }
    if (h->opcode == WS_OP_TEXT)
        ws->msg_open = true;
    return 0;
}

/* Room for `need` bytes of message: doubling, never past max_msg. check_length keeps need
 * within max_msg; refusing here too keeps the buffer's bound local. */
static int msg_reserve(kp_ws *ws, size_t need)
{
    if (need <= ws->msg_cap)
        return 0;
    if (need > ws->max_msg)
        return KP_EINVAL;
    size_t cap = ws->msg_cap ? ws->msg_cap * 2 : WS_MSG_MIN_CAP;
    if (cap < need)
        cap = need;
    if (cap > ws->max_msg)
        cap = ws->max_msg;
    uint8_t *p = realloc(ws->msg, cap);
    if (!p)
        return KP_ENOMEM;
    ws->msg = p;
    ws->msg_cap = cap;
    return 0;
}

/* Payload bytes of the current frame, unmasked into where they belong. */
static int take_payload(kp_ws *ws, const uint8_t *data, size_t n)
{
    const ws_frame_header *h = &ws->frame;
    uint8_t *dst;
    if (ws_opcode_is_control(h->opcode)) {
        dst = ws->ctl + ws->frame_pos;
    } else {
        if (ws->state != WS_OPEN)
            return 0;
        int rc = msg_reserve(ws, ws->msg_len + n);
        if (rc == KP_EINVAL)
            return fail(ws, WS_CLOSE_TOO_BIG, "message too big");
        if (rc != 0)
            return finish(ws, WS_CLOSE_INTERNAL, "out of memory", KP_ENOMEM);
        dst = ws->msg + ws->msg_len;
        ws->msg_len += n;
    }
    if (h->masked)
        ws_mask(dst, data, n, h->mask, ws->frame_pos);
    else
        memcpy(dst, data, n);
    return 0;
}

/* A final data frame: the message is whole. The buffer leaves the connection first, so the
 * owner may send or close from on_text, and is freed after it. */
static int end_message(kp_ws *ws)
{
    uint8_t *msg = ws->msg;
    size_t len = ws->msg_len;
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
    ws->msg_open = false;
    int rc = 0;
    if (ws->state != WS_OPEN)
        ; /* we are closing: the message is dropped */
    else if (!ws_utf8_valid(msg, len))
        rc = fail(ws, WS_CLOSE_BAD_DATA, "invalid UTF-8 in a text message");
    else
        ws->cb.on_text(ws->user, msg ? (const char *)msg : "", len);
    free(msg);
    return rc;
}

/* The peer's close frame (RFC 6455 §5.5.1): answered with the same code when it started the
 * handshake, the end of it when we did. */
static int on_peer_close(kp_ws *ws)
{
    const uint8_t *p = ws->ctl;
    size_t len = (size_t)ws->frame.len;
    if (ws->state == WS_CLOSING)
        return finish(ws, ws->our_code, "closed", KP_ECLOSED);
    uint16_t code = WS_CLOSE_NO_STATUS;
    if (len == 1)
        return fail(ws, WS_CLOSE_PROTOCOL, "protocol error: a close frame with a 1-byte payload");
    if (len >= 2) {
        code = (uint16_t)((p[0] << 8) | p[1]);
        if (!ws_close_code_valid(code))
            return fail(ws, WS_CLOSE_PROTOCOL, "protocol error: an invalid close code");
        if (!ws_utf8_valid(p + 2, len - 2))
            return fail(ws, WS_CLOSE_BAD_DATA, "invalid UTF-8 in a close reason");
    }
    uint8_t reply[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    if (send_frame(ws, WS_OP_CLOSE, reply, code == WS_CLOSE_NO_STATUS ? 0 : 2) != 0)
        return finish(ws, ws->lost_code, "transport failed", KP_EIO);
    return finish(ws, code, "closed by peer", KP_ECLOSED);
}

/* The current frame's payload is complete. */
static int end_frame(kp_ws *ws)
{
    const ws_frame_header *h = &ws->frame;
    switch (h->opcode) {
    case WS_OP_CLOSE:
        return on_peer_close(ws);
    case WS_OP_PING:
        /* A pong carries the ping's payload; none after our close frame (§5.5.1). A failed
         * send shows as the state, which kp_ws_feed reports. */
        if (ws->state == WS_OPEN)
            send_frame(ws, WS_OP_PONG, ws->ctl, (size_t)h->len);
        ctl_free(ws);
        return 0;
    case WS_OP_PONG: /* unsolicited or not, nothing to do */
        ctl_free(ws);
        return 0;
    default:
        return h->fin ? end_message(ws) : 0;
    }
}

/* Feeds frame bytes: headers, payloads, and what they complete. */
static int feed_frames(kp_ws *ws, const uint8_t *data, size_t len)
{
    while (ws->state == WS_OPEN || ws->state == WS_CLOSING) {
        int rc;
        if (!ws->in_payload) {
            size_t used;
            const char *why = NULL;
            enum ws_header_status st = ws_header_feed(&ws->hdr, data, len, &used, &ws->frame, &why);
            data += used;
            len -= used;
            if (st == WS_HDR_MORE)
                return 0;
            if (st == WS_HDR_BAD) {
                char what[80];
                snprintf(what, sizeof(what), "protocol error: %s", why);
                return fail(ws, WS_CLOSE_PROTOCOL, what);
            }
            if (st == WS_HDR_START || st == WS_HDR_LENGTH) {
                if ((rc = st == WS_HDR_START ? check_start(ws) : check_length(ws)) != 0)
                    return rc;
                continue;
            }
            ws_header_reset(&ws->hdr);
            if ((rc = begin_frame(ws)) != 0)
                return rc;
            ws->in_payload = true;
        }
        uint64_t left = ws->frame.len - ws->frame_pos;
        size_t n = left < len ? (size_t)left : len;
        if (n) {
            if ((rc = take_payload(ws, data, n)) != 0)
                return rc;
            data += n;
            len -= n;
            ws->frame_pos += n;
        }
        if (ws->frame_pos < ws->frame.len)
            return 0; /* every byte was taken */
        ws->in_payload = false;
        if ((rc = end_frame(ws)) != 0)
            return rc;
    }
    /* A send failed inside (a pong, or the owner's kp_ws_send_text/close from on_text). */
    return finish(ws, ws->lost_code, "transport failed", KP_EIO);
}

/* ---- handshake (ws_handshake.c parses and checks; here it is answered) ---- */

static void handshake_free(kp_ws *ws)
{
    ws_hs_free(ws->hs);
    ws->hs = NULL;
}

/* Server: refuses the request (a status line and the headers after it). */
static int refuse(kp_ws *ws, const ws_hs_refusal *r)
{
    handshake_free(ws);
    send_str(ws, r->status);
    send_str(ws, "Connection: close\r\nContent-Length: 0\r\n");
    if (r->version_hint)
        send_str(ws, "Sec-WebSocket-Version: 13\r\n");
    send_str(ws, "\r\n");
    return finish(ws, r->code, r->why, KP_ECLOSED);
}

/* Server: the request head is complete; answer it. */
static int server_answer(kp_ws *ws)
{
    char accept[WS_ACCEPT_LEN + 1];
    ws_hs_refusal r;
    if (!ws_hs_check_request(ws->hs, accept, &r))
        return refuse(ws, &r);
    handshake_free(ws);
    char reply[160];
    int n = snprintf(reply, sizeof(reply),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (send_bytes(ws, reply, (size_t)n) != 0)
        return finish(ws, WS_CLOSE_ABNORMAL, "transport failed", KP_EIO);
    ws->state = WS_OPEN;
    return 0;
}

/* Client: the response head is complete; check it. */
static int client_check(kp_ws *ws)
{
    const char *why = ws_hs_check_response(ws->hs);
    handshake_free(ws);
    if (why)
        return finish(ws, 1002, why, KP_ECLOSED);
    ws->state = WS_OPEN;
    return 0;
}

/* Parses handshake bytes; *used says how many belonged to the head once it is complete. */
static int feed_handshake(kp_ws *ws, const char *data, size_t len, size_t *used)
{
    enum ws_hs_status st = ws_hs_feed(ws->hs, data, len, used);
    if (st == WS_HS_COMPLETE)
        return ws->client ? client_check(ws) : server_answer(ws);
    if (st == WS_HS_MORE)
        return 0;
    bool too_long = st == WS_HS_TOO_LONG;
    if (ws->client) {
        handshake_free(ws);
        return finish(ws, too_long ? 1009 : 1002,
                      too_long ? "bad handshake: response head too long"
                               : "bad handshake: malformed HTTP response",
                      KP_ECLOSED);
    }
    ws_hs_refusal r;
    ws_hs_refuse_malformed(&r, too_long);
    return refuse(ws, &r);
}

/* ---- public ---- */

static int ws_new(const kp_ws_callbacks *cb, void *user, size_t max_msg, bool client, kp_ws **out)
{
    *out = NULL;
    kp_ws *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return KP_ENOMEM;
    ws->cb = *cb;
    ws->user = user;
    ws->max_msg = max_msg;
    ws->client = client;
    ws->state = WS_HANDSHAKE;
    if (ws_hs_new(client, max_msg, &ws->hs) != 0) {
        free(ws);
        return KP_ENOMEM;
    }
    *out = ws;
    return 0;
}

int kp_ws_server_new(const kp_ws_callbacks *cb, void *user, size_t max_msg, kp_ws **out)
{
    return ws_new(cb, user, max_msg, false, out);
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || *s == 0x7f)
            return false;
    return true;
}

int kp_ws_client_new(const kp_ws_callbacks *cb, void *user, const char *host, const char *path,
                     size_t max_msg, kp_ws **out)
{
    *out = NULL;
    if (!path || !path[0])
        path = "/";
    if (!host || !host[0] || !header_safe(host) || !header_safe(path) || path[0] != '/')
        return KP_EINVAL;
    kp_ws *ws;
    int rc = ws_new(cb, user, max_msg, true, &ws);
    if (rc != 0)
        return rc;
    const char *key = ws_hs_make_key(ws->hs);
    if (!key) {
        kp_ws_free(ws);
        return KP_EIO;
    }
    /* The request is formatted piecewise: host and path have no fixed bound. */
    if (send_str(ws, "GET ") != 0 || send_str(ws, path) != 0 ||
        send_str(ws, " HTTP/1.1\r\nHost: ") != 0 || send_str(ws, host) != 0 ||
        send_str(ws, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ") != 0 ||
        send_str(ws, key) != 0 || send_str(ws, "\r\nSec-WebSocket-Version: 13\r\n\r\n") != 0) {
        kp_ws_free(ws);
        return KP_EIO;
    }
    *out = ws;
    return 0;
}

int kp_ws_feed(kp_ws *ws, const char *data, size_t len)
{
    if (ws->state == WS_CLOSED)
        return KP_ECLOSED;
    if (ws->state == WS_HANDSHAKE) {
        size_t used = 0;
        int rc = feed_handshake(ws, data, len, &used);
        if (rc != 0 || ws->state == WS_HANDSHAKE)
            return rc;
        /* Open now; the owner may send (or close) from on_open, then the bytes that followed
         * the head in this read (a pipelined first frame) are frames. */
        if (ws->cb.on_open)
            ws->cb.on_open(ws->user);
        if (ws->state == WS_CLOSED) /* cb->send failed in on_open */
            return finish(ws, ws->lost_code, "transport failed", KP_EIO);
        data += used;
        len -= used;
    }
    return feed_frames(ws, (const uint8_t *)data, len);
}

int kp_ws_send_text(kp_ws *ws, const char *msg, size_t len)
{
    if (ws->state != WS_OPEN)
        return KP_ECLOSED;
    return send_frame(ws, WS_OP_TEXT, (const uint8_t *)msg, len);
}

void kp_ws_close(kp_ws *ws, uint16_t code, const char *reason)
{
    if (ws->state == WS_HANDSHAKE) { /* nothing to close on the wire yet */
        handshake_free(ws);
        ws->state = WS_CLOSED;
        return;
    }
    if (ws->state != WS_OPEN)
        return;
    ws->state = WS_CLOSING;
    ws->closed_by_us = true;
    ws->our_code = code;
    msg_free(ws); /* a message in progress will never be delivered */
    send_close(ws, code, reason); /* a failure leaves the state CLOSED */
}

bool kp_ws_is_open(const kp_ws *ws)
{
    return ws && ws->state == WS_OPEN;
}

size_t kp_ws_memory(const kp_ws *ws)
{
    if (!ws)
        return 0;
    size_t n = sizeof(*ws) + ws->msg_cap;
    if (ws->hs)
        n += ws_hs_size();
    if (ws->ctl)
        n += (size_t)ws->frame.len;
    return n;
}

void kp_ws_free(kp_ws *ws)
{
    if (!ws)
        return;
    ws_hs_free(ws->hs);
    free(ws->msg);
    free(ws->ctl);
    free(ws);
}
