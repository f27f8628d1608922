/* The WebSocket opening handshake (RFC 6455 §4): the HTTP head parsed with http-parser, the
 * few header values that matter collected in a small struct, and the checks of a request
 * (server) or a response (client). No I/O and no framing: ws.c feeds it the bytes of the head
 * and answers or refuses with what it says. */
#include "ws_handshake.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kupool/error.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_MIN_HEAD 8192
#define WS_NAME_MAX 32    /* longer header names are none of ours */
#define WS_VALUE_MAX 256  /* longer values of our headers are refused */

enum ws_header { H_OTHER, H_UPGRADE, H_CONNECTION, H_VERSION, H_KEY, H_ACCEPT };

/* Everything the handshake needs, freed as soon as it is over. */
struct ws_handshake {
    http_parser parser;
    bool client;       /* parsing a response (we sent the request) */
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
};


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
    ws_handshake *hs = p->data;
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
    ws_handshake *hs = p->data;
    if (!hs->in_value) {
        hs->in_value = true;
        hs->current = classify(hs, hs->client);
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
    ws_handshake *hs = p->data;
    if (hs->in_value)
        end_header(hs);
    return 1; /* no body: whatever follows the head is frames */
}

static int hp_message_complete(http_parser *p)
{
    ws_handshake *hs = p->data;
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

int ws_hs_new(bool client, size_t max_msg, ws_handshake **out)
{
    ws_handshake *hs = calloc(1, sizeof(*hs));
    *out = hs;
    if (!hs)
        return KP_ENOMEM;
    http_parser_init(&hs->parser, client ? HTTP_RESPONSE : HTTP_REQUEST);
    hs->parser.data = hs;
    hs->client = client;
    hs->head_limit = max_msg > WS_MIN_HEAD ? max_msg : WS_MIN_HEAD;
    return 0;
}

void ws_hs_free(ws_handshake *hs)
{
    free(hs);
}

size_t ws_hs_size(void)
{
    return sizeof(ws_handshake);
}

enum ws_hs_status ws_hs_feed(ws_handshake *hs, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (len == 0) /* http_parser_execute takes a zero length for the end of the stream */
        return WS_HS_MORE;
    size_t room = hs->head_limit - hs->head_bytes;
    size_t n = len < room ? len : room;
    size_t parsed = http_parser_execute(&hs->parser, &hp_settings, data, n);
    if (hs->done) {
        *used = parsed;
        return WS_HS_COMPLETE;
    }
    if (HTTP_PARSER_ERRNO(&hs->parser) != HPE_OK)
        return WS_HS_MALFORMED;
    hs->head_bytes += n;
    if (hs->head_bytes >= hs->head_limit)
        return WS_HS_TOO_LONG;
    *used = n;
    return WS_HS_MORE;
}

#define BAD_REQUEST "HTTP/1.1 400 Bad Request\r\n"

static bool refusal(ws_hs_refusal *r, const char *status, bool version_hint, uint16_t code,
                    const char *why)
{
    *r = (ws_hs_refusal){.status = status, .version_hint = version_hint, .code = code, .why = why};
    return false;
}

bool ws_hs_check_request(const ws_handshake *hs, char accept[WS_ACCEPT_LEN + 1], ws_hs_refusal *r)
{
    const http_parser *p = &hs->parser;
    if (p->method != HTTP_GET)
        return refusal(r, BAD_REQUEST, false, 1002, "bad handshake: method is not GET");
    if (p->http_major != 1 || p->http_minor < 1)
        return refusal(r, BAD_REQUEST, false, 1002, "bad handshake: not HTTP/1.1");
    if (!hs->upgrade_ok || !hs->connection_ok)
        return refusal(r, BAD_REQUEST, false, 1002, "bad handshake: not a websocket upgrade");
    if (!hs->version_seen || hs->version_bad)
        return refusal(r, BAD_REQUEST, true, 1002, "bad handshake: Sec-WebSocket-Version is not 13");
    if (hs->keys != 1 || !hs->key_ok)
        return refusal(r, BAD_REQUEST, false, 1002, "bad handshake: bad Sec-WebSocket-Key");
    if (!compute_accept(hs->key, accept))
        return refusal(r, "HTTP/1.1 500 Internal Server Error\r\n", false, 1011,
                       "SHA-1 unavailable");
    return true;
}

void ws_hs_refuse_malformed(ws_hs_refusal *r, bool too_long)
{
    if (too_long)
        refusal(r, "HTTP/1.1 431 Request Header Fields Too Large\r\n", false, 1009,
                "bad handshake: request head too long");
    else
        refusal(r, BAD_REQUEST, false, 1002, "bad handshake: malformed HTTP request");
}

const char *ws_hs_check_response(const ws_handshake *hs)
{
    char expect[WS_ACCEPT_LEN + 1];
    if (hs->parser.status_code != 101)
        return "handshake refused: the server did not answer 101";
    if (!hs->upgrade_ok || !hs->connection_ok)
        return "bad handshake: the 101 is not a websocket upgrade";
    if (!compute_accept(hs->key, expect))
        return "SHA-1 unavailable";
    if (hs->accepts != 1 || memcmp(expect, hs->accept, WS_ACCEPT_LEN) != 0)
        return "bad handshake: wrong Sec-WebSocket-Accept";
    return NULL;
}

const char *ws_hs_make_key(ws_handshake *hs)
{
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return NULL;
    EVP_EncodeBlock((unsigned char *)hs->key, nonce, sizeof(nonce));
    return hs->key;
}
