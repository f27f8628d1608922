/* The flag engine: one table of flag specs per program, read the way Go's flag package reads a
 * command line, with an environment variable per flag that overrides it (SPEC §4).
 *
 * Forms accepted: -name value, -name=value, --name value, --name=value; a bool flag alone means
 * true and takes a value only after '=' (-json=false); "--" ends the flags. Every program here
 * takes flags only, so the first word that is not a flag is an error.
 *
 * The engine never prints an error and never exits: it returns KP_EINVAL and leaves one line
 * (without the program name or a newline) in kp_flags.error; the caller prints it and picks the
 * exit status. -h prints nothing either: kp_flags_parse_args() returns KP_FLAGS_HELP and the
 * caller prints its own header around kp_flags_usage().
 *
 * Why not getopt_long_only(3): it accepts any unambiguous prefix of a long name (-inter would
 * mean -interval, which Go refuses), has no notion of a bool that takes its value only after
 * '=', keeps its position in globals (optind), so parsing twice in one process (tests, the fuzz
 * harness) needs a non-portable reset, and prints its own messages in its own words. What is
 * left after turning all that off is the loop below. */
#ifndef KP_FLAGS_H
#define KP_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum kp_flag_type {
    KP_FLAG_STRING,   /* char[size]: the value with its NUL must fit; `check` may refuse it */
    KP_FLAG_BOOL,     /* bool: Go's strconv.ParseBool forms */
    KP_FLAG_UINT,     /* uint32_t: plain decimal in min..max (max 0 = UINT32_MAX) */
    KP_FLAG_DURATION, /* uint64_t milliseconds: a Go duration in min..max ms (max 0 = any) */
    KP_FLAG_ENUM,     /* an enum (int-sized): the index of the value in `choices` */
    KP_FLAG_FUNC,     /* `set` parses the value into the target itself */
    KP_FLAG_HELP,     /* -h and its alias: kp_flags_parse_args() returns KP_FLAGS_HELP */
    KP_FLAG_VERSION   /* a bool kept by the engine: KP_FLAGS_VERSION once argv is read */
} kp_flag_type;

/* NULL when `value` is fine, else why it is not (a static string). */
typedef const char *(*kp_flag_check)(const char *value);
/* Parses `value` into `target` (the struct the table describes): NULL, or why not. */
typedef const char *(*kp_flag_setter)(void *target, const char *value);

typedef struct kp_flag_spec {
    const char *name;  /* without the leading '-'; NULL: an environment-only setting */
    const char *alias; /* a second name ("help" beside "h"); NULL = none */
    const char *env;   /* the variable that overrides the flag; NULL = none */
    kp_flag_type type;
    size_t offset;         /* of the field in the target struct */
    size_t size;           /* of that field; for a string, its capacity with the NUL */
    const char *def;       /* default in the flag's own syntax; NULL = leave the field as it is */
    const char *shown_def; /* what -h prints instead of `def` when `def` alone would mislead */
    const char *arg;       /* the value's name in -h; NULL = the type's word ("string", ...) */
    uint64_t min;          /* numbers: smallest accepted value (durations in ms) */
    uint64_t max;          /* numbers: largest accepted value; 0 = the limit of the type */
    const char *const *choices; /* enum: names by value, choices[i] names value i */
    size_t n_choices;
    bool fold_case;      /* enum: match the names case-insensitively */
    kp_flag_check check; /* strings: an extra rule, may be NULL */
    kp_flag_setter set;  /* KP_FLAG_FUNC only */
    bool secret;         /* never echo the value in an error: it may hold a password */
    const char *help;
} kp_flag_spec;

/* Field helpers for a table over struct type T. _Generic without a default branch: a flag whose
 * kind does not match the type of its member fails to compile (a char array decays to char *). */
#define KP_FLAG_MEMBER_(T, m) (((T *)0)->m)
#define KP_FLAG_STRING_FIELD(T, m)                                                                 \
    .type = KP_FLAG_STRING, .offset = offsetof(T, m),                                           \
    .size = _Generic(KP_FLAG_MEMBER_(T, m), char *: sizeof KP_FLAG_MEMBER_(T, m))
#define KP_FLAG_DURATION_FIELD(T, m)                                                               \
    .type = KP_FLAG_DURATION, .offset = offsetof(T, m),                                            \
    .size = _Generic(KP_FLAG_MEMBER_(T, m), uint64_t                                               \
                     : sizeof(uint64_t))
#define KP_FLAG_UINT_FIELD(T, m)                                                                   \
    .type = KP_FLAG_UINT, .offset = offsetof(T, m),                                                \
    .size = _Generic(KP_FLAG_MEMBER_(T, m), uint32_t                                               \
                     : sizeof(uint32_t))
#define KP_FLAG_BOOL_FIELD(T, m)                                                                   \
    .type = KP_FLAG_BOOL, .offset = offsetof(T, m),                                                \
    .size = _Generic(KP_FLAG_MEMBER_(T, m), bool                                                   \
                     : sizeof(bool))
/* An enum member: its size is checked when the table is first used (an enum is int-sized). */
#define KP_FLAG_ENUM_FIELD(T, m, names)                                                            \
    .type = KP_FLAG_ENUM, .offset = offsetof(T, m), .size = sizeof KP_FLAG_MEMBER_(T, m),          \
    .choices = (names), .n_choices = sizeof(names) / sizeof((names)[0])

enum {
    KP_FLAGS_MAX = 48,       /* entries in one table */
    KP_FLAGS_ERROR_MAX = 512 /* one error line */
};

/* What kp_flags_parse_args() found besides plain flags (errors are KP_EINVAL). */
enum kp_flags_result { KP_FLAGS_RUN = 0, KP_FLAGS_HELP = 1, KP_FLAGS_VERSION = 2 };

typedef enum kp_flag_source {
    KP_FLAG_FROM_DEFAULT = 0,
    KP_FLAG_FROM_ARG,
    KP_FLAG_FROM_ENV
} kp_flag_source;

/* One parse: the table, the struct it fills, and where each value came from, so that rules
 * checked after every source was read can name the flag or variable that set the bad value.
 * `text` points into argv, the environment or the table: all outlive the parse. */
typedef struct kp_flags {
    const kp_flag_spec *specs;
    size_t count;
    void *target;
    bool want_version;
    kp_flag_source src[KP_FLAGS_MAX];
    const char *text[KP_FLAGS_MAX];
    char error[KP_FLAGS_ERROR_MAX]; /* the last error, one line without '\n' */
} kp_flags;

/* Sets every field that has a default. A default that does not parse is a bug in the table
 * (assert). */
void kp_flags_defaults(const kp_flag_spec *specs, size_t count, void *target);

/* Starts a parse: kp_flags_defaults() and every source set to "default". */
void kp_flags_begin(kp_flags *fs, const kp_flag_spec *specs, size_t count, void *target);

/* Reads argv[first..argc-1]. Returns KP_FLAGS_RUN, KP_FLAGS_HELP (at the first -h),
 * KP_FLAGS_VERSION (once every word was read and -version was among them) or KP_EINVAL. */
int kp_flags_parse_args(kp_flags *fs, int argc, char **argv, int first);

/* Overlays the environment: every set variable overrides its flag. An empty variable counts as
 * set only for strings (KUP_WS_ADDR= turns the listener off); an empty number, duration, bool or
 * choice means "not set". Returns 0 or KP_EINVAL. */
int kp_flags_parse_env(kp_flags *fs);

/* Index of the entry called `name` (not an alias), or KP_FLAGS_MAX. */
size_t kp_flags_find(const kp_flags *fs, const char *name);

/* Writes "invalid value "v" for flag -name: why" (or "... for ENV_NAME: ...", after where entry
 * `i` got its current value) into fs->error and returns KP_EINVAL. */
int kp_flags_fail_value(kp_flags *fs, size_t i, const char *why);

/* Writes a free-form error into fs->error and returns KP_EINVAL. */
int kp_flags_fail(kp_flags *fs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef enum kp_flags_layout {
    /* One line per flag, names in a column: "  -name type   help (env X, default Y)", then the
     * environment-only settings under "Environment only:" (kupool-server). */
    KP_FLAGS_LAYOUT_COLUMNS,
    /* Go's PrintDefaults: "  -name arg" then "    \thelp (default Y)" (kupool-client). */
    KP_FLAGS_LAYOUT_GO
} kp_flags_layout;

/* Prints every entry of the table, in table order, in `layout`. */
void kp_flags_usage(const kp_flag_spec *specs, size_t count, kp_flags_layout layout, FILE *out);

/* Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False. Returns 0 or
 * KP_EINVAL. */
int kp_parse_bool(const char *text, bool *out);

/* Parses a Go duration ("1h2m3.5s", "250ms", "0") into milliseconds, rounding sub-millisecond
 * remainders down. Returns 0 or KP_EINVAL. */
int kp_parse_duration_ms(const char *text, uint64_t *out_ms);

/* Plain decimal: digits only, no sign, no spaces, at most `limit`. Returns NULL, or why not
 * ("parse error", "value out of range"). */
const char *kp_parse_decimal(const char *text, uint64_t limit, uint64_t *out);

#endif
