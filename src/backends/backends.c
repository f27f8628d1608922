#include "backends.h"

#include <string.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "backends"

static const kp_mq_backend mq_backends[] = {
    {"memory", kp_mq_memory_open},
    {"rabbit", kp_mq_rabbit_open},
};

static const kp_stats_backend stats_backends[] = {
    {"memory", kp_stats_memory_open},
    {"pg", kp_stats_pg_open},
};

/* One line naming what is wrong, for the caller's "the line above says why". */
static int refuse(const char *kind, const char *backend, const char *slot, unsigned version,
                  unsigned want)
{
    if (slot)
        KP_ERROR(MODULE, "backend leaves a mandatory slot empty", KP_STR("kind", kind),
                 KP_QSTR("backend", backend), KP_STR("slot", slot));
    else
        KP_ERROR(MODULE, "backend built for another interface version", KP_STR("kind", kind),
                 KP_QSTR("backend", backend), KP_UINT("version", version), KP_UINT("want", want));
    return KP_EINVAL;
}

int kp_mq_check(const kp_mq *mq, const char *backend)
{
    if (mq->version != KP_MQ_VERSION)
        return refuse("mq", backend, NULL, mq->version, KP_MQ_VERSION);
    /* `pending` is optional: kp_mq_pending() answers -1 without it. */
    const char *missing = !mq->name      ? "name"
                          : !mq->publish ? "publish"
                          : !mq->consume ? "consume"
                          : !mq->ack     ? "ack"
                          : !mq->free    ? "free"
                                         : NULL;
    return missing ? refuse("mq", backend, missing, 0, 0) : 0;
}

int kp_stats_check(const kp_stats *st, const char *backend)
{
    if (st->version != KP_STATS_VERSION)
        return refuse("stats", backend, NULL, st->version, KP_STATS_VERSION);
    /* `evictions` is optional: kp_stats_get_evictions() answers KP_ENOTSUP without it. */
    const char *missing = !st->name     ? "name"
                          : !st->record ? "record"
                          : !st->query  ? "query"
                          : !st->free   ? "free"
                                        : NULL;
    return missing ? refuse("stats", backend, missing, 0, 0) : 0;
}

int kp_mq_open_from(const kp_mq_backend *table, size_t n, const kp_config *cfg, kp_mq **out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, cfg->mq) != 0)
            continue;
        kp_mq *mq = NULL;
        int rc = table[i].open(cfg, &mq);
        if (rc != 0)
            return rc;
        if ((rc = kp_mq_check(mq, table[i].name)) != 0) {
            /* Released only through its own free: a backend without one leaks, once, at start. */
            if (mq->free)
                mq->free(mq);
            return rc;
        }
        *out = mq;
        return 0;
    }
    return KP_EINVAL;
}

int kp_stats_open_from(const kp_stats_backend *table, size_t n, const kp_config *cfg,
                       kp_stats **out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, cfg->store) != 0)
            continue;
        kp_stats *st = NULL;
        int rc = table[i].open(cfg, &st);
        if (rc != 0)
            return rc;
        if ((rc = kp_stats_check(st, table[i].name)) != 0) {
            if (st->free)
                st->free(st);
            return rc;
        }
        *out = st;
        return 0;
    }
    return KP_EINVAL;
}

int kp_mq_open(const kp_config *cfg, kp_mq **out)
{
    return kp_mq_open_from(mq_backends, sizeof(mq_backends) / sizeof(mq_backends[0]), cfg, out);
}

int kp_stats_open(const kp_config *cfg, kp_stats **out)
{
    return kp_stats_open_from(stats_backends, sizeof(stats_backends) / sizeof(stats_backends[0]),
                              cfg, out);
}
