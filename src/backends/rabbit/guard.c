#include "guard.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "kupool/error.h"

typedef struct guard_slot {
    int fd;
    uint64_t deadline_ms;
    bool armed;
    bool tripped; /* the deadline passed and the socket was shut down */
} guard_slot;

struct kp_guard {
    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t wake; /* CLOCK_MONOTONIC, like the deadlines */
    pthread_t thread;
    bool stop;
    size_t nslots;
    guard_slot slot[]; /* nslots */
};

uint64_t kp_guard_now_ms(void)
{
    return kp_clock_mono_ms();
}

/* Shuts down every socket whose deadline passed; returns the earliest deadline still ahead, or
 * UINT64_MAX when none is armed. Called with the mutex held. */
static uint64_t trip_overdue(kp_guard *g)
{
    uint64_t now = kp_guard_now_ms(), next = UINT64_MAX;
    for (size_t i = 0; i < g->nslots; i++) {
        guard_slot *s = &g->slot[i];
        if (!s->armed)
            continue;
        if (s->deadline_ms <= now) {
            /* The owner is blocked in its call (or about to be): shutdown wakes its poll and makes
             * every later send/recv fail, while the fd stays the owner's. */
            shutdown(s->fd, SHUT_RDWR);
            s->armed = false;
            s->tripped = true;
        } else if (s->deadline_ms < next) {
            next = s->deadline_ms;
        }
    }
    return next;
}

static void *guard_run(void *arg)
{
    kp_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        uint64_t next = trip_overdue(g);
        if (next == UINT64_MAX) {
            pthread_cond_wait(&g->wake, &g->mu);
        } else {
            struct timespec until = {.tv_sec = (time_t)(next / 1000u),
                                     .tv_nsec = (long)(next % 1000u) * 1000000L};
            pthread_cond_timedwait(&g->wake, &g->mu, &until);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int kp_guard_start(size_t slots, kp_guard **out)
{
    if (slots == 0)
        return KP_EINVAL;
    kp_guard *g = calloc(1, sizeof(*g) + slots * sizeof(guard_slot));
    if (!g)
        return KP_ENOMEM;
    g->nslots = slots;
    for (size_t i = 0; i < slots; i++)
        g->slot[i] = (guard_slot){.fd = -1};
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&g->thread, NULL, guard_run, g) != 0) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return KP_ENOMEM;
    }
    *out = g;
    return 0;
}

void kp_guard_stop(kp_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void kp_guard_arm(kp_guard *g, size_t slot, int fd, uint64_t deadline_ms)
{
    pthread_mutex_lock(&g->mu);
    g->slot[slot] = (guard_slot){.fd = fd, .deadline_ms = deadline_ms, .armed = fd >= 0};
    pthread_cond_signal(&g->wake); /* the new deadline may be the earliest */
    pthread_mutex_unlock(&g->mu);
}

bool kp_guard_disarm(kp_guard *g, size_t slot)
{
    pthread_mutex_lock(&g->mu);
    bool tripped = g->slot[slot].tripped;
    g->slot[slot] = (guard_slot){.fd = -1};
    pthread_mutex_unlock(&g->mu);
    return tripped;
}
