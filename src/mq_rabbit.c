/* placeholder: mq_rabbit backend, being written */
#include "backends.h"
#include "kupool/error.h"
int kp_mq_rabbit_open(const kp_config *cfg, kp_mq **out) { return KP_EINVAL; }
