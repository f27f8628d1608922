/* The admin HTTP endpoint (SPEC §5, -http_addr): GET /metrics (Prometheus text), GET /healthz,
 * GET /stats?username=U. It runs on the server's loop; a /stats query, which may block on the
 * stats store, runs on the endpoint's own query thread (admin_query.h), never on libuv's pool. */
#ifndef KP_ADMIN_H
#define KP_ADMIN_H

#include "admin_http.h"
#include "app.h"

typedef struct kp_admin kp_admin;

/* Bounds of the endpoint (docs/observability.md). */
/* Open connections, within the server's FD_RESERVE. When all are taken a new one evicts the
 * oldest that has not sent a complete head (or already got its answer). */
#define KP_ADMIN_MAX_CONNS 32
/* From accept to the end of the exchange: the head within it (SPEC §9), else a silent close;
 * a /stats answer within it, else 504. */
#define KP_ADMIN_REQUEST_TIMEOUT_MS 10000u
/* KP_ADMIN_MAX_HEAD (request line + headers) is in admin_http.h. */

/* Binds `addr` ("host:port") on the app's loop and starts serving. Returns 0, KP_EINVAL (bad
 * address) or KP_EIO (cannot listen); one log line says why. */
int kp_admin_open(kp_app *app, const char *addr, kp_admin **out);

/* Stops listening and closes every admin connection; memory is released in close callbacks
 * (and after any /stats query still running on a worker), so the loop must run afterwards. */
void kp_admin_close(kp_admin *a);

#endif
