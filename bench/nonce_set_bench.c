/* The duplicate check alone: ns per accepted submit's contains + add while per-session sets grow,
 * the previous implementation (bench/nonce_set_old.h, commit 3304cda) against src/proto/nonce_set.c
 * on the same nonces in the same run.
 *
 *   nonce_set_bench [big]     ("big" adds the 100 sets x 100k row: ~1 GiB, about a minute)
 *
 * Nonces are made as kupool-client makes them (cmd/kupool-client/client_submit.c): 16 lowercase
 * hex chars of a SplitMix64 sequence, so each is fresh and the set only grows, as it does with the
 * rate limit off. A row "S x N" fills S sets from empty to N entries each, taking the sets in
 * turn like the server's loop takes sessions (S > 1 is the realistic case: every session's set
 * competes for the cache), and reports the mean over the whole fill, growth included. Each row
 * runs twice:
 *   bare   contains then add, back to back;
 *   +sha   what kp_submit_check does around them: the SHA-256 result check between the lookup
 *          and the add (old), or prefetch, SHA-256 check, contains, add (new). The result passed
 *          is wrong, so the hex compare stops at its first byte; both sides pay the same.
 * Each figure is the best of three runs: the machine is shared and the best is the least
 * disturbed. Prints one line per row and variant: rows=... old_ns=... new_ns=... new/old=... */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hasher.h"
#include "nonce_set.h"
#include "nonce_set_old.h"

#define NONCE_LEN 16
#define RUNS 3
#define SERVER_NONCE "3f1c0e9a8b7d6c5e4f3a2b1c0d9e8f7a"

static const char hex_digits[] = "0123456789abcdef";
static const char wrong_result[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* kupool-client's nonces: SplitMix64, 16 hex chars, no NUL (nonces[i * NONCE_LEN]). */
static char *make_nonces(size_t n, uint64_t seed)
{
    char *out = malloc(n * NONCE_LEN);
    if (!out)
        return NULL;
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        z ^= z >> 31;
        for (int c = NONCE_LEN - 1; c >= 0; c--) {
            out[i * NONCE_LEN + (size_t)c] = hex_digits[z & 0xf];
            z >>= 4;
        }
    }
    return out;
}

typedef struct row {
    size_t sets, per_set;
} row;

typedef struct ctx {
    const char *nonces;
    kp_hasher *hasher;
    long dups; /* contains() said yes: must stay 0, or the run is void */
    long fails;
} ctx;

/* One fill with the old implementation; returns ns per contains + add. */
static double run_old(ctx *c, row r, int with_sha)
{
    old_sets *sets = calloc(r.sets, sizeof *sets);
    if (!sets)
        return -1;
    double t0 = now_ns();
    size_t k = 0;
    for (size_t n = 0; n < r.per_set; n++) {
        for (size_t s = 0; s < r.sets; s++, k++) {
            const char *nonce = c->nonces + k * NONCE_LEN;
            if (old_contains(&sets[s], 7, nonce, NONCE_LEN))
                c->dups++;
            if (with_sha)
                c->fails += kp_hasher_check(c->hasher, SERVER_NONCE, 32, nonce, NONCE_LEN,
                                            wrong_result, 64);
            c->fails += old_add(&sets[s], 7, nonce, NONCE_LEN) != 0;
        }
    }
    double ns = (now_ns() - t0) / (double)k;
    for (size_t s = 0; s < r.sets; s++)
        old_free(&sets[s]);
    free(sets);
    return ns;
}

/* One fill with src/proto/nonce_set.c, in kp_submit_check's order when with_sha. */
static double run_new(ctx *c, row r, int with_sha)
{
    kp_nonce_sets *sets = calloc(r.sets, sizeof *sets);
    if (!sets)
        return -1;
    double t0 = now_ns();
    size_t k = 0;
    for (size_t n = 0; n < r.per_set; n++) {
        for (size_t s = 0; s < r.sets; s++, k++) {
            const char *nonce = c->nonces + k * NONCE_LEN;
            if (with_sha) {
                kp_nonce_sets_prefetch(&sets[s], 7, nonce, NONCE_LEN);
                c->fails += kp_hasher_check(c->hasher, SERVER_NONCE, 32, nonce, NONCE_LEN,
                                            wrong_result, 64);
            }
            if (kp_nonce_sets_contains(&sets[s], 7, nonce, NONCE_LEN))
                c->dups++;
            c->fails += kp_nonce_sets_add(&sets[s], 7, nonce, NONCE_LEN) != 0;
        }
    }
    double ns = (now_ns() - t0) / (double)k;
    for (size_t s = 0; s < r.sets; s++)
        kp_nonce_sets_free(&sets[s]);
    free(sets);
    return ns;
}

static double best(double (*run)(ctx *, row, int), ctx *c, row r, int with_sha)
{
    double b = -1;
    for (int i = 0; i < RUNS; i++) {
        double ns = run(c, r, with_sha);
        if (ns >= 0 && (b < 0 || ns < b))
            b = ns;
    }
    return b;
}

int main(int argc, char **argv)
{
    row rows[] = {{1, 1000}, {1, 100000}, {1, 1000000}, {100, 10000}, {100, 100000}};
    size_t nrows = sizeof rows / sizeof rows[0];
    if (argc < 2 || strcmp(argv[1], "big") != 0)
        nrows--; /* the last row is the big one */
    size_t most = 0;
    for (size_t i = 0; i < nrows; i++)
        if (rows[i].sets * rows[i].per_set > most)
            most = rows[i].sets * rows[i].per_set;

    kp_hasher hasher;
    if (kp_hasher_init(&hasher) != 0)
        return 1;
    ctx c = {.nonces = make_nonces(most, 0x6b75706f6f6cu), .hasher = &hasher};
    if (!c.nonces)
        return 1;
    for (size_t i = 0; i < nrows; i++) {
        for (int with_sha = 0; with_sha <= 1; with_sha++) {
            /* Alternate which one runs first, so neither always inherits the other's heap. */
            double o, n;
            if ((i + (size_t)with_sha) % 2 == 0) {
                o = best(run_old, &c, rows[i], with_sha);
                n = best(run_new, &c, rows[i], with_sha);
            } else {
                n = best(run_new, &c, rows[i], with_sha);
                o = best(run_old, &c, rows[i], with_sha);
            }
            printf("rows=%zux%zu variant=%s old_ns=%.1f new_ns=%.1f new/old=%.2f\n", rows[i].sets,
                   rows[i].per_set, with_sha ? "+sha" : "bare", o, n, o > 0 ? n / o : 0.0);
            fflush(stdout);
        }
    }
    free((void *)c.nonces);
    kp_hasher_free(&hasher);
    if (c.dups || c.fails) {
        fprintf(stderr, "nonce_set_bench: %ld false duplicates, %ld failures\n", c.dups, c.fails);
        return 1;
    }
    return 0;
}
