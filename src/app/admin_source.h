/* The admin endpoint's view of the daemon: the one piece of code that knows both the app's parts
 * (the server's counters, the protocol, the pipeline, the consumer and the backends) and the
 * admin snapshot it fills. */
#ifndef KP_ADMIN_SOURCE_H
#define KP_ADMIN_SOURCE_H

#include "admin_snapshot.h"
#include "app.h"

/* A source for kp_admin_open that reports `app` (borrowed: the app closes its admin endpoint
 * before it frees anything the snapshot reads). */
kp_admin_source kp_app_admin_source(kp_app *app);

#endif
