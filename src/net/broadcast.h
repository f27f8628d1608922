/* The job broadcast: one shared job line sent to every authorized session, BROADCAST_CHUNK
 * sessions per loop iteration so submits that arrive meanwhile wait milliseconds, not the whole
 * broadcast. The broadcast owns its cursor: the server tells it when a session leaves the
 * audience (kp_broadcast_leaving), and it resumes at the one after. */
#ifndef KP_BROADCAST_H
#define KP_BROADCAST_H

#include <stdint.h>
#include <uv.h>

#include "conn.h"
#include "job_book.h"
#include "session.h"

typedef struct kp_broadcast {
    uv_idle_t idle;                /* active while a broadcast is in progress */
    const kp_session_list *audience; /* the authorized sessions, in broadcast order */
    const kp_job_book *jobs;       /* for pruning expired jobs' nonce sets on the way */
    kp_shared_line *line;          /* the current job line, NULL before the first job */
    int64_t line_id;
    kp_session *next;              /* the next session to send it to, NULL when done */
    uint64_t start_ns;
    uint64_t last_us;              /* duration of the last completed broadcast */
} kp_broadcast;

void kp_broadcast_init(kp_broadcast *b, uv_loop_t *loop, const kp_session_list *audience,
                       const kp_job_book *jobs);

/* Makes `job` the current line and sends it to the whole audience. A broadcast still running
 * continues with the new line: every session it has not reached yet gets the newest job.
 * Returns 0, or KP_ENOMEM (the previous line stays current). */
int kp_broadcast_job(kp_broadcast *b, const kp_job *job);

/* `sess` leaves the audience (call before unlinking it). */
static inline void kp_broadcast_leaving(kp_broadcast *b, const kp_session *sess)
{
    if (b->next == sess)
        b->next = sess->next;
}

/* Closes the idle handle (the loop must run); the line stays until kp_broadcast_free. */
void kp_broadcast_close(kp_broadcast *b);
void kp_broadcast_free(kp_broadcast *b);

#endif
