/* Plain TCP under the connection seam (conn.h, conn_tcp.h). */
#include "conn_tcp.h"

#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"

/* A queued write: owns a copy of its bytes, or a reference on a shared line. */
typedef struct write_req {
    uv_write_t req;
    kp_shared_line *line;
    char bytes[];
} write_req;

static kp_conn_tcp *tcp_of(kp_conn *c)
{
    return (kp_conn_tcp *)c;
}

static void on_close(uv_handle_t *h)
{
    kp_conn_tcp *t = h->data;
    t->base.events->on_closed(t->base.owner);
}

static void tcp_close(kp_conn *c, bool reset)
{
    kp_conn_tcp *t = tcp_of(c);
    if (t->closing)
        return;
    t->closing = true;
    if (reset) {
        uv_os_fd_t fd;
        struct linger lin = {.l_onoff = 1, .l_linger = 0};
        /* Not uv_tcp_close_reset: it refuses a stream with a uv_shutdown pending. */
        if (uv_fileno((uv_handle_t *)&t->tcp, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
    }
    uv_close((uv_handle_t *)&t->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    kp_read_buf *rb = ((kp_conn_tcp *)h->data)->read_buf;
    if (rb->busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    rb->busy = true;
    *buf = uv_buf_init(rb->data, (unsigned)rb->size);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    kp_conn_tcp *t = stream->data;
    if (buf->base == t->read_buf->data)
        t->read_buf->busy = false;
    if (nread < 0) {
        t->base.events->on_end(t->base.owner,
                               nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (nread > 0)
        t->base.events->on_read(t->base.owner, buf->base, (size_t)nread);
}

static int tcp_read_start(kp_conn *c)
{
    kp_conn_tcp *t = tcp_of(c);
    return uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read) == 0 ? 0 : KP_EIO;
}

static void tcp_read_stop(kp_conn *c)
{
    uv_read_stop((uv_stream_t *)&tcp_of(c)->tcp);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    kp_conn_tcp *t = req->data;
    kp_shared_line_release(wr->line);
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        t->base.events->on_end(t->base.owner, uv_strerror(status));
}

static int tcp_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    kp_conn_tcp *t = tcp_of(c);
    if (t->closing || len == 0)
        return 0;
    uv_stream_t *stream = (uv_stream_t *)&t->tcp;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(stream, &buf, 1);
    if (n == (int)len)
        return 0;
    if (n < 0 && n != UV_EAGAIN)
        return KP_EIO;
    size_t off = n > 0 ? (size_t)n : 0;
    size_t rest = len - off;
    if (stream->write_queue_size + rest > t->max_queued)
        return KP_EAGAIN;
    write_req *wr = malloc(sizeof(*wr) + (line ? 0 : rest));
    if (!wr)
        return KP_ENOMEM;
    wr->req.data = t;
    wr->line = line;
    if (line) {
        line->refs++;
        buf = uv_buf_init((char *)data + off, (unsigned)rest);
    } else {
        memcpy(wr->bytes, data + off, rest);
        buf = uv_buf_init(wr->bytes, (unsigned)rest);
    }
    if (uv_write(&wr->req, stream, &buf, 1, on_write) != 0) {
        kp_shared_line_release(line);
        free(wr);
        return KP_EIO;
    }
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status; /* written or not, the stream is over; a close cancelled us: no-op */
    kp_conn_tcp *t = req->data;
    free(req);
    if (!t->closing)
        t->base.events->on_end(t->base.owner, "closed after response");
}

static int tcp_shutdown(kp_conn *c)
{
    kp_conn_tcp *t = tcp_of(c);
    uv_read_stop((uv_stream_t *)&t->tcp);
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req)
        return KP_ENOMEM;
    req->data = t;
    if (uv_shutdown(req, (uv_stream_t *)&t->tcp, on_shutdown) != 0) {
        free(req);
        return KP_EIO;
    }
    return 0;
}

static size_t tcp_queued(const kp_conn *c)
{
    return ((const kp_conn_tcp *)c)->tcp.write_queue_size;
}

static int tcp_peer_address(const kp_conn *c, struct sockaddr_storage *out)
{
    int len = sizeof(*out);
    return uv_tcp_getpeername(&((const kp_conn_tcp *)c)->tcp, (struct sockaddr *)out, &len) == 0
               ? 0
               : KP_EIO;
}

static const kp_conn_ops tcp_ops = {
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .queued = tcp_queued,
    .peer_address = tcp_peer_address,
};

int kp_conn_tcp_accept(kp_conn_tcp *t, uv_stream_t *listener, kp_read_buf *read_buf,
                       size_t max_queued)
{
    t->base.ops = &tcp_ops;
    t->read_buf = read_buf;
    t->max_queued = (uint32_t)max_queued;
    t->closing = false;
    uv_tcp_init(listener->loop, &t->tcp);
    t->tcp.data = t;
    if (uv_accept(listener, (uv_stream_t *)&t->tcp) != 0) {
        tcp_close(&t->base, false);
        return KP_EIO;
    }
    return 0;
}

void kp_conn_tcp_tune(kp_conn_tcp *t, int sndbuf)
{
    uv_tcp_nodelay(&t->tcp, 1);
    uv_send_buffer_size((uv_handle_t *)&t->tcp, &sndbuf);
}
