/* WebSocket (RFC 6455) for one connection: the HTTP upgrade through http-parser, frames through
 * wslay's event API, the accept key through OpenSSL. No I/O here: bytes come in through
 * kp_ws_feed and leave through cb->send, synchronously, before the call that produced them
 * returns.
 *
 * Life of a connection:
 *   HANDSHAKE  a small heap struct (ws_handshake) collects the few header values that matter;
 *              the head is bounded by max(max_msg, 8192) bytes.
 *   OPEN       the handshake struct is freed and a wslay context created; wslay reassembles
 *              fragments, answers pings, validates UTF-8 and masking, enforces max_msg.
 *   CLOSING    we queued a close frame (kp_ws_close); waiting for the peer's close.
 *   CLOSED     on_close was called (or the owner closed first): every call is a no-op.
 *
 * Choices where the RFC leaves room:
 *   - A wrong Sec-WebSocket-Version gets 400 with "Sec-WebSocket-Version: 13", as RFC 6455
 *     §4.2.2's own example does (§4.4 suggests 426; 400 keeps one status for every refusal).
 *   - A request head over the bound gets 431 Request Header Fields Too Large (RFC 6585).
 *   - on_close codes: 1002 for a refused or malformed handshake (server and client), 1009 for an
 *     over-long head or message, 1003 for a binary frame, 1007 for invalid UTF-8, 1011 when
 *     memory or the CSPRNG failed, 1006 when cb->send failed; after a close handshake the code
 *     the peer sent (1005 if none), or ours when we started it.
 *   - on_close is only ever called from kp_ws_feed, so an owner's callback never runs inside its
 *     own kp_ws_send_text or kp_ws_close. */
#include "ws.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <wslay/wslay.h>

#include "kupool/error.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24    /* base64 of the 16-byte nonce */
#define WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */
#define WS_MIN_HEAD 8192
#define WS_NAME_MAX 32    /* longer header names are none of ours */
#define WS_VALUE_MAX 256  /* longer values of our headers are refused */
#define WS_REASON_MAX 123 /* a close frame's reason: 125 bytes of payload less the code */

enum ws_state { WS_HANDSHAKE, WS_OPEN, WS_CLOSING, WS_CLOSED };

enum ws_header { H_OTHER, H_UPGRADE, H_CONNECTION, H_VERSION, H_KEY, H_ACCEPT };

/* Everything the handshake needs, freed as soon as it is over. */
typedef struct ws_handshake {
    http_parser parser;
    size_t head_bytes; /* head bytes parsed so far */
    size_t head_limit;
    char name[WS_NAME_MAX + 1];
    size_t name_len;
    bool name_too_long;
    bool in_value; /* between a header's value and the next name */
    enum ws_header current;
    char value[WS_VALUE_MAX + 1];
    size_t value_len;
    bool value_too_long;
    bool done; /* the head is complete */
    bool nomem;
    /* what the headers said */
    bool upgrade_ok;    /* Upgrade lists "websocket" */
    bool connection_ok; /* Connection lists "upgrade" */
    bool version_seen;
    bool version_bad;
    unsigned keys;
    bool key_ok;
    char key[WS_KEY_LEN + 1];   /* server: the client's key; client: the key we sent */
    unsigned accepts;
    char accept[WS_ACCEPT_LEN + 1]; /* client: the server's answer */
} ws_handshake;

struct kp_ws {
    kp_ws_callbacks cb;
    void *user;
    size_t max_msg;
    bool client;
    enum ws_state state;
    bool notified;       /* on_close was called */
    bool closed_by_us;   /* we sent the first close frame */
    uint16_t our_code;   /* ... with this code */
    uint16_t fail_code;  /* we failed the connection ourselves (1003) */
    ws_handshake *hs;    /* HANDSHAKE only */
    wslay_event_context_ptr ctx; /* OPEN and later */
    const uint8_t *in;   /* the bytes being fed, lent to wslay's recv callback */
    size_t in_len;
};

/* ---- small helpers ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The value without leading and trailing blanks (http-parser keeps trailing ones). */
static void trim(const char **s, size_t *len)
{
    while (*len && is_space(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_space((*s)[*len - 1]))
        (*len)--;
}

/* True when the comma-separated `list` holds `token` (case-insensitive), as Connection and
 * Upgrade are. */
static bool list_has_token(const char *list, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && list[j] != ',')
            j++;
        const char *item = list + i;
        size_t ilen = j - i;
        trim(&item, &ilen);
        if (ilen == tlen && strncasecmp(item, token, tlen) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Sec-WebSocket-Key must be the base64 of 16 bytes: 22 characters and "==". */
static bool key_is_valid(const char *key, size_t len)
{
    if (len != WS_KEY_LEN || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64_char(key[i]))
            return false;
    return true;
}

/* accept = base64(SHA-1(key + GUID)); out gets 28 characters and a NUL. */
static bool compute_accept(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    char joined[WS_KEY_LEN + sizeof(WS_GUID)];
    memcpy(joined, key, WS_KEY_LEN);
    memcpy(joined + WS_KEY_LEN, WS_GUID, sizeof(WS_GUID) - 1);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_Digest(joined, WS_KEY_LEN + sizeof(WS_GUID) - 1, digest, &dlen, EVP_sha1(), NULL) != 1 ||
        dlen != 20)
        return false;
    EVP_EncodeBlock((unsigned char *)out, digest, 20);
    return true;
}

static int send_bytes(kp_ws *ws, const char *data, size_t len)
{
    return ws->cb.send(ws->user, data, len) < 0 ? KP_EIO : 0;
}

static int send_str(kp_ws *ws, const char *s)
{
    return send_bytes(ws, s, strlen(s));
}

/* The one way out of kp_ws_feed: on_close, once; after it every call is a no-op. */
static int finish(kp_ws *ws, uint16_t code, const char *why, int rc)
{
    ws->state = WS_CLOSED;
    if (!ws->notified) {
        ws->notified = true;
        ws->cb.on_close(ws->user, code, why);
    }
    return rc;
}

/* ---- wslay callbacks ---- */

static ssize_t wsl_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    kp_ws *ws = user;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t wsl_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                        void *user)
{
    (void)flags;
    kp_ws *ws = user;
    if (ws->cb.send(ws->user, (const char *)data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int wsl_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)user;
    if (RAND_bytes(buf, (int)len) != 1) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

/* Refuses binary data at its first frame header, before wslay buffers its payload. */
static void wsl_frame_start(wslay_event_context_ptr ctx,
                            const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    kp_ws *ws = user;
    if (arg->opcode == WSLAY_BINARY_FRAME && ws->fail_code == 0) {
        static const char why[] = "binary frames are not supported";
        ws->fail_code = WSLAY_CODE_UNSUPPORTED_DATA;
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, (const uint8_t *)why,
                                sizeof(why) - 1);
        wslay_event_shutdown_read(ctx);
    }
}

static void wsl_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                    void *user)
{
    (void)ctx;
    kp_ws *ws = user;
    /* Pings, pongs and close frames are wslay's; after we started closing, text is ignored. */
    if (arg->opcode != WSLAY_TEXT_FRAME || ws->state != WS_OPEN || ws->fail_code)
        return;
    /* wslay gives an empty message no buffer; the owner gets "" rather than NULL. */
    ws->cb.on_text(ws->user, arg->msg_length ? (const char *)arg->msg : "", arg->msg_length);
}

static const struct wslay_event_callbacks wslay_callbacks = {
    .recv_callback = wsl_recv,
    .send_callback = wsl_send,
    .genmask_callback = wsl_genmask,
    .on_frame_recv_start_callback = wsl_frame_start,
    .on_msg_recv_callback = wsl_msg,
};

/* Hands everything wslay has queued to cb->send. */
static int flush(kp_ws *ws)
{
    return wslay_event_send(ws->ctx) == 0 ? 0 : KP_EIO;
}

static const char *close_why(uint16_t code)
{
    switch (code) {
    case WSLAY_CODE_PROTOCOL_ERROR:
        return "protocol error";
    case WSLAY_CODE_UNSUPPORTED_DATA:
        return "binary frame";
    case WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA:
        return "invalid UTF-8 in a text frame";
    case WSLAY_CODE_MESSAGE_TOO_BIG:
        return "message too big";
    default:
        return "connection failed";
    }
}

/* Feeds frame bytes to wslay, sends what it queued in reply, and says whether it is over. */
static int feed_frames(kp_ws *ws, const char *data, size_t len)
{
    ws->in = (const uint8_t *)data;
    ws->in_len = len;
    int r = wslay_event_recv(ws->ctx);
    ws->in = NULL; /* bytes after a close or an error are dropped */
    ws->in_len = 0;
    if (ws->state == WS_CLOSED) /* cb->send failed in a kp_ws_send_text/close from on_text */
        return finish(ws, WSLAY_CODE_ABNORMAL_CLOSURE, "transport failed", KP_EIO);
    if (r == WSLAY_ERR_NOMEM)
        return finish(ws, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory", KP_ENOMEM);
    if (flush(ws) != 0)
        return finish(ws, WSLAY_CODE_ABNORMAL_CLOSURE, "transport failed", KP_EIO);
    /* wsl_recv never fails, so any other error is wslay's frame parser refusing the bytes (a
     * control frame over 125 bytes or fragmented, a length not in its shortest form): a protocol
     * error, for which wslay queued (and we just sent) a close frame without a code. */
    if (r != 0)
        return finish(ws, WSLAY_CODE_PROTOCOL_ERROR, close_why(WSLAY_CODE_PROTOCOL_ERROR), KP_ECLOSED);
    if (wslay_event_get_close_received(ws->ctx)) { /* wslay queued and we sent the reply */
        if (ws->closed_by_us)
            return finish(ws, ws->our_code, "closed", KP_ECLOSED);
        return finish(ws, wslay_event_get_status_code_received(ws->ctx), "closed by peer",
                      KP_ECLOSED);
    }
    if (!wslay_event_get_read_enabled(ws->ctx)) { /* failed: a close frame with the code is out */
        uint16_t code = ws->fail_code ? ws->fail_code : wslay_event_get_status_code_sent(ws->ctx);
        return finish(ws, code, close_why(code), KP_ECLOSED);
    }
    return 0;
}

/* ---- handshake: http-parser callbacks ---- */

static enum ws_header classify(const ws_handshake *hs, bool client)
{
    static const struct {
        const char *name;
        enum ws_header h;
    } known[] = {
        {"upgrade", H_UPGRADE},
        {"connection", H_CONNECTION},
        {"sec-websocket-version", H_VERSION},
        {"sec-websocket-key", H_KEY},
        {"sec-websocket-accept", H_ACCEPT},
    };
    if (hs->name_too_long)
        return H_OTHER;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == hs->name_len && strncasecmp(known[i].name, hs->name, hs->name_len) == 0)
            return known[i].h == (client ? H_KEY : H_ACCEPT) ? H_OTHER : known[i].h;
    return H_OTHER;
}

/* One header is complete: note what it says. */
static void end_header(ws_handshake *hs)
{
    const char *v = hs->value;
    size_t len = hs->value_len;
    trim(&v, &len);
    switch (hs->value_too_long ? H_OTHER : hs->current) {
    case H_UPGRADE:
        hs->upgrade_ok = hs->upgrade_ok || list_has_token(v, len, "websocket");
        break;
    case H_CONNECTION:
        hs->connection_ok = hs->connection_ok || list_has_token(v, len, "upgrade");
        break;
    case H_VERSION:
        hs->version_seen = true;
        hs->version_bad = hs->version_bad || len != 2 || memcmp(v, "13", 2) != 0;
        break;
    case H_KEY:
        hs->keys++;
        hs->key_ok = key_is_valid(v, len);
        if (hs->key_ok)
            memcpy(hs->key, v, WS_KEY_LEN);
        break;
    case H_ACCEPT:
        hs->accepts++;
        if (len == WS_ACCEPT_LEN)
            memcpy(hs->accept, v, WS_ACCEPT_LEN);
        break;
    case H_OTHER:
        break;
    }
    /* A value too long for our buffer is only a refusal for the headers we read. */
    if (hs->value_too_long && hs->current != H_OTHER) {
        if (hs->current == H_KEY)
            hs->keys++;
        if (hs->current == H_VERSION)
            hs->version_seen = hs->version_bad = true;
    }
    hs->name_len = 0;
    hs->name_too_long = false;
    hs->value_len = 0;
    hs->value_too_long = false;
    hs->in_value = false;
}

static int hp_header_field(http_parser *p, const char *at, size_t len)
{
    ws_handshake *hs = ((kp_ws *)p->data)->hs;
    if (hs->in_value)
        end_header(hs);
    if (hs->name_len + len > WS_NAME_MAX) {
        hs->name_too_long = true;
    } else {
        memcpy(hs->name + hs->name_len, at, len);
        hs->name_len += len;
    }
    return 0;
}

static int hp_header_value(http_parser *p, const char *at, size_t len)
{
    kp_ws *ws = p->data;
    ws_handshake *hs = ws->hs;
    if (!hs->in_value) {
        hs->in_value = true;
        hs->current = classify(hs, ws->client);
    }
    if (hs->current == H_OTHER || hs->value_too_long)
        return 0;
    if (hs->value_len + len > WS_VALUE_MAX) {
        hs->value_too_long = true;
        return 0;
    }
    memcpy(hs->value + hs->value_len, at, len);
    hs->value_len += len;
    return 0;
}

static int hp_headers_complete(http_parser *p)
{
    ws_handshake *hs = ((kp_ws *)p->data)->hs;
    if (hs->in_value)
        end_header(hs);
    return 1; /* no body: whatever follows the head is frames */
}

static int hp_message_complete(http_parser *p)
{
    ws_handshake *hs = ((kp_ws *)p->data)->hs;
    hs->done = true;
    http_parser_pause(p, 1); /* stop right after the head; execute returns its length */
    return 0;
}

static const http_parser_settings hp_settings = {
    .on_header_field = hp_header_field,
    .on_header_value = hp_header_value,
    .on_headers_complete = hp_headers_complete,
    .on_message_complete = hp_message_complete,
};

static int handshake_new(kp_ws *ws, enum http_parser_type type)
{
    ws->hs = calloc(1, sizeof(*ws->hs));
    if (!ws->hs)
        return KP_ENOMEM;
    http_parser_init(&ws->hs->parser, type);
    ws->hs->parser.data = ws;
    ws->hs->head_limit = ws->max_msg > WS_MIN_HEAD ? ws->max_msg : WS_MIN_HEAD;
    return 0;
}

/* The handshake is over: frames from now on. */
static int open_frames(kp_ws *ws)
{
    int r = ws->client ? wslay_event_context_client_init(&ws->ctx, &wslay_callbacks, ws)
                       : wslay_event_context_server_init(&ws->ctx, &wslay_callbacks, ws);
    if (r != 0)
        return KP_ENOMEM;
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_msg);
    return 0;
}

static void handshake_free(kp_ws *ws)
{
    free(ws->hs);
    ws->hs = NULL;
}

/* Server: refuses the request with `status` (a status line and the headers after it). */
static int refuse(kp_ws *ws, const char *status, bool version_hint, uint16_t code, const char *why)
{
    handshake_free(ws);
    send_str(ws, status);
    send_str(ws, "Connection: close\r\nContent-Length: 0\r\n");
    if (version_hint)
        send_str(ws, "Sec-WebSocket-Version: 13\r\n");
    send_str(ws, "\r\n");
    return finish(ws, code, why, KP_ECLOSED);
}

#define BAD_REQUEST "HTTP/1.1 400 Bad Request\r\n"

/* Server: the request head is complete; answer it. */
static int server_answer(kp_ws *ws)
{
    const ws_handshake *hs = ws->hs;
    const http_parser *p = &hs->parser;
    if (p->method != HTTP_GET)
        return refuse(ws, BAD_REQUEST, false, 1002, "bad handshake: method is not GET");
    if (p->http_major != 1 || p->http_minor < 1)
        return refuse(ws, BAD_REQUEST, false, 1002, "bad handshake: not HTTP/1.1");
    if (!hs->upgrade_ok || !hs->connection_ok)
        return refuse(ws, BAD_REQUEST, false, 1002, "bad handshake: not a websocket upgrade");
    if (!hs->version_seen || hs->version_bad)
        return refuse(ws, BAD_REQUEST, true, 1002, "bad handshake: Sec-WebSocket-Version is not 13");
    if (hs->keys != 1 || !hs->key_ok)
        return refuse(ws, BAD_REQUEST, false, 1002, "bad handshake: bad Sec-WebSocket-Key");
    char accept[WS_ACCEPT_LEN + 1];
    if (!compute_accept(hs->key, accept))
        return refuse(ws, "HTTP/1.1 500 Internal Server Error\r\n", false, 1011, "SHA-1 unavailable");
    if (open_frames(ws) != 0) {
        handshake_free(ws);
        return finish(ws, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory", KP_ENOMEM);
    }
    handshake_free(ws);
    char reply[160];
    int n = snprintf(reply, sizeof(reply),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (send_bytes(ws, reply, (size_t)n) != 0)
        return finish(ws, WSLAY_CODE_ABNORMAL_CLOSURE, "transport failed", KP_EIO);
    ws->state = WS_OPEN;
    return 0;
}

/* Client: the response head is complete; check it. */
static int client_check(kp_ws *ws)
{
    const ws_handshake *hs = ws->hs;
    const char *why = NULL;
    char expect[WS_ACCEPT_LEN + 1];
    if (hs->parser.status_code != 101)
        why = "handshake refused: the server did not answer 101";
    else if (!hs->upgrade_ok || !hs->connection_ok)
        why = "bad handshake: the 101 is not a websocket upgrade";
    else if (!compute_accept(hs->key, expect))
        why = "SHA-1 unavailable";
    else if (hs->accepts != 1 || memcmp(expect, hs->accept, WS_ACCEPT_LEN) != 0)
        why = "bad handshake: wrong Sec-WebSocket-Accept";
    if (why) {
        handshake_free(ws);
        return finish(ws, 1002, why, KP_ECLOSED);
    }
    handshake_free(ws);
    if (open_frames(ws) != 0)
        return finish(ws, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory", KP_ENOMEM);
    ws->state = WS_OPEN;
    return 0;
}

/* Parses handshake bytes; *used says how many belonged to the head once it is complete. */
static int feed_handshake(kp_ws *ws, const char *data, size_t len, size_t *used)
{
    ws_handshake *hs = ws->hs;
    if (len == 0) /* http_parser_execute takes a zero length for the end of the stream */
        return 0;
    size_t room = hs->head_limit - hs->head_bytes;
    size_t n = len < room ? len : room;
    size_t parsed = http_parser_execute(&hs->parser, &hp_settings, data, n);
    if (hs->done) {
        *used = parsed;
        return ws->client ? client_check(ws) : server_answer(ws);
    }
    if (HTTP_PARSER_ERRNO(&hs->parser) != HPE_OK) {
        if (ws->client) {
            handshake_free(ws);
            return finish(ws, 1002, "bad handshake: malformed HTTP response", KP_ECLOSED);
        }
        return refuse(ws, BAD_REQUEST, false, 1002, "bad handshake: malformed HTTP request");
    }
    hs->head_bytes += n;
    if (hs->head_bytes >= hs->head_limit) {
        if (ws->client) {
            handshake_free(ws);
            return finish(ws, 1009, "bad handshake: response head too long", KP_ECLOSED);
        }
        return refuse(ws, "HTTP/1.1 431 Request Header Fields Too Large\r\n", false, 1009,
                      "bad handshake: request head too long");
    }
    *used = n;
    return 0;
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
    if (handshake_new(ws, client ? HTTP_RESPONSE : HTTP_REQUEST) != 0) {
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
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        kp_ws_free(ws);
        return KP_EIO;
    }
    EVP_EncodeBlock((unsigned char *)ws->hs->key, nonce, sizeof(nonce));
    /* The request is formatted piecewise: host and path have no fixed bound. */
    if (send_str(ws, "GET ") != 0 || send_str(ws, path) != 0 ||
        send_str(ws, " HTTP/1.1\r\nHost: ") != 0 || send_str(ws, host) != 0 ||
        send_str(ws, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ") != 0 ||
        send_str(ws, ws->hs->key) != 0 || send_str(ws, "\r\nSec-WebSocket-Version: 13\r\n\r\n") != 0) {
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
            return finish(ws, WSLAY_CODE_ABNORMAL_CLOSURE, "transport failed", KP_EIO);
        data += used;
        len -= used;
    }
    return feed_frames(ws, data, len);
}

int kp_ws_send_text(kp_ws *ws, const char *msg, size_t len)
{
    if (ws->state != WS_OPEN)
        return KP_ECLOSED;
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)msg, .msg_length = len};
    int r = wslay_event_queue_msg(ws->ctx, &m);
    if (r == WSLAY_ERR_NOMEM)
        return KP_ENOMEM;
    if (r != 0)
        return KP_ECLOSED;
    if (flush(ws) != 0) {
        ws->state = WS_CLOSED;
        return KP_EIO;
    }
    return 0;
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
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > WS_REASON_MAX)
        rlen = WS_REASON_MAX;
    ws->state = WS_CLOSING;
    ws->closed_by_us = true;
    ws->our_code = code;
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen) != 0 || flush(ws) != 0)
        ws->state = WS_CLOSED;
}

bool kp_ws_is_open(const kp_ws *ws)
{
    return ws && ws->state == WS_OPEN;
}

void kp_ws_free(kp_ws *ws)
{
    if (!ws)
        return;
    if (ws->ctx)
        wslay_event_context_free(ws->ctx);
    free(ws->hs);
    free(ws);
}
