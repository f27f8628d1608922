/* The parts of the connection seam that belong to no transport: shared lines and the output
 * batch (conn.h). */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

void kp_shared_line_release(kp_shared_line *line)
{
    if (line && --line->refs == 0)
        free(line);
}

int kp_out_batch_flush(kp_out_batch *b)
{
    if (!b->len)
        return 0;
    size_t n = b->len;
    b->len = 0;
    return kp_conn_write(b->owner, b->buf, n, NULL);
}

int kp_out_batch_append(kp_out_batch *b, const char *data, size_t len)
{
    if (b->len + len > b->cap) {
        int rc = kp_out_batch_flush(b);
        if (rc != 0)
            return rc;
        if (len > b->cap) /* never in practice: replies and frames are far below a batch */
            return kp_conn_write(b->owner, data, len, NULL);
    }
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return 0;
}
