/* The admin HTTP endpoint (SPEC §5, -http_addr): GET /metrics (Prometheus text), GET /healthz,
 * GET /stats?username=U. It runs on the server's loop; a /stats query, which may block on the
 * stats store, runs on a libuv worker. */
#ifndef KP_ADMIN_H
#define KP_ADMIN_H

#include "server.h"

typedef struct kp_admin kp_admin;

/* Bounds of the endpoint (docs/observability.md). */
#define KP_ADMIN_MAX_CONNS 32              /* more are closed at accept; within FD_RESERVE */
#define KP_ADMIN_MAX_HEAD (8u * 1024u)     /* request line + headers; more is answered 431 */
#define KP_ADMIN_REQUEST_TIMEOUT_MS 10000u /* from accept to the end of the exchange */

/* Binds `addr` ("host:port") on the server's loop and starts serving. Returns 0, KP_EINVAL (bad
 * address) or KP_EIO (cannot listen); one log line says why. */
int kp_admin_open(kp_server *s, const char *addr, kp_admin **out);

/* Stops listening and closes every admin connection; memory is released in close callbacks
 * (and after any /stats query still running on a worker), so the loop must run afterwards. */
void kp_admin_close(kp_admin *a);

#endif
