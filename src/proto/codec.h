/* Wire codec: one JSON line in, one parsed request out; responses and job notifications out.
 *
 * Parsing stops at the envelope (SPEC §2 "Invalid JSON", "Invalid request", "Unknown method"):
 * the params are decoded and judged at parse time too, but only reported by the getters, because
 * the check order puts "Unauthorized" before "Invalid params". Parsing allocates nothing: the
 * line is scanned in place (json_scan.h) and the strings a request hands out are decoded into a
 * scratch buffer the caller owns. Once kp_request_parse() returns, the request no longer reads
 * the line, only the scratch. */
#ifndef KP_CODEC_H
#define KP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outcome.h"

typedef enum kp_method { KP_METHOD_AUTHORIZE = 0, KP_METHOD_SUBMIT } kp_method;

/* Longest response line kp_format_response() writes (with "\n"). */
#define KP_RESPONSE_MAX 96

/* Largest |id| and |job_id| accepted: beyond 2^53 a JavaScript client's numbers are not exact. */
#define KP_JSON_INT_MAX 9007199254740991LL

typedef struct kp_authorize_params {
    const char *username; /* NUL-terminated (no NUL inside), in the parse's scratch */
    size_t username_len;
} kp_authorize_params;

typedef struct kp_submit_params {
    int64_t job_id;
    const char *client_nonce; /* NUL-terminated, in the parse's scratch; 1..64 hex chars */
    size_t client_nonce_len;
    const char *result;       /* NUL-terminated, in the parse's scratch; any string, and its real
                                 length (an escaped U+0000 counts, so it never matches a hash) */
    size_t result_len;
} kp_submit_params;

typedef struct kp_request {
    bool has_id;     /* false when the envelope was too broken to find an integer id */
    int64_t id;
    kp_method method;
    bool params_valid; /* the getter of `method` reports OK (false on a zeroed request) */
    union {
        kp_authorize_params authorize; /* method == KP_METHOD_AUTHORIZE && params_valid */
        kp_submit_params submit;       /* method == KP_METHOD_SUBMIT && params_valid */
    } params;
} kp_request;

/* Parses one line (without its "\n" or "\r\n"); reads exactly len bytes (no NUL needed after
 * them). `scratch` (scratch_cap >= len, owned by the caller) receives the decoded strings the
 * request hands out; it must outlive the request and not be reused for another parse meanwhile.
 * A scratch smaller than the line is a caller bug, answered with Invalid JSON. On any outcome
 * `req->has_id/id` say which id to answer (null for Invalid JSON; the id when it was an integer,
 * e.g. for Unknown method); on KP_OUTCOME_OK `req->method` is set too. */
kp_outcome kp_request_parse(const char *line, size_t len, char *scratch, size_t scratch_cap,
                            kp_request *req);

/* A request owns nothing (its strings live in the caller's scratch); this clears it so that a
 * use after the scratch was reused reads an empty request rather than another line's strings. */
void kp_request_free(kp_request *req);

/* KP_OUTCOME_OK or KP_OUTCOME_INVALID_USERNAME: 1..255 bytes of valid UTF-8 (decoded), no control
 * characters (U+0000..U+001F, U+007F..U+009F). A missing or non-string username is Invalid
 * username too, as is any request whose method is not authorize. */
kp_outcome kp_authorize_params_get(const kp_request *req, kp_authorize_params *out);

/* KP_OUTCOME_OK or KP_OUTCOME_INVALID_PARAMS: job_id an integer (a JSON number without fraction
 * or exponent, |x| <= KP_JSON_INT_MAX), client_nonce 1..64 hex characters (either case), result
 * a string. A request whose method is not submit is Invalid params. */
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
