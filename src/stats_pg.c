/* placeholder: stats_pg backend, being written */
#include "backends.h"
#include "kupool/error.h"
int kp_stats_pg_open(const kp_config *cfg, kp_stats **out) { return KP_EINVAL; }
