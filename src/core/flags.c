/* The flag engine (flags.h): one loop for argv in Go's forms, one overlay for the environment,
 * one usage printer, and the value parsers they share (bool, decimal, Go duration). */
#include "flags.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kupool/error.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Go's time.Duration is int64 nanoseconds; durations beyond it are an overflow, as in Go. */
#define DURATION_NS_MAX ((uint64_t)INT64_MAX)
#define NS_PER_MS UINT64_C(1000000)

/* ---- value parsers ---------------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

const char *kp_parse_decimal(const char *text, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return "parse error";
    for (const char *p = text; *p; p++) {
        if (!is_digit(*p))
            return "parse error";
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10) {
            /* Keep scanning: "99999999999x" is a parse error, not a range error. */
            for (const char *q = p; *q; q++)
                if (!is_digit(*q))
                    return "parse error";
            return "value out of range";
        }
        v = v * 10 + d;
    }
    *out = v;
    return NULL;
}

int kp_parse_bool(const char *text, bool *out)
{
    static const char *const truths[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const falsehoods[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < COUNT_OF(truths); i++) {
        if (strcmp(text, truths[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(text, falsehoods[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return KP_EINVAL;
}

typedef struct duration_unit {
    const char *name;
    uint64_t ns;
} duration_unit;

static const duration_unit duration_units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000}, /* U+03BC Greek small mu */
    {"ms", 1000000},
    {"s", UINT64_C(1000000000)},
    {"m", UINT64_C(60000000000)},
    {"h", UINT64_C(3600000000000)},
};

static const duration_unit *find_duration_unit(const char *name, size_t len)
{
    for (size_t i = 0; i < COUNT_OF(duration_units); i++)
        if (strlen(duration_units[i].name) == len && memcmp(duration_units[i].name, name, len) == 0)
            return &duration_units[i];
    return NULL;
}

/* floor(0.d1d2..dn * unit), exact for any number of digits: folding from the last digit,
 * floor((d * unit + x) / 10) with x already floored loses nothing, because
 * floor((m + y) / 10) == floor((m + floor(y)) / 10) for an integer m. x stays below unit, so
 * d * unit + x cannot overflow for unit <= 1h. */
static uint64_t fraction_ns(const char *digits, size_t n, uint64_t unit)
{
    uint64_t x = 0;
    for (size_t i = n; i-- > 0;)
        x = ((uint64_t)(digits[i] - '0') * unit + x) / 10;
    return x;
}

int kp_parse_duration_ms(const char *text, uint64_t *out_ms)
{
    if (text == NULL || out_ms == NULL)
        return KP_EINVAL;
    const char *s = text;
    if (*s == '+') /* Go accepts a plus sign; a minus sign is refused: no negative durations */
        s++;
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (*s == '\0')
        return KP_EINVAL;

    uint64_t total_ns = 0;
    while (*s != '\0') {
        uint64_t whole = 0;
        const char *start = s;
        for (; is_digit(*s); s++) {
            unsigned d = (unsigned)(*s - '0');
            if (whole > (DURATION_NS_MAX - d) / 10)
                return KP_EINVAL;
            whole = whole * 10 + d;
        }
        bool has_whole = s != start;

        const char *frac = s;
        size_t frac_len = 0;
        if (*s == '.') {
            frac = ++s;
            while (is_digit(*s))
                s++;
            frac_len = (size_t)(s - frac);
        }
        if (!has_whole && frac_len == 0) /* ".s", "s" or a stray '-' */
            return KP_EINVAL;

        const char *unit_name = s;
        while (*s != '\0' && *s != '.' && !is_digit(*s))
            s++;
        const duration_unit *unit = find_duration_unit(unit_name, (size_t)(s - unit_name));
        if (unit == NULL) /* also a number without a unit */
            return KP_EINVAL;

        if (whole > DURATION_NS_MAX / unit->ns)
            return KP_EINVAL;
        uint64_t v = whole * unit->ns;
        uint64_t part = fraction_ns(frac, frac_len, unit->ns);
        if (part > DURATION_NS_MAX - v)
            return KP_EINVAL;
        v += part;
        if (v > DURATION_NS_MAX - total_ns)
            return KP_EINVAL;
        total_ns += v;
    }
    *out_ms = total_ns / NS_PER_MS;
    return 0;
}

/* ---- setting one value ------------------------------------------------------------------ */

static int check_bounds(const kp_flag_spec *f, uint64_t v, char *why, size_t why_cap)
{
    uint64_t max = f->max != 0 ? f->max : f->type == KP_FLAG_UINT ? UINT32_MAX : UINT64_MAX;
    if (v >= f->min && v <= max)
        return 0;
    const char *unit = f->type == KP_FLAG_DURATION ? "ms" : "";
    if (f->max != 0)
        snprintf(why, why_cap, "must be between %llu%s and %llu%s", (unsigned long long)f->min,
                 unit, (unsigned long long)max, unit);
    else
        snprintf(why, why_cap, "must be at least %llu%s", (unsigned long long)f->min, unit);
    return KP_EINVAL;
}

static int find_choice(const kp_flag_spec *f, const char *value)
{
    for (size_t i = 0; i < f->n_choices; i++)
        if (f->choices[i] != NULL &&
            (f->fold_case ? strcasecmp(value, f->choices[i]) : strcmp(value, f->choices[i])) == 0)
            return (int)i;
    return -1;
}

static void choices_why(const kp_flag_spec *f, char *why, size_t why_cap)
{
    size_t used = (size_t)snprintf(why, why_cap, "must be one of ");
    for (size_t i = 0; i < f->n_choices && used < why_cap; i++)
        used += (size_t)snprintf(why + used, why_cap - used, "%s%s", i ? ", " : "",
                                 f->choices[i] ? f->choices[i] : "?");
}

/* Parses `value` into the field of `f`. On a bad value leaves the field alone (as far as the
 * type allows: a FUNC setter decides for itself), writes the reason to `why` and returns
 * KP_EINVAL. */
static int set_value(void *target, const kp_flag_spec *f, const char *value, char *why,
                     size_t why_cap)
{
    char *field = (char *)target + f->offset;
    const char *bad = NULL;
    switch (f->type) {
    case KP_FLAG_STRING: {
        size_t len = strlen(value);
        if (len >= f->size) {
            snprintf(why, why_cap, "too long (at most %zu bytes)", f->size - 1);
            return KP_EINVAL;
        }
        if (f->check != NULL && (bad = f->check(value)) != NULL)
            break;
        memcpy(field, value, len + 1);
        return 0;
    }
    case KP_FLAG_DURATION: {
        uint64_t ms;
        if (kp_parse_duration_ms(value, &ms) != 0) {
            bad = "parse error";
            break;
        }
        if (check_bounds(f, ms, why, why_cap) != 0)
            return KP_EINVAL;
        memcpy(field, &ms, sizeof ms);
        return 0;
    }
    case KP_FLAG_UINT: {
        uint64_t v;
        if ((bad = kp_parse_decimal(value, UINT32_MAX, &v)) != NULL)
            break;
        if (check_bounds(f, v, why, why_cap) != 0)
            return KP_EINVAL;
        uint32_t u = (uint32_t)v;
        memcpy(field, &u, sizeof u);
        return 0;
    }
    case KP_FLAG_BOOL: {
        bool b;
        if (kp_parse_bool(value, &b) != 0) {
            bad = "parse error";
            break;
        }
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case KP_FLAG_ENUM: {
        assert(f->size == sizeof(int) && "an enum flag's member is not int-sized");
        int index = find_choice(f, value);
        if (index < 0) {
            choices_why(f, why, why_cap);
            return KP_EINVAL;
        }
        memcpy(field, &index, sizeof index);
        return 0;
    }
    case KP_FLAG_FUNC:
        if ((bad = f->set(target, value)) == NULL)
            return 0;
        break;
    case KP_FLAG_HELP:
    case KP_FLAG_VERSION:
        bad = "not a value flag"; /* the engine handles these itself */
        break;
    }
    snprintf(why, why_cap, "%s", bad != NULL ? bad : "unknown flag type");
    return KP_EINVAL;
}

void kp_flags_defaults(const kp_flag_spec *specs, size_t count, void *target)
{
    for (size_t i = 0; i < count; i++) {
        if (specs[i].def == NULL || specs[i].type == KP_FLAG_HELP ||
            specs[i].type == KP_FLAG_VERSION)
            continue;
        char why[160];
        int rc = set_value(target, &specs[i], specs[i].def, why, sizeof why);
        assert(rc == 0 && "a default in the flag table does not parse");
        (void)rc;
    }
}

void kp_flags_begin(kp_flags *fs, const kp_flag_spec *specs, size_t count, void *target)
{
    assert(count <= KP_FLAGS_MAX);
    memset(fs, 0, sizeof *fs);
    fs->specs = specs;
    fs->count = count;
    fs->target = target;
    for (size_t i = 0; i < count; i++) {
        fs->src[i] = KP_FLAG_FROM_DEFAULT;
        fs->text[i] = specs[i].def;
    }
    kp_flags_defaults(specs, count, target);
}

/* ---- errors: always exactly one line -------------------------------------------------- */

/* Copies at most ~64 bytes of `src` into `dst`, escaping quotes, backslashes, control and
 * non-ASCII bytes, so user input can neither break the line nor the terminal. */
static void escape_into(char *dst, size_t cap, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const size_t shown_max = 64;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (i == shown_max || o + 8 >= cap) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
}

int kp_flags_fail(kp_flags *fs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fs->error, sizeof fs->error, fmt, ap);
    va_end(ap);
    return KP_EINVAL;
}

/* "invalid value "abc" for flag -interval: parse error", or "... for KUP_INTERVAL: ...". */
static int fail_value_from(kp_flags *fs, const kp_flag_spec *f, kp_flag_source src,
                           const char *value, const char *why)
{
    char who[96];
    if (src == KP_FLAG_FROM_ENV || f->name == NULL)
        snprintf(who, sizeof who, "%s", f->env != NULL ? f->env : "?");
    else
        snprintf(who, sizeof who, "flag -%s", f->name);
    if (f->secret || value == NULL)
        return kp_flags_fail(fs, "invalid value for %s: %s", who, why);
    char shown[300];
    escape_into(shown, sizeof shown, value, strlen(value));
    return kp_flags_fail(fs, "invalid value \"%s\" for %s: %s", shown, who, why);
}

int kp_flags_fail_value(kp_flags *fs, size_t i, const char *why)
{
    assert(i < fs->count);
    return fail_value_from(fs, &fs->specs[i], fs->src[i], fs->text[i], why);
}

static int fail_escaped(kp_flags *fs, const char *fmt, const char *text, size_t len)
{
    char shown[300];
    escape_into(shown, sizeof shown, text, len);
    return kp_flags_fail(fs, fmt, shown);
}

/* Sets entry `i` from `value` and remembers where it came from. */
static int apply(kp_flags *fs, size_t i, const char *value, kp_flag_source src)
{
    const kp_flag_spec *f = &fs->specs[i];
    char why[160];
    if (set_value(fs->target, f, value, why, sizeof why) != 0)
        return fail_value_from(fs, f, src, value, why);
    fs->src[i] = src;
    fs->text[i] = value;
    return 0;
}

/* ---- the two sources -------------------------------------------------------------------- */

static bool word_is(const char *word, size_t len, const char *literal)
{
    return literal != NULL && strlen(literal) == len && memcmp(word, literal, len) == 0;
}

static size_t find_word(const kp_flags *fs, const char *name, size_t len)
{
    for (size_t i = 0; i < fs->count; i++)
        if (word_is(name, len, fs->specs[i].name) || word_is(name, len, fs->specs[i].alias))
            return i;
    return KP_FLAGS_MAX;
}

size_t kp_flags_find(const kp_flags *fs, const char *name)
{
    for (size_t i = 0; i < fs->count; i++)
        if (fs->specs[i].name != NULL && strcmp(fs->specs[i].name, name) == 0)
            return i;
    return KP_FLAGS_MAX;
}

int kp_flags_parse_args(kp_flags *fs, int argc, char **argv, int first)
{
    static const char unexpected[] = "unexpected argument \"%s\" (flags only, see -h)";
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0')
            return fail_escaped(fs, unexpected, arg, strlen(arg));
        const char *name = arg + 1;
        if (name[0] == '-') {
            name++;
            if (name[0] == '\0') { /* "--" ends the flags; nothing may follow here */
                if (i + 1 < argc)
                    return fail_escaped(fs, unexpected, argv[i + 1], strlen(argv[i + 1]));
                break;
            }
        }
        if (name[0] == '-' || name[0] == '=')
            return fail_escaped(fs, "bad flag syntax: %s", arg, strlen(arg));
        const char *eq = strchr(name, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const char *value = eq != NULL ? eq + 1 : NULL;

        size_t idx = find_word(fs, name, name_len);
        if (idx == KP_FLAGS_MAX || fs->specs[idx].name == NULL)
            return fail_escaped(fs, "flag provided but not defined: -%s", name, name_len);
        const kp_flag_spec *f = &fs->specs[idx];
        if (f->type == KP_FLAG_HELP)
            return KP_FLAGS_HELP;
        if (f->type == KP_FLAG_VERSION) {
            bool on = true;
            if (value != NULL && kp_parse_bool(value, &on) != 0)
                return fail_value_from(fs, f, KP_FLAG_FROM_ARG, value, "parse error");
            fs->want_version = on;
            continue;
        }
        if (value == NULL) {
            if (f->type == KP_FLAG_BOOL) /* Go: a bool takes its value only after '=' */
                value = "true";
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return kp_flags_fail(fs, "flag needs an argument: -%s", f->name);
        }
        int rc = apply(fs, idx, value, KP_FLAG_FROM_ARG);
        if (rc != 0)
            return rc;
    }
    return fs->want_version ? KP_FLAGS_VERSION : KP_FLAGS_RUN;
}

int kp_flags_parse_env(kp_flags *fs)
{
    for (size_t i = 0; i < fs->count; i++) {
        const kp_flag_spec *f = &fs->specs[i];
        if (f->env == NULL || f->type == KP_FLAG_HELP || f->type == KP_FLAG_VERSION)
            continue;
        const char *value = getenv(f->env);
        if (value == NULL || (value[0] == '\0' && f->type != KP_FLAG_STRING))
            continue;
        int rc = apply(fs, i, value, KP_FLAG_FROM_ENV);
        if (rc != 0)
            return rc;
    }
    return 0;
}
