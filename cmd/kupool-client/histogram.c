#include "histogram.h"

#include <math.h>
#include <string.h>

#define SUB_COUNT (1u << KC_HIST_SUB_BITS)

/* Bucket of `v`: v itself below KC_HIST_LINEAR; above, the octave (position of the top bit)
 * picks a band of SUB_COUNT buckets and the next KC_HIST_SUB_BITS bits pick one inside it. */
static uint32_t bucket_of(uint64_t v)
{
    if (v < KC_HIST_LINEAR)
        return (uint32_t)v;
    unsigned top = 63u - (unsigned)__builtin_clzll(v); /* >= KC_HIST_SUB_BITS + 1 */
    if (top >= KC_HIST_MAX_BIT)
        return KC_HIST_BUCKETS - 1;
    unsigned shift = top - KC_HIST_SUB_BITS;       /* bucket width is 2^shift */
    uint32_t sub = (uint32_t)(v >> shift) - SUB_COUNT; /* 0..SUB_COUNT-1 */
    return KC_HIST_LINEAR + (shift - 1) * SUB_COUNT + sub;
}

/* Lowest value of bucket `b` and its width. */
static void bucket_range(uint32_t b, uint64_t *low, uint64_t *width)
{
    if (b < KC_HIST_LINEAR) {
        *low = b;
        *width = 1;
        return;
    }
    uint32_t shift = (b - KC_HIST_LINEAR) / SUB_COUNT + 1;
    uint32_t sub = (b - KC_HIST_LINEAR) % SUB_COUNT;
    *low = ((uint64_t)SUB_COUNT + sub) << shift;
    *width = (uint64_t)1 << shift;
}

void kc_histogram_reset(kc_histogram *h)
{
    memset(h, 0, sizeof(*h));
}

void kc_histogram_record(kc_histogram *h, uint64_t value)
{
    if (h->count == 0 || value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
    h->count++;
    h->sum += value;
    h->buckets[bucket_of(value)]++;
}

void kc_histogram_merge(kc_histogram *into, const kc_histogram *from)
{
    if (from->count == 0)
        return;
    if (into->count == 0 || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    into->sum += from->sum;
    for (uint32_t i = 0; i < KC_HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
}

uint64_t kc_histogram_percentile(const kc_histogram *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    /* Rank of the sample at p: ceil(p% of count), at least the first sample. */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < KC_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t low, width;
            bucket_range(b, &low, &width);
            uint64_t mid = low + width / 2;
            if (mid < h->min)
                return h->min;
            return mid > h->max ? h->max : mid;
        }
    }
    return h->max;
}

double kc_histogram_mean(const kc_histogram *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
