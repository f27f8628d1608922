/* See stats_json.h. */
#include "stats_json.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "utc_time.h"

static void format_minute(int64_t unix_s, char out[32])
{
    if (kp_format_utc_s(unix_s, out, 32) < 0)
        snprintf(out, 32, "%" PRId64, unix_s);
}

/* A number written so that it reads back as exactly `d`: cJSON's own output accepts 15
 * significant digits when they read back *nearly* equal, which turns a difficulty sum of 2^53
 * into 9.00719925474099e+15. Integers below 2^63 are written as integers; other values with the
 * fewest digits (15, 16 or 17) that read back exactly. Never NaN or an infinity here, but they
 * would become null rather than invalid JSON. */
static cJSON *exact_number(double d)
{
    char buf[40];
    if (!isfinite(d))
        return cJSON_CreateNull();
    if (d == floor(d) && fabs(d) < 9223372036854775808.0) {
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)d);
    } else {
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(buf, sizeof buf, "%.*g", digits, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
    return cJSON_CreateRaw(buf);
}

static bool add_number(cJSON *obj, const char *name, double d)
{
    cJSON *n = exact_number(d);
    if (!n)
        return false;
    if (!cJSON_AddItemToObject(obj, name, n)) {
        cJSON_Delete(n);
        return false;
    }
    return true;
}

/* The Unix seconds of the start of the minute `ms` falls in (floor, also before 1970). */
static int64_t minute_of_ms(int64_t ms)
{
    int64_t s = ms / 1000 - (ms % 1000 < 0);
    return s - (s % 60 + 60) % 60;
}

double kp_admin_hashrate(const kp_minute_count *counts, size_t n, int64_t now_ms, int minutes)
{
    if (minutes <= 0)
        return 0;
    int64_t end = minute_of_ms(now_ms); /* the current minute: not complete yet */
    int64_t start = end - (int64_t)minutes * 60;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        if (counts[i].minute >= start && counts[i].minute < end)
            sum += counts[i].difficulty_sum;
    return sum / ((double)minutes * 60.0);
}

static bool add_hashrate(cJSON *root, const kp_query_result *res)
{
    static const struct {
        const char *name;
        int minutes;
    } windows[] = {{"1m", 1}, {"5m", 5}, {"60m", 60}};
    cJSON *h = cJSON_AddObjectToObject(root, "hashrate");
    bool ok = h != NULL;
    for (size_t i = 0; ok && i < sizeof(windows) / sizeof(windows[0]); i++)
        ok = add_number(h, windows[i].name,
                        kp_admin_hashrate(res->counts, res->n, res->wall_ms, windows[i].minutes));
    return ok;
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
             add_number(item, "count", (double)res->counts[i].count) &&
             add_number(item, "difficulty_sum", res->counts[i].difficulty_sum);
    }
    ok = ok && add_hashrate(root, res);
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
