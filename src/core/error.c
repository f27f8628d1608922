/* kp_strerror(): the text a log line shows for a kp_error code. */
#include "kupool/error.h"

const char *kp_strerror(int err)
{
    switch (err) {
    case KP_OK:
        return "success";
    case KP_ENOMEM:
        return "out of memory";
    case KP_EINVAL:
        return "invalid argument";
    case KP_EAGAIN:
        return "resource temporarily unavailable";
    case KP_EIO:
        return "backend I/O error";
    case KP_ECLOSED:
        return "object is closing";
    case KP_ETIMEDOUT:
        return "timed out";
    case KP_ENOTSUP:
        return "operation not supported";
    }
    /* Callers log whatever a backend handed back; never return NULL into a printf %s. */
    return "unknown error";
}
