/* libFuzzer harness for ws.c and ws_frame.c: arbitrary bytes into a server-side kp_ws (an
 * upgrade request, then frames) and a client-side kp_ws (a response, then frames), cut into
 * feeds at points the input chooses.
 *
 * Input: byte 0 picks the mode, byte 1 seeds the cut points, the rest is the peer's bytes.
 *   bit 0  0 server side, 1 client side
 *   bit 1  first complete a valid handshake, so the rest is all frames
 *   bit 2  on_text answers each message (kp_ws_send_text from inside kp_ws_feed)
 *   bit 3  on_text starts the close handshake after the first message
 *   bit 4  one byte per feed
 * Checked beyond the sanitizers: on_close at most once and nothing after it, every message
 * within max_msg, and the connection's memory within max_msg and a control frame of its idle
 * size whatever the fragmentation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ws.h"

#define FUZZ_MAX_MSG 300
#define REQUEST_CAP 512

typedef struct fuzz_conn {
    kp_ws *ws;
    int mode;
    int closes;
    int texts;
    char request[REQUEST_CAP]; /* the client's upgrade request, for its key */
    size_t request_len;
} fuzz_conn;

static int on_send(void *user, const char *data, size_t len)
{
    fuzz_conn *c = user;
    size_t room = REQUEST_CAP - 1 - c->request_len;
    size_t n = len < room ? len : room;
    memcpy(c->request + c->request_len, data, n);
    c->request_len += n;
    return 0;
}

static void on_text(void *user, const char *msg, size_t len)
{
    fuzz_conn *c = user;
    if (c->closes || len > FUZZ_MAX_MSG || (len && !msg))
        __builtin_trap();
    c->texts++;
    if (c->mode & 4)
        kp_ws_send_text(c->ws, msg, len);
    if (c->mode & 8)
        kp_ws_close(c->ws, 1000, "bye");
}

static void on_close(void *user, uint16_t code, const char *why)
{
    fuzz_conn *c = user;
    (void)code;
    (void)why;
    c->closes++;
}

static const kp_ws_callbacks callbacks = {.send = on_send, .on_text = on_text, .on_close = on_close};

static const char GOOD_REQUEST[] = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n";

/* The 101 a server would send to the key in the client's request. */
static size_t good_response(const fuzz_conn *c, char *out, size_t cap)
{
    const char *k = strstr(c->request, "Sec-WebSocket-Key: ");
    if (!k)
        return 0;
    char joined[128];
    memcpy(joined, k + 19, 24);
    memcpy(joined + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(joined, 60, md, &mdlen, EVP_sha1(), NULL) != 1)
        return 0;
    char accept[32];
    EVP_EncodeBlock((unsigned char *)accept, md, (int)mdlen);
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
    size_t n = strlen(head);
    if (n + 28 + 4 > cap)
        return 0;
    memcpy(out, head, n);
    memcpy(out + n, accept, 28);
    memcpy(out + n + 28, "\r\n\r\n", 4);
    return n + 32;
}

/* Bounds a connection may never pass: the handshake's state, or one message and one control
 * frame on top of the idle struct. */
static void check_memory(const fuzz_conn *c, size_t idle)
{
    size_t limit = idle + FUZZ_MAX_MSG + 125 + 1024; /* 1024: the handshake struct */
    if (kp_ws_memory(c->ws) > limit)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fuzz_conn c = {.mode = data[0]};
    uint32_t rng = data[1] * 2654435761u + 1;
    data += 2;
    size -= 2;
    int rc = (c.mode & 1) ? kp_ws_client_new(&callbacks, &c, "h:1", "/", FUZZ_MAX_MSG, &c.ws)
                          : kp_ws_server_new(&callbacks, &c, FUZZ_MAX_MSG, &c.ws);
    if (rc != 0)
        return 0;
    size_t idle = kp_ws_memory(c.ws);
    if (c.mode & 2) {
        char resp[256];
        size_t n = (c.mode & 1) ? good_response(&c, resp, sizeof(resp)) : 0;
        if ((c.mode & 1) ? kp_ws_feed(c.ws, resp, n) != 0
                         : kp_ws_feed(c.ws, GOOD_REQUEST, sizeof(GOOD_REQUEST) - 1) != 0)
            __builtin_trap(); /* a valid handshake must open */
        if (!kp_ws_is_open(c.ws))
            __builtin_trap();
    }
    size_t off = 0;
    while (off < size) {
        /* cut points: mostly short feeds, sometimes the whole rest */
        rng = rng * 1103515245u + 12345u;
        size_t n = (c.mode & 16) ? 1 : (rng >> 16) % 8 == 0 ? size - off : 1 + (rng >> 16) % 32;
        if (n > size - off)
            n = size - off;
        int closes_before = c.closes;
        rc = kp_ws_feed(c.ws, (const char *)data + off, n);
        off += n;
        if (c.closes > 1 || (closes_before && c.closes != closes_before))
            __builtin_trap();
        if (rc != 0 && kp_ws_is_open(c.ws))
            __builtin_trap();
        check_memory(&c, idle);
    }
    kp_ws_free(c.ws);
    return 0;
}
