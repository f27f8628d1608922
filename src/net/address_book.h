/* Everything the server knows per client address (SPEC §9), in one table: open connections
 * (for -max_conns_per_ip), the last -ban_check judged submits (for invalid-share bans) and bans.
 *
 * An address is an IPv4 address or an IPv6 /64 (one customer's LAN under IPv6: counting /128s
 * would let one host open a connection per address it picks). The carried PROXY address is
 * what the server passes, so the book never sees a proxy's own address for a proxied client.
 *
 * Pure logic: no libuv, no sessions; the time comes in as an argument (a monotonic ms clock),
 * so tests drive it with a fake clock. The server keeps the entry an admitted connection got
 * and gives it back at close; an entry with open connections is never freed or moved.
 *
 * Bounded memory. An entry lives while its address has open connections, is banned, or, with
 * bans on, keeps its submit history for KP_ADDR_IDLE_KEEP_MS after its last connection closed
 * (so reconnecting does not wipe the history); at most KP_ADDR_MAX_BANS bans and
 * KP_ADDR_MAX_IDLE idle histories are kept, oldest dropped first. An entry is 80 bytes of heap;
 * an address with judged submits adds a ring of ceil(ban_check / 8) bytes (13 at the default
 * 100, 1,250 at the largest, 10,000).
 *
 * Loop thread only. */
#ifndef KP_ADDRESS_BOOK_H
#define KP_ADDRESS_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "outcome.h"

#define KP_ADDR_MAX_BANS 65536u
#define KP_ADDR_MAX_IDLE 65536u
#define KP_ADDR_IDLE_KEEP_MS (60u * 60u * 1000u)
#define KP_ADDR_MAX_BAN_CHECK 10000u

typedef struct kp_addr_book_config {
    uint32_t max_conns_per_ip;    /* 0 = no limit */
    uint64_t ban_time_ms;         /* 0 = no bans */
    uint32_t ban_check;           /* judged submits in the window, 1..KP_ADDR_MAX_BAN_CHECK */
    uint32_t ban_invalid_percent; /* 1..100 */
    kp_cidr_list exempt;          /* never banned */
    uint32_t max_bans;            /* 0 = KP_ADDR_MAX_BANS (tests set less) */
    uint32_t max_idle;            /* 0 = KP_ADDR_MAX_IDLE */
} kp_addr_book_config;

typedef enum kp_ban_reason {
    KP_BAN_JUNK = 0,
    KP_BAN_INVALID_SHARES,
    KP_BAN_REASONS
} kp_ban_reason;

typedef enum kp_admit {
    KP_ADMIT_OK = 0, /* *entry is the address's entry: give it back with kp_addr_book_release */
    KP_ADMIT_BANNED,
    KP_ADMIT_PER_IP, /* the address already has -max_conns_per_ip connections */
    KP_ADMIT_NOMEM
} kp_admit;

/* What a submit's answer means for the ban rule. */
typedef enum kp_judgement {
    KP_JUDGE_NONE = 0, /* not a judged submit (authorize, params, expired, too frequent, ...) */
    KP_JUDGE_VALID,    /* accepted */
    KP_JUDGE_INVALID   /* one of the SPEC §9 invalid-share rejections */
} kp_judgement;

typedef struct kp_addr_book kp_addr_book;
typedef struct kp_addr_entry kp_addr_entry;

typedef struct kp_addr_book_stats {
    uint64_t bans_total[KP_BAN_REASONS];
    size_t bans_active; /* as of the last call that took a time */
    size_t entries;     /* addresses in the table, open, banned or idle */
} kp_addr_book_stats;

/* `seed` keys the table's hash (random per process, so nobody can pick addresses that collide).
 * Returns 0, KP_EINVAL (a value out of range) or KP_ENOMEM. */
int kp_addr_book_new(const kp_addr_book_config *cfg, uint64_t seed, kp_addr_book **out);
void kp_addr_book_free(kp_addr_book *b);

/* A new connection from `ip`: refused when the address is banned or at its limit, else counted
 * and its entry returned. */
kp_admit kp_addr_book_admit(kp_addr_book *b, const kp_ip *ip, uint64_t now_ms,
                            kp_addr_entry **entry);

/* The connection admitted with `e` closed. */
void kp_addr_book_release(kp_addr_book *b, kp_addr_entry *e, uint64_t now_ms);

/* A connection of `e` was closed for junk (SPEC §9 (a)). Returns true when this banned the
 * address: the caller closes its other connections (kp_addr_entry_banned tells them). */
bool kp_addr_book_junk(kp_addr_book *b, kp_addr_entry *e, uint64_t now_ms);

/* One judged submit of `e` (VALID or INVALID; NONE is ignored). Returns true when this banned
 * the address for invalid shares. */
bool kp_addr_book_judged(kp_addr_book *b, kp_addr_entry *e, kp_judgement j, uint64_t now_ms);

/* How the ban rule reads a protocol answer. `authorize` tells an authorize's "ok" from a
 * submit's. Invalid: Invalid result, Low difficulty share, Duplicate submission, Task does not
 * exist (SPEC §9). */
kp_judgement kp_addr_book_judge(const kp_addr_book *b, kp_outcome oc, bool authorize);

/* The address as the book counts it (an IPv6 /64 with its low bits zero). */
const kp_ip *kp_addr_entry_key(const kp_addr_entry *e);

/* True while the entry's address is banned (its connections are to be closed). */
bool kp_addr_entry_banned(const kp_addr_entry *e);

/* Drops expired bans and idle histories; returns the bans active now. */
size_t kp_addr_book_expire(kp_addr_book *b, uint64_t now_ms);

kp_addr_book_stats kp_addr_book_get_stats(const kp_addr_book *b);

/* Calls `fn` for each active ban, oldest first (call kp_addr_book_expire first). `key` is the
 * address as the book counts it (an IPv6 address with its low 64 bits zero). */
void kp_addr_book_each_ban(const kp_addr_book *b,
                           void (*fn)(void *arg, const kp_ip *key, kp_ban_reason reason,
                                      uint64_t until_ms),
                           void *arg);

/* "203.0.113.7" or "2001:db8:1:2::/64": an address as /bans and the logs show it. */
void kp_addr_key_format(const kp_ip *key, char *buf, size_t cap);

/* "junk" or "invalid_shares". */
const char *kp_ban_reason_label(kp_ban_reason r);

#endif
