/* Load mode (SPEC §7, -n SESSIONS): many sessions on one libuv loop, opened at -connect_rate
 * from the -src address range, each submitting at -rate with up to -pipeline submits in flight
 * and a -mix share of deliberately bad ones. One progress line a second on stderr
 * (module=client.load); at the end, after the answers still in flight came back (at most 2 s),
 * a summary on stdout: text, or one JSON object with -json.
 *
 * Pacing: each session has its own schedule, started at a random phase so a thousand sessions
 * do not submit in the same millisecond. With -rate at most 1 per second a session also waits
 * 1 s after its last accepted answer, so the server's default -min_submit_interval rejects
 * nothing that -mix did not ask for. -rate max keeps -pipeline submits in flight at all times;
 * -rate 0 holds idle sessions that follow the jobs and never submit.
 *
 * Difficulty (SPEC §8): a session the server sent set_difficulty searches at -hashrate
 * (default 100 hashes/s) in the loop's time slices (client_miner.c), and its shares go as they
 * are found instead of on the -rate schedule, no sooner than -min_submit_interval after its
 * last accepted answer and within -pipeline (-rate max: within -pipeline alone). A -mix draw
 * rides on each share. Idle sessions (-rate 0) do not search. The summary adds the search's
 * figures (client_summary.h). */
#ifndef KC_CLIENT_LOAD_H
#define KC_CLIENT_LOAD_H

#include <uv.h>

#include "client_options.h"
#include "client_run.h"

/* Runs the load (ramp, -duration, drain) until every handle is closed, prints the summary.
 * Returns the exit status: 0, or 1 when no session was ever authorized or setup failed. */
int kc_load_run(uv_loop_t *loop, const kc_options *opt, const kc_target *target);

/* Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the limit now in force. */
uint64_t kc_raise_nofile(void);

#endif
