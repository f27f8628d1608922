/* The body of a /stats answer (SPEC §5): {"username":U,"minutes":[{"minute":M,"count":N},...]}. */
#ifndef KP_ADMIN_STATS_JSON_H
#define KP_ADMIN_STATS_JSON_H

#include "admin_query.h"

/* The answer's JSON, unformatted and NUL-terminated, or NULL when out of memory; free it with
 * cJSON_free(). Every string in it is valid UTF-8 (the username passed kp_admin_query_username's
 * check, the minutes are ASCII), so the body is valid JSON. A minute is written as
 * 2026-11-24T20:31:00Z, or as its Unix seconds when outside years 0000..9999. */
char *kp_admin_stats_json(const char *username, const kp_query_result *res);

#endif
