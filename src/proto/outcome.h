/* The answer to one protocol message: accepted, or one of SPEC §2's errors.
 *
 * Each outcome has exactly one wire string (clients match on it) and one metrics label, both in
 * the table in outcome.c built with designated initializers. */
#ifndef KP_OUTCOME_H
#define KP_OUTCOME_H

typedef enum kp_outcome {
    KP_OUTCOME_OK = 0,
    KP_OUTCOME_INVALID_JSON,
    KP_OUTCOME_INVALID_REQUEST,
    KP_OUTCOME_UNKNOWN_METHOD,
    KP_OUTCOME_INVALID_USERNAME,
    KP_OUTCOME_ALREADY_AUTHORIZED,
    KP_OUTCOME_UNAUTHORIZED,
    KP_OUTCOME_INVALID_PARAMS,
    KP_OUTCOME_TASK_NOT_EXIST,
    KP_OUTCOME_TASK_EXPIRED,
    KP_OUTCOME_TOO_FREQUENT,
    KP_OUTCOME_DUPLICATE,
    KP_OUTCOME_INVALID_RESULT,
    KP_OUTCOME_LOW_DIFFICULTY, /* SPEC §8: the correct hash, above the job's target */
    KP_OUTCOME_COUNT
} kp_outcome;

/* "Invalid JSON", "Task expired", ...; NULL for KP_OUTCOME_OK. */
const char *kp_outcome_wire(kp_outcome oc);

/* "ok", "invalid_json", "task_expired", ...: the Prometheus label value. */
const char *kp_outcome_label(kp_outcome oc);

/* True for the outcomes that mean the message itself was malformed; -max_errors of these in a row
 * close the session. */
int kp_outcome_is_malformed(kp_outcome oc);

#endif
