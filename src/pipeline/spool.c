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

#include "event_batch.h"
#include "kupool/error.h"
#include "log.h"

#define MODULE "spool"
/* One read must hold a whole batch of the largest events, or that batch could never be read. */
#define READ_CHUNK (8u * 1024u * 1024u)
_Static_assert(READ_CHUNK > KP_BATCH_BODY_MAX(KP_MQ_BATCH_MAX) + 256,
               "a spool read holds a whole batch and its marker");

#define MARKER_PREFIX "{\"kupool_batch\":\""
#define MARKER_PREFIX_LEN (sizeof(MARKER_PREFIX) - 1)
#define MARKER_MAX 128 /* longer than any marker this file writes */

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

/* ---- batch markers: {"kupool_batch":"<id>","events":N} ---- */

static bool marker_like(const char *p, size_t n)
{
    return n >= MARKER_PREFIX_LEN && memcmp(p, MARKER_PREFIX, MARKER_PREFIX_LEN) == 0;
}

/* An id goes between quotes unescaped: ids made by kp_batch_id from the server's event ids are
 * hex, digits, '-' and '+', so anything else is refused rather than escaped. */
static bool id_writable(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > KP_BATCH_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == '"' || id[i] == '\\' || id[i] == 0x7f)
            return false;
    return true;
}

static int parse_marker(const char *p, size_t n, char *id, size_t *events)
{
    if (!marker_like(p, n) || n > MARKER_MAX)
        return KP_EINVAL;
    const char *q = p + MARKER_PREFIX_LEN, *end = p + n;
    const char *close = memchr(q, '"', (size_t)(end - q));
    if (!close || close == q || (size_t)(close - q) > KP_BATCH_ID_MAX)
        return KP_EINVAL;
    static const char mid[] = "\",\"events\":";
    if ((size_t)(end - close) < sizeof(mid) || memcmp(close, mid, sizeof(mid) - 1) != 0)
        return KP_EINVAL;
    const char *d = close + sizeof(mid) - 1;
    size_t v = 0;
    const char *digits = d;
    while (d < end && *d >= '0' && *d <= '9' && d - digits < 5)
        v = v * 10 + (size_t)(*d++ - '0');
    if (d == digits || d + 1 != end || *d != '}' || v == 0 || v > KP_MQ_BATCH_MAX)
        return KP_EINVAL;
    memcpy(id, q, (size_t)(close - q));
    id[close - q] = '\0';
    if (!id_writable(id))
        return KP_EINVAL;
    *events = v;
    return 0;
}

/* ---- open: count what the last run left, cut off what it left half-written ---- */

/* What the scan at open knows about the line being read and the batch it may be in. */
typedef struct scan_state {
    uint64_t events;      /* complete event lines (every line that is not marker-like) */
    uint64_t whole;       /* offset just past the last complete line */
    uint64_t batch_start; /* offset of the marker of the batch still expecting lines */
    size_t batch_left;    /* lines that batch still expects; 0 = not in a batch */
    size_t batch_events;  /* event lines counted since that marker */
} scan_state;

static void scan_line(scan_state *st, const char *head, size_t head_len, uint64_t start,
                      uint64_t len)
{
    st->whole = start + len + 1;
    if (marker_like(head, head_len)) {
        char id[KP_BATCH_ID_MAX + 1];
        size_t n;
        st->batch_left = 0; /* any marker-like line ends the batch before it */
        if (len == head_len && parse_marker(head, head_len, id, &n) == 0) {
            st->batch_start = start;
            st->batch_left = n;
            st->batch_events = 0;
        }
        return;
    }
    st->events++;
    if (st->batch_left) {
        st->batch_left--;
        st->batch_events++;
    }
}

/* Scans from the committed offset to the end; *end is the file's length. */
static int scan(kp_spool *sp, scan_state *st, uint64_t *end)
{
    char head[MARKER_MAX + 1];
    size_t head_len = 0;
    uint64_t pos = sp->committed, line_start = sp->committed;
    st->whole = sp->committed;
    ssize_t got;
    while ((got = pread(sp->fd, sp->buf, READ_CHUNK, (off_t)pos)) > 0) {
        size_t i = 0;
        while (i < (size_t)got) {
            const char *nl = memchr(sp->buf + i, '\n', (size_t)got - i);
            size_t seg_end = nl ? (size_t)(nl - sp->buf) : (size_t)got;
            size_t room = sizeof(head) - head_len, take = seg_end - i;
            if (take > room)
                take = room;
            memcpy(head + head_len, sp->buf + i, take);
            head_len += take;
            if (!nl)
                break;
            scan_line(st, head, head_len, line_start, pos + seg_end - line_start);
            line_start = pos + seg_end + 1;
            head_len = 0;
            i = seg_end + 1;
        }
        pos += (uint64_t)got;
    }
    *end = pos;
    return got < 0 ? KP_EIO : 0;
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
        scan_state sc = {0};
        uint64_t end = 0;
        if (scan(sp, &sc, &end) != 0) {
            kp_spool_close(sp);
            return KP_EIO;
        }
        /* A torn last line or a batch whose lines stop early (a run killed mid-append) was
         * never counted as spooled. Cut it off, or the next append would glue its first line
         * onto it, or its first events onto that batch. */
        uint64_t keep = sc.whole;
        if (sc.batch_left) {
            keep = sc.batch_start;
            sc.events -= sc.batch_events;
        }
        if (keep < end) {
            KP_WARN(MODULE, "torn last line dropped", KP_QSTR("file", sp->file),
                    KP_UINT("bytes", end - keep), KP_UINT("batch_events", sc.batch_left ? sc.batch_events : 0));
            if (ftruncate(sp->fd, (off_t)keep) != 0) {
                kp_spool_close(sp);
                return KP_EIO;
            }
        }
        *events = sc.events;
    }
    *out = sp;
    return 0;
}

/* ---- append ---- */

/* Buffers lines and writes them in chunks, so the file is whole-line at every write. */
typedef struct line_writer {
    int fd;
    char *buf;
    size_t cap, len;
    int rc;
} line_writer;

static void writer_flush(line_writer *w)
{
    if (w->rc == 0 && w->len && write(w->fd, w->buf, w->len) != (ssize_t)w->len)
        w->rc = KP_EIO;
    w->len = 0;
}

static void writer_room(line_writer *w, size_t need)
{
    if (w->cap - w->len < need)
        writer_flush(w);
}

static void write_event(line_writer *w, const kp_event *ev)
{
    writer_room(w, KP_EVENT_JSON_MAX + 1);
    int n = kp_event_to_json(ev, w->buf + w->len, w->cap - w->len);
    if (n < 0) {
        w->rc = KP_EINVAL;
        return;
    }
    w->len += (size_t)n;
    w->buf[w->len++] = '\n';
}

int kp_spool_append(kp_spool *sp, const kp_mq_batch *batches, size_t n)
{
    int rc = open_file(sp, true);
    if (rc != 0)
        return rc;
    struct stat st;
    if (fstat(sp->fd, &st) != 0)
        return KP_EIO;
    line_writer w = {.fd = sp->fd, .cap = 256u * 1024u};
    if (!(w.buf = malloc(w.cap)))
        return KP_ENOMEM;
    for (size_t b = 0; b < n && w.rc == 0; b++) {
        const kp_mq_batch *bt = &batches[b];
        if (bt->id[0] && id_writable(bt->id) && bt->n <= KP_MQ_BATCH_MAX) {
            writer_room(&w, MARKER_MAX + 1);
            w.len += (size_t)snprintf(w.buf + w.len, w.cap - w.len,
                                      "{\"kupool_batch\":\"%s\",\"events\":%zu}\n", bt->id, bt->n);
        } else if (bt->id[0]) {
            /* Cannot happen for ids kp_batch_id made from the server's events: keep the events
             * (as events outside a batch) rather than the id. */
            KP_ERROR(MODULE, "batch id cannot be spooled; its events are spooled without it",
                     KP_UINT("events", bt->n));
        }
        for (size_t i = 0; i < bt->n && w.rc == 0; i++)
            write_event(&w, &bt->events[i]);
    }
    writer_flush(&w);
    free(w.buf);
    rc = w.rc;
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

/* ---- read ---- */

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

/* The reader's place: a run of events outside a batch, or a batch being filled. */
typedef struct read_state {
    kp_spool_chunk *c;
    size_t run_start;   /* first event of the open run outside a batch */
    bool in_batch;
    char id[KP_BATCH_ID_MAX + 1];
    size_t want;        /* lines the marker announced */
    size_t lines;       /* lines seen since the marker */
    size_t batch_first; /* first event of the batch */
    bool batch_damaged; /* a line of it did not parse */
} read_state;

static void end_run(read_state *rs)
{
    kp_spool_chunk *c = rs->c;
    size_t len = c->n - rs->run_start;
    if (len)
        c->nbatches += kp_batch_seal(c->events + rs->run_start, len, c->per,
                                     c->batches + c->nbatches, c->cap - c->nbatches);
    rs->run_start = c->n;
}

static void end_batch(read_state *rs)
{
    kp_spool_chunk *c = rs->c;
    size_t len = c->n - rs->batch_first;
    rs->in_batch = false;
    rs->run_start = c->n;
    if (len == 0)
        return;
    kp_mq_batch *b = &c->batches[c->nbatches++];
    b->events = c->events + rs->batch_first;
    b->n = len;
    if (len == rs->want && !rs->batch_damaged)
        memcpy(b->id, rs->id, sizeof(b->id));
    else /* what is left is another set of events: it gets its own id */
        kp_batch_id(b->events, len, b->id, sizeof(b->id));
}

/* What a read has taken up to a line that is not inside a batch: where to resume if a batch
 * after it turns out incomplete. */
typedef struct read_mark {
    const char *at;
    size_t n, skipped, bad_markers, nbatches;
} read_mark;

static read_mark mark_here(const kp_spool_chunk *c, const char *at)
{
    return (read_mark){at, c->n, c->skipped, c->bad_markers, c->nbatches};
}

int kp_spool_read(kp_spool *sp, kp_spool_chunk *c)
{
    c->n = c->nbatches = c->skipped = c->bad_markers = 0;
    if (sp->fd < 0 && open_file(sp, false) != 0)
        return KP_EIO;
    sp->read_end = sp->committed;
    if (sp->fd < 0)
        return 0;
    ssize_t got = pread(sp->fd, sp->buf, READ_CHUNK, (off_t)sp->committed);
    if (got < 0)
        return KP_EIO;
    read_state rs = {.c = c};
    const char *p = sp->buf, *end = sp->buf + got;
    const char *marker_end = NULL; /* just past the marker of the batch being filled */
    read_mark mark = mark_here(c, p);
    bool full = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break; /* a torn or not yet complete last line */
        size_t len = (size_t)(nl - p);
        if (marker_like(p, len)) {
            if (rs.in_batch)
                end_batch(&rs); /* a short batch: its lines stopped before the next marker */
            else
                end_run(&rs);
            mark = mark_here(c, p);
            char id[KP_BATCH_ID_MAX + 1];
            size_t want;
            if (parse_marker(p, len, id, &want) != 0) {
                c->bad_markers++;
            } else if (c->n + want > c->cap || c->nbatches + 1 > c->cap) {
                full = true; /* the next read starts at this marker */
                break;
            } else {
                rs.in_batch = true;
                memcpy(rs.id, id, sizeof(rs.id));
                rs.want = want;
                rs.lines = 0;
                rs.batch_first = c->n;
                rs.batch_damaged = false;
                marker_end = nl + 1;
            }
        } else {
            if (!rs.in_batch && c->n == c->cap) {
                full = true;
                break;
            }
            if (kp_event_from_json(p, len, &c->events[c->n]) == 0)
                c->n++;
            else if (c->skipped++, rs.in_batch)
                rs.batch_damaged = true;
            if (rs.in_batch && ++rs.lines == rs.want)
                end_batch(&rs);
        }
        p = nl + 1;
        if (!rs.in_batch)
            mark = mark_here(c, p);
    }
    if (rs.in_batch) {
        if (mark.at == sp->buf && got == READ_CHUNK) {
            /* A batch larger than any read: its marker is garbage. Skip the marker alone; its
             * lines come back as events outside a batch. */
            c->n = c->nbatches = c->skipped = 0;
            c->bad_markers = 1;
            sp->read_end = sp->committed + (uint64_t)(marker_end - sp->buf);
            return 0;
        }
        /* Its lines are not all here (the end of the buffer, or of a file being appended): the
         * next read starts at its marker. */
        c->n = mark.n;
        c->skipped = mark.skipped;
        c->bad_markers = mark.bad_markers;
        c->nbatches = mark.nbatches;
    } else {
        end_run(&rs);
        if (!full)
            mark.at = p;
    }
    sp->read_end = sp->committed + (uint64_t)(mark.at - sp->buf);
    if (mark.at == sp->buf && got == READ_CHUNK && !full)
        return skip_overlong_line(sp, &c->skipped);
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
