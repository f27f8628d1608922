/* Error values shared by the core and every backend.
 *
 * Functions return 0 on success or one of the negative codes below; asynchronous failures reach
 * callbacks as a `status` argument holding the same codes. */
#ifndef KUPOOL_ERROR_H
#define KUPOOL_ERROR_H

enum kp_error {
    KP_OK = 0,
    KP_ENOMEM = -1,    /* allocation failed */
    KP_EINVAL = -2,    /* bad argument or configuration value */
    KP_EAGAIN = -3,    /* backend full or busy: retry later, nothing was lost */
    KP_EIO = -4,       /* backend unreachable or failed: retry with backoff */
    KP_ECLOSED = -5,   /* the object is shutting down */
    KP_ETIMEDOUT = -6, /* a bounded wait ran out */
    KP_ENOTSUP = -7    /* the backend does not implement this slot */
};

/* A static, human readable description of `err` (never NULL). */
const char *kp_strerror(int err);

#endif
