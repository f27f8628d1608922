/* placeholder: WebSocket framing, being written */
#include "ws.h"

#include "kupool/error.h"

int kp_ws_server_new(const kp_ws_callbacks *cb, void *user, size_t max_msg, kp_ws **out) { return KP_ENOTSUP; }
int kp_ws_client_new(const kp_ws_callbacks *cb, void *user, const char *host, const char *path,
                     size_t max_msg, kp_ws **out) { return KP_ENOTSUP; }
int kp_ws_feed(kp_ws *ws, const char *data, size_t len) { return KP_ENOTSUP; }
int kp_ws_send_text(kp_ws *ws, const char *msg, size_t len) { return KP_ENOTSUP; }
void kp_ws_close(kp_ws *ws, uint16_t code, const char *reason) {}
bool kp_ws_is_open(const kp_ws *ws) { return false; }
void kp_ws_free(kp_ws *ws) {}
