/* Tests for src/log.c: line formats, level filtering, the direct stderr path, truncation,
 * rotation, concurrent writers and dropped-line accounting.
 *
 * Every test opens and closes the logger itself (kp_log_open after kp_log_close is part of the
 * contract) and writes into its own mkdtemp directory. Tests that capture stderr swap fd 2 and
 * restore it before asserting, so a failure message is never lost into the capture.
 *
 * Over 600 lines: one cmocka binary per module (docs/architecture.md, STYLE 8); its cases share
 * one fixture and its helpers, and a case reads best next to the ones it varies.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "kupool/error.h"
#include "log.h"
#include "log_format.h"

#define TS_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct tmpdir {
    char path[64];
    char file[128]; /* path/kupool.log */
} tmpdir;

static void tmpdir_make(tmpdir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/kp_test_log.XXXXXX");
    assert_non_null(mkdtemp(d->path));
    snprintf(d->file, sizeof d->file, "%s/kupool.log", d->path);
}

static void tmpdir_remove(tmpdir *d)
{
    DIR *dir = opendir(d->path);
    assert_non_null(dir);
    struct dirent *e;
    char name[512];
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(name, sizeof name, "%s/%s", d->path, e->d_name);
        unlink(name);
    }
    closedir(dir);
    assert_int_equal(rmdir(d->path), 0);
}

/* The whole file, NUL-terminated (caller frees); NULL when it does not exist. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096;
    size_t len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out != NULL) {
        *len_out = len;
    }
    return buf;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0) {
        fail_msg("\"%s\" does not match /%s/", text, pattern);
    }
}

static void open_file_log(const char *file, kp_log_level level, kp_log_format format,
                          uint64_t max_bytes, uint32_t keep)
{
    kp_log_options opts = {
        .level = level, .format = format, .file = file, .max_bytes = max_bytes, .keep = keep};
    assert_int_equal(kp_log_open(&opts), 0);
}

/* Swaps fd 2 for `fd`; returns the saved stderr for capture_end. */
static int capture_begin(int fd)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    return saved;
}

static void capture_end(int saved)
{
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
}

/* ---- kp_format_utc_ms and the parsers ----------------------------------------------------- */

static void test_format_utc_ms(void **state)
{
    (void)state;
    char buf[32];
    kp_format_utc_ms(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    /* date -u -d @1764016265 -> Mon Nov 24 20:31:05 UTC 2025 */
    kp_format_utc_ms(1764016265123LL, buf, sizeof buf);
    assert_string_equal(buf, "2025-11-24T20:31:05.123Z");
    kp_format_utc_ms(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");

    char exact[25];
    kp_format_utc_ms(1764016265007LL, exact, sizeof exact);
    assert_string_equal(exact, "2025-11-24T20:31:05.007Z");

    char small[11];
    kp_format_utc_ms(1764016265123LL, small, sizeof small);
    assert_string_equal(small, "2025-11-24");
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        kp_log_level level;
    } levels[] = {
        {"trace", KP_LOG_TRACE}, {"debug", KP_LOG_DEBUG}, {"info", KP_LOG_INFO},
        {"warn", KP_LOG_WARN},   {"error", KP_LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        kp_log_level l = KP_LOG_ERROR;
        assert_int_equal(kp_log_level_parse(levels[i].text, &l), 0);
        assert_int_equal(l, levels[i].level);
    }
    kp_log_level l = KP_LOG_INFO;
    assert_int_equal(kp_log_level_parse("verbose", &l), KP_EINVAL);
    assert_int_equal(kp_log_level_parse("", &l), KP_EINVAL);
    assert_int_equal(l, KP_LOG_INFO);

    kp_log_format f = KP_LOG_JSON;
    assert_int_equal(kp_log_format_parse("text", &f), 0);
    assert_int_equal(f, KP_LOG_TEXT);
    assert_int_equal(kp_log_format_parse("json", &f), 0);
    assert_int_equal(f, KP_LOG_JSON);
    assert_int_equal(kp_log_format_parse("xml", &f), KP_EINVAL);
    assert_int_equal(f, KP_LOG_JSON);
}

/* ---- formats -------------------------------------------------------------------------------- */

/* The first (only) line of a log file written by `emit` in `format`, NUL-terminated without its
 * "\n" (caller frees). */
static char *one_line(kp_log_format format, void (*emit)(void))
{
    tmpdir d;
    tmpdir_make(&d);
    open_file_log(d.file, KP_LOG_TRACE, format, 0, 0);
    emit();
    kp_log_close();
    char *text = read_file(d.file, NULL);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 1);
    *strchr(text, '\n') = '\0';
    tmpdir_remove(&d);
    return text;
}

/* A reader of the text format as documented (docs/observability.md "Logs"): after the
 * timestamp, the level and the message, `key=value` pairs separated by one space, a value either
 * bare (no space, '=', '"', '\' or control byte) or "quoted" with \" \\ \n \r \t \xNN escapes.
 * Decodes up to `max` fields of `line` starting at `from` into keys/values (values are
 * decoded; caller frees them) and returns their number, or -1 when the line does not parse. */
typedef struct text_field {
    char key[64];
    char *value;
    size_t len;
    int quoted;
} text_field;

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int parse_text_fields(const char *from, text_field *out, int max)
{
    const char *p = from;
    int n = 0;
    while (*p == ' ' && n < max) {
        p++;
        const char *eq = strchr(p, '=');
        if (eq == NULL || (size_t)(eq - p) >= sizeof out[n].key) {
            return -1;
        }
        memcpy(out[n].key, p, (size_t)(eq - p));
        out[n].key[eq - p] = '\0';
        p = eq + 1;
        out[n].value = malloc(strlen(p) + 1);
        assert_non_null(out[n].value);
        size_t w = 0;
        out[n].quoted = *p == '"';
        if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\0') {
                    return -1;
                }
                char c = *p;
                if (c == '\\') {
                    p++;
                    switch (*p) {
                    case '"': case '\\': c = *p; break;
                    case 'n': c = '\n'; break;
                    case 'r': c = '\r'; break;
                    case 't': c = '\t'; break;
                    case 'x':
                        if (hexval(p[1]) < 0 || hexval(p[2]) < 0) {
                            return -1;
                        }
                        c = (char)(hexval(p[1]) * 16 + hexval(p[2]));
                        p += 2;
                        break;
                    default: return -1;
                    }
                }
                out[n].value[w++] = c;
            }
            p++;
        } else {
            while (*p != ' ' && *p != '\0') {
                out[n].value[w++] = *p++;
            }
        }
        out[n].value[w] = '\0';
        out[n].len = w;
        n++;
    }
    return *p == '\0' ? n : -1;
}

static void free_text_fields(text_field *f, int n)
{
    for (int i = 0; i < n; i++) {
        free(f[i].value);
    }
}

static void test_text_line(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    open_file_log(d.file, KP_LOG_INFO, KP_LOG_TEXT, 0, 0);
    KP_INFO("app.coordinator", "broadcast job", KP_INT("job_id", 1), KP_STR("nonce", "ab"),
            KP_INT("sessions", 0));
    KP_WARN("app", "no pairs");
    KP_ERROR("app", "two\nlines", KP_STR("why", "a\tb"));
    kp_log_close();

    char *text = read_file(d.file, NULL);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 3);
    char *second = strchr(text, '\n') + 1;
    char *third = strchr(second, '\n') + 1;
    second[-1] = third[-1] = '\0';
    *strchr(third, '\n') = '\0';
    assert_matches(text, "^" TS_RE " INFO broadcast job job_id=1 nonce=ab sessions=0 "
                         "module=app\\.coordinator$");
    assert_matches(second, "^" TS_RE " WARN no pairs module=app$");
    /* Control characters never split a line: a field value escapes them, the message (a program
     * constant) has them as spaces. */
    assert_matches(third, "^" TS_RE " ERROR two lines why=\"a\\\\tb\" module=app$");
    free(text);
    tmpdir_remove(&d);
}

/* The formats alone: no writer thread, no file, a fixed time. */
static void test_format_line_pure(void **state)
{
    (void)state;
    char line[KP_LOG_LINE_BYTES];
    const kp_log_field fields[] = {KP_INT("job_id", 7), KP_STR("user", "a b"), KP_BOOL("ok", 1)};
    const int64_t t = 1700000000123; /* 2023-11-14T22:13:20.123Z */
    size_t n = kp_log_format_line(line, KP_LOG_TEXT, t, KP_LOG_INFO, "app", "hello", fields, 3);
    line[n] = '\0'; /* the line is not NUL-terminated: the writer takes its length */
    assert_string_equal(
        line, "2023-11-14T22:13:20.123Z INFO hello job_id=7 user=\"a b\" ok=true module=app\n");
    n = kp_log_format_line(line, KP_LOG_JSON, t, KP_LOG_WARN, NULL, NULL, fields, 1);
    line[n] = '\0';
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "ts")->valuestring,
                        "2023-11-14T22:13:20.123Z");
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    assert_string_equal(cJSON_GetObjectItem(j, "module")->valuestring, "-");
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, "");
    assert_int_equal(cJSON_GetObjectItem(j, "job_id")->valueint, 7);
    cJSON_Delete(j);
    /* A level outside the enum is clamped, never an index past the name table. */
    n = kp_log_format_line(line, KP_LOG_TEXT, t, (kp_log_level)99, "m", "x", NULL, 0);
    line[n] = '\0';
    assert_string_equal(line, "2023-11-14T22:13:20.123Z ERROR x module=m\n");
}

static void emit_json_types(void)
{
    KP_DEBUG("app.coordinator", "broadcast job", KP_INT("job_id", 1), KP_STR("nonce", "ab"),
             KP_UINT("sessions", 0), KP_FLOAT("ratio", 1.5), KP_INT("neg", -3),
             KP_BOOL("ok", 1), KP_BOOL("no", 0), KP_STR("name", "two words"),
             KP_STR("esc", "say \"hi\" \\ok"), KP_STR("zero", "007"), KP_STR("hex", "1e"),
             KP_STR("ctl", "a\x01z"), KP_STR("quoted_num", "42"), KP_STR("true_text", "true"),
             KP_INT("min", INT64_MIN), KP_UINT("max", UINT64_MAX), KP_FLOAT("tenth", 0.1),
             KP_FLOAT("nan", 0.0 / 0.0), KP_STR("null", NULL), KP_QSTR("listen", ":80"));
}

static void test_json_line(void **state)
{
    (void)state;
    char *text = one_line(KP_LOG_JSON, emit_json_types);
    cJSON *obj = cJSON_Parse(text);
    assert_non_null(obj);

    cJSON *ts = cJSON_GetObjectItemCaseSensitive(obj, "ts");
    assert_true(cJSON_IsString(ts));
    assert_matches(ts->valuestring, "^" TS_RE "$");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring, "debug");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "msg")->valuestring,
                        "broadcast job");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "module")->valuestring,
                        "app.coordinator");

    /* Numbers are numbers and bools are bools because of their type, never because of how a
     * string looks: "007", "1e", "42" and "true" stay strings. */
    cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "job_id");
    assert_true(cJSON_IsNumber(item));
    assert_int_equal(item->valueint, 1);
    item = cJSON_GetObjectItemCaseSensitive(obj, "sessions");
    assert_true(cJSON_IsNumber(item));
    assert_int_equal(item->valueint, 0);
    item = cJSON_GetObjectItemCaseSensitive(obj, "ratio");
    assert_true(cJSON_IsNumber(item));
    assert_true(item->valuedouble == 1.5);
    item = cJSON_GetObjectItemCaseSensitive(obj, "neg");
    assert_true(cJSON_IsNumber(item));
    assert_int_equal(item->valueint, -3);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "ok")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(obj, "no")));
    item = cJSON_GetObjectItemCaseSensitive(obj, "tenth");
    assert_true(cJSON_IsNumber(item));
    assert_true(item->valuedouble == 0.1);
    assert_non_null(strstr(text, "\"tenth\":0.1,"));
    assert_non_null(strstr(text, "\"min\":-9223372036854775808,"));
    assert_non_null(strstr(text, "\"max\":18446744073709551615,"));

    static const struct {
        const char *key;
        const char *value;
    } strings[] = {
        {"nonce", "ab"},      {"name", "two words"}, {"esc", "say \"hi\" \\ok"},
        {"zero", "007"},      {"hex", "1e"},         {"ctl", "a\x01z"},
        {"quoted_num", "42"}, {"true_text", "true"}, {"nan", "nan"},
        {"null", ""},         {"listen", ":80"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        item = cJSON_GetObjectItemCaseSensitive(obj, strings[i].key);
        if (!cJSON_IsString(item)) {
            fail_msg("%s is not a string in %s", strings[i].key, text);
        }
        assert_string_equal(item->valuestring, strings[i].value);
    }
    /* Members keep the order of the line; module is last. */
    assert_string_equal(obj->child->string, "ts");
    cJSON *last = obj->child;
    while (last->next != NULL) {
        last = last->next;
    }
    assert_string_equal(last->string, "module");
    assert_non_null(strstr(text, "\\u0001"));
    cJSON_Delete(obj);
    free(text);
}

static void test_text_types(void **state)
{
    (void)state;
    char *text = one_line(KP_LOG_TEXT, emit_json_types);
    assert_non_null(strstr(text,
        " DEBUG broadcast job job_id=1 nonce=ab sessions=0 ratio=1.5 neg=-3 ok=true no=false "
        "name=\"two words\" esc=\"say \\\"hi\\\" \\\\ok\" zero=007 hex=1e ctl=\"a\\x01z\" "
        "quoted_num=42 true_text=true min=-9223372036854775808 max=18446744073709551615 "
        "tenth=0.1 nan=nan null=\"\" listen=\":80\" module=app.coordinator"));
    free(text);
}

/* ---- item 11: client text can never become a field ---------------------------------------- */

#define INJECTION "x\" level=error module=forged msg=\"pwned"

static void emit_injection(void)
{
    KP_DEBUG("app.acceptor", "authorized", KP_STR("username", INJECTION), KP_UINT("sessions", 1));
}

static void test_injection_text(void **state)
{
    (void)state;
    char *line = one_line(KP_LOG_TEXT, emit_injection);
    const char *after = strstr(line, " DEBUG authorized");
    assert_non_null(after);
    text_field f[8];
    int n = parse_text_fields(after + strlen(" DEBUG authorized"), f, 8);
    if (n != 3) {
        fail_msg("want 3 fields, got %d: %s", n, line);
    }
    assert_string_equal(f[0].key, "username");
    assert_string_equal(f[0].value, INJECTION);
    assert_string_equal(f[1].key, "sessions");
    assert_string_equal(f[1].value, "1");
    assert_string_equal(f[2].key, "module");
    assert_string_equal(f[2].value, "app.acceptor");
    free_text_fields(f, n);
    free(line);
}

static void test_injection_json(void **state)
{
    (void)state;
    char *line = one_line(KP_LOG_JSON, emit_injection);
    cJSON *obj = cJSON_Parse(line);
    assert_non_null(obj);
    static const char *const keys[] = {"ts", "level", "msg", "username", "sessions", "module"};
    int i = 0;
    for (cJSON *m = obj->child; m != NULL; m = m->next, i++) {
        assert_true(i < 6);
        assert_string_equal(m->string, keys[i]);
    }
    assert_int_equal(i, 6);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "username")->valuestring, INJECTION);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring, "debug");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "module")->valuestring,
                        "app.acceptor");
    cJSON_Delete(obj);
    free(line);
}

/* NUL, every control byte, DEL and invalid UTF-8 in one KP_STRN value. */
static const char hostile[] = "a\0b\x01\x1f\n\r\t\x7f\xff\xc3(\xe2\x82\xac\xed\xa0\x80 =\"\\z";
#define HOSTILE_LEN (sizeof hostile - 1)

static void emit_hostile(void)
{
    KP_WARN("m", "hostile", KP_STRN("v", hostile, HOSTILE_LEN), KP_INT("after", 7));
}

static void test_hostile_bytes_text(void **state)
{
    (void)state;
    char *line = one_line(KP_LOG_TEXT, emit_hostile);
    for (const unsigned char *p = (const unsigned char *)line; *p != '\0'; p++) {
        assert_true(*p >= 0x20 && *p != 0x7f); /* no control byte is written raw */
    }
    /* The euro sign is well-formed UTF-8 and stays; the lone bytes are \xNN. */
    assert_non_null(strstr(line, " WARN hostile v=\"a\\x00b\\x01\\x1f\\n\\r\\t\\x7f\\xff\\xc3("
                                 "\xe2\x82\xac\\xed\\xa0\\x80 =\\\"\\\\z\" after=7 module=m"));
    text_field f[4];
    int n = parse_text_fields(strstr(line, " hostile") + strlen(" hostile"), f, 4);
    assert_int_equal(n, 3);
    assert_int_equal(f[0].len, HOSTILE_LEN);
    assert_memory_equal(f[0].value, hostile, HOSTILE_LEN);
    free_text_fields(f, n);
    free(line);
}

static void test_hostile_bytes_json(void **state)
{
    (void)state;
    char *line = one_line(KP_LOG_JSON, emit_hostile);
    /* Invalid UTF-8 becomes U+FFFD, one per byte; the output is valid UTF-8 JSON. */
    assert_non_null(strstr(line, "\"v\":\"a\\u0000b\\u0001\\u001f\\n\\r\\t\\u007f\\ufffd\\ufffd("
                                 "\xe2\x82\xac\\ufffd\\ufffd\\ufffd =\\\"\\\\z\",\"after\":7,"));
    cJSON *obj = cJSON_Parse(line);
    assert_non_null(obj);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(obj, "after")->valueint, 7);
    cJSON_Delete(obj);
    free(line);
}

static void emit_zero_fields(void)
{
    KP_INFO("z", "nothing else");
}

static void test_zero_fields(void **state)
{
    (void)state;
    char *line = one_line(KP_LOG_TEXT, emit_zero_fields);
    assert_matches(line, "^" TS_RE " INFO nothing else module=z$");
    free(line);
    line = one_line(KP_LOG_JSON, emit_zero_fields);
    assert_matches(line, "^\\{\"ts\":\"" TS_RE "\",\"level\":\"info\",\"msg\":\"nothing else\","
                         "\"module\":\"z\"\\}$");
    free(line);
}

/* Arguments of a disabled level are not evaluated. */
static int evaluations;

static int64_t counted(void)
{
    evaluations++;
    return 1;
}

static void test_disabled_not_evaluated(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    open_file_log(d.file, KP_LOG_INFO, KP_LOG_TEXT, 0, 0);
    evaluations = 0;
    KP_DEBUG("m", "off", KP_INT("n", counted()));
    assert_int_equal(evaluations, 0);
    KP_INFO("m", "on", KP_INT("n", counted()));
    assert_int_equal(evaluations, 1);
    kp_log_close();
    tmpdir_remove(&d);
}

static void test_truncation(void **state)
{
    (void)state;
    size_t big = 10000;
    char *x = malloc(big + 1);
    assert_non_null(x);
    memset(x, 'x', big);
    x[big] = '\0';
    /* Escapes and multi-byte characters to cut through. */
    char *mixed = malloc(big + 1);
    assert_non_null(mixed);
    for (size_t i = 0; i < big; i++) {
        mixed[i] = "a\"\n\xc3\xa9\x01\xff"[i % 7];
    }
    mixed[big] = '\0';

    for (int format = KP_LOG_TEXT; format <= KP_LOG_JSON; format++) {
        tmpdir d;
        tmpdir_make(&d);
        open_file_log(d.file, KP_LOG_INFO, (kp_log_format)format, 0, 0);
        KP_INFO("trunc", "long kv", KP_INT("a", 1), KP_STR("big", x), KP_INT("c", 2));
        KP_INFO("trunc", x, KP_INT("a", 1));
        KP_INFO("trunc", "quoted", KP_QSTR("q", x));
        KP_INFO("trunc", "mixed", KP_STRN("m", mixed, big));
        KP_INFO("trunc", "unquoted", KP_STR("plain", x));
        kp_log_close();

        char *text = read_file(d.file, NULL);
        assert_non_null(text);
        assert_int_equal(count_lines(text), 5);
        char *line = text;
        for (int i = 0; i < 5; i++) {
            char *nl = strchr(line, '\n');
            *nl = '\0';
            assert_true((size_t)(nl - line) + 1 <= 4096);
            assert_true((size_t)(nl - line) + 1 >= 3000); /* cut, not emptied */
            assert_non_null(strstr(line, "..."));
            if (format == KP_LOG_TEXT) {
                assert_matches(line, "^" TS_RE " INFO .*\\.\\.\\.\"? module=trunc$");
                if (i == 2 || i == 3) { /* a cut quoted value is closed: the line still parses */
                    text_field f[4];
                    int n = parse_text_fields(strstr(line, i == 2 ? " quoted" : " mixed") +
                                                  (i == 2 ? 7 : 6),
                                              f, 4);
                    assert_int_equal(n, 2);
                    assert_true(f[0].quoted);
                    free_text_fields(f, n);
                }
            } else {
                cJSON *obj = cJSON_Parse(line);
                if (obj == NULL) {
                    fail_msg("line %d is not JSON: %.200s", i, line);
                }
                assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "truncated")));
                assert_string_equal(
                    cJSON_GetObjectItemCaseSensitive(obj, "module")->valuestring, "trunc");
                cJSON_Delete(obj);
            }
            line = nl + 1;
        }
        free(text);
        tmpdir_remove(&d);
    }
    free(mixed);
    free(x);
}

/* ---- levels and the direct stderr path ------------------------------------------------------ */

static void test_level_filter(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    open_file_log(d.file, KP_LOG_WARN, KP_LOG_TEXT, 0, 0);
    assert_false(kp_log_enabled(KP_LOG_TRACE));
    assert_false(kp_log_enabled(KP_LOG_INFO));
    assert_true(kp_log_enabled(KP_LOG_WARN));
    assert_true(kp_log_enabled(KP_LOG_ERROR));
    KP_TRACE("lvl", "trace line");
    KP_DEBUG("lvl", "debug line");
    KP_INFO("lvl", "info line");
    KP_WARN("lvl", "warn line");
    KP_ERROR("lvl", "error line");
    kp_log_close();

    char *text = read_file(d.file, NULL);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 2);
    assert_non_null(strstr(text, " WARN warn line module=lvl\n"));
    assert_non_null(strstr(text, " ERROR error line module=lvl\n"));
    free(text);

    /* Trace opens everything. */
    open_file_log(d.file, KP_LOG_TRACE, KP_LOG_TEXT, 0, 0);
    assert_true(kp_log_enabled(KP_LOG_TRACE));
    KP_TRACE("lvl", "trace line");
    kp_log_close();
    assert_false(kp_log_enabled(KP_LOG_DEBUG)); /* closed: back to info */
    assert_true(kp_log_enabled(KP_LOG_INFO));
    text = read_file(d.file, NULL);
    assert_int_equal(count_lines(text), 3); /* appended to the same file */
    assert_non_null(strstr(text, " TRACE trace line module=lvl\n"));
    free(text);
    tmpdir_remove(&d);
}

static void test_direct_stderr(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    char capture[160];
    snprintf(capture, sizeof capture, "%s/stderr", d.path);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/kupool.log", d.path);

    int saved = capture_begin(fd);
    KP_DEBUG("early", "not shown");
    KP_INFO("early", "before open", KP_INT("n", 1));
    kp_log_options bad = {.level = KP_LOG_TRACE, .format = KP_LOG_TEXT, .file = missing};
    int rc = kp_log_open(&bad);
    int enabled_after_failure = kp_log_enabled(KP_LOG_DEBUG);
    KP_INFO("early", "after failed open");
    kp_log_options good = {.level = KP_LOG_INFO, .format = KP_LOG_TEXT, .file = d.file};
    int rc2 = kp_log_open(&good);
    KP_INFO("mid", "into the file");
    kp_log_close();
    KP_WARN("late", "after close");
    capture_end(saved);
    close(fd);

    assert_int_equal(rc, KP_EIO);
    assert_false(enabled_after_failure);
    assert_int_equal(rc2, 0);
    char *text = read_file(capture, NULL);
    assert_non_null(text);
    assert_int_equal(count_lines(text), 4);
    assert_null(strstr(text, "not shown"));
    assert_non_null(strstr(text, " INFO before open n=1 module=early\n"));
    assert_non_null(strstr(text, " ERROR cannot open log file path=\""));
    assert_non_null(strstr(text, missing));
    assert_non_null(strstr(text, " INFO after failed open module=early\n"));
    assert_non_null(strstr(text, " WARN after close module=late\n"));
    assert_null(strstr(text, "into the file"));
    free(text);
    text = read_file(d.file, NULL);
    assert_int_equal(count_lines(text), 1);
    assert_non_null(strstr(text, " INFO into the file module=mid\n"));
    free(text);
    tmpdir_remove(&d);
}

/* ---- rotation --------------------------------------------------------------------------------- */

/* Checks that files[0..n) (oldest first) hold whole lines "... seq=N ..." with consecutive N
 * ending at last_seq, each file at most max_bytes. Returns how many lines were found. */
static int check_rotated(char *const *files, int n, uint64_t max_bytes, int last_seq)
{
    int expect = -1;
    int lines = 0;
    for (int f = 0; f < n; f++) {
        size_t len = 0;
        char *text = read_file(files[f], &len);
        if (text == NULL) {
            fail_msg("%s is missing", files[f]);
        }
        assert_true(len <= max_bytes);
        assert_true(len > 0);
        assert_int_equal(text[len - 1], '\n');
        char *line = text;
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            assert_matches(line, "^" TS_RE " INFO rotation line seq=[0-9]+ pad=x+ module=test$");
            int seq = atoi(strstr(line, "seq=") + 4);
            if (expect >= 0) {
                assert_int_equal(seq, expect);
            }
            expect = seq + 1;
            lines++;
            line = nl + 1;
        }
        free(text);
    }
    assert_int_equal(expect, last_seq + 1);
    return lines;
}

static void write_rotation_lines(int first, int count)
{
    for (int i = first; i < first + count; i++) {
        KP_INFO("test", "rotation line", KP_INT("seq", i), KP_STR("pad", "xxxxxxxxxxxxxxxx"));
    }
}

static void test_rotation(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    char f1[160], f2[160], f3[160], f4[160];
    snprintf(f1, sizeof f1, "%s.1", d.file);
    snprintf(f2, sizeof f2, "%s.2", d.file);
    snprintf(f3, sizeof f3, "%s.3", d.file);
    snprintf(f4, sizeof f4, "%s.4", d.file);
    /* Leftovers of a run with a larger keep disappear at the first rotation. */
    FILE *old = fopen(f3, "w");
    assert_non_null(old);
    fputs("old\n", old);
    fclose(old);

    open_file_log(d.file, KP_LOG_INFO, KP_LOG_TEXT, 1000, 2);
    write_rotation_lines(0, 200);
    kp_log_close();

    assert_true(file_exists(d.file));
    assert_true(file_exists(f1));
    assert_true(file_exists(f2));
    assert_false(file_exists(f3));
    assert_false(file_exists(f4));
    char *files[] = {f2, f1, d.file};
    int lines = check_rotated(files, 3, 1000, 199);
    /* ~85-byte lines: two full files of 11 lines plus the current one. */
    assert_true(lines >= 23);

    /* Reopening appends to the current file and continues rotating from its size. */
    open_file_log(d.file, KP_LOG_INFO, KP_LOG_TEXT, 1000, 2);
    write_rotation_lines(200, 30);
    kp_log_close();
    lines = check_rotated(files, 3, 1000, 229);
    assert_true(lines >= 23);
    tmpdir_remove(&d);
}

static void test_rotation_keep0(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    char f1[160];
    snprintf(f1, sizeof f1, "%s.1", d.file);
    open_file_log(d.file, KP_LOG_INFO, KP_LOG_TEXT, 1000, 0);
    write_rotation_lines(0, 200);
    kp_log_close();
    assert_false(file_exists(f1));
    char *files[] = {d.file};
    int lines = check_rotated(files, 1, 1000, 199);
    assert_true(lines >= 1 && lines <= 12);
    tmpdir_remove(&d);
}

/* ---- concurrency and drops ---------------------------------------------------------------- */

enum { WRITERS = 4, LINES_PER_WRITER = 10000 };

static void *concurrent_writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < LINES_PER_WRITER; i++) {
        KP_INFO("test", "concurrent", KP_INT("t", t), KP_INT("i", i),
                KP_STR("text", "some words here"));
    }
    return NULL;
}

/* Parses every JSON line of `text`: each "concurrent" line is counted once in seen[], each
 * dropped-count line adds to *dropped. Returns the number of "concurrent" lines. */
static int tally_json_lines(char *text, unsigned char *seen, uint64_t *dropped)
{
    int written = 0;
    *dropped = 0;
    char *line = text;
    char *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
        *nl = '\0';
        cJSON *obj = cJSON_Parse(line);
        if (obj == NULL) {
            fail_msg("not a JSON line: %.200s", line);
        }
        const char *msg = cJSON_GetObjectItemCaseSensitive(obj, "msg")->valuestring;
        if (strcmp(msg, "log lines dropped") == 0) {
            assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring,
                                "warn");
            assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "module")->valuestring,
                                "log");
            cJSON *count = cJSON_GetObjectItemCaseSensitive(obj, "count");
            assert_true(cJSON_IsNumber(count));
            *dropped += (uint64_t)count->valuedouble;
        } else {
            assert_string_equal(msg, "concurrent");
            int t = cJSON_GetObjectItemCaseSensitive(obj, "t")->valueint;
            int i = cJSON_GetObjectItemCaseSensitive(obj, "i")->valueint;
            assert_true(t >= 0 && t < WRITERS && i >= 0 && i < LINES_PER_WRITER);
            assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "text")->valuestring,
                                "some words here");
            assert_int_equal(seen[t * LINES_PER_WRITER + i], 0);
            seen[t * LINES_PER_WRITER + i] = 1;
            written++;
        }
        cJSON_Delete(obj);
        line = nl + 1;
    }
    assert_int_equal(*line, '\0'); /* nothing after the last newline */
    return written;
}

static void run_writers(void)
{
    pthread_t threads[WRITERS];
    for (int t = 0; t < WRITERS; t++) {
        assert_int_equal(pthread_create(&threads[t], NULL, concurrent_writer, (void *)(intptr_t)t),
                         0);
    }
    for (int t = 0; t < WRITERS; t++) {
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    }
}

static void test_concurrency(void **state)
{
    (void)state;
    tmpdir d;
    tmpdir_make(&d);
    open_file_log(d.file, KP_LOG_INFO, KP_LOG_JSON, 0, 0);
    run_writers();
    kp_log_close();

    char *text = read_file(d.file, NULL);
    assert_non_null(text);
    unsigned char *seen = calloc(WRITERS * LINES_PER_WRITER, 1);
    assert_non_null(seen);
    uint64_t dropped = 0;
    int written = tally_json_lines(text, seen, &dropped);
    assert_int_equal((uint64_t)written + dropped, WRITERS * LINES_PER_WRITER);
    free(seen);
    free(text);
    tmpdir_remove(&d);
}

typedef struct pipe_reader {
    int fd;
    char *buf;
    size_t len;
    size_t cap;
} pipe_reader;

static void *read_pipe(void *arg)
{
    pipe_reader *r = arg;
    for (;;) {
        if (r->cap - r->len < 65536) {
            r->cap *= 2;
            r->buf = realloc(r->buf, r->cap);
            if (r->buf == NULL) {
                return NULL;
            }
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (n <= 0) {
            break;
        }
        r->len += (size_t)n;
    }
    r->buf[r->len] = '\0';
    return NULL;
}

/* A stderr nobody reads stalls the writer, the queue fills and lines are dropped and counted;
 * the caller never blocks. */
static void test_drops_counted(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = capture_begin(fds[1]);
    close(fds[1]);

    kp_log_options opts = {.level = KP_LOG_INFO, .format = KP_LOG_JSON, .file = NULL};
    int rc = kp_log_open(&opts);
    run_writers(); /* ~4.5 MB into a 1 MiB queue behind a full 64 KiB pipe */

    pipe_reader reader = {.fd = fds[0], .buf = malloc(1 << 20), .cap = 1 << 20};
    pthread_t thread;
    int created = pthread_create(&thread, NULL, read_pipe, &reader);
    kp_log_close();
    capture_end(saved); /* the last write end closes: the reader sees EOF */
    assert_int_equal(rc, 0);
    assert_int_equal(created, 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    close(fds[0]);
    assert_non_null(reader.buf);

    unsigned char *seen = calloc(WRITERS * LINES_PER_WRITER, 1);
    assert_non_null(seen);
    uint64_t dropped = 0;
    int written = tally_json_lines(reader.buf, seen, &dropped);
    assert_true(dropped > 0);
    assert_true(written > 0);
    assert_int_equal((uint64_t)written + dropped, WRITERS * LINES_PER_WRITER);
    free(seen);
    free(reader.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_utc_ms), cmocka_unit_test(test_parse),
        cmocka_unit_test(test_text_line),     cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_format_line_pure),
        cmocka_unit_test(test_truncation),    cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_direct_stderr), cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_rotation_keep0), cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_drops_counted),
        cmocka_unit_test(test_text_types),    cmocka_unit_test(test_injection_text),
        cmocka_unit_test(test_injection_json), cmocka_unit_test(test_hostile_bytes_text),
        cmocka_unit_test(test_hostile_bytes_json), cmocka_unit_test(test_zero_fields),
        cmocka_unit_test(test_disabled_not_evaluated), 
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
