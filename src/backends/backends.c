#include "backends.h"

#include <string.h>

#include "kupool/error.h"

typedef struct mq_entry {
    const char *name;
    int (*open)(const kp_config *cfg, kp_mq **out);
} mq_entry;

typedef struct stats_entry {
    const char *name;
    int (*open)(const kp_config *cfg, kp_stats **out);
} stats_entry;

static const mq_entry mq_backends[] = {
    {"memory", kp_mq_memory_open},
    {"rabbit", kp_mq_rabbit_open},
};

static const stats_entry stats_backends[] = {
    {"memory", kp_stats_memory_open},
    {"pg", kp_stats_pg_open},
};

int kp_mq_open(const kp_config *cfg, kp_mq **out)
{
    for (size_t i = 0; i < sizeof(mq_backends) / sizeof(mq_backends[0]); i++)
        if (strcmp(mq_backends[i].name, cfg->mq) == 0)
            return mq_backends[i].open(cfg, out);
    return KP_EINVAL;
}

int kp_stats_open(const kp_config *cfg, kp_stats **out)
{
    for (size_t i = 0; i < sizeof(stats_backends) / sizeof(stats_backends[0]); i++)
        if (strcmp(stats_backends[i].name, cfg->store) == 0)
            return stats_backends[i].open(cfg, out);
    return KP_EINVAL;
}
