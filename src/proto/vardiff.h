/* Variable difficulty (SPEC §8): the retarget rule of one session, pure, with time as an argument.
 *
 * The rule (docs/difficulty.md says why this one): a measurement window holds the work (the sum
 * of the difficulties of the accepted shares) since it started; work / elapsed estimates the
 * session's hashrate H. Retargeting runs only when a job is about to be sent (the caller calls
 * kp_vardiff_retarget once per job), and:
 * - silence: no share for 2 x target (since the last share or the last change) lowers D, by at
 *   least 5% and more the longer the silence, as if a share arrived right now;
 * - otherwise, once the window holds the work of KP_VARDIFF_MIN_SHARES shares at the current D,
 *   the difficulty that makes the median share interval (ln 2 x D / H) equal the target,
 *   D' = H x target / ln 2, replaces D when it leaves the dead band (D' more than 1.6 D, or
 *   less than D / 1.45); the window then restarts, so every estimate is made at a single difficulty;
 * - fast climb: with 4..15 shares, a full x4 step up when even a pessimistic reading of them
 *   (about one standard deviation low) asks for x4 or more: a session far below its difficulty
 *   climbs at one step per job instead of one per 16 shares;
 * - each step moves at most x4 either way (floor up, ceiling down: never past the cap), the result
 *   is an integer in min..max, and the window is halved in weight once it holds 32 shares, so it
 *   follows a change of hashrate within a few dozen shares.
 *
 * State per session: 24 bytes (kp_vardiff); the current difficulty itself is the caller's. */
#ifndef KP_VARDIFF_H
#define KP_VARDIFF_H

#include <stdint.h>

typedef struct kp_vardiff_params {
    uint64_t target_ms; /* -vardiff_target; 0 = vardiff off */
    uint64_t min, max;  /* -vardiff_min, -vardiff_max: 1 <= min <= max <= 2^53 */
} kp_vardiff_params;

typedef struct kp_vardiff {
    uint64_t work;            /* sum of the difficulties of the shares in the window */
    uint64_t window_start_ms; /* monotonic ms; the window's shares came after it */
    uint64_t quiet_since_ms;  /* the last share, or the last change of D if later */
} kp_vardiff;

/* Shares in the window before the estimate may move D (the estimate's relative error is about
 * 1/sqrt(n): 25% at 16). */
#define KP_VARDIFF_MIN_SHARES 16

/* Starts the window (at authorize). */
void kp_vardiff_start(kp_vardiff *v, uint64_t now_ms);

/* An accepted share checked at `share_d`, while the session's difficulty is `current_d`. */
void kp_vardiff_share(kp_vardiff *v, const kp_vardiff_params *p, uint64_t share_d,
                      uint64_t current_d, uint64_t now_ms);

/* The difficulty for the job about to be sent: `current_d` when it stays, else the new one (and
 * the window is updated for it). Call at most once per job. */
uint64_t kp_vardiff_retarget(kp_vardiff *v, const kp_vardiff_params *p, uint64_t current_d,
                             uint64_t now_ms);

/* Clamps a start difficulty into min..max (a session starts at -difficulty, clamped). */
uint64_t kp_vardiff_clamp(const kp_vardiff_params *p, uint64_t d);

#endif
