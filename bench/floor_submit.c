/* The in-process floor of one submit for bench/run.sh scenario (c): the library's own parse,
 * hash check and response formatting over pre-made submit lines, with no socket, no session and
 * no event. What the server spends per accepted submit beyond this is I/O and bookkeeping.
 *
 *   floor_submit [COUNT]      (default 1,000,000)
 *
 * Prints: floor_submit submits=N seconds=S ns_per_submit=X */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "hasher.h"

#define LINES 1024

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 1000000;
    if (count <= 0) {
        fprintf(stderr, "usage: floor_submit [COUNT]\n");
        return 2;
    }
    kp_hasher h;
    if (kp_hasher_init(&h) != 0)
        return 1;
    const char *server_nonce = "3f1c0e9a8b7d6c5e4f3a2b1c0d9e8f7a";
    static char lines[LINES][256];
    static size_t lens[LINES];
    for (int i = 0; i < LINES; i++) { /* what kupool-client sends: fresh nonce, right result */
        char nonce[17], result[65];
        snprintf(nonce, sizeof(nonce), "%016x", (unsigned)i * 2654435761u);
        kp_hasher_hex(&h, server_nonce, strlen(server_nonce), nonce, strlen(nonce), result);
        lens[i] = (size_t)snprintf(lines[i], sizeof(lines[i]),
                                   "{\"id\":%d,\"method\":\"submit\",\"params\":{\"job_id\":7,"
                                   "\"client_nonce\":\"%s\",\"result\":\"%s\"}}",
                                   i + 2, nonce, result);
    }
    char out[KP_RESPONSE_MAX];
    static char scratch[256]; /* kp_request_parse's decoded strings: as large as a line */
    size_t written = 0;
    long ok = 0;
    double start = now_s();
    for (long n = 0; n < count; n++) {
        int i = (int)(n % LINES);
        kp_request req;
        if (kp_request_parse(lines[i], lens[i], scratch, sizeof(scratch), &req) != KP_OUTCOME_OK)
            return 1;
        kp_submit_params p;
        kp_outcome oc = kp_submit_params_get(&req, &p);
        if (oc == KP_OUTCOME_OK &&
            kp_hasher_check(&h, server_nonce, strlen(server_nonce), p.client_nonce,
                            p.client_nonce_len, p.result, p.result_len))
            ok++;
        written += kp_format_response(out, req.has_id, req.id, oc);
        kp_request_free(&req);
    }
    double seconds = now_s() - start;
    kp_hasher_free(&h);
    if (ok != count || written == 0) {
        fprintf(stderr, "floor_submit: %ld of %ld checks passed\n", ok, count);
        return 1;
    }
    printf("floor_submit submits=%ld seconds=%.3f ns_per_submit=%.0f\n", count, seconds,
           seconds * 1e9 / (double)count);
    return 0;
}
