/* What a load run measured, and its final report: a text block for people, or one JSON object
 * (-json) for scripts such as bench/run.sh. */
#ifndef KC_CLIENT_SUMMARY_H
#define KC_CLIENT_SUMMARY_H

#include <stdint.h>
#include <stdio.h>

#include "client_session.h"
#include "histogram.h"
#include "outcome.h"

/* First and last receipt of one job's broadcast (receipts right after authorize excluded). */
typedef struct kc_job_receipts {
    int64_t job_id;
    uint64_t first_ns, last_ns;
    uint64_t count;
} kc_job_receipts;

typedef struct kc_summary {
    uint32_t sessions;          /* -n */
    const char *transport;      /* "tcp" or "ws" (static) */
    double rate;                /* -rate (0 with -rate max) */
    char rate_text[32];         /* -rate as given: "0.95", "0", "max" */
    uint32_t pipeline;          /* -pipeline */
    double elapsed_s;           /* from the first connect to the end of the run */
    /* connections */
    uint32_t peak_ready;        /* most sessions authorized at once */
    uint32_t ready_at_end;      /* authorized when the run ended */
    uint64_t authorized;        /* successful authorizations, reconnects included */
    uint64_t down[KC_DOWN_REASON_COUNT]; /* connections lost, by reason (stops excluded) */
    /* submits */
    uint64_t submits;
    uint64_t accepted;
    uint64_t rejected[KP_OUTCOME_COUNT + 1]; /* by outcome; [KP_OUTCOME_COUNT] = unknown string */
    uint64_t mix_expected;      /* rejections that -mix asked for */
    uint64_t unexpected;        /* rejections it did not ask for */
    uint64_t unanswered;        /* in flight when a connection ended */
    uint64_t pace_skipped;      /* -rate slots dropped because -pipeline submits were in flight */
    kc_histogram latency;       /* µs, every answer */
    /* jobs */
    uint64_t job_receipts;      /* job notifications, all sessions */
    uint64_t jobs_missed;       /* jobs a session skipped between two it received */
    kc_job_receipts *jobs;      /* per job, in id order */
    size_t njobs, jobs_cap;
    /* the search (SPEC §8) */
    double hashrate_asked;      /* -hashrate per session, 0 = max */
    uint64_t hashes;            /* every hash: the searches' and one per submit with difficulty off */
    uint64_t off_hashes;        /* of those, the submits' made with difficulty off */
    uint64_t set_difficulty;    /* notifications received */
    uint64_t difficulty_min, difficulty_max; /* last in force over the sessions, 0 = none */
    uint64_t shares_found;
    uint64_t shares_dropped_full;  /* found while the session's queue was full */
    uint64_t shares_dropped_stale; /* waiting when a newer job came or the connection ended */
    uint64_t low_difficulty;    /* "Low difficulty share" answers */
    double accepted_difficulty; /* sum over the accepted shares (1 each with difficulty off) */
    uint64_t slices;            /* search slices run on the loop */
    double slice_max_ms;        /* the longest: the most the search held the loop */
    double slice_p99_ms;
    double slice_cpu_p99_ms;    /* the same in CPU time: without the OS's preemption */
    double loop_delay_p99_ms, loop_delay_max_ms; /* lateness of the search's 10 ms tick */
    double search_busy_s;       /* the loop's time spent in them */
    /* the client process */
    double cpu_user_s, cpu_sys_s;
} kc_summary;

/* Zeroes the summary (and its histogram). */
void kc_summary_init(kc_summary *sum, uint32_t sessions);
void kc_summary_free(kc_summary *sum);

/* Counts one job notification at monotonic time now_ns. `broadcast` is false for the job that
 * follows authorize, which does not count toward the spread. Returns KP_ENOMEM or 0. */
int kc_summary_job(kc_summary *sum, int64_t job_id, uint64_t now_ns, int broadcast);

/* Newest job id seen, 0 before any. */
int64_t kc_summary_newest_job(const kc_summary *sum);

/* Everything that went wrong but was not asked for: failed and lost connections, protocol
 * errors, rejections -mix did not ask for, answers that never came. */
uint64_t kc_summary_errors(const kc_summary *sum);

/* Largest and mean first-to-last spread over the jobs broadcast to more than one session, ms. */
void kc_summary_spread(const kc_summary *sum, double *max_ms, double *mean_ms);

/* Hashes per second over the run, all sessions; and what the accepted shares' difficulties
 * imply the server saw (sum of difficulties / seconds). 0 before any time passed. */
double kc_summary_hashrate(const kc_summary *sum);
double kc_summary_accepted_hashrate(const kc_summary *sum);

void kc_summary_print_text(const kc_summary *sum, FILE *out);

/* One JSON object and a newline. Returns 0 or KP_ENOMEM. */
int kc_summary_print_json(const kc_summary *sum, FILE *out);

#endif
