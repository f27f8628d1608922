/* libFuzzer harness: event ids as a queue may deliver them (any bytes: another producer, a
 * corrupt message), through the PostgreSQL store's dedupe plan (src/backends/pg/pg_ranges.c)
 * against ranges "read" from the input too.
 *
 * Input: lines. Lines before an empty line are event ids (cut to KP_EVENT_ID_MAX bytes); each
 * line after it is "lo hi" for a range of the first KuPool node in the batch. Properties beyond
 * "no crash, no leak, no UB": an id kp_pg_seq_id accepts is written back byte for byte from its
 * node and sequence (one spelling per id, so two ids never share a slot); every event ends
 * FOREIGN, REPEAT, SEEN or FRESH, FRESH only outside every range read; and the rows written
 * are valid (1 <= lo <= hi <= KP_PG_SEQ_MAX), never delete a key they upsert. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kupool/error.h"
#include "pg/pg_ranges.h"

enum { MAX_EVENTS = 256, MAX_RANGES = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kp_event evs[MAX_EVENTS];
    kp_pg_range read[MAX_RANGES];
    size_t n = 0, nr = 0, pos = 0;
    bool ids = true;
    while (pos < size && n < MAX_EVENTS) {
        size_t end = pos;
        while (end < size && data[end] != '\n')
            end++;
        size_t len = end - pos;
        if (ids && len == 0) {
            ids = false;
        } else if (ids) {
            memset(&evs[n], 0, sizeof(evs[n]));
            size_t k = len < KP_EVENT_ID_MAX ? len : KP_EVENT_ID_MAX;
            memcpy(evs[n].event_id, data + pos, k);
            evs[n].event_id[strnlen(evs[n].event_id, k)] = '\0';
            n++;
        } else if (nr < MAX_RANGES) {
            char line[64];
            size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
            memcpy(line, data + pos, k);
            line[k] = '\0';
            long long lo, hi;
            if (sscanf(line, "%lld %lld", &lo, &hi) == 2)
                read[nr++] = (kp_pg_range){0, lo, hi};
        }
        pos = end + 1;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t node, seq;
        if (!kp_pg_seq_id(evs[i].event_id, &node, &seq))
            continue;
        char back[64];
        snprintf(back, sizeof back, "%016" PRIx64 "-%" PRId64, (uint64_t)node, seq);
        if (strcmp(back, evs[i].event_id) != 0)
            abort();
    }
    kp_pg_dedupe d = {0};
    if (kp_pg_dedupe_plan(&d, evs, n) != 0)
        abort();
    if (d.nlocks > 0)
        for (size_t r = 0; r < nr; r++)
            read[r].node = d.locks[0];
    int rc = kp_pg_dedupe_resolve(&d, read, nr);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            if (d.fate[i] > KP_PG_FRESH)
                abort();
            if (d.fate[i] != KP_PG_FRESH)
                continue;
            for (size_t r = 0; r < nr; r++)
                if (read[r].node == d.node[i] && read[r].lo <= d.seq[i] &&
                    d.seq[i] <= read[r].hi)
                    abort(); /* counted although a range holds it */
        }
        for (size_t u = 0; u < d.nupserts; u++) {
            const kp_pg_range *x = &d.upserts[u];
            if (x->lo < 1 || x->lo > x->hi || x->hi > KP_PG_SEQ_MAX)
                abort();
            for (size_t k = 0; k < d.ndeletes; k++)
                if (d.deletes[k].node == x->node && d.deletes[k].lo == x->lo)
                    abort();
        }
    } else if (rc != KP_EINVAL) {
        abort();
    }
    kp_pg_dedupe_free(&d);
    return 0;
}
