/* A strict, allocation-free JSON (RFC 8259) scanner for one request line.
 *
 * kp_json_scan_object() validates that a text is exactly one JSON object (JSON whitespace around
 * it allowed) and, in the same pass, reports where the members a caller asked for are: their
 * type and raw span in the text, never a copy. Values nobody asked for are validated and
 * skipped. Strings are decoded on demand into a caller's buffer with their real length, so an
 * escaped U+0000 stays visible instead of ending a C string early.
 *
 * The rules, beyond RFC 8259's grammar (docs/protocol.md, "Parsing rules"):
 * - nesting deeper than KP_JSON_DEPTH_MAX arrays/objects (the line's object is level 1) is
 *   rejected, so a hostile line cannot make the recursion deep;
 * - a raw NUL byte anywhere is rejected; other raw bytes inside strings (control characters,
 *   bytes that are not UTF-8) are passed through, because the field checks that matter
 *   (username, client_nonce, method, result) reject them with their own error;
 * - a \u escape of a lone surrogate is rejected; a surrogate pair decodes to one code point;
 * - when a key occurs twice in one object, the first occurrence is reported (as cJSON did).
 *
 * Loop-thread agnostic and reentrant: all state is on the caller's stack. */
#ifndef KP_JSON_SCAN_H
#define KP_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of objects and arrays accepted; the outer object is level 1. */
#define KP_JSON_DEPTH_MAX 32

typedef enum kp_json_type {
    KP_JSON_ABSENT = 0, /* the member was not in the object */
    KP_JSON_NULL,
    KP_JSON_FALSE,
    KP_JSON_TRUE,
    KP_JSON_INTEGER, /* a number written without fraction or exponent: -?(0|[1-9][0-9]*) */
    KP_JSON_NUMBER,  /* any other number (with '.', 'e' or 'E') */
    KP_JSON_STRING,
    KP_JSON_ARRAY,
    KP_JSON_OBJECT
} kp_json_type;

/* One value as it appears in the scanned text (borrowed from it). */
typedef struct kp_json_value {
    kp_json_type type;
    const char *text; /* first byte of the value; for a string, the byte after its opening quote */
    size_t len;       /* bytes of the value; for a string, those between its quotes */
    bool escaped;     /* a string holding at least one backslash escape */
} kp_json_value;

typedef struct kp_json_schema kp_json_schema;

/* A member a caller wants reported. */
typedef struct kp_json_field {
    const char *name;              /* the decoded key, compared byte for byte (case-sensitive) */
    size_t name_len;
    unsigned slot;                 /* where its value goes in the caller's array */
    const kp_json_schema *members; /* if the value is an object: its members wanted too, or NULL */
} kp_json_field;

struct kp_json_schema {
    const kp_json_field *fields;
    size_t count;
};

/* True when text[0..len) is one valid JSON object. Clears slots[0..slot_count) to
 * KP_JSON_ABSENT first, then fills the slot of the first occurrence of each wanted member
 * (nested members only inside the first occurrence of their parent). On false the slots are
 * unspecified. Every slot named in the schema must be < slot_count. */
bool kp_json_scan_object(const char *text, size_t len, const kp_json_schema *schema,
                         kp_json_value *slots, size_t slot_count);

/* Decodes a KP_JSON_STRING value reported by a successful scan into out, which has room for
 * value->len bytes (a decoded string is never longer than its escaped form). Writes no NUL.
 * Returns the decoded length in bytes; embedded U+0000 is written as a 0 byte. */
size_t kp_json_string_decode(const kp_json_value *value, char *out);

/* True when a scanned string decodes to exactly the bytes name[0..name_len). */
bool kp_json_string_equals(const kp_json_value *value, const char *name, size_t name_len);

/* True when value is a KP_JSON_INTEGER with |x| <= max_abs; stores it in *out. */
bool kp_json_integer(const kp_json_value *value, uint64_t max_abs, int64_t *out);

#endif
