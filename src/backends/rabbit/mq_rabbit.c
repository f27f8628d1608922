/* The RabbitMQ mq (`-mq rabbit -mq_url amqp://... -mq_queue NAME`, SPEC §3 and §6).
 *
 * Why this file is over 600 lines: it is one backend whose publishing and consuming sides share
 * the connection code (connect, login, declare, drop, the failure warnings) and the broker-reply
 * helpers, all over the one private struct; split in two, each half would need that struct and
 * those helpers behind a header. The generic part, the deadline watchdog, is its own file
 * (guard.c); the rest is specific to AMQP and reads best in order, top to bottom.
 *
 * Messages (docs/queue.md): a v1 batch (no id, -mq_batch 1) is one message per event, the SPEC §3
 * JSON as the body, content_type application/json, message_id = event_id; a batch with an id is
 * one message, its NDJSON body (event_batch.c), content_type application/x-ndjson, message_id =
 * the batch id, header kupool-events = its event count. Both are persistent (delivery_mode 2),
 * published to the default exchange with the queue's name as routing key. The queue is declared durable (not exclusive, not auto-delete, no
 * arguments) by both sides on every connect, so whichever side starts first creates it.
 *
 * Connections: one consuming and -mq_publishers publishing ones, never shared. The publishing
 * side belongs to whichever libuv worker runs `publish` (one call at a time): v1 messages go on
 * its first connection (acceptance order kept), batch messages round-robin over all of them (the
 * broker takes them in parallel). The consuming side belongs to the consumer thread (`consume`,
 * `ack`). Neither is opened at `open`: a broker that is down must not stop the daemon (only a URL
 * that cannot be parsed is KP_EINVAL there). Each side connects on first use and again on the
 * next call after any failure (a failure always drops the connection, so a connection is either
 * NULL or healthy with its channel set up). A connection that died while idle (the broker
 * restarted) is found and replaced within the call that first uses it: publish reads what the
 * broker sent meanwhile before it writes; consume, which cannot peek without taking deliveries,
 * retries once on a fresh connection when its first attempt failed fast. The callers already
 * back off between failed calls, so nothing here sleeps.
 *
 * Publish: each channel is in confirm mode (confirm.select once per channel). A call publishes
 * every message, then waits for the broker's basic.ack frames covering every delivery tag it used
 * on every connection (usually a handful of `multiple` acks, not one round trip per message).
 * Publishes are mandatory: a message no queue took (someone deleted the queue) is confirmed all the same, and
 * the basic.return the broker sends before that confirm is the only sign it was dropped. A
 * basic.return, a basic.nack, a channel or connection close, a socket error or the deadline fails
 * the call with KP_EIO and drops the connection (the next connect declares the queue again); the
 * pipeline retries the same batch, so a batch that was partly stored is stored again and the
 * stats store dedupes on event_id. 0 means every event was confirmed, i.e. written to disk by
 * the broker.
 *
 * Deadlines: rabbitmq-c's sockets are non-blocking and it waits in poll() with no deadline while
 * a send does not fit (a broker under a memory alarm stops reading), so socket timeouts cannot
 * bound a call. A small guard thread (guard.c) does: each side arms its slot with its socket and
 * a deadline before talking to the broker and disarms it after; when a deadline passes, the guard
 * shuts the socket down (shutdown(2), never close(2): the fd stays owned by its side), which
 * wakes the library with an error. A side always disarms before it closes its socket, so the
 * guard never touches a reused descriptor. Connect, login and every RPC also carry the
 * library's own timeouts, derived from the same deadline.
 *
 * Consume: basic.qos prefetch from -mq_batch (prefetch_for), basic.consume with manual acks; the connection asks for
 * consumer_cancel_notify, so a deleted queue cancels the consumer (instead of leaving it waiting
 * on nothing) and the reconnect declares the queue again. A call waits up to the caller's
 * timeout for the first delivery and then takes what has already arrived, up to `cap`, whole
 * messages only: a delivery that does not fit is decoded into a stash that opens the next call
 * (it is not acknowledged before it is returned: its tag is above the ones acked). A batch with
 * some lines that are not events gives its good ones and an ERROR line. `ack`
 * acknowledges everything returned so far with one basic.ack(last tag, multiple). A
 * connection lost between `consume` and `ack` makes `ack` fail: the delivery tags died with the
 * channel, and the broker redelivers those messages to the next connection (at least once; the
 * stats store dedupes). A body that is not an event is rejected without requeue: requeueing a
 * message that can never decode would loop forever in front of every good one, so it goes to the
 * queue's dead-letter exchange when the operator configured one (policy), and is dropped
 * otherwise; either way an ERROR line names its delivery tag and the first bytes of its body.
 *
 * Pending: the queue's ready-message count from the last queue.declare either side made, at most
 * PENDING_REFRESH_MS old while the daemon runs (each side refreshes it with a passive declare on
 * its own connection); it leaves out messages delivered to a consumer and not yet acknowledged
 * (at most PREFETCH). -1 when no side has reached the broker for PENDING_STALE_MS. Reading it
 * never touches a connection, so any thread may call it. */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "backends.h"
#include "clock.h"
#include "event_batch.h"
#include "guard.h"
#include "kupool/error.h"
#include "log.h"

#define MODULE "mq.rabbit"

#define PUBLISH_DEADLINE_MS 5000u /* a whole publish call, connect included */
#define CONNECT_DEADLINE_MS 5000u /* a consumer (re)connect */
#define ACK_DEADLINE_MS 5000u     /* one basic.ack (a send that a wedged broker may not take) */
#define CONSUME_GRACE_MS 5000u    /* beyond the caller's timeout, for a delivery cut mid-frame */
#define CLOSE_DEADLINE_MS 2000u   /* the polite connection.close at free() */
#define IDLE_LOSS_MS 1000u        /* a consume failing faster than this may be a dead idle link */
#define PREFETCH 2048             /* most unacknowledged deliveries the broker sends ahead */
#define PREFETCH_MIN 16           /* ... and least, whatever the batch size */
#define PREFETCH_EVENTS 65536u    /* prefetch x -mq_batch, within those bounds */
#define DRAIN_BYTES (64u * 1024u) /* written per connection between reads of early confirms */
#define MESSAGE_OVERHEAD 256u     /* what a message costs beyond its body, for DRAIN_BYTES */
#define PENDING_REFRESH_MS 1000u
#define PENDING_STALE_MS 10000u
#define WARN_EVERY_MS 10000u /* one failure warning per side per 10 s */
#define DATA_CHANNEL 1     /* publishes and confirms, or deliveries and acks */
#define CON_INFO_CHANNEL 2 /* the consumer's passive declares, apart from its deliveries */
#define ERR_MAX 256
#define URL_SAFE_MAX (KP_CONFIG_STR_MAX + 8)

enum side { SIDE_PUBLISH = 0, SIDE_CONSUME = 1, SIDE_COUNT };

/* Guard slots: the consumer's first, then one per publishing connection. */
#define CONSUME_SLOT 0
#define PUBLISHERS_MAX 16 /* -mq_publishers' upper bound (src/core/config.c) */

static const char *const side_names[SIDE_COUNT] = {
    [SIDE_PUBLISH] = "publish",
    [SIDE_CONSUME] = "consume",
};

static struct timeval ms_to_tv(uint64_t ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000u), .tv_usec = (long)(ms % 1000u) * 1000L};
}

/* Milliseconds left until `deadline`, at least 1 so a library timeout is never "infinite". */
static uint64_t left_ms(uint64_t deadline)
{
    uint64_t now = kp_clock_mono_ms();
    return deadline > now ? deadline - now : 1;
}

/* ---- the backend ------------------------------------------------------------------------- */

/* The messages of one publish call on one connection: tags first_tag .. first_tag + n - 1. */
typedef struct confirm_state {
    uint64_t first_tag;
    size_t n;
    size_t low; /* every message before index `low` is confirmed */
} confirm_state;

/* One connection. Touched only by the thread that owns the side. */
typedef struct link {
    enum side side;
    size_t slot;                  /* its guard slot */
    unsigned index;               /* publishers: 0 .. -mq_publishers - 1, for logs */
    amqp_connection_state_t conn; /* NULL while down */
    uint64_t generation;          /* bumped on every successful connect */
    uint64_t failures;            /* failed calls since the last successful connect */
    uint64_t last_warn_ms;
    uint64_t warns_suppressed;
    /* Publishing connections only. */
    uint64_t tag;       /* delivery tag of the last message published on the channel */
    uint8_t *confirmed; /* per message of the current call on this connection: acked */
    size_t confirmed_cap;
    confirm_state cs;
} link;

typedef struct mq_rabbit {
    kp_mq parent; /* first: a kp_mq * is a mq_rabbit * */

    /* Read-only after open. `info`'s strings point into url_buf. */
    char *url_buf;
    struct amqp_connection_info info;
    const char *vhost;
    char url_safe[URL_SAFE_MAX]; /* the URL with its password masked, for logs */
    char queue[256];

    kp_guard *guard; /* CONSUME_SLOT, then one slot per publishing connection */

    /* Publishing side (the worker running `publish`): -mq_publishers connections. */
    link pubs[PUBLISHERS_MAX];
    unsigned npubs;
    char *json;
    char *body;      /* an NDJSON batch body, grown on demand */
    size_t body_cap;
    uint16_t prefetch; /* basic.qos for the consumer, from -mq_batch */

    /* Consuming side (the consumer thread). */
    link con;
    uint64_t last_tag;     /* newest delivery returned by consume and not yet acknowledged */
    uint64_t last_tag_gen; /* the con.generation last_tag belongs to */
    kp_event *stash;       /* KP_MQ_BATCH_MAX: a delivery taken that did not fit the caller's out */
    size_t stash_n;        /* its events; 0 = none */
    uint64_t stash_tag, stash_gen;

    /* Any thread. */
    atomic_int_fast64_t ready;         /* queue's ready messages at ready_at_ms */
    atomic_uint_fast64_t ready_at_ms;  /* monotonic; 0 = never known */
    atomic_uint_fast64_t rejected;     /* undecodable messages rejected without requeue */
    atomic_uint_fast64_t bad_lines;    /* lines of batches that are not events (skipped) */
} mq_rabbit;

/* Copies `url` into out with the password between "user:" and "@" replaced by "***". */
static void redact_url(const char *url, char *out, size_t cap)
{
    const char *scheme = strstr(url, "://");
    const char *auth = scheme ? scheme + 3 : url;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon) {
        snprintf(out, cap, "%s", url);
        return;
    }
    snprintf(out, cap, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

/* Copies a broker's reply text for a log value: quotes and backslashes would end the value. */
static void copy_text(char *out, size_t cap, const void *bytes, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *)bytes)[i];
        out[i] = (c == '"' || c == '\\') ? '\'' : c;
    }
    out[n] = '\0';
}

/* Describes a close method the broker sent (channel.close or connection.close). */
static void describe_close(amqp_method_t m, char *err, size_t cap)
{
    char text[160];
    if (m.id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_t *c = m.decoded;
        copy_text(text, sizeof(text), c->reply_text.bytes, c->reply_text.len);
        snprintf(err, cap, "broker closed the connection: %u %s", c->reply_code, text);
    } else if (m.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *c = m.decoded;
        copy_text(text, sizeof(text), c->reply_text.bytes, c->reply_text.len);
        snprintf(err, cap, "broker closed the channel: %u %s", c->reply_code, text);
    } else {
        snprintf(err, cap, "unexpected method 0x%08x", (unsigned)m.id);
    }
}

/* 0 when an RPC-style call succeeded; otherwise describes why in err and returns KP_EIO. */
static int check_reply(amqp_rpc_reply_t reply, const char *what, char *err, size_t cap)
{
    char why[ERR_MAX];
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        describe_close(reply.reply, why, sizeof(why));
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(why, sizeof(why), "%s", amqp_error_string2(reply.library_error));
        break;
    default:
        snprintf(why, sizeof(why), "no reply");
        break;
    }
    snprintf(err, cap, "%s: %.*s", what, (int)(cap > 64 ? cap - 64 : 0), why);
    return KP_EIO;
}

static void record_ready(mq_rabbit *r, uint32_t messages)
{
    atomic_store(&r->ready, (int_fast64_t)messages);
    atomic_store(&r->ready_at_ms, kp_clock_mono_ms());
}

static bool ready_is_stale(mq_rabbit *r)
{
    return kp_clock_mono_ms() - atomic_load(&r->ready_at_ms) >= PENDING_REFRESH_MS;
}

/* Closes a side's connection without a word to the broker (it failed, or the guard shut it). */
static void link_drop(mq_rabbit *r, link *l)
{
    kp_guard_disarm(r->guard, l->slot); /* before the fd can be closed and reused */
    if (l->conn) {
        amqp_destroy_connection(l->conn);
        l->conn = NULL;
    }
}

/* Drops the connection after a failed call and says so, once per WARN_EVERY_MS per side. */
static void link_fail(mq_rabbit *r, link *l, const char *err)
{
    link_drop(r, l);
    l->failures++;
    uint64_t now = kp_clock_mono_ms();
    if (l->last_warn_ms && now - l->last_warn_ms < WARN_EVERY_MS) {
        l->warns_suppressed++;
        return;
    }
    KP_WARN(MODULE, "broker call failed; reconnecting on the next call",
            KP_STR("side", side_names[l->side]), KP_QSTR("url", r->url_safe),
            KP_QSTR("queue", r->queue), KP_QSTR("error", err), KP_UINT("failures", l->failures),
            KP_UINT("suppressed", l->warns_suppressed));
    l->last_warn_ms = now;
    l->warns_suppressed = 0;
}

/* Rewrites err to say the guard cut the call short (the library's own error is a consequence). */
static void timed_out(char *err, size_t cap)
{
    char why[ERR_MAX];
    snprintf(why, sizeof(why), "%s", err[0] ? err : "timed out");
    snprintf(err, cap, "no answer from the broker in time (%.*s)",
             (int)(cap > 64 ? cap - 64 : 0), why);
}

/* Keepalive finds a broker host that vanished while a side is idle (no heartbeats: a side may
 * not call into the library for a long time, e.g. while the stats store is down). */
static void set_keepalive(int fd)
{
    int on = 1, idle = 30, intvl = 10, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Every RPC from here on gets what is left of the deadline. */
static void rpc_deadline(amqp_connection_state_t conn, uint64_t deadline)
{
    struct timeval tv = ms_to_tv(left_ms(deadline));
    amqp_set_rpc_timeout(conn, &tv);
}

/* Declares the durable queue on `channel` (passively: only asks for its message count). */
static int declare_queue(mq_rabbit *r, amqp_connection_state_t conn, amqp_channel_t channel,
                         bool passive, char *err, size_t cap)
{
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, channel, amqp_cstring_bytes(r->queue),
                                                     passive, 1, 0, 0, amqp_empty_table);
    int rc = check_reply(amqp_get_rpc_reply(conn), "queue.declare", err, cap);
    if (rc == 0 && ok)
        record_ready(r, ok->message_count);
    return rc;
}

/* Opens the socket, logs in, opens the side's channels and sets them up. On success the guard
 * is armed with `deadline` and the link is up; on failure everything is dropped. */
static int link_connect(mq_rabbit *r, link *l, uint64_t deadline, char *err, size_t cap)
{
    amqp_connection_state_t conn = amqp_new_connection();
    if (!conn) {
        snprintf(err, cap, "out of memory");
        return KP_ENOMEM;
    }
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    if (!sock) {
        amqp_destroy_connection(conn);
        snprintf(err, cap, "out of memory");
        return KP_ENOMEM;
    }
    struct timeval tv = ms_to_tv(left_ms(deadline));
    int st = amqp_socket_open_noblock(sock, r->info.host, r->info.port, &tv);
    if (st != AMQP_STATUS_OK) {
        amqp_destroy_connection(conn);
        snprintf(err, cap, "connect %s:%d: %s", r->info.host, r->info.port,
                 amqp_error_string2(st));
        return KP_EIO;
    }
    l->conn = conn;
    int fd = amqp_socket_get_sockfd(sock);
    set_keepalive(fd);
    kp_guard_arm(r->guard, l->slot, fd, deadline);

    tv = ms_to_tv(left_ms(deadline));
    amqp_set_handshake_timeout(conn, &tv);
    rpc_deadline(conn, deadline);
    char name[64];
    if (l->side == SIDE_PUBLISH)
        snprintf(name, sizeof(name), "kupool publish %u", l->index);
    else
        snprintf(name, sizeof(name), "kupool consume");
    /* consumer_cancel_notify: a consumer whose queue is deleted hears basic.cancel instead of
     * waiting forever on a queue that no longer exists (the library merges this table into its
     * own capabilities). */
    amqp_table_entry_t capability = {
        .key = amqp_cstring_bytes("consumer_cancel_notify"),
        .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1},
    };
    amqp_table_entry_t props_entries[] = {
        {.key = amqp_cstring_bytes("connection_name"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(name)}},
        {.key = amqp_cstring_bytes("capabilities"),
         .value = {.kind = AMQP_FIELD_KIND_TABLE,
                   .value.table = {.num_entries = 1, .entries = &capability}}},
    };
    amqp_table_t props = {.num_entries = 2, .entries = props_entries};
    /* Heartbeats off: see set_keepalive(). */
    int rc = check_reply(amqp_login_with_properties(conn, r->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                                                    &props, AMQP_SASL_METHOD_PLAIN, r->info.user,
                                                    r->info.password),
                         "login", err, cap);
    if (rc == 0) {
        rpc_deadline(conn, deadline);
        amqp_channel_open(conn, DATA_CHANNEL);
        rc = check_reply(amqp_get_rpc_reply(conn), "channel.open", err, cap);
    }
    if (rc == 0) {
        rpc_deadline(conn, deadline);
        rc = declare_queue(r, conn, DATA_CHANNEL, false, err, cap);
    }
    if (rc == 0 && l->side == SIDE_PUBLISH) {
        rpc_deadline(conn, deadline);
        amqp_confirm_select(conn, DATA_CHANNEL);
        rc = check_reply(amqp_get_rpc_reply(conn), "confirm.select", err, cap);
        l->tag = 0; /* tags count from 1 on every channel */
    }
    if (rc == 0 && l->side == SIDE_CONSUME) {
        rpc_deadline(conn, deadline);
        amqp_channel_open(conn, CON_INFO_CHANNEL);
        rc = check_reply(amqp_get_rpc_reply(conn), "channel.open", err, cap);
        if (rc == 0) {
            rpc_deadline(conn, deadline);
            amqp_basic_qos(conn, DATA_CHANNEL, 0, r->prefetch, 0);
            rc = check_reply(amqp_get_rpc_reply(conn), "basic.qos", err, cap);
        }
        if (rc == 0) {
            rpc_deadline(conn, deadline);
            amqp_basic_consume(conn, DATA_CHANNEL, amqp_cstring_bytes(r->queue), amqp_empty_bytes,
                               0, 0 /* manual acks */, 0, amqp_empty_table);
            rc = check_reply(amqp_get_rpc_reply(conn), "basic.consume", err, cap);
        }
        r->last_tag = 0;
    }
    if (rc != 0) {
        /* A broker that stopped answering makes the library report the socket the guard shut
         * down ("connection closed"): say what happened. */
        if (kp_guard_disarm(r->guard, l->slot))
            timed_out(err, cap);
        link_drop(r, l);
        return rc;
    }
    l->generation++;
    KP_INFO(MODULE, l->failures ? "reconnected to the broker" : "connected to the broker",
            KP_STR("side", side_names[l->side]), KP_QSTR("url", r->url_safe),
            KP_QSTR("queue", r->queue), KP_INT("messages", atomic_load(&r->ready)),
            KP_UINT("failures", l->failures));
    l->failures = 0;
    l->last_warn_ms = 0;
    l->warns_suppressed = 0;
    return 0;
}

/* ---- publishing -------------------------------------------------------------------------- */

static void mark_confirmed(link *l, uint64_t tag, bool multiple)
{
    confirm_state *cs = &l->cs;
    if (cs->n == 0 || tag < cs->first_tag)
        return; /* no call, or an earlier call's tag: already settled */
    size_t idx = (size_t)(tag - cs->first_tag);
    if (idx >= cs->n)
        idx = cs->n - 1; /* beyond the call: cannot happen on a channel with one caller */
    if (multiple) {
        for (size_t i = cs->low; i <= idx; i++)
            l->confirmed[i] = 1;
    } else {
        l->confirmed[idx] = 1;
    }
    while (cs->low < cs->n && l->confirmed[cs->low])
        cs->low++;
}

/* Handles one frame on a publishing connection. Returns 0 or KP_EIO with err set. */
static int publish_frame(link *l, const amqp_frame_t *f, char *err, size_t cap)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (f->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *ack = f->payload.method.decoded;
        mark_confirmed(l, ack->delivery_tag, ack->multiple);
        return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *nack = f->payload.method.decoded;
        snprintf(err, cap, "broker nacked delivery tag %llu",
                 (unsigned long long)nack->delivery_tag);
        return KP_EIO;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        describe_close(f->payload.method, err, cap);
        return KP_EIO;
    case AMQP_BASIC_RETURN_METHOD: {
        /* No queue took it (the queue was deleted since we declared it): the broker would
         * confirm it all the same, so this is the only sign it was dropped. */
        const amqp_basic_return_t *ret = f->payload.method.decoded;
        char text[120];
        copy_text(text, sizeof(text), ret->reply_text.bytes, ret->reply_text.len);
        snprintf(err, cap, "broker returned a message as unroutable (queue gone?): %u %s",
                 ret->reply_code, text);
        return KP_EIO;
    }
    default:
        return 0; /* connection.blocked/unblocked and the like: the deadline covers a block */
    }
}

/* Reads frames until the link's call is fully confirmed (wait) or nothing more is buffered. */
static int read_confirms(link *l, bool wait, uint64_t deadline, char *err, size_t cap)
{
    amqp_connection_state_t conn = l->conn;
    confirm_state *cs = &l->cs;
    while (cs->low < cs->n || !wait) {
        amqp_frame_t f;
        struct timeval tv = wait ? ms_to_tv(left_ms(deadline)) : (struct timeval){0, 0};
        if (wait && kp_clock_mono_ms() >= deadline) {
            snprintf(err, cap, "%zu of %zu publishes not confirmed within %u ms",
                     cs->n - cs->low, cs->n, PUBLISH_DEADLINE_MS);
            return KP_EIO;
        }
        int st = amqp_simple_wait_frame_noblock(conn, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT) {
            if (!wait)
                return 0;
            continue; /* the deadline check above ends it */
        }
        if (st != AMQP_STATUS_OK) {
            snprintf(err, cap, "waiting for confirms: %s", amqp_error_string2(st));
            return KP_EIO;
        }
        int rc = publish_frame(l, &f, err, cap);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Makes sure a publishing connection is healthy, armed with `deadline`. An idle connection may
 * have died (broker restarted): reading what the broker sent since finds that out before a
 * batch is spent on it. */
static int publish_connection(mq_rabbit *r, link *l, uint64_t deadline, char *err, size_t cap)
{
    if (l->conn) {
        kp_guard_arm(r->guard, l->slot, amqp_get_sockfd(l->conn), deadline);
        l->cs = (confirm_state){0};
        char why[ERR_MAX];
        if (read_confirms(l, false, deadline, why, sizeof(why)) == 0)
            return 0;
        KP_INFO(MODULE, "idle connection lost; reconnecting", KP_STR("side", "publish"),
                KP_UINT("connection", l->index), KP_QSTR("error", why));
        link_drop(r, l);
        l->failures++;
    }
    return link_connect(r, l, deadline, err, cap);
}

/* Readies a link for `n` messages of this call. */
static int confirm_begin(link *l, size_t n, char *err, size_t cap)
{
    if (l->confirmed_cap < n) {
        uint8_t *grown = realloc(l->confirmed, n);
        if (!grown) {
            snprintf(err, cap, "out of memory");
            return KP_ENOMEM;
        }
        l->confirmed = grown;
        l->confirmed_cap = n;
    }
    if (n)
        memset(l->confirmed, 0, n);
    l->cs = (confirm_state){.first_tag = l->tag + 1, .n = n};
    return 0;
}

/* The publishing state of one call. v1 messages (one per event) all go on the first
 * connection, so they reach the queue in acceptance order as they always did; batch messages go
 * round-robin over `use` connections, which the broker takes in parallel (their order in the
 * queue is then not acceptance order: nothing counts on it, the store dedupes by event id). */
typedef struct publish_call {
    mq_rabbit *r;
    unsigned use;
    size_t v1_messages;    /* one per event of the v1 batches */
    size_t batch_messages; /* one per batch with an id */
    size_t next;           /* index of the next batch message */
    size_t since_drain[PUBLISHERS_MAX]; /* bytes written per link since its confirms were read */
    uint64_t deadline;
    link *failed; /* the link whose call failed, for link_fail */
} publish_call;

static int send_message(publish_call *pc, bool batch, const amqp_basic_properties_t *props,
                        amqp_bytes_t body, char *err, size_t cap)
{
    mq_rabbit *r = pc->r;
    unsigned i = batch ? (unsigned)(pc->next++ % pc->use) : 0;
    link *l = &r->pubs[i];
    int st = amqp_basic_publish(l->conn, DATA_CHANNEL, amqp_empty_bytes,
                                amqp_cstring_bytes(r->queue), 1 /* mandatory */, 0, props, body);
    if (st != AMQP_STATUS_OK) {
        pc->failed = l;
        snprintf(err, cap, "basic.publish: %s", amqp_error_string2(st));
        return KP_EIO;
    }
    l->tag++;
    /* Take the confirms that arrived meanwhile, so they never pile up unread and a channel
     * error shows before the whole call is written. */
    pc->since_drain[i] += body.len + MESSAGE_OVERHEAD;
    if (pc->since_drain[i] >= DRAIN_BYTES) {
        pc->since_drain[i] = 0;
        int rc = read_confirms(l, false, pc->deadline, err, cap);
        if (rc != 0) {
            pc->failed = l;
            return rc;
        }
    }
    return 0;
}

static int publish_events(publish_call *pc, const kp_mq_batch *b, char *err, size_t cap)
{
    mq_rabbit *r = pc->r;
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_MESSAGE_ID_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .delivery_mode = AMQP_DELIVERY_PERSISTENT,
    };
    for (size_t i = 0; i < b->n; i++) {
        int len = kp_event_to_json(&b->events[i], r->json, KP_EVENT_JSON_MAX);
        if (len < 0) {
            /* Cannot happen for an event the server made; failing keeps the batch, loudly. */
            snprintf(err, cap, "event %s cannot be encoded", b->events[i].event_id);
            return KP_EIO;
        }
        props.message_id = amqp_cstring_bytes(b->events[i].event_id);
        int rc = send_message(pc, false, &props,
                              (amqp_bytes_t){.len = (size_t)len, .bytes = r->json}, err, cap);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int publish_batch(publish_call *pc, const kp_mq_batch *b, char *err, size_t cap)
{
    mq_rabbit *r = pc->r;
    size_t need = KP_BATCH_BODY_MAX(b->n);
    if (r->body_cap < need) {
        char *grown = realloc(r->body, need);
        if (!grown) {
            snprintf(err, cap, "out of memory");
            return KP_ENOMEM;
        }
        r->body = grown;
        r->body_cap = need;
    }
    size_t len = 0;
    if (b->n == 0 || b->n > KP_MQ_BATCH_MAX ||
        kp_batch_encode(b->events, b->n, r->body, r->body_cap, &len) != 0) {
        snprintf(err, cap, "batch %s cannot be encoded", b->id);
        return KP_EIO;
    }
    amqp_table_entry_t count = {
        .key = amqp_cstring_bytes("kupool-events"),
        .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = (int32_t)b->n},
    };
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG,
        .content_type = amqp_cstring_bytes(KP_MQ_NDJSON),
        .delivery_mode = AMQP_DELIVERY_PERSISTENT,
        .message_id = amqp_cstring_bytes(b->id),
        .headers = {.num_entries = 1, .entries = &count},
    };
    return send_message(pc, true, &props, (amqp_bytes_t){.len = len, .bytes = r->body}, err, cap);
}

static int publish_call_run(publish_call *pc, const kp_mq_batch *batches, size_t nb, char *err,
                            size_t cap)
{
    mq_rabbit *r = pc->r;
    size_t m = pc->batch_messages;
    for (unsigned i = 0; i < pc->use; i++) {
        link *l = &r->pubs[i];
        int rc = publish_connection(r, l, pc->deadline, err, cap);
        if (rc == 0)
            rc = confirm_begin(l, m / pc->use + (i < m % pc->use) + (i == 0 ? pc->v1_messages : 0),
                               err, cap);
        if (rc != 0) {
            pc->failed = l;
            return rc;
        }
    }
    for (size_t b = 0; b < nb; b++) {
        int rc = batches[b].id[0] ? publish_batch(pc, &batches[b], err, cap)
                                  : publish_events(pc, &batches[b], err, cap);
        if (rc != 0) {
            if (!pc->failed)
                pc->failed = &r->pubs[0];
            return rc;
        }
    }
    /* Every message is written; the connections' confirms arrive in parallel, so waiting for
     * them one connection after the other costs no more than the slowest. */
    for (unsigned i = 0; i < pc->use; i++) {
        int rc = read_confirms(&r->pubs[i], true, pc->deadline, err, cap);
        if (rc != 0) {
            pc->failed = &r->pubs[i];
            return rc;
        }
    }
    return 0;
}

static int rabbit_publish(kp_mq *mq, const kp_mq_batch *batches, size_t nb)
{
    mq_rabbit *r = (mq_rabbit *)mq;
    publish_call pc = {.r = r};
    for (size_t b = 0; b < nb; b++) {
        if (batches[b].id[0])
            pc.batch_messages++;
        else
            pc.v1_messages += batches[b].n;
    }
    if (pc.batch_messages + pc.v1_messages == 0)
        return 0;
    /* A call needs no more connections than it has batch messages (v1 ones use the first). */
    pc.use = pc.batch_messages < r->npubs ? (unsigned)pc.batch_messages : r->npubs;
    if (pc.use == 0)
        pc.use = 1;
    pc.deadline = kp_clock_mono_ms() + PUBLISH_DEADLINE_MS;
    char err[ERR_MAX] = "";
    int rc = publish_call_run(&pc, batches, nb, err, sizeof(err));
    link *first = &r->pubs[0];
    if (rc == 0 && first->conn && ready_is_stale(r)) {
        /* The call is confirmed whatever this says; a failure here only costs the connection. */
        char why[ERR_MAX];
        rpc_deadline(first->conn, pc.deadline);
        if (declare_queue(r, first->conn, DATA_CHANNEL, true, why, sizeof(why)) != 0) {
            KP_DEBUG(MODULE, "queue size check failed", KP_STR("side", "publish"),
                     KP_QSTR("error", why));
            link_drop(r, first);
        }
    }
    for (unsigned i = 0; i < pc.use; i++) {
        link *l = &r->pubs[i];
        if (!kp_guard_disarm(r->guard, l->slot))
            continue;
        /* The socket was shut down: even a call that got through cannot keep it. */
        if (rc == 0 || l != pc.failed)
            link_drop(r, l);
        else
            timed_out(err, sizeof(err));
    }
    if (rc != 0) {
        link_fail(r, pc.failed ? pc.failed : first, err);
        return rc == KP_ENOMEM ? KP_ENOMEM : KP_EIO;
    }
    for (unsigned i = 0; i < pc.use; i++)
        if (r->pubs[i].conn)
            amqp_maybe_release_buffers(r->pubs[i].conn);
    return 0;
}

/* ---- consuming --------------------------------------------------------------------------- */

/* Handles a frame that arrived instead of a delivery. Returns 0 to go on, or KP_EIO. */
static int consume_other_frame(mq_rabbit *r, uint64_t deadline, char *err, size_t cap)
{
    amqp_frame_t f;
    struct timeval tv = ms_to_tv(left_ms(deadline));
    int st = amqp_simple_wait_frame_noblock(r->con.conn, &f, &tv);
    if (st != AMQP_STATUS_OK) {
        snprintf(err, cap, "reading a frame: %s", amqp_error_string2(st));
        return KP_EIO;
    }
    if (f.frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (f.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        describe_close(f.payload.method, err, cap);
        return KP_EIO;
    case AMQP_BASIC_CANCEL_METHOD:
        snprintf(err, cap, "broker cancelled the consumer (queue deleted?)");
        return KP_EIO;
    default:
        return 0;
    }
}

/* Rejects an undecodable delivery so it never comes back (see the top of the file). */
static int reject_delivery(mq_rabbit *r, const amqp_envelope_t *env, char *err, size_t cap)
{
    char head[81];
    copy_text(head, sizeof(head), env->message.body.bytes, env->message.body.len);
    for (char *p = head; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    uint64_t total = atomic_fetch_add(&r->rejected, 1) + 1;
    KP_ERROR(MODULE, "message is not an event; rejected without requeue",
             KP_QSTR("queue", r->queue), KP_UINT("delivery_tag", env->delivery_tag),
             KP_UINT("bytes", env->message.body.len), KP_QSTR("body", head),
             KP_UINT("rejected_total", total));
    int st = amqp_basic_reject(r->con.conn, DATA_CHANNEL, env->delivery_tag, 0);
    if (st != AMQP_STATUS_OK) {
        snprintf(err, cap, "basic.reject: %s", amqp_error_string2(st));
        return KP_EIO;
    }
    return 0;
}

#define DECODE_NO_ROOM 1 /* decode_delivery: the delivery does not fit (not an error) */

static bool bytes_are(amqp_bytes_t b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && memcmp(b.bytes, s, n) == 0;
}

/* The kupool-events header of a batch, or -1 when it has none (another producer). */
static int64_t header_events(const amqp_basic_properties_t *p)
{
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return -1;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (!bytes_are(e->key, "kupool-events"))
            continue;
        switch (e->value.kind) {
        case AMQP_FIELD_KIND_I8: return e->value.value.i8;
        case AMQP_FIELD_KIND_U8: return e->value.value.u8;
        case AMQP_FIELD_KIND_I16: return e->value.value.i16;
        case AMQP_FIELD_KIND_U16: return e->value.value.u16;
        case AMQP_FIELD_KIND_I32: return e->value.value.i32;
        case AMQP_FIELD_KIND_U32: return e->value.value.u32;
        case AMQP_FIELD_KIND_I64: return e->value.value.i64;
        case AMQP_FIELD_KIND_U64: return (int64_t)e->value.value.u64;
        default: return -1;
        }
    }
    return -1;
}

static void message_id_text(const amqp_envelope_t *env, char *out, size_t cap)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        copy_text(out, cap, p->message_id.bytes, p->message_id.len);
    else
        snprintf(out, cap, "none");
}

/* Decodes a delivery into out[0..cap). Returns 0 with *n events, DECODE_NO_ROOM when it has more
 * events than `cap` (it is taken whole or not at all), or KP_EINVAL when it holds no event at
 * all (rejected by the caller). A batch with some bad lines keeps its good events: the bad
 * lines can never be counted, and rejecting the message would lose the good ones with them. */
static int decode_delivery(mq_rabbit *r, const amqp_envelope_t *env, kp_event *out, size_t cap,
                           size_t *n)
{
    const amqp_message_t *m = &env->message;
    *n = 0;
    bool batch = (m->properties._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) &&
                 bytes_are(m->properties.content_type, KP_MQ_NDJSON);
    if (!batch) {
        if (cap == 0)
            return DECODE_NO_ROOM;
        if (kp_event_from_json(m->body.bytes, m->body.len, &out[0]) != 0)
            return KP_EINVAL;
        *n = 1;
        return 0;
    }
    kp_batch_decoded res;
    size_t room = cap < KP_MQ_BATCH_MAX ? cap : KP_MQ_BATCH_MAX;
    if (kp_batch_decode(m->body.bytes, m->body.len, out, room, &res) != 0)
        return room < KP_MQ_BATCH_MAX ? DECODE_NO_ROOM : KP_EINVAL; /* too many events for anyone */
    if (res.events == 0)
        return KP_EINVAL;
    int64_t announced = header_events(&m->properties);
    if (res.bad || (announced >= 0 && (uint64_t)announced != res.events + res.bad)) {
        char id[KP_BATCH_ID_MAX + 1], head[81];
        message_id_text(env, id, sizeof(id));
        const char *bad = (const char *)m->body.bytes + res.first_bad;
        size_t bad_len = res.bad ? m->body.len - res.first_bad : 0;
        copy_text(head, sizeof(head), bad, bad_len);
        for (char *p = head; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = '\0';
        uint64_t total = atomic_fetch_add(&r->bad_lines, res.bad) + res.bad;
        KP_ERROR(MODULE, "batch has lines that are not events; its good events are counted",
                 KP_QSTR("queue", r->queue), KP_QSTR("message_id", id),
                 KP_UINT("events", res.events), KP_UINT("bad_lines", res.bad),
                 KP_INT("announced", announced), KP_QSTR("first_bad", head),
                 KP_UINT("bad_lines_total", total));
    }
    *n = res.events;
    return 0;
}

static int consume_batch(mq_rabbit *r, kp_event *out, size_t cap, size_t *n, int timeout_ms,
                         char *err, size_t errcap)
{
    amqp_connection_state_t conn = r->con.conn;
    uint64_t first_deadline = kp_clock_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    size_t got = 0;
    uint64_t last = 0;
    if (r->stash_n) {
        /* The delivery the last call took but could not fit: first in line, if its channel is
         * still the one it came on (else the broker sends it again anyway). */
        if (r->stash_gen == r->con.generation && r->stash_n <= cap) {
            memcpy(out, r->stash, r->stash_n * sizeof(kp_event));
            got = r->stash_n;
            last = r->stash_tag;
        } else if (r->stash_gen == r->con.generation) {
            snprintf(err, errcap, "consume buffer of %zu events is smaller than a batch", cap);
            return KP_EIO;
        }
        r->stash_n = 0;
    }
    while (got < cap) {
        uint64_t now = kp_clock_mono_ms();
        struct timeval tv = got == 0 && first_deadline > now ? ms_to_tv(first_deadline - now)
                                                            : (struct timeval){0, 0};
        amqp_envelope_t env;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &env, &tv, 0);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            int rc = 0;
            size_t taken = 0;
            int dec = decode_delivery(r, &env, out + got, cap - got, &taken);
            if (dec == DECODE_NO_ROOM) {
                if (!r->stash && !(r->stash = malloc(KP_MQ_BATCH_MAX * sizeof(kp_event)))) {
                    amqp_destroy_envelope(&env);
                    snprintf(err, errcap, "out of memory");
                    return KP_ENOMEM;
                }
                dec = decode_delivery(r, &env, r->stash, KP_MQ_BATCH_MAX, &taken);
                if (dec == 0) {
                    r->stash_n = taken;
                    r->stash_tag = env.delivery_tag;
                    r->stash_gen = r->con.generation;
                    amqp_destroy_envelope(&env);
                    break;
                }
            }
            if (dec == 0) {
                last = env.delivery_tag;
                got += taken;
            } else {
                rc = reject_delivery(r, &env, err, errcap);
            }
            amqp_destroy_envelope(&env);
            if (rc != 0)
                return rc;
            continue;
        }
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            reply.library_error == AMQP_STATUS_TIMEOUT)
            break;
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            int rc = consume_other_frame(r, kp_clock_mono_ms() + CONSUME_GRACE_MS, err, errcap);
            if (rc != 0)
                return rc;
            continue;
        }
        return check_reply(reply, "basic.consume", err, errcap);
    }
    if (got) {
        r->last_tag = last;
        r->last_tag_gen = r->con.generation;
    }
    *n = got;
    return 0;
}

/* One attempt: connects when there is no connection, refreshes the queue size when it is stale,
 * takes a batch. Sets *tripped when the guard cut the call short. */
static int consume_attempt(mq_rabbit *r, kp_event *out, size_t cap, size_t *n, int timeout_ms,
                           char *err, size_t errcap, bool *tripped)
{
    int rc = 0;
    if (!r->con.conn)
        rc = link_connect(r, &r->con, kp_clock_mono_ms() + CONNECT_DEADLINE_MS, err, errcap);
    if (rc == 0) {
        uint64_t deadline = kp_clock_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) +
                            CONSUME_GRACE_MS;
        kp_guard_arm(r->guard, CONSUME_SLOT, amqp_get_sockfd(r->con.conn), deadline);
        if (ready_is_stale(r)) {
            rpc_deadline(r->con.conn, deadline);
            rc = declare_queue(r, r->con.conn, CON_INFO_CHANNEL, true, err, errcap);
        }
        if (rc == 0)
            rc = consume_batch(r, out, cap, n, timeout_ms, err, errcap);
    }
    *tripped = kp_guard_disarm(r->guard, CONSUME_SLOT);
    if (*tripped && rc == 0)
        link_drop(r, &r->con); /* the events stay unacknowledged and come back */
    return rc;
}

static int rabbit_consume(kp_mq *mq, kp_event *out, size_t cap, size_t *n, int timeout_ms)
{
    mq_rabbit *r = (mq_rabbit *)mq;
    *n = 0;
    char err[ERR_MAX] = "";
    bool had_conn = r->con.conn != NULL, tripped = false;
    uint64_t start = kp_clock_mono_ms();
    int rc = consume_attempt(r, out, cap, n, timeout_ms, err, sizeof(err), &tripped);
    if (rc != 0 && rc != KP_ENOMEM && had_conn && !tripped &&
        kp_clock_mono_ms() - start < IDLE_LOSS_MS) {
        /* A connection that died while idle (the broker restarted) shows only when it is used:
         * replace it within this call, as publish does. Only a fast failure is retried, so a
         * call takes at most IDLE_LOSS_MS more than one attempt's deadline. */
        KP_INFO(MODULE, "idle connection lost; reconnecting", KP_STR("side", "consume"),
                KP_QSTR("error", err));
        link_drop(r, &r->con);
        r->con.failures++;
        *n = 0;
        err[0] = '\0';
        rc = consume_attempt(r, out, cap, n, timeout_ms, err, sizeof(err), &tripped);
    }
    if (rc != 0) {
        /* What this call took is dropped with the channel: the broker redelivers it. */
        if (tripped)
            timed_out(err, sizeof(err));
        *n = 0;
        link_fail(r, &r->con, err);
        return rc == KP_ENOMEM ? KP_ENOMEM : KP_EIO;
    }
    return 0;
}

static int rabbit_ack(kp_mq *mq)
{
    mq_rabbit *r = (mq_rabbit *)mq;
    uint64_t tag = r->last_tag;
    if (tag == 0)
        return 0;
    r->last_tag = 0;
    if (!r->con.conn || r->last_tag_gen != r->con.generation)
        return KP_EIO; /* those deliveries died with their channel and come back */
    kp_guard_arm(r->guard, CONSUME_SLOT, amqp_get_sockfd(r->con.conn),
                 kp_clock_mono_ms() + ACK_DEADLINE_MS);
    int st = amqp_basic_ack(r->con.conn, DATA_CHANNEL, tag, 1 /* multiple */);
    bool tripped = kp_guard_disarm(r->guard, CONSUME_SLOT);
    if (st != AMQP_STATUS_OK || tripped) {
        char err[ERR_MAX];
        snprintf(err, sizeof(err), "basic.ack: %s",
                 tripped ? "no answer from the broker in time" : amqp_error_string2(st));
        link_fail(r, &r->con, err);
        return KP_EIO;
    }
    return 0;
}

static int64_t rabbit_pending(kp_mq *mq)
{
    mq_rabbit *r = (mq_rabbit *)mq;
    uint64_t at = atomic_load(&r->ready_at_ms);
    if (at == 0 || kp_clock_mono_ms() - at > PENDING_STALE_MS)
        return -1;
    return (int64_t)atomic_load(&r->ready);
}

/* A polite connection.close (bounded), so the broker requeues unacknowledged deliveries at once
 * and logs no "client unexpectedly closed" warning. */
static void link_close(mq_rabbit *r, link *l)
{
    if (!l->conn)
        return;
    uint64_t deadline = kp_clock_mono_ms() + CLOSE_DEADLINE_MS;
    kp_guard_arm(r->guard, l->slot, amqp_get_sockfd(l->conn), deadline);
    rpc_deadline(l->conn, deadline);
    amqp_connection_close(l->conn, AMQP_REPLY_SUCCESS);
    link_drop(r, l);
}

static void rabbit_free(kp_mq *mq)
{
    mq_rabbit *r = (mq_rabbit *)mq;
    link_close(r, &r->con);
    for (unsigned i = 0; i < r->npubs; i++) {
        link_close(r, &r->pubs[i]);
        free(r->pubs[i].confirmed);
    }
    kp_guard_stop(r->guard);
    free(r->body);
    free(r->stash);
    free(r->json);
    free(r->url_buf);
    free(r);
}

/* Deliveries the broker sends ahead: enough that a consume call finds several messages' worth of
 * events waiting (a larger record per transaction), bounded in events so a consumer never holds
 * more than about PREFETCH_EVENTS unacknowledged events of this node's batch size. */
static uint16_t prefetch_for(uint32_t mq_batch)
{
    uint32_t per = mq_batch > 1 ? mq_batch : 1;
    uint32_t n = PREFETCH_EVENTS / per;
    return (uint16_t)(n < PREFETCH_MIN ? PREFETCH_MIN : n > PREFETCH ? PREFETCH : n);
}

int kp_mq_rabbit_open(const kp_config *cfg, kp_mq **out)
{
    mq_rabbit *r = calloc(1, sizeof(*r));
    if (!r)
        return KP_ENOMEM;
    redact_url(cfg->mq_url, r->url_safe, sizeof(r->url_safe));
    r->url_buf = strdup(cfg->mq_url);
    r->json = malloc(KP_EVENT_JSON_MAX);
    if (!r->url_buf || !r->json) {
        free(r->url_buf);
        free(r->json);
        free(r);
        return KP_ENOMEM;
    }
    amqp_default_connection_info(&r->info);
    const char *bad = NULL;
    if (amqp_parse_url(r->url_buf, &r->info) != AMQP_STATUS_OK || r->info.port <= 0)
        bad = "not an AMQP URL (amqp://user:password@host:port/vhost)";
    else if (r->info.ssl)
        bad = "amqps:// is not supported by this build; use amqp://";
    if (bad) {
        KP_ERROR(MODULE, "bad -mq_url", KP_QSTR("url", r->url_safe), KP_QSTR("error", bad));
        goto invalid;
    }
    /* "amqp://host:5672/" names the empty vhost, which nobody means: the default vhost "/" is
     * what the Go original and every example mean by it. */
    r->vhost = r->info.vhost[0] ? r->info.vhost : "/";
    size_t qlen = strlen(cfg->mq_queue);
    if (qlen == 0 || qlen >= sizeof(r->queue)) {
        KP_ERROR(MODULE, "bad -mq_queue", KP_QSTR("queue", cfg->mq_queue),
                 KP_QSTR("error", "must be 1 to 255 bytes"));
        goto invalid;
    }
    memcpy(r->queue, cfg->mq_queue, qlen + 1);
    r->npubs = cfg->mq_publishers < 1 ? 1
               : cfg->mq_publishers > PUBLISHERS_MAX ? PUBLISHERS_MAX
                                                     : cfg->mq_publishers;
    for (unsigned i = 0; i < r->npubs; i++)
        r->pubs[i] = (link){.side = SIDE_PUBLISH, .slot = CONSUME_SLOT + 1 + i, .index = i};
    r->con.side = SIDE_CONSUME;
    r->con.slot = CONSUME_SLOT;
    r->prefetch = prefetch_for(cfg->mq_batch);
    atomic_init(&r->ready, 0);
    atomic_init(&r->ready_at_ms, 0);
    atomic_init(&r->rejected, 0);
    atomic_init(&r->bad_lines, 0);
    if (kp_guard_start(1 + r->npubs, &r->guard) != 0) {
        free(r->json);
        free(r->url_buf);
        free(r);
        return KP_ENOMEM;
    }
    r->parent = (kp_mq){
        .version = KP_MQ_VERSION,
        .name = "rabbit",
        .publish = rabbit_publish,
        .consume = rabbit_consume,
        .ack = rabbit_ack,
        .pending = rabbit_pending,
        .free = rabbit_free,
    };
    *out = &r->parent;
    return 0;

invalid:
    free(r->json);
    free(r->url_buf);
    free(r);
    return KP_EINVAL;
}
