/* The backend registry: maps `-mq NAME` and `-store NAME` to a constructor. Adding a backend is
 * one new file with a constructor plus one row in a table in backends.c; nothing in the core
 * changes. */
#ifndef KP_BACKENDS_H
#define KP_BACKENDS_H

#include "kupool/config.h"
#include "kupool/mq.h"
#include "kupool/stats.h"

/* Builds the mq/stats backend cfg names. Returns 0, KP_EINVAL (unknown name or bad settings:
 * exit 2), KP_ENOMEM, or the constructor's error. */
int kp_mq_open(const kp_config *cfg, kp_mq **out);
int kp_stats_open(const kp_config *cfg, kp_stats **out);

/* The constructors. */
int kp_mq_memory_open(const kp_config *cfg, kp_mq **out);
int kp_stats_memory_open(const kp_config *cfg, kp_stats **out);
int kp_mq_rabbit_open(const kp_config *cfg, kp_mq **out); /* mq_rabbit.c */
int kp_stats_pg_open(const kp_config *cfg, kp_stats **out); /* stats_pg.c */

/* The memory mq's bound, in events: publish waits, then fails with KP_EAGAIN, beyond it. */
#define KP_MQ_MEMORY_CAPACITY 65536

#endif
