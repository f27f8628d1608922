/* The one health rule: which backends are up, from a snapshot. /healthz answers from it and the
 * kupool_backend_up gauge of /metrics prints it, so the two can never disagree. */
#ifndef KP_ADMIN_HEALTH_H
#define KP_ADMIN_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "admin_snapshot.h"

typedef struct kp_backend_health {
    /* Down while its last publish failed (pipeline), or while the consumer's last failure was
     * on the mq side (consuming). */
    bool mq_up;
    /* Down while the consumer's last failure was a stats write. */
    bool stats_up;
} kp_backend_health;

kp_backend_health kp_admin_backend_health(const kp_admin_snapshot *s);

/* The /healthz answer. */
typedef struct kp_health_answer {
    unsigned status; /* 200, or 503 */
    /* "ok\n"; "shutting down\n"; or one line per failing backend naming it,
     * "mq failing: rabbit\n" then "stats failing: pg\n". */
    char body[256];
    size_t len;
} kp_health_answer;

void kp_admin_healthz(const kp_admin_snapshot *s, kp_health_answer *out);

#endif
