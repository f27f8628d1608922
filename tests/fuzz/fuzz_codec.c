/* libFuzzer harness: one request line through the codec, as a session hands it over.
 *
 * Parses the input (an exact-size heap copy, so a read past the line is caught), calls both
 * params getters and formats the response, checking what the codec promises about what it
 * hands out. Differential check: whatever cJSON rejects we must reject too, except where SPEC §2
 * or docs/protocol.md is stricter (we are never more lenient); when both accept a line without
 * escaped NULs, both read the same id. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "codec.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void check_params(const kp_request *req)
{
    kp_authorize_params ap;
    if (kp_authorize_params_get(req, &ap) == KP_OUTCOME_OK) {
        CHECK(req->method == KP_METHOD_AUTHORIZE);
        CHECK(ap.username_len >= 1 && ap.username_len <= 255);
        CHECK(strlen(ap.username) == ap.username_len); /* no NUL inside, one after */
        for (size_t i = 0; i < ap.username_len; i++)
            CHECK((unsigned char)ap.username[i] >= 0x20 && ap.username[i] != 0x7f);
    }
    kp_submit_params sp;
    if (kp_submit_params_get(req, &sp) == KP_OUTCOME_OK) {
        CHECK(req->method == KP_METHOD_SUBMIT);
        CHECK(sp.job_id >= -KP_JSON_INT_MAX && sp.job_id <= KP_JSON_INT_MAX);
        CHECK(sp.client_nonce_len >= 1 && sp.client_nonce_len <= 64);
        CHECK(sp.client_nonce[sp.client_nonce_len] == '\0');
        for (size_t i = 0; i < sp.client_nonce_len; i++)
            CHECK(is_hex(sp.client_nonce[i]));
        CHECK(sp.result[sp.result_len] == '\0');
    }
}

/* cJSON is the reference for JSON validity only: it is laxer than we are in places (leading
 * zeros, "1.", control bytes as whitespace, "\u00zz"), never stricter as far as we know. */
static void differential(const char *line, size_t len, kp_outcome oc, const kp_request *req)
{
    if (oc == KP_OUTCOME_INVALID_JSON)
        return;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    CHECK(root != NULL && cJSON_IsObject(root));
    for (const char *p = end; p < line + len; p++)
        CHECK(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n');
    /* cJSON compares keys as C strings, so "id\u0000x" is "id" to it: skip those lines. */
    if (req->has_id && memmem(line, len, "\\u0000", 6) == NULL) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
        CHECK(cJSON_IsNumber(id) && id->valuedouble == (double)req->id);
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly the input's bytes, no NUL after them: the codec must stop at the length. */
    char *line = malloc(size ? size : 1);
    char *scratch = malloc(size ? size : 1);
    if (line == NULL || scratch == NULL) {
        free(line);
        free(scratch);
        return 0;
    }
    memcpy(line, data, size);

    kp_request req;
    kp_outcome oc = kp_request_parse(line, size, scratch, size, &req);
    CHECK(oc == KP_OUTCOME_OK || oc == KP_OUTCOME_INVALID_JSON ||
          oc == KP_OUTCOME_INVALID_REQUEST || oc == KP_OUTCOME_UNKNOWN_METHOD);
    CHECK(oc != KP_OUTCOME_INVALID_JSON || !req.has_id);
    CHECK(oc != KP_OUTCOME_UNKNOWN_METHOD || req.has_id);
    CHECK(!req.has_id || (req.id >= -KP_JSON_INT_MAX && req.id <= KP_JSON_INT_MAX));
    check_params(&req);

    char out[KP_RESPONSE_MAX];
    size_t n = kp_format_response(out, req.has_id, req.id, oc);
    CHECK(n > 0 && n < KP_RESPONSE_MAX && out[n - 1] == '\n');

    differential(line, size, oc, &req);
    kp_request_free(&req);
    free(scratch);
    free(line);
    return 0;
}
