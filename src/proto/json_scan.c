/* Strict JSON scanner (json_scan.h): one recursive-descent pass, bounded depth, no allocation. */
#include "json_scan.h"

#include <assert.h>
#include <string.h>

typedef struct scanner {
    const char *p;   /* next unread byte */
    const char *end; /* one past the last byte */
    kp_json_value *slots;
} scanner;

static bool scan_value(scanner *s, unsigned depth, const kp_json_schema *members,
                       kp_json_value *out);

static void skip_ws(scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits of a \u escape at p (p < end not yet checked); -1 if malformed. */
static long read_hex4(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

static bool is_high_surrogate(long cp) { return cp >= 0xd800 && cp <= 0xdbff; }
static bool is_low_surrogate(long cp) { return cp >= 0xdc00 && cp <= 0xdfff; }

/* s->p is just past a backslash. */
static bool scan_escape(scanner *s)
{
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        s->p++;
        return true;
    case 'u':
        break;
    default:
        return false;
    }
    long cp = read_hex4(s->p + 1, s->end);
    if (cp < 0 || is_low_surrogate(cp))
        return false;
    s->p += 5;
    if (!is_high_surrogate(cp))
        return true;
    /* A high surrogate means nothing alone: it must pair with a low one. */
    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
        return false;
    if (!is_low_surrogate(read_hex4(s->p + 2, s->end)))
        return false;
    s->p += 6;
    return true;
}

/* The bytes that end a run of plain string bytes. */
static const bool string_special[256] = {['"'] = true, ['\\'] = true, ['\0'] = true};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Sets the top bit of every byte of v that is 0. A false positive can only appear above a true
 * zero byte (the borrow runs upwards), so the lowest bit set always marks a real one. */
static uint64_t zero_bytes(uint64_t v)
{
    return (v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL;
}
#endif

/* The first byte in [p, end) that is special (a quote, a backslash, a NUL), or end. Strings are
 * most of a request line (a 64-digit result, a nonce, the keys), so this reads 8 bytes a step. */
static const char *skip_plain(const char *p, const char *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL;
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof(w));
        uint64_t hit = zero_bytes(w) | zero_bytes(w ^ (ones * '"')) | zero_bytes(w ^ (ones * '\\'));
        if (hit != 0)
            return p + (__builtin_ctzll(hit) >> 3); /* little endian: p[0] is the low byte */
        p += sizeof(w);
    }
#endif
    while (p < end && !string_special[(unsigned char)*p])
        p++;
    return p;
}

/* s->p is at the opening quote. */
static bool scan_string(scanner *s, kp_json_value *out)
{
    const char *start = ++s->p;
    bool escaped = false;
    for (;;) {
        s->p = skip_plain(s->p, s->end);
        if (s->p >= s->end || *s->p == '\0')
            return false;
        if (*s->p == '"')
            break;
        escaped = true;
        s->p++;
        if (!scan_escape(s))
            return false;
    }
    out->type = KP_JSON_STRING;
    out->text = start;
    out->len = (size_t)(s->p - start);
    out->escaped = escaped;
    s->p++; /* the closing quote */
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static void skip_digits(scanner *s)
{
    while (s->p < s->end && is_digit(*s->p))
        s->p++;
}

/* RFC 8259 number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool scan_number(scanner *s, kp_json_value *out)
{
    const char *start = s->p;
    bool integer = true;
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end || !is_digit(*s->p))
        return false;
    if (*s->p == '0')
        s->p++; /* a leading zero stands alone: "01" ends here and fails at the caller */
    else
        skip_digits(s);
    if (s->p < s->end && *s->p == '.') {
        integer = false;
        s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
            return false;
        skip_digits(s);
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        integer = false;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
            return false;
        skip_digits(s);
    }
    out->type = integer ? KP_JSON_INTEGER : KP_JSON_NUMBER;
    out->text = start;
    out->len = (size_t)(s->p - start);
    return true;
}

static bool scan_literal(scanner *s, const char *word, size_t len, kp_json_type type,
                         kp_json_value *out)
{
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len) != 0)
        return false;
    out->type = type;
    out->text = s->p;
    out->len = len;
    s->p += len;
    return true;
}

/* The wanted field whose name the key decodes to and whose slot is still empty (the first
 * occurrence wins), or NULL. */
static const kp_json_field *find_field(const scanner *s, const kp_json_schema *schema,
                                       const kp_json_value *key)
{
    if (schema == NULL)
        return NULL;
    for (size_t i = 0; i < schema->count; i++) {
        const kp_json_field *f = &schema->fields[i];
        if (kp_json_string_equals(key, f->name, f->name_len))
            return s->slots[f->slot].type == KP_JSON_ABSENT ? f : NULL;
    }
    return NULL;
}

/* After a member or an element: a ',' means another one follows (*more), `close` ends the
 * container; anything else is not JSON. Whitespace before either, and after a comma, is skipped. */
static bool after_item(scanner *s, char close, bool *more)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == ',') {
        s->p++;
        skip_ws(s);
        *more = true;
        return true;
    }
    if (s->p < s->end && *s->p == close) {
        s->p++;
        *more = false;
        return true;
    }
    return false;
}

/* s->p is at '{'; depth is this object's level. */
static bool scan_object(scanner *s, unsigned depth, const kp_json_schema *schema,
                        kp_json_value *out)
{
    if (depth > KP_JSON_DEPTH_MAX)
        return false;
    const char *start = s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
    } else {
        for (;;) {
            if (s->p >= s->end || *s->p != '"')
                return false;
            kp_json_value key;
            if (!scan_string(s, &key))
                return false;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            skip_ws(s);
            const kp_json_field *f = find_field(s, schema, &key);
            if (!scan_value(s, depth, f ? f->members : NULL, f ? &s->slots[f->slot] : NULL))
                return false;
            bool more;
            if (!after_item(s, '}', &more))
                return false;
            if (!more)
                break;
        }
    }
    out->type = KP_JSON_OBJECT;
    out->text = start;
    out->len = (size_t)(s->p - start);
    return true;
}

/* s->p is at '['; depth is this array's level. */
static bool scan_array(scanner *s, unsigned depth, kp_json_value *out)
{
    if (depth > KP_JSON_DEPTH_MAX)
        return false;
    const char *start = s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
    } else {
        for (;;) {
            if (!scan_value(s, depth, NULL, NULL))
                return false;
            bool more;
            if (!after_item(s, ']', &more))
                return false;
            if (!more)
                break;
        }
    }
    out->type = KP_JSON_ARRAY;
    out->text = start;
    out->len = (size_t)(s->p - start);
    return true;
}

/* s->p is at the value's first byte (whitespace skipped); depth is the level of the container
 * holding it. out may be NULL for a value nobody asked for. */
static bool scan_value(scanner *s, unsigned depth, const kp_json_schema *members,
                       kp_json_value *out)
{
    kp_json_value ignored;
    if (out == NULL)
        out = &ignored;
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '{':
        return scan_object(s, depth + 1, members, out);
    case '[':
        return scan_array(s, depth + 1, out);
    case '"':
        return scan_string(s, out);
    case 't':
        return scan_literal(s, "true", 4, KP_JSON_TRUE, out);
    case 'f':
        return scan_literal(s, "false", 5, KP_JSON_FALSE, out);
    case 'n':
        return scan_literal(s, "null", 4, KP_JSON_NULL, out);
    default:
        if (*s->p == '-' || is_digit(*s->p))
            return scan_number(s, out);
        return false;
    }
}

#ifndef NDEBUG
/* A slot outside the caller's array is a bug in the caller's static schema. */
static void check_slots(const kp_json_schema *schema, size_t slot_count)
{
    if (schema == NULL)
        return;
    for (size_t i = 0; i < schema->count; i++) {
        assert(schema->fields[i].slot < slot_count);
        check_slots(schema->fields[i].members, slot_count);
    }
}
#endif

bool kp_json_scan_object(const char *text, size_t len, const kp_json_schema *schema,
                         kp_json_value *slots, size_t slot_count)
{
#ifndef NDEBUG
    check_slots(schema, slot_count);
#endif
    for (size_t i = 0; i < slot_count; i++)
        slots[i] = (kp_json_value){.type = KP_JSON_ABSENT};
    scanner s = {.p = text, .end = text + len, .slots = slots};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return false;
    kp_json_value root;
    if (!scan_object(&s, 1, schema, &root))
        return false;
    skip_ws(&s);
    return s.p == s.end;
}

/* Decodes the character or escape at *pp (inside a validated string) into out (up to 4 bytes);
 * returns how many bytes it wrote. */
static size_t decode_one(const char **pp, char out[4])
{
    const char *p = *pp;
    if (*p != '\\') {
        out[0] = *p;
        *pp = p + 1;
        return 1;
    }
    static const char simple[][2] = {{'"', '"'}, {'\\', '\\'}, {'/', '/'}, {'b', '\b'},
                                     {'f', '\f'}, {'n', '\n'},  {'r', '\r'}, {'t', '\t'}};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (p[1] == simple[i][0]) {
            out[0] = simple[i][1];
            *pp = p + 2;
            return 1;
        }
    }
    /* \uXXXX, validated by scan_escape(): the reads cannot fail or run past the string. */
    long cp = read_hex4(p + 2, p + 6);
    p += 6;
    if (is_high_surrogate(cp)) {
        long lo = read_hex4(p + 2, p + 6);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        p += 6;
    }
    *pp = p;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t kp_json_string_decode(const kp_json_value *value, char *out)
{
    assert(value->type == KP_JSON_STRING);
    if (!value->escaped) {
        memcpy(out, value->text, value->len);
        return value->len;
    }
    const char *p = value->text;
    const char *end = value->text + value->len;
    size_t n = 0;
    while (p < end) {
        char unit[4];
        size_t k = decode_one(&p, unit);
        memcpy(out + n, unit, k);
        n += k;
    }
    return n;
}

bool kp_json_string_equals(const kp_json_value *value, const char *name, size_t name_len)
{
    if (value->type != KP_JSON_STRING)
        return false;
    if (!value->escaped)
        return value->len == name_len && memcmp(value->text, name, name_len) == 0;
    /* Decoded one character at a time, so no buffer is needed however long the key is. */
    const char *p = value->text;
    const char *end = value->text + value->len;
    size_t n = 0;
    while (p < end) {
        char unit[4];
        size_t k = decode_one(&p, unit);
        if (k > name_len - n || memcmp(unit, name + n, k) != 0)
            return false;
        n += k;
    }
    return n == name_len;
}

bool kp_json_integer(const kp_json_value *value, uint64_t max_abs, int64_t *out)
{
    if (value->type != KP_JSON_INTEGER)
        return false;
    const char *p = value->text;
    const char *end = value->text + value->len;
    bool negative = *p == '-';
    if (negative)
        p++;
    /* 19 digits always fit in a uint64_t; more are out of any int64_t range. */
    if (end - p > 19)
        return false;
    uint64_t v = 0;
    for (; p < end; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (v > max_abs || v > (uint64_t)INT64_MAX)
        return false;
    *out = negative ? -(int64_t)v : (int64_t)v;
    return true;
}
