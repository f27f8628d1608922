#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kupool/error.h"
#include "log.h"

#define MODULE "spool"
#define READ_CHUNK (256u * 1024u)

struct kp_spool {
    char dir[PATH_MAX];
    char file[PATH_MAX];
    char offset_file[PATH_MAX];
    char offset_tmp[PATH_MAX];
    int fd;            /* -1 until first use */
    uint64_t committed; /* offset of the first unpublished event */
    uint64_t read_end;  /* offset just past the last event handed out by kp_spool_read */
    char *buf;          /* READ_CHUNK bytes for kp_spool_read */
};

static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int open_file(kp_spool *sp, bool create)
{
    if (sp->fd >= 0)
        return 0;
    if (create && mkdir_p(sp->dir) != 0) {
        KP_ERROR(MODULE, "cannot create -data_dir", KP_QSTR("dir", sp->dir),
                 KP_QSTR("error", strerror(errno)));
        return KP_EIO;
    }
    sp->fd = open(sp->file, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (sp->fd < 0) {
        if (!create && errno == ENOENT)
            return 0;
        KP_ERROR(MODULE, "cannot open spool", KP_QSTR("file", sp->file),
                 KP_QSTR("error", strerror(errno)));
        return KP_EIO;
    }
    return 0;
}

static uint64_t read_offset(const kp_spool *sp)
{
    FILE *f = fopen(sp->offset_file, "r");
    if (!f)
        return 0;
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) != 1)
        v = 0;
    fclose(f);
    return v;
}

static int write_offset(const kp_spool *sp, uint64_t offset)
{
    if (offset == 0)
        return unlink(sp->offset_file) == 0 || errno == ENOENT ? 0 : KP_EIO;
    int fd = open(sp->offset_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return KP_EIO;
    char text[32];
    int len = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)offset);
    bool ok = write(fd, text, (size_t)len) == len && fdatasync(fd) == 0;
    close(fd);
    if (!ok || rename(sp->offset_tmp, sp->offset_file) != 0)
        return KP_EIO;
    return 0;
}

int kp_spool_open(const char *dir, kp_spool **out, uint64_t *events)
{
    *events = 0;
    kp_spool *sp = calloc(1, sizeof(*sp));
    if (!sp || !(sp->buf = malloc(READ_CHUNK))) {
        free(sp);
        return KP_ENOMEM;
    }
    sp->fd = -1;
    snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
    snprintf(sp->file, sizeof(sp->file), "%s/spool.jsonl", dir);
    snprintf(sp->offset_file, sizeof(sp->offset_file), "%s/spool.offset", dir);
    snprintf(sp->offset_tmp, sizeof(sp->offset_tmp), "%s/spool.offset.tmp", dir);
    int rc = open_file(sp, false);
    if (rc != 0) {
        kp_spool_close(sp);
        return rc;
    }
    if (sp->fd >= 0) {
        struct stat st;
        sp->committed = read_offset(sp);
        if (fstat(sp->fd, &st) != 0 || sp->committed > (uint64_t)st.st_size)
            sp->committed = 0; /* an offset past the end is stale: replay rather than skip */
        sp->read_end = sp->committed;
        /* Count complete lines after the offset: the events the last run left behind. */
        uint64_t pos = sp->committed, whole = sp->committed; /* whole: just past the last \n */
        ssize_t got;
        while ((got = pread(sp->fd, sp->buf, READ_CHUNK, (off_t)pos)) > 0) {
            for (ssize_t i = 0; i < got; i++) {
                if (sp->buf[i] == '\n') {
                    (*events)++;
                    whole = pos + (uint64_t)i + 1;
                }
            }
            pos += (uint64_t)got;
        }
        if (got < 0) {
            kp_spool_close(sp);
            return KP_EIO;
        }
        /* A torn last line (a run killed mid-append) was never counted as spooled. Cut it off,
         * or the next append would glue its first event onto it and that line would not parse. */
        if (whole < pos) {
            KP_WARN(MODULE, "torn last line dropped", KP_QSTR("file", sp->file),
                    KP_UINT("bytes", pos - whole));
            if (ftruncate(sp->fd, (off_t)whole) != 0) {
                kp_spool_close(sp);
                return KP_EIO;
            }
        }
    }
    *out = sp;
    return 0;
}

int kp_spool_append(kp_spool *sp, const kp_event *events, size_t n)
{
    int rc = open_file(sp, true);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(sp->fd, &st) != 0)
        return KP_EIO;
    /* One write per chunk of lines keeps the file whole-line at every successful return. */
    size_t cap = READ_CHUNK, len = 0;
    char *chunk = malloc(cap);
    if (!chunk)
        return KP_ENOMEM;
    for (size_t i = 0; i <= n && rc == 0; i++) {
        if (i == n || cap - len < KP_EVENT_JSON_MAX + 1) {
            if (len && write(sp->fd, chunk, len) != (ssize_t)len)
                rc = KP_EIO;
            len = 0;
            if (i == n)
                break;
        }
        int w = kp_event_to_json(&events[i], chunk + len, cap - len);
        if (w < 0) {
            rc = KP_EINVAL;
            break;
        }
        len += (size_t)w;
        chunk[len++] = '\n';
    }
    free(chunk);
    if (rc == 0 && fdatasync(sp->fd) != 0)
        rc = KP_EIO;
    if (rc != 0) {
        int err = errno;
        /* The pipeline keeps these events and appends them again later: what this call wrote
         * (a short write on a full disk ends mid-line) must not stay in front of them. */
        if (ftruncate(sp->fd, st.st_size) != 0)
            KP_ERROR(MODULE, "cannot undo a failed append", KP_QSTR("file", sp->file),
                     KP_QSTR("error", strerror(errno)));
        KP_ERROR(MODULE, "cannot append to spool", KP_QSTR("file", sp->file),
                 KP_QSTR("error", strerror(err)));
    }
    return rc;
}

/* The line at the committed offset fills the whole read buffer. No event is that long
 * (KP_EVENT_JSON_MAX), so it is garbage; if it is complete, step past it as one skipped line,
 * or it would hide every event behind it for good. Clobbers sp->buf. */
static int skip_overlong_line(kp_spool *sp, size_t *skipped)
{
    uint64_t pos = sp->committed + READ_CHUNK;
    ssize_t got;
    while ((got = pread(sp->fd, sp->buf, READ_CHUNK, (off_t)pos)) > 0) {
        const char *nl = memchr(sp->buf, '\n', (size_t)got);
        if (nl) {
            sp->read_end = pos + (uint64_t)(nl - sp->buf) + 1;
            (*skipped)++;
            return 0;
        }
        pos += (uint64_t)got;
    }
    return got < 0 ? KP_EIO : 0; /* no end yet: a torn line, left as it is */
}

int kp_spool_read(kp_spool *sp, kp_event *out, size_t cap, size_t *n, size_t *skipped)
{
    *n = 0;
    *skipped = 0;
    if (sp->fd < 0 && open_file(sp, false) != 0)
        return KP_EIO;
    sp->read_end = sp->committed;
    if (sp->fd < 0)
        return 0;
    ssize_t got = pread(sp->fd, sp->buf, READ_CHUNK, (off_t)sp->committed);
    if (got < 0)
        return KP_EIO;
    const char *p = sp->buf, *end = sp->buf + got;
    while (*n < cap && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break; /* a torn or not yet complete last line */
        if (kp_event_from_json(p, (size_t)(nl - p), &out[*n]) == 0)
            (*n)++;
        else
            (*skipped)++;
        p = nl + 1;
    }
    sp->read_end = sp->committed + (uint64_t)(p - sp->buf);
    if (p == sp->buf && got == READ_CHUNK)
        return skip_overlong_line(sp, skipped);
    return 0;
}

int kp_spool_commit(kp_spool *sp)
{
    if (sp->fd < 0)
        return 0;
    sp->committed = sp->read_end;
    struct stat st;
    if (fstat(sp->fd, &st) != 0)
        return KP_EIO;
    if ((uint64_t)st.st_size <= sp->committed) {
        /* Everything published: start the file afresh so the spool never grows for good. The
         * offset goes first: a crash in between replays (deduplicated) events, never skips. */
        sp->committed = sp->read_end = 0;
        if (write_offset(sp, 0) != 0 || ftruncate(sp->fd, 0) != 0)
            return KP_EIO;
        return 0;
    }
    return write_offset(sp, sp->committed);
}

void kp_spool_close(kp_spool *sp)
{
    if (!sp)
        return;
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp->buf);
    free(sp);
}
