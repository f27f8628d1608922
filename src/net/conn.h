/* The connection seam: what a session (or a transport stacked above another) needs of a byte
 * stream, as a struct of function pointers called through small inline wrappers (redis's
 * connection.h is the model). Plain TCP over libuv is the first implementation (conn_tcp.c);
 * a TLS connection wrapping a TCP one, or a PROXY-header reader in front of it, are meant to be
 * further implementations without any change to the session or the protocol:
 *
 *   - A conn reports to one owner through kp_conn_events: the session, or a wrapping conn that
 *     binds itself as the inner conn's owner (kp_conn_bind) and reports upward in turn.
 *   - Received bytes are lent for the call (on_read); the owner copies what it keeps.
 *   - write() writes now what the transport takes and queues the rest; the queue is bounded per
 *     conn (the slow-reader bound), and exceeding it is a return value, not a silent growth.
 *   - peer_address() is a slot, so a PROXY conn answers with the address from its header.
 *   - close() is the one release path: on_closed follows exactly once, asynchronously, and only
 *     then may the owner free the memory a conn lives in (it may be embedded in the owner).
 *
 * Batched output: answers to one read leave in one write. A kp_out_batch is a loop-wide scratch
 * buffer that the server lends to the session whose read is being answered; appends that do not
 * fit flush it to that session's conn first. Nothing else decides between batched and direct. */
#ifndef KP_CONN_H
#define KP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An immutable line shared by every queued write of one broadcast; freed with its last
 * reference. */
typedef struct kp_shared_line {
    uint32_t refs;
    uint32_t len;
    char data[];
} kp_shared_line;

void kp_shared_line_release(kp_shared_line *line);

typedef struct kp_conn kp_conn;

/* What a conn tells its owner. Every callback may call any kp_conn_* function on the conn,
 * including kp_conn_close. */
typedef struct kp_conn_events {
    /* Received bytes, lent for the call. */
    void (*on_read)(void *owner, const char *data, size_t len);
    /* The stream is over: the peer closed it, a read or a queued write failed, or a shutdown
     * finished. The owner closes the conn; nothing else follows until it does. */
    void (*on_end)(void *owner, const char *why);
    /* The close finished: nothing of the conn is in use any more, its memory may go. */
    void (*on_closed)(void *owner);
} kp_conn_events;

typedef struct kp_conn_ops {
    /* Starts or resumes delivering on_read. Returns 0 or a KP_E* (close the conn). */
    int (*read_start)(kp_conn *c);
    /* No on_read until the next read_start. */
    void (*read_stop)(kp_conn *c);
    /* Writes now what the transport takes and queues a copy of the rest, or, with `line`, a
     * reference on it when `data` lies inside it (zero copy for a broadcast). Returns 0,
     * KP_EAGAIN when the rest would take the queue past its bound (nothing queued: the peer is
     * not reading), or another KP_E* (the stream is broken). */
    int (*write)(kp_conn *c, const char *data, size_t len, kp_shared_line *line);
    /* Ends the output once the queue is written and stops reading; on_end follows then.
     * Returns 0 or a KP_E* (close the conn now). */
    int (*shutdown)(kp_conn *c);
    /* Closes now; queued writes are dropped. With `reset`, the peer gets a reset and the
     * kernel drops what it still holds at once. Idempotent; on_closed follows once. */
    void (*close)(kp_conn *c, bool reset);
    /* Bytes queued and not yet taken by the transport. */
    size_t (*queued)(const kp_conn *c);
    /* The peer's address. Returns 0 or a KP_E*. */
    int (*peer_address)(const kp_conn *c, struct sockaddr_storage *out);
} kp_conn_ops;

/* The base every implementation embeds as its first member. */
struct kp_conn {
    const kp_conn_ops *ops;
    const kp_conn_events *events;
    void *owner;
};

/* Sets who hears from `c`. */
static inline void kp_conn_bind(kp_conn *c, const kp_conn_events *events, void *owner)
{
    c->events = events;
    c->owner = owner;
}

static inline int kp_conn_read_start(kp_conn *c) { return c->ops->read_start(c); }
static inline void kp_conn_read_stop(kp_conn *c) { c->ops->read_stop(c); }
static inline int kp_conn_write(kp_conn *c, const char *data, size_t len, kp_shared_line *line)
{
    return c->ops->write(c, data, len, line);
}
static inline int kp_conn_shutdown(kp_conn *c) { return c->ops->shutdown(c); }
static inline void kp_conn_close(kp_conn *c, bool reset) { c->ops->close(c, reset); }
static inline size_t kp_conn_queued(const kp_conn *c) { return c->ops->queued(c); }
static inline int kp_conn_peer_address(const kp_conn *c, struct sockaddr_storage *out)
{
    return c->ops->peer_address(c, out);
}

/* The loop's output batch (see the top of this file). `owner` is the conn it is lent to, NULL
 * while nobody answers a read. */
typedef struct kp_out_batch {
    char *buf;
    size_t len, cap;
    kp_conn *owner;
} kp_out_batch;

/* Lends the (empty) batch to `c` for the answers to one read. */
static inline void kp_out_batch_lend(kp_out_batch *b, kp_conn *c)
{
    b->len = 0;
    b->owner = c;
}

/* Writes what the batch holds to its owner and empties it. Returns what kp_conn_write did. */
int kp_out_batch_flush(kp_out_batch *b);

/* Appends to the batch, flushing first when it would overflow; data longer than the batch is
 * written directly. Returns 0 or what kp_conn_write returned. */
int kp_out_batch_append(kp_out_batch *b, const char *data, size_t len);

/* Flushes and takes the batch back. */
static inline int kp_out_batch_return(kp_out_batch *b)
{
    int rc = kp_out_batch_flush(b);
    b->owner = NULL;
    return rc;
}

#endif
