/* The admin endpoint's view of a server: the one piece of code that knows both the server (its
 * counters, protocol, pipeline, consumer and backends) and the admin snapshot it fills. */
#ifndef KP_ADMIN_SOURCE_H
#define KP_ADMIN_SOURCE_H

#include "admin_snapshot.h"
#include "server.h"

/* A source for kp_admin_open that reports `s` (borrowed: the server closes its admin endpoint
 * before it frees anything the snapshot reads). */
kp_admin_source kp_server_admin_source(kp_server *s);

#endif
