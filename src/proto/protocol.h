/* The protocol: what one message means for one session, whatever the transport.
 *
 * A transport frames bytes into messages and calls kp_protocol_handle(); it gets back the
 * response line and what to do next (send the current job, close). Accepted submits become
 * events handed to an event sink (the server's pipeline; a counting fake in tests), so TCP and
 * WebSocket share one code path. No I/O, no libuv: time comes in as arguments. Loop thread
 * only. */
#ifndef KP_PROTOCOL_H
#define KP_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "hasher.h"
#include "job_book.h"
#include "outcome.h"
#include "kupool/event.h"
#include "submit.h"
#include "vardiff.h"

/* Where accepted submits go. `push` copies the event (it is borrowed for the call) and returns
 * 0, or a negative KP_E* when it cannot take it (the submit is then answered as a server error
 * and the session closed). */
typedef struct kp_event_sink {
    int (*push)(void *ctx, const kp_event *ev);
    void *ctx;
} kp_event_sink;

/* Buckets of the session difficulty histogram (SPEC §8 kupool_session_difficulty): bucket k < 27
 * holds the sessions whose difficulty d has 4^(k-1) < d <= 4^k (k = 0: d = 1), the last one those
 * above 4^26 = 2^52. Counts per bucket, not cumulative. */
#define KP_DIFFICULTY_BUCKETS 28

/* Index of the histogram bucket of difficulty d >= 1. */
unsigned kp_difficulty_bucket(uint64_t d);

/* SPEC §8 settings (kp_protocol_set_difficulty) and what the protocol counts of them. */
typedef struct kp_protocol_difficulty {
    bool on;                    /* -difficulty > 1 or -vardiff_target > 0: set_difficulty is sent */
    uint64_t start;             /* a new session's difficulty: -difficulty clamped to min..max */
    kp_vardiff_params vardiff;  /* target_ms 0 = a fixed difficulty */
    unsigned __int128 shares_sum;          /* sum of the accepted shares' difficulties */
    uint64_t sessions[KP_DIFFICULTY_BUCKETS]; /* authorized peers by their current difficulty */
    unsigned __int128 sessions_sum;        /* sum of their current difficulties */
} kp_protocol_difficulty;

typedef struct kp_protocol {
    kp_job_book *jobs;         /* borrowed */
    kp_event_sink sink;        /* accepted events go here */
    kp_hasher hasher;          /* owned */
    uint64_t min_interval_ms;  /* -min_submit_interval */
    uint32_t max_errors;       /* -max_errors */
    char node_id[17];          /* 16 random hex chars: event ids are "<node_id>-<seq>" */
    uint64_t next_seq;
    uint64_t outcomes[KP_OUTCOME_COUNT]; /* responses by outcome, for metrics and tests */
    uint64_t submits[KP_OUTCOME_COUNT];  /* responses to submit requests by outcome (metrics) */
    char *scratch;             /* owned; where kp_request_parse() decodes strings. Grown to the
                                  longest message seen (<= -max_msg), so a steady stream of
                                  messages allocates nothing */
    size_t scratch_cap;
    kp_protocol_difficulty difficulty;
} kp_protocol;

/* What the transport must do after a message. */
enum kp_reply_action {
    KP_REPLY_SEND_JOB = 1u << 0, /* send the current job after the response (just authorized) */
    KP_REPLY_CLOSE = 1u << 1     /* close once the response is written */
};

typedef struct kp_reply {
    char line[KP_RESPONSE_MAX]; /* the response, "\n"-terminated */
    size_t len;
    kp_outcome outcome;
    unsigned actions;           /* enum kp_reply_action bits */
} kp_reply;

/* Returns 0, KP_EIO (CSPRNG) or KP_ENOMEM. */
int kp_protocol_init(kp_protocol *p, kp_job_book *jobs, kp_event_sink sink,
                     uint64_t min_interval_ms, uint32_t max_errors);
void kp_protocol_free(kp_protocol *p);

/* Turns SPEC §8 on (it is off after init: every session at difficulty 1, nothing on the wire).
 * `difficulty` is -difficulty, `vardiff` the -vardiff_* flags (validated by the config). Call
 * before any session authorizes. */
void kp_protocol_set_difficulty(kp_protocol *p, uint64_t difficulty, kp_vardiff_params vardiff);

/* Longest set_difficulty line (with "\n"). */
#define KP_SET_DIFFICULTY_MAX 160

/* `peer` is about to be sent job `job_id`, once per job, in job order. With vardiff this is where
 * its difficulty is retargeted; the job's difficulty is recorded for its submits. Returns the
 * length of the set_difficulty line written into buf (KP_SET_DIFFICULTY_MAX bytes) that must
 * directly precede the job, or 0 when none is due (difficulty off, or unchanged and told). */
size_t kp_protocol_job_sent(kp_protocol *p, kp_peer *peer, int64_t job_id, uint64_t mono_ms,
                            char *buf);

/* Releases a session's peer and takes it out of the difficulty histogram. */
void kp_protocol_peer_free(kp_protocol *p, kp_peer *peer);

/* Handles one message (a line without its terminator). `mono_ms` is the loop's monotonic time;
 * the event timestamp is read from the wall clock. */
void kp_protocol_handle(kp_protocol *p, kp_peer *peer, const char *msg, size_t len,
                        uint64_t mono_ms, kp_reply *reply);

#endif
