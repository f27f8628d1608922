/* See health.h. */
#include "health.h"

#include <stdarg.h>
#include <stdio.h>

kp_backend_health kp_admin_backend_health(const kp_admin_snapshot *s)
{
    bool consumer_mq = s->consumer.failing && !s->consumer.stats_side;
    bool consumer_stats = s->consumer.failing && s->consumer.stats_side;
    return (kp_backend_health){
        .mq_up = !s->pipeline.failing && !consumer_mq,
        .stats_up = !consumer_stats,
    };
}

static void answer_line(kp_health_answer *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends one line; a line that does not fit is cut (backend names are short). */
static void answer_line(kp_health_answer *out, const char *fmt, ...)
{
    size_t room = sizeof(out->body) - out->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out->body + out->len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        out->len += (size_t)n < room ? (size_t)n : room - 1;
}

void kp_admin_healthz(const kp_admin_snapshot *s, kp_health_answer *out)
{
    out->len = 0;
    out->body[0] = '\0';
    if (s->shutting_down) {
        out->status = 503;
        answer_line(out, "shutting down\n");
        return;
    }
    kp_backend_health h = kp_admin_backend_health(s);
    if (!h.mq_up)
        answer_line(out, "mq failing: %s\n", s->mq_name);
    if (!h.stats_up)
        answer_line(out, "stats failing: %s\n", s->stats_name);
    out->status = out->len ? 503 : 200;
    if (!out->len)
        answer_line(out, "ok\n");
}
