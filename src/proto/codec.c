/* Wire codec (SPEC §2): request envelope, params checks, response and job lines.
 *
 * The request path allocates nothing: json_scan.c validates the line and reports the spans of
 * the few members that matter in one pass; the strings handed out are decoded into the caller's
 * scratch, each at the offset its escaped form has in the line. A decoded string is never
 * longer than its escaped form and is followed in the line by at least its closing quote, so
 * decoded strings and their NULs never overlap and always fit a scratch as large as the line. */
#include "codec.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "json_scan.h"
#include "kupool/event.h"
#include "utf8.h"

/* Longest fixed text around a response's id and error string, used to prove KP_RESPONSE_MAX. */
#define RESPONSE_FIXED_MAX (sizeof("{\"id\":,\"result\":false,\"error\":\"\"}\n") - 1)
#define INT64_DIGITS_MAX 20 /* "-9223372036854775808" */
#define WIRE_STRING_MAX (sizeof("Submission too frequent") - 1)
_Static_assert(RESPONSE_FIXED_MAX + INT64_DIGITS_MAX + WIRE_STRING_MAX < KP_RESPONSE_MAX,
               "KP_RESPONSE_MAX too small for the longest response line");


/* The members a request is made of; each one's value lands in slots[SLOT_...]. */
enum {
    SLOT_ID,
    SLOT_METHOD,
    SLOT_PARAMS,
    SLOT_USERNAME,
    SLOT_JOB_ID,
    SLOT_CLIENT_NONCE,
    SLOT_RESULT,
    SLOT_COUNT
};

#define FIELD(name, slot, members) {name, sizeof(name) - 1, slot, members}

static const kp_json_field params_fields[] = {
    FIELD("username", SLOT_USERNAME, NULL),
    FIELD("job_id", SLOT_JOB_ID, NULL),
    FIELD("client_nonce", SLOT_CLIENT_NONCE, NULL),
    FIELD("result", SLOT_RESULT, NULL),
};
static const kp_json_schema params_schema = {params_fields,
                                             sizeof(params_fields) / sizeof(params_fields[0])};

static const kp_json_field envelope_fields[] = {
    FIELD("id", SLOT_ID, NULL),
    FIELD("method", SLOT_METHOD, NULL),
    FIELD("params", SLOT_PARAMS, &params_schema),
};
static const kp_json_schema envelope_schema = {envelope_fields,
                                               sizeof(envelope_fields) / sizeof(envelope_fields[0])};

/* Where a parse's decoded strings go: the caller's scratch mirrors the line. */
typedef struct decoder {
    const char *line;
    char *scratch;
} decoder;

/* Decodes a scanned string into the scratch, NUL-terminated; returns it and its length. */
static const char *decode_string(const decoder *d, const kp_json_value *v, size_t *len)
{
    char *out = d->scratch + (v->text - d->line);
    *len = kp_json_string_decode(v, out);
    out[*len] = '\0';
    return out;
}

static bool authorize_params(const decoder *d, const kp_json_value *slots,
                             kp_authorize_params *out)
{
    const kp_json_value *name = &slots[SLOT_USERNAME];
    if (name->type != KP_JSON_STRING)
        return false;
    size_t len;
    const char *s = decode_string(d, name, &len);
    /* The byte check also refuses an escaped U+0000: it is a control character. */
    if (len < 1 || len > KP_USERNAME_MAX || !kp_utf8_text_ok((const unsigned char *)s, len))
        return false;
    out->username = s;
    out->username_len = len;
    return true;
}

static bool is_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return true;
    c = (char)(c | 0x20); /* ASCII lower case */
    return c >= 'a' && c <= 'f';
}

static bool submit_params(const decoder *d, const kp_json_value *slots, kp_submit_params *out)
{
    int64_t job_id;
    if (!kp_json_integer(&slots[SLOT_JOB_ID], KP_JSON_INT_MAX, &job_id))
        return false;
    const kp_json_value *nonce = &slots[SLOT_CLIENT_NONCE];
    const kp_json_value *result = &slots[SLOT_RESULT];
    if (nonce->type != KP_JSON_STRING || result->type != KP_JSON_STRING)
        return false;

    size_t n_len;
    const char *n = decode_string(d, nonce, &n_len);
    if (n_len < 1 || n_len > KP_CLIENT_NONCE_MAX)
        return false;
    for (size_t i = 0; i < n_len; i++) {
        if (!is_hex_digit(n[i])) /* an escaped U+0000 is not hex either */
            return false;
    }

    out->job_id = job_id;
    out->client_nonce = n;
    out->client_nonce_len = n_len;
    out->result = decode_string(d, result, &out->result_len);
    return true;
}

/* The method, compared on its decoded bytes: "submit\u0000x" is not "submit". */
static bool method_is(const kp_json_value *method, const char *name)
{
    return kp_json_string_equals(method, name, strlen(name));
}

kp_outcome kp_request_parse(const char *line, size_t len, char *scratch, size_t scratch_cap,
                            kp_request *req)
{
    memset(req, 0, sizeof(*req));
    assert(scratch_cap >= len);
    if (scratch_cap < len) /* a caller bug; never decode past the scratch */
        return KP_OUTCOME_INVALID_JSON;

    kp_json_value slots[SLOT_COUNT];
    if (!kp_json_scan_object(line, len, &envelope_schema, slots, SLOT_COUNT))
        return KP_OUTCOME_INVALID_JSON;

    /* SPEC §2 envelope order: id, then method's type, then params' type, then method's name. */
    if (!kp_json_integer(&slots[SLOT_ID], KP_JSON_INT_MAX, &req->id))
        return KP_OUTCOME_INVALID_REQUEST; /* has_id stays false: answer with id null */
    req->has_id = true;
    if (slots[SLOT_METHOD].type != KP_JSON_STRING || slots[SLOT_PARAMS].type != KP_JSON_OBJECT)
        return KP_OUTCOME_INVALID_REQUEST;

    decoder d = {line, scratch};
    if (method_is(&slots[SLOT_METHOD], "authorize")) {
        req->method = KP_METHOD_AUTHORIZE;
        req->params_valid = authorize_params(&d, slots, &req->params.authorize);
    } else if (method_is(&slots[SLOT_METHOD], "submit")) {
        req->method = KP_METHOD_SUBMIT;
        req->params_valid = submit_params(&d, slots, &req->params.submit);
    } else {
        return KP_OUTCOME_UNKNOWN_METHOD;
    }
    return KP_OUTCOME_OK;
}

void kp_request_free(kp_request *req) { memset(req, 0, sizeof(*req)); }

kp_outcome kp_authorize_params_get(const kp_request *req, kp_authorize_params *out)
{
    if (req->method != KP_METHOD_AUTHORIZE || !req->params_valid)
        return KP_OUTCOME_INVALID_USERNAME;
    *out = req->params.authorize;
    return KP_OUTCOME_OK;
}

kp_outcome kp_submit_params_get(const kp_request *req, kp_submit_params *out)
{
    if (req->method != KP_METHOD_SUBMIT || !req->params_valid)
        return KP_OUTCOME_INVALID_PARAMS;
    *out = req->params.submit;
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
