/* Structured logging (SPEC §5): lines are formatted on the caller's stack (log_format.c, the
 * text and JSON renderings), queued in a bounded byte buffer and written by one writer thread,
 * which also rotates the log file. This file is the queue, the writer and the public API.
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
 * each other; kp_log_fields and kp_log_enabled may be called from any
 * thread at any time. */
#include "log.h"
#include "log_format.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "kupool/error.h"

enum {
    KP_LOG_QUEUE_BYTES = 1 << 20 /* bytes of lines waiting for the writer */
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

/* ---- line assembly ---------------------------------------------------------------------- */

static size_t format_line_now(char *line, kp_log_level level, const char *module,
                              const char *msg, const kp_log_field *fields, size_t n_fields)
{
    return kp_log_format_line(line, (kp_log_format)atomic_load(&lg.format), kp_clock_wall_ms(),
                              level, module, msg, fields, n_fields);
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
        const kp_log_field f[] = {KP_QSTR("path", lg.path), KP_QSTR("error", strerror(err))};
        size_t n = format_line_now(line, KP_LOG_ERROR, "log",
                                   "cannot reopen log file after rotation", f, 2);
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
            const kp_log_field f[] = {KP_UINT("count", dropped)};
            size_t n = format_line_now(line, KP_LOG_WARN, "log", "log lines dropped", f, 1);
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
            KP_ERROR("log", "cannot open log file", KP_QSTR("path", opts->file),
                     KP_QSTR("error", strerror(err)));
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
    atomic_store(&lg.level, kp_log_clamp_level(opts->level));
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

/* Queues (or, while closed, writes) one formatted line. */
static void emit(kp_log_level level, const char *line, size_t n)
{
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

void kp_log_fields(kp_log_level level, const char *module, const char *msg,
                   const kp_log_field *fields, size_t n)
{
    if (!kp_log_enabled(level)) {
        return;
    }
    char line[KP_LOG_LINE_BYTES];
    kp_log_format format = (kp_log_format)atomic_load_explicit(&lg.format, memory_order_relaxed);
    size_t len =
        kp_log_format_line(line, format, kp_clock_wall_ms(), level, module, msg, fields, n);
    emit(level, line, len);
}

void kp_log_fieldsv_(kp_log_level level, const char *module, const char *msg, size_t n, ...)
{
    kp_log_field fields[KP_LOG_FIELDS_MAX];
    if (n > KP_LOG_FIELDS_MAX) { /* the macros cannot pass more; a direct caller might */
        n = KP_LOG_FIELDS_MAX;
    }
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        fields[i] = va_arg(ap, kp_log_field);
    }
    va_end(ap);
    kp_log_fields(level, module, msg, fields, n);
}
