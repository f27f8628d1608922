/* See vardiff.h for the rule. The estimate is a ratio of integers evaluated in double precision:
 * only the resulting difficulty must be an exact integer, and it is rounded, capped and clamped
 * in integers here. */
#include "vardiff.h"

#include <math.h>

/* The median of an exponential share interval is ln 2 x its mean, so D = H x target / ln 2 puts
 * the median interval on the target: the middle of the band SPEC §8 asks for (median within
 * +-50% of the target, i.e. D between 0.72 and 2.16 x H x target). */
#define AIM (1.0 / 0.69314718055994530942)
/* No move while the estimate D' is within these factors of D: estimates of 16-32 shares wander
 * by +-25%, and a session should not be told a new difficulty for noise. The band is asymmetric
 * so that every D it leaves alone is inside SPEC §8's: D' / 1.6 = 0.90 and D' x 1.45 = 2.09 x
 * H x target, within 0.72..2.16. */
#define DEAD_BAND_UP 1.6   /* raise D when D' > 1.6 D */
#define DEAD_BAND_DOWN 1.45 /* lower D when D' < D / 1.45 */
#define MAX_STEP 4.0
/* A silence lowers D by at least this factor, so a session that stops hashing reaches min. */
#define SILENCE_STEP 0.95
/* Shares before the fast climb may act (see kp_vardiff_retarget). */
#define FAST_SHARES 4
/* The window is halved in weight at this many shares' work, so old shares fade. */
#define WINDOW_SHARES 32

void kp_vardiff_start(kp_vardiff *v, uint64_t now_ms)
{
    v->work = 0;
    v->window_start_ms = now_ms;
    v->quiet_since_ms = now_ms;
}

void kp_vardiff_share(kp_vardiff *v, const kp_vardiff_params *p, uint64_t share_d,
                      uint64_t current_d, uint64_t now_ms)
{
    (void)p;
    v->work += share_d; /* <= WINDOW_SHARES x 2^53 + 2^53: no overflow */
    if (now_ms > v->quiet_since_ms)
        v->quiet_since_ms = now_ms;
    if (v->work >= (uint64_t)WINDOW_SHARES * current_d) {
        /* Keep the rate, halve its weight: half the work over half the time. */
        v->work /= 2;
        v->window_start_ms = now_ms - (now_ms - v->window_start_ms) / 2;
    }
}

uint64_t kp_vardiff_clamp(const kp_vardiff_params *p, uint64_t d)
{
    return d < p->min ? p->min : d > p->max ? p->max : d;
}

/* current_d x ratio as an integer: at most x4 up (floor) and /4 down (ceiling), in min..max. */
static uint64_t scaled(const kp_vardiff_params *p, uint64_t current_d, double ratio)
{
    if (ratio > MAX_STEP)
        ratio = MAX_STEP;
    if (ratio < 1.0 / MAX_STEP)
        ratio = 1.0 / MAX_STEP;
    double x = (double)current_d * ratio;
    double r = ratio >= 1.0 ? floor(x) : ceil(x);
    uint64_t d = r < 1.0 ? 1 : r >= (double)p->max ? p->max : (uint64_t)r;
    return kp_vardiff_clamp(p, d);
}

uint64_t kp_vardiff_retarget(kp_vardiff *v, const kp_vardiff_params *p, uint64_t current_d,
                             uint64_t now_ms)
{
    if (p->target_ms == 0 || now_ms <= v->window_start_ms)
        return current_d;
    double target = (double)p->target_ms;
    double elapsed = (double)(now_ms - v->window_start_ms);
    double d = (double)current_d;
    uint64_t quiet = now_ms - v->quiet_since_ms;

    if (quiet >= 2 * p->target_ms) {
        /* As if a share arrived now: an upper bound on the rate the window shows. */
        double ratio = AIM * ((double)v->work + d) / elapsed * target / d;
        if (ratio > SILENCE_STEP)
            ratio = SILENCE_STEP;
        uint64_t next = scaled(p, current_d, ratio);
        if (next >= current_d && current_d > p->min)
            next = current_d - 1; /* a small D: the ceiling must not undo the step */
        /* The window is kept (its work is in hashes, valid at any D); the next silence counts
         * from this change. */
        v->quiet_since_ms = now_ms;
        return next;
    }
    if (v->work < (uint64_t)FAST_SHARES * current_d)
        return current_d;
    double ratio = AIM * (double)v->work / elapsed * target / d;
    if (v->work < (uint64_t)KP_VARDIFF_MIN_SHARES * current_d) {
        /* Fast climb: a session far below its difficulty (most visibly one held to a share per
         * -min_submit_interval) shows it with few shares. Take the full x4 step when even a
         * pessimistic reading of n shares, rate x (sqrt(n) - 1)^2 / n (about one standard
         * deviation low), asks for x4 or more; anything less waits for 16 shares. */
        double n = (double)v->work / d;
        double low = ratio * (sqrt(n) - 1.0) * (sqrt(n) - 1.0) / n;
        if (low < MAX_STEP)
            return current_d;
        ratio = MAX_STEP;
    } else if (ratio <= DEAD_BAND_UP && ratio >= 1.0 / DEAD_BAND_DOWN) {
        return current_d;
    }
    uint64_t next = scaled(p, current_d, ratio);
    if (next != current_d) {
        kp_vardiff_start(v, now_ms); /* a fresh estimate at the new difficulty */
    }
    return next;
}
