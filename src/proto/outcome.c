/* The one table of SPEC §2 outcomes: wire string, metrics label, malformed flag. */
#include "outcome.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct outcome_info {
    const char *wire;  /* exact SPEC §2 string; clients match on it */
    const char *label; /* Prometheus label value */
    bool malformed;    /* counts toward -max_errors */
} outcome_info;

/* Designated initializers keep each row tied to its enum value even if the enum is reordered. */
static const outcome_info outcome_table[KP_OUTCOME_COUNT] = {
    [KP_OUTCOME_OK] = {NULL, "ok", false},
    [KP_OUTCOME_INVALID_JSON] = {"Invalid JSON", "invalid_json", true},
    [KP_OUTCOME_INVALID_REQUEST] = {"Invalid request", "invalid_request", true},
    [KP_OUTCOME_UNKNOWN_METHOD] = {"Unknown method", "unknown_method", true},
    [KP_OUTCOME_INVALID_USERNAME] = {"Invalid username", "invalid_username", false},
    [KP_OUTCOME_ALREADY_AUTHORIZED] = {"Already authorized", "already_authorized", false},
    [KP_OUTCOME_UNAUTHORIZED] = {"Unauthorized", "unauthorized", false},
    [KP_OUTCOME_INVALID_PARAMS] = {"Invalid params", "invalid_params", true},
    [KP_OUTCOME_TASK_NOT_EXIST] = {"Task does not exist", "task_not_exist", false},
    [KP_OUTCOME_TASK_EXPIRED] = {"Task expired", "task_expired", false},
    [KP_OUTCOME_TOO_FREQUENT] = {"Submission too frequent", "too_frequent", false},
    [KP_OUTCOME_DUPLICATE] = {"Duplicate submission", "duplicate", false},
    [KP_OUTCOME_INVALID_RESULT] = {"Invalid result", "invalid_result", false},
    [KP_OUTCOME_LOW_DIFFICULTY] = {"Low difficulty share", "low_difficulty", false},
};

static const outcome_info *outcome_get(kp_outcome oc)
{
    if ((int)oc < 0 || oc >= KP_OUTCOME_COUNT)
        return NULL;
    return &outcome_table[oc];
}

const char *kp_outcome_wire(kp_outcome oc)
{
    const outcome_info *info = outcome_get(oc);
    return info ? info->wire : NULL;
}

const char *kp_outcome_label(kp_outcome oc)
{
    const outcome_info *info = outcome_get(oc);
    /* A label lands in a metrics line: an out-of-range value must still print something. */
    return info ? info->label : "unknown";
}

int kp_outcome_is_malformed(kp_outcome oc)
{
    const outcome_info *info = outcome_get(oc);
    return info ? info->malformed : 0;
}
