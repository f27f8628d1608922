/* Wire codec: one JSON line in, one parsed request out; responses and job notifications out.
 *
 * Parsing stops at the envelope (SPEC §2 "Invalid JSON", "Invalid request", "Unknown method"):
 * params are checked later, by the protocol, because the check order puts "Unauthorized" before
 * "Invalid params". Strings in a parsed request point into `kp_request.json`, which the request
 * owns until kp_request_free(). */
#ifndef KP_CODEC_H
#define KP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outcome.h"

typedef enum kp_method { KP_METHOD_AUTHORIZE = 0, KP_METHOD_SUBMIT } kp_method;

/* Longest response line kp_format_response() writes (with "\n"). */
#define KP_RESPONSE_MAX 96

/* Largest integer id/job_id accepted: JSON numbers are doubles, beyond 2^53 they are not exact. */
#define KP_JSON_INT_MAX 9007199254740991LL

typedef struct kp_request {
    bool has_id;     /* false when the envelope was too broken to find an integer id */
    int64_t id;
    kp_method method;
    void *json;      /* the parsed cJSON tree; owned */
    const void *params; /* cJSON object inside json (borrowed) */
} kp_request;

typedef struct kp_authorize_params {
    const char *username; /* NUL-terminated, borrowed from the request */
    size_t username_len;
} kp_authorize_params;

typedef struct kp_submit_params {
    int64_t job_id;
    const char *client_nonce; /* borrowed; 1..64 hex chars */
    size_t client_nonce_len;
    const char *result;       /* borrowed; any string */
    size_t result_len;
} kp_submit_params;

/* Parses one line (without its "\n" or "\r\n"). On KP_OUTCOME_OK `req` must be released with
 * kp_request_free(). Otherwise nothing is owned and `req->has_id/id` say which id to answer
 * (null for Invalid JSON; the id when it was an integer, e.g. for Unknown method). */
kp_outcome kp_request_parse(const char *line, size_t len, kp_request *req);

void kp_request_free(kp_request *req);

/* KP_OUTCOME_OK or KP_OUTCOME_INVALID_USERNAME: 1..255 bytes of valid UTF-8, no control
 * characters (U+0000..U+001F, U+007F). A missing or non-string username is Invalid username too. */
kp_outcome kp_authorize_params_get(const kp_request *req, kp_authorize_params *out);

/* KP_OUTCOME_OK or KP_OUTCOME_INVALID_PARAMS: job_id an integer (|x| <= KP_JSON_INT_MAX),
 * client_nonce 1..64 hex characters (either case), result a string. */
kp_outcome kp_submit_params_get(const kp_request *req, kp_submit_params *out);

/* Writes the decimal digits of v and a NUL into buf (room for 21 bytes); returns the digits'
 * count. */
size_t kp_format_u64(char *buf, uint64_t v);

/* Writes {"id":N,"result":true}\n or {"id":N,"result":false,"error":"..."}\n (id null when
 * !has_id). Returns the length; buf must hold KP_RESPONSE_MAX bytes. */
size_t kp_format_response(char *buf, bool has_id, int64_t id, kp_outcome oc);

/* Writes the job notification line with "\n" into buf (cap >= 128). Returns the length. */
size_t kp_format_job(char *buf, size_t cap, int64_t job_id, const char *server_nonce_hex);

#endif
