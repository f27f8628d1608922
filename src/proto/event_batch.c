#include "event_batch.h"

#include <stdio.h>
#include <string.h>

#include "kupool/error.h"

int kp_batch_id(const kp_event *first, size_t n, char *out, size_t cap)
{
    if (n == 0)
        return KP_EINVAL;
    int len = snprintf(out, cap, "%s+%zu", first->event_id, n);
    return len > 0 && (size_t)len < cap ? len : KP_EINVAL;
}

size_t kp_batch_seal(const kp_event *events, size_t n, size_t per, kp_mq_batch *out, size_t cap)
{
    if (n == 0 || cap == 0)
        return 0;
    if (per <= 1) {
        out[0] = kp_mq_v1_batch(events, n);
        return 1;
    }
    size_t count = (n + per - 1) / per;
    if (count > cap)
        return 0;
    for (size_t b = 0; b < count; b++) {
        size_t first = b * per, len = n - first < per ? n - first : per;
        out[b].events = events + first;
        out[b].n = len;
        if (kp_batch_id(&events[first], len, out[b].id, sizeof(out[b].id)) < 0)
            return 0; /* cannot happen: an event id is at most KP_EVENT_ID_MAX bytes */
    }
    return count;
}

int kp_batch_encode(const kp_event *events, size_t n, char *buf, size_t cap, size_t *len)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (cap - at < 2)
            return KP_EINVAL;
        /* kp_event_to_json writes a NUL after the object: the "\n" overwrites it. */
        int w = kp_event_to_json(&events[i], buf + at, cap - at - 1);
        if (w < 0)
            return KP_EINVAL;
        at += (size_t)w;
        buf[at++] = '\n';
    }
    *len = at;
    return 0;
}

static int blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

int kp_batch_decode(const char *body, size_t len, kp_event *out, size_t cap,
                    kp_batch_decoded *res)
{
    *res = (kp_batch_decoded){0};
    size_t lines = 0, at = 0;
    while (at < len) {
        const char *nl = memchr(body + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - body) : len;
        size_t n = end - at;
        if (n && body[at + n - 1] == '\r')
            n--;
        if (!blank(body + at, n)) {
            if (++lines > cap) {
                res->events = 0;
                return KP_EINVAL;
            }
            if (kp_event_from_json(body + at, n, &out[res->events]) == 0) {
                res->events++;
            } else if (res->bad++ == 0) {
                res->first_bad = at;
            }
        }
        at = end + 1;
    }
    return 0;
}
