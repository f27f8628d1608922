/* The body of a /stats answer (SPEC §5, §8):
 *   {"username":U,"minutes":[{"minute":M,"count":N,"difficulty_sum":S},...],
 *    "hashrate":{"1m":H,"5m":H,"60m":H}}
 * and the hashrate it reports. docs/observability.md describes both. */
#ifndef KP_ADMIN_STATS_JSON_H
#define KP_ADMIN_STATS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "admin_query.h"
#include "kupool/stats.h"

/* Hashes per second over the `minutes` last complete minutes before `now_ms` (wall clock, Unix
 * ms): the sum of their difficulty_sum over minutes * 60 s. A minute is complete once the clock
 * has passed its end, so the minute `now_ms` falls in (and any later one, from a node whose clock
 * runs ahead) is left out; a minute without a row adds 0. `counts` in any order. 0 when
 * `minutes` <= 0. */
double kp_admin_hashrate(const kp_minute_count *counts, size_t n, int64_t now_ms, int minutes);

/* The answer's JSON, unformatted and NUL-terminated, or NULL when out of memory; free it with
 * cJSON_free(). The hashrate is taken against res->wall_ms, the moment the store was read. Every
 * string in it is valid UTF-8 (the username passed kp_admin_query_username's check, the minutes
 * are ASCII), so the body is valid JSON. A minute is written as 2026-11-24T20:31:00Z, or as its
 * Unix seconds when outside years 0000..9999. */
char *kp_admin_stats_json(const char *username, const kp_query_result *res);

#endif
