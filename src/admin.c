/* placeholder: admin HTTP endpoint, being written */
#include "admin.h"

#include "kupool/error.h"

int kp_admin_open(kp_server *s, const char *addr, kp_admin **out) { return KP_ENOTSUP; }

void kp_admin_close(kp_admin *a) {}
