/* See front_door.h. */
#include "front_door.h"

#include <string.h>

#include "clock.h"
#include "conn_proxy.h"
#include "kupool/error.h"
#include "log.h"
#include "server.h"

#define MODULE "tcp.server"

static kp_door_room *room_of(kp_session *sess)
{
    return kp_session_room(sess);
}

/* A refusal worth a WARN line: the first, then one in 1000, so a flood cannot fill the log. */
static bool worth_logging(uint64_t count)
{
    return count == 1 || count % 1000 == 0;
}

static void format_peer(kp_session *sess, char *buf, size_t cap)
{
    struct sockaddr_storage sa;
    kp_ip ip;
    buf[0] = '\0';
    if (kp_conn_peer_address(sess->conn, &sa) == 0 && kp_ip_from_sockaddr((struct sockaddr *)&sa, &ip) == 0)
        kp_ip_format(&ip, buf, cap);
}

static void log_ban(kp_server *s, const kp_addr_entry *e, kp_ban_reason reason)
{
    char addr[64];
    kp_addr_key_format(kp_addr_entry_key(e), addr, sizeof(addr));
    KP_WARN(MODULE, "address banned", KP_STR("addr", addr),
            KP_STR("reason", kp_ban_reason_label(reason)),
            KP_UINT("ban_ms", s->cfg->ban_time_ms));
    s->door.sweep_pending = true;
}

/* ---- the per-address checks ---- */

/* Admits `sess` from `ip`, or closes it. Returns whether it goes on. */
static bool admit(kp_server *s, kp_session *sess, const kp_ip *ip)
{
    kp_door_room *room = room_of(sess);
    kp_addr_entry *e = NULL;
    kp_admit verdict = kp_addr_book_admit(s->door.book, ip, uv_now(s->loop), &e);
    if (verdict == KP_ADMIT_OK) {
        room->addr = e;
        return true;
    }
    char addr[64];
    kp_ip_format(ip, addr, sizeof(addr));
    if (verdict == KP_ADMIT_PER_IP) {
        if (worth_logging(++s->door.refused_per_ip))
            KP_WARN(MODULE, "connection refused: -max_conns_per_ip reached", KP_STR("addr", addr),
                    KP_UINT("max_conns_per_ip", s->cfg->max_conns_per_ip),
                    KP_UINT("refused", s->door.refused_per_ip));
    } else if (verdict == KP_ADMIT_BANNED) {
        s->door.refused_banned++;
        KP_DEBUG(MODULE, "connection refused: address banned", KP_STR("addr", addr));
    } else {
        KP_ERROR(MODULE, "out of memory admitting a connection", KP_STR("addr", addr));
    }
    kp_session_discard(sess);
    return false;
}

/* The PROXY reader's verdict (conn_proxy.h). */
static bool on_proxy_header(void *ctx, void *arg, const struct sockaddr_storage *client,
                            const char *why)
{
    kp_server *s = ctx;
    kp_session *sess = arg;
    if (!client) {
        if (worth_logging(++s->door.refused_proxy_header)) {
            char proxy[64];
            format_peer(sess, proxy, sizeof(proxy));
            KP_WARN(MODULE, "connection refused: bad PROXY header", KP_STR("proxy", proxy),
                    KP_QSTR("error", why), KP_UINT("refused", s->door.refused_proxy_header));
        }
        kp_session_close(sess, "bad PROXY header");
        return false;
    }
    kp_ip ip;
    if (kp_ip_from_sockaddr((const struct sockaddr *)client, &ip) != 0) {
        kp_session_close(sess, "PROXY header without an address");
        return false;
    }
    if (kp_log_enabled(KP_LOG_DEBUG)) {
        char addr[64];
        kp_ip_format(&ip, addr, sizeof(addr));
        KP_DEBUG(MODULE, "PROXY header", KP_STR("addr", addr));
    }
    return !s->door.book || admit(s, sess, &ip);
}

int kp_front_door_accept(kp_server *s, kp_session *sess, kp_conn **inner)
{
    struct sockaddr_storage sa;
    kp_ip ip;
    kp_conn *tcp = &room_of(sess)->tcp.base;
    if (kp_conn_peer_address(tcp, &sa) != 0 || kp_ip_from_sockaddr((struct sockaddr *)&sa, &ip) != 0) {
        kp_session_discard(sess); /* gone already, or not IP: nothing to serve */
        return KP_EIO;
    }
    if (s->door.proxy_from.count && kp_cidr_list_contains(&s->door.proxy_from, &ip)) {
        kp_conn *proxy;
        if (kp_conn_proxy_new(tcp, on_proxy_header, s, sess, &proxy) != 0) {
            KP_ERROR(MODULE, "out of memory accepting a proxied connection");
            kp_session_discard(sess);
            return KP_ENOMEM;
        }
        *inner = proxy;
        return 0;
    }
    if (s->door.book && !admit(s, sess, &ip))
        return KP_EAGAIN;
    return 0;
}

void kp_front_door_closing(kp_server *s, kp_session *sess)
{
    kp_door_room *room = room_of(sess);
    if (room->addr) {
        kp_addr_book_release(s->door.book, room->addr, uv_now(s->loop));
        room->addr = NULL;
    }
}

/* ---- the session hooks ---- */

static void hook_junk(void *ctx, kp_session *sess)
{
    kp_server *s = ctx;
    kp_addr_entry *e = room_of(sess)->addr;
    if (e && kp_addr_book_junk(s->door.book, e, uv_now(s->loop)))
        log_ban(s, e, KP_BAN_JUNK);
}

static void hook_answered(void *ctx, kp_session *sess, kp_outcome outcome, bool authorize)
{
    kp_server *s = ctx;
    kp_addr_entry *e = room_of(sess)->addr;
    if (!e)
        return;
    kp_judgement j = kp_addr_book_judge(s->door.book, outcome, authorize);
    if (j != KP_JUDGE_NONE && kp_addr_book_judged(s->door.book, e, j, uv_now(s->loop)))
        log_ban(s, e, KP_BAN_INVALID_SHARES);
}

/* ---- bans ---- */

static void sweep_list(kp_session_list *list)
{
    for (kp_session *sess = list->head, *next; sess; sess = next) {
        next = sess->next; /* closing removes only `sess` from the list */
        kp_addr_entry *e = room_of(sess)->addr;
        if (e && kp_addr_entry_banned(e))
            kp_session_close(sess, "address banned");
    }
}

void kp_front_door_sweep(kp_server *s)
{
    s->door.sweep_pending = false;
    sweep_list(&s->unauthorized);
    sweep_list(&s->authorized);
    sweep_list(&s->draining);
}

typedef struct ban_visit {
    void (*fn)(void *arg, const char *addr, const char *reason, uint64_t until_unix_ms);
    void *arg;
    uint64_t mono_now, wall_now;
} ban_visit;

static void visit_ban(void *arg, const kp_ip *key, kp_ban_reason reason, uint64_t until_ms)
{
    ban_visit *v = arg;
    char addr[64];
    kp_addr_key_format(key, addr, sizeof(addr));
    uint64_t left = until_ms > v->mono_now ? until_ms - v->mono_now : 0;
    v->fn(v->arg, addr, kp_ban_reason_label(reason), v->wall_now + left);
}

void kp_front_door_each_ban(kp_server *s,
                            void (*fn)(void *arg, const char *addr, const char *reason,
                                       uint64_t until_unix_ms),
                            void *arg)
{
    if (!s->door.book)
        return;
    ban_visit v = {.fn = fn, .arg = arg, .mono_now = uv_now(s->loop),
                   .wall_now = (uint64_t)kp_clock_wall_ms()};
    kp_addr_book_expire(s->door.book, v.mono_now);
    kp_addr_book_each_ban(s->door.book, visit_ban, &v);
}

/* ---- life ---- */

size_t kp_front_door_room(const kp_server *s)
{
    return s->door.book ? sizeof(kp_door_room) : sizeof(kp_conn_tcp);
}

int kp_front_door_init(kp_server *s)
{
    const kp_config *cfg = s->cfg;
    kp_front_door *d = &s->door;
    if (kp_cidr_list_parse(cfg->proxy_from, &d->proxy_from) != 0)
        return KP_EINVAL;
    if (cfg->max_conns_per_ip || cfg->ban_time_ms) {
        kp_addr_book_config bc = {
            .max_conns_per_ip = cfg->max_conns_per_ip,
            .ban_time_ms = cfg->ban_time_ms,
            .ban_check = cfg->ban_check,
            .ban_invalid_percent = cfg->ban_invalid_percent,
        };
        if (kp_cidr_list_parse(cfg->ban_exempt, &bc.exempt) != 0)
            return KP_EINVAL;
        uint64_t seed = 0;
        uv_random(NULL, NULL, &seed, sizeof(seed), 0, NULL); /* failing leaves 0: still correct */
        seed ^= kp_clock_mono_ns();
        int rc = kp_addr_book_new(&bc, seed, &d->book);
        if (rc != 0)
            return rc;
        if (cfg->ban_time_ms) {
            s->hooks.junk = hook_junk;
            s->hooks.answered = hook_answered;
        }
    }
    d->on = d->book || d->proxy_from.count;
    return 0;
}

void kp_front_door_free(kp_server *s)
{
    kp_addr_book_free(s->door.book);
    s->door.book = NULL;
}
