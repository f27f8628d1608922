/* A log-linear latency histogram (HDR style) in microseconds.
 *
 * Values below 256 µs have a bucket each; above, every power of two is split into 128 equal
 * buckets, so a bucket is at most 1/128 of its values wide and a percentile read from it (its
 * midpoint) is within 0.4% of the true sample. Fixed size (about 36 KiB), no allocation after
 * init, O(1) record: a load generator records every response without keeping a sample array. */
#ifndef KC_HISTOGRAM_H
#define KC_HISTOGRAM_H

#include <stdint.h>

#define KC_HIST_SUB_BITS 7                        /* 128 buckets per power of two */
#define KC_HIST_LINEAR (2u << KC_HIST_SUB_BITS)   /* 0..255: exact */
#define KC_HIST_MAX_BIT 40                        /* values up to 2^40 µs (12 days) */
#define KC_HIST_BUCKETS (KC_HIST_LINEAR + (KC_HIST_MAX_BIT - KC_HIST_SUB_BITS - 1) * (1u << KC_HIST_SUB_BITS))

typedef struct kc_histogram {
    uint64_t count;
    uint64_t sum;  /* for the mean */
    uint64_t min, max; /* exact */
    uint64_t buckets[KC_HIST_BUCKETS];
} kc_histogram;

void kc_histogram_reset(kc_histogram *h);

/* Records one value; values beyond 2^40 land in the last bucket (max stays exact). */
void kc_histogram_record(kc_histogram *h, uint64_t value);

/* Adds every sample of `from` to `into`. */
void kc_histogram_merge(kc_histogram *into, const kc_histogram *from);

/* The value at percentile p (0 < p <= 100): the midpoint of the bucket holding the sample of that
 * rank, clamped to [min, max]. 0 for an empty histogram. */
uint64_t kc_histogram_percentile(const kc_histogram *h, double p);

/* Mean of the recorded values, 0 when empty. */
double kc_histogram_mean(const kc_histogram *h);

#endif
