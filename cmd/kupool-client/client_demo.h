/* Demo mode (SPEC §7): one session that authorizes as -username and, for every job, submits a
 * fresh nonce's result at most once a second and at least once a minute, logging every answer
 * in the server's log format (module=client.demo). A lost connection is retried with jittered
 * backoff; "Invalid username" ends the run.
 *
 * Submit timing: a job makes a submit due at once, but never sooner than -min_submit_interval
 * (default 1 s, plus a small margin) after the last submit was sent or the last accepted answer
 * arrived, so the server's rate limit never rejects one. When no job comes for a minute (an
 * -interval above 1m), the current job is answered again with a fresh nonce.
 *
 * With difficulty on (the server sent set_difficulty, SPEC §8) the session searches instead
 * (client_miner.c; -hashrate caps it, by default it goes as fast as one core goes): each share
 * found is submitted as soon as the same timing allows, and nothing else is (no keepalive: a
 * pool that hears nothing lowers the difficulty). The log then says which way each difficulty
 * change went ("difficulty raised/lowered", with the hashrate and the mean share interval it
 * implies), "difficulty steady" after three jobs without a change, and per accepted share its
 * difficulty, the hashes it took and the time since the previous one. */
#ifndef KC_CLIENT_DEMO_H
#define KC_CLIENT_DEMO_H

#include <uv.h>

#include "client_options.h"
#include "client_run.h"

/* Runs until -duration passes (0: until SIGINT/SIGTERM) and every handle is closed. Returns the
 * exit status: 0, or 1 when the server rejected the username or setup failed. */
int kc_demo_run(uv_loop_t *loop, const kc_options *opt, const kc_target *target);

#endif
