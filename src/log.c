/* Structured logging (SPEC §5): lines are formatted on the caller's stack, queued in a bounded
 * byte buffer and written by one writer thread, which also rotates the log file.
 *
 * Invariants:
 *  - The queue holds whole lines only; a line that does not fit is dropped (never split) and
 *    counted, and the count is reported by the writer before the next batch it writes.
 *  - Only the writer thread touches the output fd, the file size and the rotation names while the
 *    logger is open; kp_log_open/kp_log_close touch them only while no writer thread runs.
 *  - `lg.open` (under `lg.mu`) decides between the queue and the direct stderr path, so a line is
 *    either queued before kp_log_close stops accepting (and then written by the writer before it
 *    exits) or written straight to stderr: none is lost in between.
 *
 * kp_log_open/kp_log_close are meant to be called from one thread (main), not concurrently with
 * each other; kp_log and kp_log_enabled may be called from any thread at any time. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kupool/error.h"

enum {
    KP_LOG_LINE_BYTES = 4096,    /* longest line, "\n" included; longer ones are truncated */
    KP_LOG_QUEUE_BYTES = 1 << 20, /* bytes of lines waiting for the writer */
    KP_LOG_MODULE_MAX = 128,     /* longest module name kept in a line */
    KP_LOG_TS_BYTES = 25         /* "2026-11-24T20:31:05.123Z" + NUL */
};

static const char *const level_upper[] = {
    [KP_LOG_TRACE] = "TRACE", [KP_LOG_DEBUG] = "DEBUG", [KP_LOG_INFO] = "INFO",
    [KP_LOG_WARN] = "WARN",   [KP_LOG_ERROR] = "ERROR",
};

static const char *const level_lower[] = {
    [KP_LOG_TRACE] = "trace", [KP_LOG_DEBUG] = "debug", [KP_LOG_INFO] = "info",
    [KP_LOG_WARN] = "warn",   [KP_LOG_ERROR] = "error",
};

/* The one piece of file-scope state in KuPool. The logger is process-wide by nature: lines come
 * from the loop thread, libuv workers, the consumer thread and from start-up code that runs
 * before any context exists (a bad flag, a file that cannot be opened), so threading a context
 * through every call site would buy nothing but noise. Everything here is guarded by `mu` except
 * the atomics, which exist so that the level check stays a single load on the hot path. */
static struct {
    atomic_int level;  /* lines below it are discarded before formatting */
    atomic_int format; /* kp_log_format of new lines */

    pthread_mutex_t mu;
    pthread_cond_t wake; /* writer: lines queued, lines dropped or stop requested */
    bool open;           /* accepting lines into the queue (else: direct stderr) */
    bool stop;           /* writer: drain and exit */
    char *pending;       /* lines queued by callers, KP_LOG_QUEUE_BYTES */
    size_t pending_len;
    uint64_t dropped; /* lines refused since the writer last took the count */

    /* Writer-thread side (see the invariants above). */
    pthread_t thread;
    char *spare; /* the batch being written; swapped with `pending` */
    int fd;
    bool own_fd;  /* fd is the log file: close it, rotate it */
    uint64_t size; /* bytes in the current file */
    uint64_t max_bytes;
    uint32_t keep;
    char *path;      /* log file path (owned) */
    char *name;      /* scratch for "path.N" */
    size_t name_cap;
} lg = {
    .level = KP_LOG_INFO,
    .format = KP_LOG_TEXT,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .fd = -1,
};

/* ---- small helpers ---------------------------------------------------------------------- */

static kp_log_level clamp_level(kp_log_level level)
{
    if ((int)level < KP_LOG_TRACE) {
        return KP_LOG_TRACE;
    }
    if ((int)level > KP_LOG_ERROR) {
        return KP_LOG_ERROR;
    }
    return level;
}

/* Writes every byte, retrying on EINTR and short writes. Returns 0 or -1 (errno set). */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Length of data[0..len) without a trailing, incomplete UTF-8 sequence, so that a truncated
 * line never ends in the middle of a character. */
static size_t utf8_trim(const char *data, size_t len)
{
    size_t i = len;
    size_t back = 0;
    while (i > 0 && back < 4 && ((unsigned char)data[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) {
        return len;
    }
    unsigned char lead = (unsigned char)data[i - 1];
    size_t need;
    if (lead < 0x80) {
        return len;
    } else if ((lead & 0xE0) == 0xC0) {
        need = 2;
    } else if ((lead & 0xF0) == 0xE0) {
        need = 3;
    } else if ((lead & 0xF8) == 0xF0) {
        need = 4;
    } else {
        return len; /* not UTF-8 anyway: leave it */
    }
    return (back + 1 >= need) ? len : i - 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A bounded output buffer: every put either fits entirely or writes nothing. */
typedef struct outbuf {
    char *data;
    size_t len;
    size_t cap;
} outbuf;

static size_t out_room(const outbuf *o)
{
    return o->cap - o->len;
}

static bool out_put(outbuf *o, const char *s, size_t n)
{
    if (out_room(o) < n) {
        return false;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
    return true;
}

static bool out_str(outbuf *o, const char *s)
{
    return out_put(o, s, strlen(s));
}

/* `s` as a quoted kv value ("..." with \" and \\ escaped), cut to fit buf[cap >= 3]. */
static const char *quote_value(const char *s, char *buf, size_t cap)
{
    size_t w = 0;
    buf[w++] = '"';
    for (; *s != '\0'; s++) {
        bool esc = *s == '"' || *s == '\\';
        if (w + (esc ? 2 : 1) + 2 > cap) {
            break;
        }
        if (esc) {
            buf[w++] = '\\';
        }
        buf[w++] = *s;
    }
    buf[w++] = '"';
    buf[w] = '\0';
    return buf;
}

/* ---- text format ------------------------------------------------------------------------ */

/* Control characters would break the one-line-per-record framing: they become spaces. */
static void text_sanitize(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            s[i] = ' ';
        }
    }
}

static size_t format_text(char *line, size_t cap, const char *ts, kp_log_level level,
                          const char *module, const char *msg, const char *kv_fmt, va_list ap)
{
    /* The tail " module=X\n" is always kept, so a truncated line still ends like every other. */
    char tail[KP_LOG_MODULE_MAX + 16];
    size_t mod_len = strnlen(module, KP_LOG_MODULE_MAX);
    int tail_len = snprintf(tail, sizeof tail, " module=%.*s\n", (int)mod_len, module);
    text_sanitize(tail, (size_t)tail_len - 1);

    const size_t ellipsis = 3;
    outbuf o = {.data = line, .len = 0, .cap = cap - (size_t)tail_len - ellipsis};
    bool truncated = false;

    out_str(&o, ts);
    out_put(&o, " ", 1);
    out_str(&o, level_upper[level]);
    out_put(&o, " ", 1);
    size_t msg_start = o.len;
    size_t msg_len = strlen(msg);
    if (msg_len > out_room(&o)) {
        msg_len = utf8_trim(msg, out_room(&o));
        truncated = true;
    }
    out_put(&o, msg, msg_len);
    text_sanitize(line + msg_start, msg_len);

    if (!truncated && kv_fmt != NULL && kv_fmt[0] != '\0' && out_room(&o) > 1) {
        size_t kv_start = o.len + 1;
        /* vsnprintf may put its NUL at o.cap: still inside `line`, since the tail follows. */
        int n = vsnprintf(line + kv_start, out_room(&o), kv_fmt, ap);
        if (n > 0) {
            size_t kv_len = (size_t)n;
            size_t fits = out_room(&o) - 1;
            if (kv_len > fits) {
                kv_len = utf8_trim(line + kv_start, fits);
                truncated = true;
            }
            line[o.len] = ' ';
            text_sanitize(line + kv_start, kv_len);
            o.len = kv_start + kv_len;
        }
    } else if (!truncated && kv_fmt != NULL && kv_fmt[0] != '\0') {
        truncated = true;
    }

    o.cap = cap;
    if (truncated) {
        out_put(&o, "...", ellipsis);
    }
    out_put(&o, tail, (size_t)tail_len);
    return o.len;
}

/* ---- JSON format ------------------------------------------------------------------------ */

/* Escape of one byte as a JSON string character; returns its length (1..6). */
static size_t json_escape_byte(unsigned char c, char esc[7])
{
    switch (c) {
    case '"': memcpy(esc, "\\\"", 2); return 2;
    case '\\': memcpy(esc, "\\\\", 2); return 2;
    case '\n': memcpy(esc, "\\n", 2); return 2;
    case '\r': memcpy(esc, "\\r", 2); return 2;
    case '\t': memcpy(esc, "\\t", 2); return 2;
    case '\b': memcpy(esc, "\\b", 2); return 2;
    case '\f': memcpy(esc, "\\f", 2); return 2;
    default: break;
    }
    if (c < 0x20) {
        snprintf(esc, 7, "\\u%04x", (unsigned)c);
        return 6;
    }
    esc[0] = (char)c;
    return 1;
}

/* Puts s[0..n) as a JSON string. If it does not fit, puts as much as fits followed by "..." and
 * returns 1; returns 0 when whole, -1 (nothing written) when not even "..." fits. */
static int json_put_string(outbuf *o, const char *s, size_t n)
{
    char esc[7];
    size_t need = 2;
    for (size_t i = 0; i < n; i++) {
        need += json_escape_byte((unsigned char)s[i], esc);
    }
    if (need <= out_room(o)) {
        out_put(o, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            out_put(o, esc, json_escape_byte((unsigned char)s[i], esc));
        }
        out_put(o, "\"", 1);
        return 0;
    }
    if (out_room(o) < 5) { /* "..." */
        return -1;
    }
    out_put(o, "\"", 1);
    size_t start = o->len;
    for (size_t i = 0; i < n; i++) {
        size_t elen = json_escape_byte((unsigned char)s[i], esc);
        if (out_room(o) < elen + 4) {
            break;
        }
        out_put(o, esc, elen);
    }
    /* Escapes are ASCII, so only raw multi-byte characters can be cut here. */
    o->len = start + utf8_trim(o->data + start, o->len - start);
    out_put(o, "...\"", 4);
    return 1;
}

/* True when s[0..n) is a JSON number (the grammar of RFC 8259), so it can be emitted verbatim. */
static bool is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-') {
        i++;
    }
    if (i >= n) {
        return false;
    }
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    } else {
        return false;
    }
    if (i < n && s[i] == '.') {
        i++;
        size_t digits = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == digits) {
            return false;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        size_t digits = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        if (i == digits) {
            return false;
        }
    }
    return i == n;
}

static bool is_json_bool(const char *s, size_t n)
{
    return (n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0);
}

/* Removes the quotes of a value that starts with '"', honouring \" and \\ inside, in place
 * (the result is never longer). Text after the closing quote is kept as is. Returns the new
 * length. */
static size_t unquote_in_place(char *s, size_t n)
{
    size_t r = 1;
    size_t w = 0;
    while (r < n) {
        char c = s[r];
        if (c == '\\' && r + 1 < n && (s[r + 1] == '"' || s[r + 1] == '\\')) {
            s[w++] = s[r + 1];
            r += 2;
        } else if (c == '"') {
            r++;
            memmove(s + w, s + r, n - r);
            return w + (n - r);
        } else {
            s[w++] = c;
            r++;
        }
    }
    return w; /* no closing quote: everything after the opening one */
}

/* Appends one `,"key":value` member. Returns 0 when whole, 1 when the value was cut (the line is
 * then full), -1 when nothing was written because it does not fit. */
static int json_put_member(outbuf *o, const char *key, size_t key_len, char *val, size_t val_len)
{
    size_t mark = o->len;
    bool quoted = val_len > 0 && val[0] == '"';
    if (quoted) {
        val_len = unquote_in_place(val, val_len);
    }
    if (!out_put(o, ",", 1) || json_put_string(o, key, key_len) != 0 || !out_put(o, ":", 1)) {
        o->len = mark;
        return -1;
    }
    if (!quoted && (is_json_number(val, val_len) || is_json_bool(val, val_len))) {
        if (out_put(o, val, val_len)) {
            return 0;
        }
        o->len = mark;
        return -1;
    }
    int rc = json_put_string(o, val, val_len);
    if (rc < 0) {
        o->len = mark;
    }
    return rc;
}

/* Splits kv[0..n) on spaces outside double quotes and appends a member per key=value token (a
 * token without '=' becomes "token":true). Returns false when something was left out. */
static bool json_put_kv(outbuf *o, char *kv, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && kv[i] == ' ') {
            i++;
        }
        if (i >= n) {
            break;
        }
        size_t start = i;
        bool in_quotes = false;
        while (i < n && (in_quotes || kv[i] != ' ')) {
            if (in_quotes && kv[i] == '\\' && i + 1 < n) {
                i += 2;
                continue;
            }
            if (kv[i] == '"') {
                in_quotes = !in_quotes;
            }
            i++;
        }
        char *tok = kv + start;
        size_t tok_len = i - start;
        char *eq = memchr(tok, '=', tok_len);
        int rc;
        if (eq == NULL) {
            char yes[] = "true";
            rc = json_put_member(o, tok, tok_len, yes, 4);
        } else {
            size_t key_len = (size_t)(eq - tok);
            rc = json_put_member(o, tok, key_len, eq + 1, tok_len - key_len - 1);
        }
        if (rc != 0) {
            return false;
        }
    }
    return true;
}

static size_t format_json(char *line, size_t cap, const char *ts, kp_log_level level,
                          const char *module, const char *msg, const char *kv_fmt, va_list ap)
{
    static const char truncated_member[] = ",\"truncated\":true";

    /* The tail is built first and always kept: a cut line stays one valid object. */
    char tail[KP_LOG_MODULE_MAX * 6 + 32];
    outbuf t = {.data = tail, .len = 0, .cap = sizeof tail};
    out_str(&t, ",\"module\":");
    json_put_string(&t, module, strnlen(module, KP_LOG_MODULE_MAX));
    out_str(&t, "}\n");

    outbuf o = {.data = line, .len = 0, .cap = cap - t.len - (sizeof truncated_member - 1)};
    out_str(&o, "{\"ts\":\"");
    out_str(&o, ts);
    out_str(&o, "\",\"level\":\"");
    out_str(&o, level_lower[level]);
    out_str(&o, "\",\"msg\":");
    bool truncated = json_put_string(&o, msg, strlen(msg)) != 0;

    if (!truncated && kv_fmt != NULL && kv_fmt[0] != '\0') {
        char kv[KP_LOG_LINE_BYTES];
        int n = vsnprintf(kv, sizeof kv, kv_fmt, ap);
        if (n > 0) {
            size_t kv_len = (size_t)n;
            if (kv_len >= sizeof kv) {
                kv_len = utf8_trim(kv, sizeof kv - 1);
                truncated = true;
            }
            if (!json_put_kv(&o, kv, kv_len)) {
                truncated = true;
            }
        }
    }

    o.cap = cap;
    if (truncated) {
        out_put(&o, truncated_member, sizeof truncated_member - 1);
    }
    out_put(&o, tail, t.len);
    return o.len;
}

/* ---- line assembly ---------------------------------------------------------------------- */

/* Formats one complete line ("\n" included) into line[KP_LOG_LINE_BYTES]; returns its length. */
static size_t format_line(char *line, kp_log_format format, kp_log_level level, const char *module,
                          const char *msg, const char *kv_fmt, va_list ap)
{
    char ts[KP_LOG_TS_BYTES];
    kp_format_utc_ms(now_ms(), ts, sizeof ts);
    level = clamp_level(level);
    if (module == NULL) {
        module = "-";
    }
    if (msg == NULL) {
        msg = "";
    }
    if (format == KP_LOG_JSON) {
        return format_json(line, KP_LOG_LINE_BYTES, ts, level, module, msg, kv_fmt, ap);
    }
    return format_text(line, KP_LOG_LINE_BYTES, ts, level, module, msg, kv_fmt, ap);
}

static size_t format_linef(char *line, kp_log_level level, const char *module, const char *msg,
                           const char *kv_fmt, ...) __attribute__((format(printf, 5, 6)));

static size_t format_linef(char *line, kp_log_level level, const char *module, const char *msg,
                           const char *kv_fmt, ...)
{
    va_list ap;
    va_start(ap, kv_fmt);
    size_t n = format_line(line, (kp_log_format)atomic_load(&lg.format), level, module, msg,
                           kv_fmt, ap);
    va_end(ap);
    return n;
}

/* ---- writer thread ---------------------------------------------------------------------- */

static void rotation_name(uint32_t k)
{
    snprintf(lg.name, lg.name_cap, "%s.%u", lg.path, (unsigned)k);
}

/* Opens the log file for appending and records its size. Returns the fd or -1 (errno set). */
static int open_log_file(const char *path, bool truncate, uint64_t *size)
{
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    *size = (fstat(fd, &st) == 0 && st.st_size > 0) ? (uint64_t)st.st_size : 0;
    return fd;
}

/* FILE.(keep-1) -> FILE.keep ... FILE -> FILE.1, then a fresh FILE. On failure to reopen, lines
 * go to stderr from then on (there is nowhere better), after one line saying why. */
static void rotate(void)
{
    close(lg.fd);
    lg.fd = -1;
    bool truncate = lg.keep == 0;
    if (!truncate) {
        /* Leftovers from a run with a larger keep. */
        for (uint32_t k = lg.keep + 1; k != 0; k++) {
            rotation_name(k);
            if (unlink(lg.name) != 0) {
                break;
            }
        }
        for (uint32_t k = lg.keep - 1; k >= 1; k--) {
            rotation_name(k);
            size_t from_len = strlen(lg.name);
            char *to = lg.name + from_len + 1; /* name_cap holds two names */
            snprintf(to, lg.name_cap - from_len - 1, "%s.%u", lg.path, (unsigned)(k + 1));
            rename(lg.name, to);
        }
        rotation_name(1);
        rename(lg.path, lg.name);
    }
    lg.fd = open_log_file(lg.path, truncate, &lg.size);
    if (lg.fd < 0) {
        int err = errno;
        lg.fd = STDERR_FILENO;
        lg.own_fd = false;
        char line[KP_LOG_LINE_BYTES];
        char path[KP_LOG_LINE_BYTES / 2];
        size_t n = format_linef(line, KP_LOG_ERROR, "log", "cannot reopen log file after rotation",
                                "path=%s error=\"%s\"", quote_value(lg.path, path, sizeof path),
                                strerror(err));
        write_all(STDERR_FILENO, line, n);
    }
}

/* Writes buf[0..len) (whole lines), rotating between lines when the file would grow past
 * max_bytes. Returns the number of lines that could not be written. */
static uint64_t write_batch(const char *buf, size_t len)
{
    uint64_t lost = 0;
    size_t off = 0;
    bool rotated = false; /* a line that does not fit a fresh file is written anyway */
    while (off < len) {
        /* Gather as many whole lines as fit in the current file into one write. */
        size_t end = off;
        uint64_t lines = 0;
        bool limited = lg.own_fd && lg.max_bytes > 0;
        while (end < len) {
            const char *nl = memchr(buf + end, '\n', len - end);
            size_t next = nl != NULL ? (size_t)(nl - buf) + 1 : len;
            if (limited && lg.size + (next - off) > lg.max_bytes) {
                break;
            }
            end = next;
            lines++;
        }
        if (end == off) {
            if (lg.size > 0 && !rotated) {
                rotate();
                rotated = true;
                continue;
            }
            /* A single line longer than max_bytes: it gets a file of its own. */
            const char *nl = memchr(buf + off, '\n', len - off);
            end = nl != NULL ? (size_t)(nl - buf) + 1 : len;
            lines = 1;
        }
        if (write_all(lg.fd, buf + off, end - off) != 0) {
            lost += lines;
        } else {
            lg.size += end - off;
        }
        rotated = false;
        off = end;
    }
    return lost;
}

static void *writer_main(void *arg)
{
    (void)arg;
    uint64_t lost = 0; /* lines that failed to write, reported with the dropped ones */
    pthread_mutex_lock(&lg.mu);
    for (;;) {
        while (lg.pending_len == 0 && lg.dropped == 0 && !lg.stop) {
            pthread_cond_wait(&lg.wake, &lg.mu);
        }
        if (lg.pending_len == 0 && lg.dropped == 0) {
            break; /* stop requested and everything written */
        }
        char *batch = lg.pending;
        size_t batch_len = lg.pending_len;
        uint64_t dropped = lg.dropped + lost;
        lg.pending = lg.spare;
        lg.pending_len = 0;
        lg.dropped = 0;
        lg.spare = batch;
        pthread_mutex_unlock(&lg.mu);

        lost = 0;
        if (dropped > 0) {
            char line[KP_LOG_LINE_BYTES];
            size_t n = format_linef(line, KP_LOG_WARN, "log", "log lines dropped",
                                    "count=%llu", (unsigned long long)dropped);
            lost += write_batch(line, n);
        }
        lost += write_batch(batch, batch_len);

        pthread_mutex_lock(&lg.mu);
    }
    pthread_mutex_unlock(&lg.mu);
    return NULL;
}

/* ---- public API ------------------------------------------------------------------------- */

static void release_resources(void)
{
    if (lg.own_fd && lg.fd >= 0) {
        close(lg.fd);
    }
    lg.fd = -1;
    lg.own_fd = false;
    free(lg.pending);
    free(lg.spare);
    free(lg.path);
    free(lg.name);
    lg.pending = lg.spare = lg.path = lg.name = NULL;
    lg.pending_len = 0;
    lg.name_cap = 0;
}

int kp_log_open(const kp_log_options *opts)
{
    static const kp_log_options defaults = {.level = KP_LOG_INFO, .format = KP_LOG_TEXT};
    if (opts == NULL) {
        opts = &defaults;
    }
    kp_log_close(); /* a second open reconfigures */

    atomic_store(&lg.format, opts->format == KP_LOG_JSON ? KP_LOG_JSON : KP_LOG_TEXT);
    lg.max_bytes = opts->max_bytes;
    lg.keep = opts->keep;
    lg.size = 0;
    lg.pending = malloc(KP_LOG_QUEUE_BYTES);
    lg.spare = malloc(KP_LOG_QUEUE_BYTES);
    if (lg.pending == NULL || lg.spare == NULL) {
        release_resources();
        return KP_ENOMEM;
    }

    if (opts->file != NULL && opts->file[0] != '\0') {
        size_t path_len = strlen(opts->file);
        lg.path = strdup(opts->file);
        lg.name_cap = 2 * (path_len + 16); /* room for two rotation names side by side */
        lg.name = malloc(lg.name_cap);
        if (lg.path == NULL || lg.name == NULL) {
            release_resources();
            return KP_ENOMEM;
        }
        lg.fd = open_log_file(lg.path, false, &lg.size);
        if (lg.fd < 0) {
            int err = errno;
            char path[KP_LOG_LINE_BYTES / 2];
            KP_ERROR("log", "cannot open log file", "path=%s error=\"%s\"",
                     quote_value(opts->file, path, sizeof path), strerror(err));
            release_resources();
            return KP_EIO;
        }
        lg.own_fd = true;
    } else {
        lg.fd = STDERR_FILENO;
        lg.own_fd = false;
    }

    lg.stop = false;
    lg.dropped = 0;
    if (pthread_create(&lg.thread, NULL, writer_main, NULL) != 0) {
        release_resources();
        return KP_ENOMEM;
    }
    pthread_mutex_lock(&lg.mu);
    lg.open = true;
    pthread_mutex_unlock(&lg.mu);
    atomic_store(&lg.level, clamp_level(opts->level));
    return 0;
}

void kp_log_close(void)
{
    pthread_mutex_lock(&lg.mu);
    if (!lg.open) {
        pthread_mutex_unlock(&lg.mu);
        return;
    }
    lg.open = false;
    lg.stop = true;
    pthread_cond_signal(&lg.wake);
    pthread_mutex_unlock(&lg.mu);
    atomic_store(&lg.level, KP_LOG_INFO);

    pthread_join(lg.thread, NULL);
    release_resources();
}

int kp_log_enabled(kp_log_level level)
{
    return (int)level >= atomic_load_explicit(&lg.level, memory_order_relaxed);
}

void kp_log(kp_log_level level, const char *module, const char *msg, const char *kv_fmt, ...)
{
    if (!kp_log_enabled(level)) {
        return;
    }
    char line[KP_LOG_LINE_BYTES];
    va_list ap;
    va_start(ap, kv_fmt);
    size_t n = format_line(line, (kp_log_format)atomic_load_explicit(&lg.format,
                                                                     memory_order_relaxed),
                           level, module, msg, kv_fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&lg.mu);
    if (!lg.open) {
        pthread_mutex_unlock(&lg.mu);
        if (level >= KP_LOG_INFO) {
            ssize_t w = write(STDERR_FILENO, line, n); /* one call: lines stay whole */
            (void)w;
        }
        return;
    }
    if (KP_LOG_QUEUE_BYTES - lg.pending_len < n) {
        lg.dropped++;
    } else {
        if (lg.pending_len == 0) {
            pthread_cond_signal(&lg.wake);
        }
        memcpy(lg.pending + lg.pending_len, line, n);
        lg.pending_len += n;
    }
    pthread_mutex_unlock(&lg.mu);
}

int kp_log_level_parse(const char *text, kp_log_level *out)
{
    if (text == NULL) {
        return KP_EINVAL;
    }
    for (int l = KP_LOG_TRACE; l <= KP_LOG_ERROR; l++) {
        if (strcasecmp(text, level_lower[l]) == 0) {
            *out = (kp_log_level)l;
            return 0;
        }
    }
    return KP_EINVAL;
}

int kp_log_format_parse(const char *text, kp_log_format *out)
{
    if (text == NULL) {
        return KP_EINVAL;
    }
    if (strcasecmp(text, "text") == 0) {
        *out = KP_LOG_TEXT;
        return 0;
    }
    if (strcasecmp(text, "json") == 0) {
        *out = KP_LOG_JSON;
        return 0;
    }
    return KP_EINVAL;
}

void kp_format_utc_ms(int64_t ms, char *buf, size_t cap)
{
    if (cap == 0) {
        return;
    }
    int64_t secs = ms / 1000;
    int64_t frac = ms % 1000;
    if (frac < 0) { /* floor, so that -1 ms is 1969-12-31T23:59:59.999Z */
        frac += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof tm);
        tm.tm_year = 70;
        tm.tm_mday = 1;
        frac = 0;
    }
    /* Formatted into room for any int fields first: at -O3 the compiler cannot prove the widths
     * fit `cap` and warns about truncation; the caller's buffer is sized for real dates. */
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    size_t n = strlen(tmp);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
}
