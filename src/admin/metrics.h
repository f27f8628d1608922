/* GET /metrics: the Prometheus text exposition (0.0.4) of a snapshot, with the endpoint's own
 * bounds and the process gauges. Pure: no loop, no sockets, so tests/test_metrics.c renders
 * hand-made snapshots. The families, names, labels and HELP texts are the contract of
 * docs/observability.md; tests/test_admin.c checks the served text line by line. */
#ifndef KP_ADMIN_METRICS_H
#define KP_ADMIN_METRICS_H

#include <stdint.h>

#include "admin_snapshot.h"
#include "textbuf.h"

/* The admin endpoint's own numbers. */
typedef struct kp_admin_endpoint_stats {
    uint64_t connections;     /* open admin connections */
    uint64_t evicted;         /* closed to make room for a new one */
    uint64_t refused;         /* closed at accept: no slot could be freed */
    uint64_t queries_queued;  /* /stats queries waiting for the query worker */
    uint64_t queries_refused; /* /stats answered 503: the query queue was full */
    uint64_t queries_dropped; /* /stats queries dropped before they ran */
} kp_admin_endpoint_stats;

/* The process_* gauges; -1 when unknown. */
typedef struct kp_process_gauges {
    int64_t rss_bytes;
    int64_t open_fds;
    int64_t max_fds;
} kp_process_gauges;

/* Appends the whole exposition to `tb`; on out of memory `tb->oom` is set. */
void kp_admin_render_metrics(const kp_admin_snapshot *s, const kp_admin_endpoint_stats *e,
                             const kp_process_gauges *p, kp_textbuf *tb);

#endif
