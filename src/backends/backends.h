/* The backend registry: maps `-mq NAME` and `-store NAME` to a constructor. Adding a backend is
 * one new file with a constructor plus one row in a table in backends.c; nothing in the core
 * changes. What a constructor returns is checked before anyone calls it: the interface version
 * it was built for, and every mandatory slot (a NULL slot would crash on a worker thread much
 * later, far from the backend that left it out). */
#ifndef KP_BACKENDS_H
#define KP_BACKENDS_H

#include <stddef.h>

#include "kupool/config.h"
#include "kupool/mq.h"
#include "kupool/stats.h"

/* Builds the mq/stats backend cfg names. Returns 0, KP_EINVAL (unknown name, bad settings, or a
 * vtable that fails kp_*_check: exit 2), KP_ENOMEM, or the constructor's error. */
int kp_mq_open(const kp_config *cfg, kp_mq **out);
int kp_stats_open(const kp_config *cfg, kp_stats **out);

/* One row of a registry table. */
typedef struct kp_mq_backend {
    const char *name; /* the -mq value */
    int (*open)(const kp_config *cfg, kp_mq **out);
} kp_mq_backend;

typedef struct kp_stats_backend {
    const char *name; /* the -store value */
    int (*open)(const kp_config *cfg, kp_stats **out);
} kp_stats_backend;

/* kp_mq_open / kp_stats_open over another table (tests register fakes this way). A vtable that
 * fails its check is released through its own `free`, when it has one, and gives KP_EINVAL. */
int kp_mq_open_from(const kp_mq_backend *table, size_t n, const kp_config *cfg, kp_mq **out);
int kp_stats_open_from(const kp_stats_backend *table, size_t n, const kp_config *cfg,
                       kp_stats **out);

/* 0 when `version` is this build's KP_MQ_VERSION / KP_STATS_VERSION and every mandatory slot
 * (mq: name, publish, consume, ack, free; stats: name, record, query, free) is set; else
 * KP_EINVAL after one ERROR line naming `backend` and the version or the first empty slot. */
int kp_mq_check(const kp_mq *mq, const char *backend);
int kp_stats_check(const kp_stats *st, const char *backend);

/* The constructors. */
int kp_mq_memory_open(const kp_config *cfg, kp_mq **out);
int kp_stats_memory_open(const kp_config *cfg, kp_stats **out);
int kp_mq_rabbit_open(const kp_config *cfg, kp_mq **out); /* mq_rabbit.c */
int kp_stats_pg_open(const kp_config *cfg, kp_stats **out); /* stats_pg.c */

/* The memory mq's bound, in events: publish waits, then fails with KP_EAGAIN, beyond it. */
#define KP_MQ_MEMORY_CAPACITY 65536

#endif
