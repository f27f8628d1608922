/* One client session on libuv (SPEC §2, §7): connect (from a chosen source address if asked),
 * authorize, follow job notifications, send submits and match their answers, and when the
 * connection is lost, reconnect after a jittered exponential backoff.
 *
 * The session decides nothing about *what* to submit or *when*: the mode (client_demo.c,
 * client_load.c) does, through kc_session_submit() and the kc_session_events callbacks.
 *
 * Ownership: the mode allocates sessions and keeps them until uv_run() has returned. A session
 * owns three handles: `tcp` (closed and re-initialised for every connection), `timer` (the
 * connect/authorize deadline, then the backoff delay) and `pace` (lent to the mode for its submit
 * schedule). kc_session_stop() closes all three; nothing is freed in a callback, so a session
 * never frees itself. Reads land in the client's one shared buffer; a session copies out only an
 * unfinished line. Submits written while a read is being handled leave together in one write,
 * and so do the pieces of one WebSocket frame. */
#ifndef KC_CLIENT_SESSION_H
#define KC_CLIENT_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "client_addr.h"
#include "client_search.h"
#include "client_submit.h"
#include "hasher.h"
#include "outcome.h"
#include "client_tls.h"
#include "ws.h"

typedef struct kc_session kc_session;

typedef enum kc_submit_kind {
    KC_SUBMIT_VALID = 0, /* fresh nonce, right result: should be accepted */
    KC_SUBMIT_DUPLICATE, /* the last accepted (job, nonce, result) again: "Duplicate submission" */
    KC_SUBMIT_INVALID,   /* fresh nonce, wrong result: "Invalid result" */
    KC_SUBMIT_FREQUENT,  /* right behind an accepted one: "Submission too frequent" */
    KC_SUBMIT_KIND_COUNT
} kc_submit_kind;

typedef enum kc_state {
    KC_STATE_IDLE = 0,    /* never started */
    KC_STATE_CONNECTING,  /* connect() in progress */
    KC_STATE_UPGRADING,   /* ws:// only: HTTP upgrade sent, no 101 yet */
    KC_STATE_AUTHORIZING, /* authorize sent, no answer yet */
    KC_STATE_READY,       /* authorized */
    KC_STATE_CLOSING,     /* uv_close(tcp) called, waiting for its callback */
    KC_STATE_BACKOFF,     /* waiting to reconnect */
    KC_STATE_STOPPED      /* for good */
} kc_state;

typedef enum kc_down_reason {
    KC_DOWN_CONNECT_FAILED = 0, /* connect() failed */
    KC_DOWN_CLOSED_BY_SERVER,   /* EOF or reset after connecting */
    KC_DOWN_AUTH_REJECTED,      /* authorize answered false: never retried */
    KC_DOWN_PROTOCOL,           /* a line this client cannot understand, or an answer out of order */
    KC_DOWN_TIMEOUT,            /* no connection or no answer to authorize within the deadline */
    KC_DOWN_STOPPED,            /* kc_session_stop() */
    KC_DOWN_REASON_COUNT
} kc_down_reason;

/* The answer to one submit, as the mode sees it. */
typedef struct kc_answer {
    kc_submit_kind kind;
    int64_t job_id;
    const char *client_nonce;
    kp_outcome outcome; /* OK, a SPEC §2 error, or KP_OUTCOME_COUNT for an unknown string */
    const char *error;  /* the error string as received; NULL when accepted */
    uint64_t latency_us; /* from handing the line to the socket to reading the answer */
    uint64_t difficulty; /* the share's (1 with difficulty off) */
    uint64_t hashes;     /* the hashes it took (1 with difficulty off) */
} kc_answer;

typedef struct kc_session_events {
    /* authorize answered true; the current job follows at once. */
    void (*on_authorized)(kc_session *s);
    /* A job notification; s->job_id and s->server_nonce hold it. `prev_job_id` is the job this
     * connection had before (0 for the first one after authorize). */
    void (*on_job)(kc_session *s, int64_t prev_job_id);
    void (*on_answer)(kc_session *s, const kc_answer *a);
    /* set_difficulty (SPEC §8): `difficulty` applies from the next job on (it is in
     * s->search.next_difficulty). May be NULL. */
    void (*on_difficulty)(kc_session *s, uint64_t difficulty);
    /* The connection is gone (or never came up). `lost` submits had no answer. `retry_ms` is the
     * delay before the next attempt, 0 when the session stopped for good. */
    void (*on_down)(kc_session *s, kc_down_reason why, const char *detail, uint32_t lost,
                    uint64_t retry_ms);
} kc_session_events;

/* What every session of one process shares. Filled by the mode, then kc_client_init(). */
typedef struct kc_client {
    uv_loop_t *loop;
    const kc_session_events *events;
    void *mode;                      /* the mode's state, for its callbacks */
    struct sockaddr_storage server;  /* resolved -addr */
    bool websocket;                  /* ws://: upgrade every connection first */
    const char *ws_host;             /* the Host header, "host:port" (borrowed) */
    const char *ws_path;             /* the request target, "/..." (borrowed) */
    const kc_src_range *src;         /* local addresses to bind, NULL = the kernel's choice */
    SSL_CTX *tls_ctx;                /* tls:// and wss:// (borrowed), NULL = plaintext */
    const char *tls_host;            /* the name the certificate must carry (borrowed) */
    uint32_t src_next;               /* rotation through src */
    uint32_t max_in_flight;          /* submits a session may have unanswered */
    uint64_t connect_timeout_ms;     /* connect + authorize deadline */
    uint64_t backoff_base_ms;        /* first retry within this; 0 = never reconnect */
    uint64_t backoff_max_ms;         /* retries never wait longer */
    double hashrate;                 /* -hashrate per session, 0 = as fast as it goes */
    kc_nonce_seq rng;                /* backoff jitter */
    kp_hasher hasher;
    char *read_buf;                  /* every read lands here */
    size_t read_buf_size;
    bool read_buf_busy;
    char *out_buf;                   /* bytes one session produced while it owns the batch */
    size_t out_len;
    kc_session *out_owner;           /* the session batching into out_buf, NULL = none */
} kc_client;

typedef struct kc_in_flight {
    int64_t id;
    int64_t job_id;
    uint64_t sent_ns;
    uint64_t difficulty, hashes; /* of the share (1 and 1 with difficulty off) */
    char nonce[KC_NONCE_HEX + 1];
    uint8_t kind; /* kc_submit_kind */
} kc_in_flight;

struct kc_session {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_timer_t pace; /* the mode's; stopped by the session when the connection goes */
    uv_connect_t connect_req;
    kc_client *client;
    void *data;      /* the mode's */
    char *username;  /* owned */
    kp_ws *ws;       /* ws:// only: this connection's framing, freed when the connection ends */
    kc_tls *tls;     /* tls:// and wss:// only: freed when the connection ends */
    kc_state state;
    bool stopping;
    kc_down_reason down_reason;
    const char *down_detail; /* static text */
    uint32_t attempt;        /* failed connections in a row: the backoff exponent */
    int64_t next_id;
    int64_t auth_id;
    int64_t job_id;          /* newest job, 0 before the first */
    char server_nonce[65];
    int64_t last_ok_job;     /* the last accepted submit on this connection (0 = none), */
    char last_ok_nonce[KC_NONCE_HEX + 1]; /* for KC_SUBMIT_DUPLICATE */
    kc_nonce_seq nonces;
    kc_search search;        /* SPEC §8: reset with each connection (counters kept) */
    kc_in_flight *fifo;      /* answers come in request order */
    uint32_t fifo_head, fifo_len;
    char *partial;           /* an unfinished line */
    uint32_t partial_len, partial_cap;
};

/* Allocates the shared buffers and the hasher. Returns 0 or KP_ENOMEM. */
int kc_client_init(kc_client *c);
void kc_client_free(kc_client *c);

/* Prepares `s` (its timers are initialised on the client's loop) without connecting.
 * `username` is copied. Returns 0 or KP_ENOMEM. */
int kc_session_init(kc_session *s, kc_client *c, const char *username);

/* Starts connecting (from IDLE or BACKOFF). */
void kc_session_connect(kc_session *s);

/* Sends one submit of `kind` for the newest job (a duplicate without an accepted submit for that
 * job becomes a valid submit). Returns false (nothing sent) unless
 * the session is READY with a job and fewer than max_in_flight + 1 submits unanswered: the one
 * extra slot is for a KC_SUBMIT_FREQUENT right behind a full pipeline. */
bool kc_session_submit(kc_session *s, kc_submit_kind kind);

/* Sends a share the search found (kind KC_SUBMIT_VALID) for its job. Same conditions as
 * kc_session_submit; false when nothing was sent. */
bool kc_session_submit_share(kc_session *s, const kc_share *sh);

/* True when a KC_SUBMIT_DUPLICATE would be one: a submit for the current job was accepted. */
static inline bool kc_session_can_duplicate(const kc_session *s)
{
    return s->last_ok_job != 0 && s->last_ok_job == s->job_id;
}

/* Unanswered submits on the current connection. */
static inline uint32_t kc_session_in_flight(const kc_session *s)
{
    return s->fifo_len;
}

/* No more reconnects: closes the connection (if any) and the session's handles. The session
 * memory may be freed once uv_run() has returned. */
void kc_session_stop(kc_session *s);

/* Frees what kc_session_init allocated; only after uv_run() returned. */
void kc_session_free(kc_session *s);

/* A delay uniformly drawn from [0, min(max, base * 2^attempt)], at least 10 ms ("full jitter":
 * after a server restart, reconnects spread over the whole window instead of arriving at once). */
uint64_t kc_backoff_ms(kc_nonce_seq *rng, uint64_t base, uint64_t max, uint32_t attempt);

/* "connect failed", "closed by server", ... */
const char *kc_down_reason_name(kc_down_reason why);

#endif
