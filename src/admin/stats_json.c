/* See stats_json.h. */
#include "stats_json.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>

#include "utc_time.h"

static void format_minute(int64_t unix_s, char out[32])
{
    if (kp_format_utc_s(unix_s, out, 32) < 0)
        snprintf(out, 32, "%" PRId64, unix_s);
}

char *kp_admin_stats_json(const char *username, const kp_query_result *res)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root && cJSON_AddStringToObject(root, "username", username);
    cJSON *minutes = ok ? cJSON_AddArrayToObject(root, "minutes") : NULL;
    ok = minutes != NULL;
    for (size_t i = 0; ok && i < res->n; i++) {
        char when[32];
        format_minute(res->counts[i].minute, when);
        cJSON *item = cJSON_CreateObject();
        ok = item && cJSON_AddItemToArray(minutes, item) &&
             cJSON_AddStringToObject(item, "minute", when) &&
             cJSON_AddNumberToObject(item, "count", (double)res->counts[i].count);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
