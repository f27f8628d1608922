/* Wire codec (SPEC §2): request envelope, params checks, response and job lines.
 *
 * cJSON does the parsing; everything else works on its tree in place, so a message costs only
 * cJSON's own allocations. */
#include "codec.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Longest fixed text around a response's id and error string, used to prove KP_RESPONSE_MAX. */
#define RESPONSE_FIXED_MAX (sizeof("{\"id\":,\"result\":false,\"error\":\"\"}\n") - 1)
#define INT64_DIGITS_MAX 20 /* "-9223372036854775808" */
#define WIRE_STRING_MAX (sizeof("Submission too frequent") - 1)
_Static_assert(RESPONSE_FIXED_MAX + INT64_DIGITS_MAX + WIRE_STRING_MAX < KP_RESPONSE_MAX,
               "KP_RESPONSE_MAX too small for the longest response line");

#define USERNAME_MAX_BYTES 255
#define CLIENT_NONCE_MAX_CHARS 64

/* JSON numbers are doubles: accept only integral values in the range a double holds exactly,
 * so that 2^53+1 is never silently read as 2^53. NaN and infinities fail the range test. */
static bool json_get_int(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= -(double)KP_JSON_INT_MAX && d <= (double)KP_JSON_INT_MAX))
        return false;
    int64_t v = (int64_t)d;
    if ((double)v != d)
        return false;
    *out = v;
    return true;
}

/* cJSON stops at the end of the first value and would accept `{...} garbage`; only JSON
 * whitespace may follow the object. */
static bool only_whitespace(const char *p, const char *end)
{
    for (; p < end; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    }
    return true;
}

static kp_outcome envelope_check(const cJSON *root, kp_request *req)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (!json_get_int(id, &req->id))
        return KP_OUTCOME_INVALID_REQUEST; /* has_id stays false: answer with id null */
    req->has_id = true;

    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    if (!cJSON_IsString(method) || method->valuestring == NULL)
        return KP_OUTCOME_INVALID_REQUEST;

    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "params");
    if (!cJSON_IsObject(params))
        return KP_OUTCOME_INVALID_REQUEST;

    if (strcmp(method->valuestring, "authorize") == 0)
        req->method = KP_METHOD_AUTHORIZE;
    else if (strcmp(method->valuestring, "submit") == 0)
        req->method = KP_METHOD_SUBMIT;
    else
        return KP_OUTCOME_UNKNOWN_METHOD;

    req->params = params;
    return KP_OUTCOME_OK;
}

kp_outcome kp_request_parse(const char *line, size_t len, kp_request *req)
{
    memset(req, 0, sizeof(*req));

    /* cJSON reads strings up to a NUL, so a NUL inside the line would make it see a different
     * message than the bytes the client sent. */
    if (len == 0 || memchr(line, '\0', len) != NULL)
        return KP_OUTCOME_INVALID_JSON;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (root == NULL)
        return KP_OUTCOME_INVALID_JSON;
    if (!cJSON_IsObject(root) || end == NULL || !only_whitespace(end, line + len)) {
        cJSON_Delete(root);
        return KP_OUTCOME_INVALID_JSON;
    }

    kp_outcome oc = envelope_check(root, req);
    if (oc != KP_OUTCOME_OK) {
        cJSON_Delete(root);
        req->params = NULL;
        return oc;
    }
    req->json = root;
    return KP_OUTCOME_OK;
}

void kp_request_free(kp_request *req)
{
    cJSON_Delete(req->json);
    req->json = NULL;
    req->params = NULL;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF; and no C0, DEL
 * or C1 controls, which would let a username break log lines and terminals. */
static bool username_chars_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        if (b < 0x80) {
            if (b < 0x20 || b == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (b >= 0xc2 && b <= 0xdf) {
            need = 1;
            if (b == 0xc2)
                lo = 0xa0; /* C2 80..C2 9F are the C1 controls */
        } else if (b >= 0xe0 && b <= 0xef) {
            need = 2;
            if (b == 0xe0)
                lo = 0xa0; /* overlong */
            else if (b == 0xed)
                hi = 0x9f; /* U+D800..U+DFFF */
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3;
            if (b == 0xf0)
                lo = 0x90; /* overlong */
            else if (b == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return false; /* continuation byte, C0/C1 overlong lead, or F5..FF */
        }
        if (len - i <= need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        }
        i += need + 1;
    }
    return true;
}

kp_outcome kp_authorize_params_get(const kp_request *req, kp_authorize_params *out)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req->params, "username");
    if (!cJSON_IsString(name) || name->valuestring == NULL)
        return KP_OUTCOME_INVALID_USERNAME;
    size_t len = strlen(name->valuestring);
    if (len < 1 || len > USERNAME_MAX_BYTES)
        return KP_OUTCOME_INVALID_USERNAME;
    if (!username_chars_ok((const unsigned char *)name->valuestring, len))
        return KP_OUTCOME_INVALID_USERNAME;
    out->username = name->valuestring;
    out->username_len = len;
    return KP_OUTCOME_OK;
}

static bool is_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return true;
    c = (char)(c | 0x20); /* ASCII lower case */
    return c >= 'a' && c <= 'f';
}

kp_outcome kp_submit_params_get(const kp_request *req, kp_submit_params *out)
{
    const cJSON *job_id = cJSON_GetObjectItemCaseSensitive(req->params, "job_id");
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(req->params, "client_nonce");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(req->params, "result");

    int64_t id;
    if (!json_get_int(job_id, &id))
        return KP_OUTCOME_INVALID_PARAMS;
    if (!cJSON_IsString(nonce) || nonce->valuestring == NULL)
        return KP_OUTCOME_INVALID_PARAMS;
    if (!cJSON_IsString(result) || result->valuestring == NULL)
        return KP_OUTCOME_INVALID_PARAMS;

    const char *n = nonce->valuestring;
    size_t n_len = 0;
    while (n[n_len] != '\0') {
        if (n_len == CLIENT_NONCE_MAX_CHARS || !is_hex_digit(n[n_len]))
            return KP_OUTCOME_INVALID_PARAMS;
        n_len++;
    }
    if (n_len == 0)
        return KP_OUTCOME_INVALID_PARAMS;

    out->job_id = id;
    out->client_nonce = n;
    out->client_nonce_len = n_len;
    out->result = result->valuestring;
    out->result_len = strlen(result->valuestring);
    return KP_OUTCOME_OK;
}

size_t kp_format_u64(char *buf, uint64_t v)
{
    char rev[20];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = rev[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* Appends `s` (length len) at *at; the caller sized the buffer. */
static void put(char *buf, size_t *at, const char *s, size_t len)
{
    memcpy(buf + *at, s, len);
    *at += len;
}

#define PUT_LITERAL(buf, at, lit) put(buf, at, lit, sizeof(lit) - 1)

/* Built by hand rather than with snprintf: one response per submit, and printf's format parsing
 * was a visible share of the server's profile at full submit rate (docs/benchmarks.md). */
size_t kp_format_response(char *buf, bool has_id, int64_t id, kp_outcome oc)
{
    size_t at = 0;
    PUT_LITERAL(buf, &at, "{\"id\":");
    if (!has_id) {
        PUT_LITERAL(buf, &at, "null");
    } else if (id < 0) {
        buf[at++] = '-';
        at += kp_format_u64(buf + at, (uint64_t)0 - (uint64_t)id);
    } else {
        at += kp_format_u64(buf + at, (uint64_t)id);
    }
    if (oc == KP_OUTCOME_OK) {
        PUT_LITERAL(buf, &at, ",\"result\":true}\n");
    } else {
        const char *wire = kp_outcome_wire(oc);
        assert(wire != NULL && strlen(wire) <= WIRE_STRING_MAX);
        if (wire == NULL) /* out-of-range outcome: a caller bug, but never answer "true" */
            wire = kp_outcome_wire(KP_OUTCOME_INVALID_REQUEST);
        PUT_LITERAL(buf, &at, ",\"result\":false,\"error\":\"");
        put(buf, &at, wire, strlen(wire));
        PUT_LITERAL(buf, &at, "\"}\n");
    }
    assert(at < KP_RESPONSE_MAX);
    buf[at] = '\0';
    return at;
}

size_t kp_format_job(char *buf, size_t cap, int64_t job_id, const char *server_nonce_hex)
{
    int n = snprintf(buf, cap,
                     "{\"id\":null,\"method\":\"job\",\"params\":{\"job_id\":%" PRId64
                     ",\"server_nonce\":\"%s\"}}\n",
                     job_id, server_nonce_hex);
    /* A cut line would be invalid JSON on the wire; report nothing written instead. */
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
