#include "client_miner.h"

#include <time.h>

#include "clock.h"

/* Hashes between two looks at the clock: far below a slice, far above the cost of a look. */
#define CHUNK 64u

/* This thread's CPU time, ns: a slice's own cost, apart from the time the OS ran others. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void slice(kc_miner *m);

static void on_tick(uv_timer_t *t)
{
    kc_miner *m = t->data;
    uint64_t now = kp_clock_mono_ns(), due = m->last_tick_ns + KC_MINER_TICK_MS * 1000000ull;
    if (m->last_tick_ns)
        kc_histogram_record(&m->tick_late_us, now > due ? (now - due) / 1000u : 0);
    m->last_tick_ns = now;
    slice(m);
}

static void on_more(uv_idle_t *h)
{
    slice(h->data);
}

static void set_more(kc_miner *m, bool on)
{
    if (on == m->more_on)
        return;
    m->more_on = on;
    if (on)
        uv_idle_start(&m->more, on_more);
    else
        uv_idle_stop(&m->more);
}

/* One slice: sessions from the cursor on, each given what its budget allows, until the slice's
 * time is up. Budget left over (the slice ended first) continues in the next loop iteration. */
static void slice(kc_miner *m)
{
    uint64_t start = kp_clock_mono_ns();
    uint64_t cpu_start = thread_cpu_ns();
    uint64_t deadline = start + (uint64_t)KC_MINER_SLICE_US * 1000u;
    uint64_t now = start;
    bool left = false;   /* budget remained when time ran out */
    bool active = false; /* some session had something to search */
    uint32_t visited = 0;
    for (; visited < m->n; visited++) {
        kc_session *s = &m->sessions[(m->cursor + visited) % m->n];
        kc_search *sr = &s->search;
        if (s->state != KC_STATE_READY || !kc_search_active(sr))
            continue;
        active = true;
        uint64_t budget = kc_bucket_available(&sr->bucket, now);
        while (budget > 0 && now < deadline && s->state == KC_STATE_READY &&
               kc_search_active(sr)) {
            uint32_t found = 0;
            uint64_t want = budget < CHUNK ? budget : CHUNK;
            uint64_t done = kc_search_run(sr, &s->client->hasher, &s->nonces, want, &found);
            kc_bucket_spend(&sr->bucket, done);
            budget -= done < budget ? done : budget;
            if (found && m->on_share)
                m->on_share(s); /* may submit, or end the connection */
            now = kp_clock_mono_ns();
            if (done < want)
                break; /* the hasher failed: try again next slice */
        }
        if (now >= deadline) {
            left = budget > 0 || visited + 1 < m->n;
            visited++;
            break;
        }
    }
    m->cursor = m->n ? (m->cursor + visited) % m->n : 0;
    if (active) {
        uint64_t took = now - start;
        m->slices++;
        m->busy_ns += took;
        if (took > m->slice_max_ns)
            m->slice_max_ns = took;
        kc_histogram_record(&m->slice_us, took / 1000u);
        uint64_t cpu = thread_cpu_ns() - cpu_start;
        kc_histogram_record(&m->slice_cpu_us, cpu / 1000u);
    }
    /* Unlimited: keep going while there is work at all; capped: only to finish this tick's
     * budget (the timer brings the next one). */
    set_more(m, m->unlimited ? active : left);
}

void kc_miner_start(kc_miner *m, uv_loop_t *loop, kc_session *sessions, uint32_t n,
                    bool unlimited, void (*on_share)(kc_session *s))
{
    m->sessions = sessions;
    m->n = n;
    m->cursor = 0;
    m->unlimited = unlimited;
    m->more_on = false;
    m->on_share = on_share;
    m->slices = m->busy_ns = m->slice_max_ns = 0;
    m->last_tick_ns = 0;
    kc_histogram_reset(&m->slice_us);
    kc_histogram_reset(&m->slice_cpu_us);
    kc_histogram_reset(&m->tick_late_us);
    uv_timer_init(loop, &m->tick);
    uv_idle_init(loop, &m->more);
    m->tick.data = m;
    m->more.data = m;
    uv_timer_start(&m->tick, on_tick, KC_MINER_TICK_MS, KC_MINER_TICK_MS);
}

void kc_miner_close(kc_miner *m)
{
    uv_close((uv_handle_t *)&m->tick, NULL);
    uv_close((uv_handle_t *)&m->more, NULL);
}
