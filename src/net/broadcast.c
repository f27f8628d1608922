#include "broadcast.h"

#include <stdlib.h>

#include "codec.h"
#include "kupool/error.h"
#include "log.h"

#define MODULE "app.coordinator"

/* Sessions sent the job per loop iteration: ~256 writes of 7-9 us keep each slice near 2 ms,
 * so submits that arrive during a broadcast of 19k sessions wait milliseconds, not 190 ms. */
#define BROADCAST_CHUNK 256
/* A job line's room: {"id":..,"method":"job",...} with a 64-bit id and the server nonce. */
#define JOB_LINE_ROOM 160

static void step(uv_idle_t *idle)
{
    kp_broadcast *b = idle->data;
    int64_t oldest = kp_job_book_oldest_id(b->jobs);
    for (int i = 0; i < BROADCAST_CHUNK && b->next; i++) {
        kp_session *sess = b->next;
        b->next = sess->next;
        /* Nonce sets and job difficulties of expired jobs die here, so no extra pass over
         * sessions is needed. */
        kp_peer_prune(&sess->peer, oldest);
        kp_session_send_job(sess, b->line, b->line_id);
    }
    if (!b->next) {
        uv_idle_stop(&b->idle);
        b->last_us = (uv_hrtime() - b->start_ns) / 1000u;
        KP_DEBUG(MODULE, "broadcast done", KP_INT("job_id", b->line_id),
                 KP_UINT("duration_us", b->last_us));
    }
}

void kp_broadcast_init(kp_broadcast *b, uv_loop_t *loop, const kp_session_list *audience,
                       const kp_job_book *jobs)
{
    uv_idle_init(loop, &b->idle);
    b->idle.data = b;
    b->audience = audience;
    b->jobs = jobs;
}

int kp_broadcast_job(kp_broadcast *b, const kp_job *job)
{
    kp_shared_line *line = malloc(sizeof(*line) + JOB_LINE_ROOM);
    if (!line)
        return KP_ENOMEM;
    line->refs = 1;
    line->len = (uint32_t)kp_format_job(line->data, JOB_LINE_ROOM, job->id, job->server_nonce);
    kp_shared_line_release(b->line);
    b->line = line;
    b->line_id = job->id;
    b->next = b->audience->head;
    b->start_ns = uv_hrtime();
    if (b->next)
        uv_idle_start(&b->idle, step);
    return 0;
}

void kp_broadcast_close(kp_broadcast *b)
{
    uv_close((uv_handle_t *)&b->idle, NULL);
}

void kp_broadcast_free(kp_broadcast *b)
{
    kp_shared_line_release(b->line);
    b->line = NULL;
}
