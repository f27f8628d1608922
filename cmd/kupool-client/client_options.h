/* kupool-client flags (SPEC §7), in Go style like the server's: -name value, -name=value,
 * --name value; a bool flag alone means true and takes a value only after '='; "--" ends the
 * flags. -h lists every flag. */
#ifndef KC_CLIENT_OPTIONS_H
#define KC_CLIENT_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "client_addr.h"
#include "kupool/event.h"

/* Shares of deliberately bad submits in load mode, each in [0, 1], summing to at most 1. */
typedef struct kc_mix {
    double duplicate; /* resend the last accepted nonce: "Duplicate submission" */
    double invalid;   /* a wrong result: "Invalid result" */
    double frequent;  /* a second submit right behind the first: "Submission too frequent" */
} kc_mix;

typedef struct kc_options {
    kc_addr addr;          /* -addr */
    char username[KP_USERNAME_MAX + 1]; /* -username; load mode appends "-<session index>" */
    uint32_t sessions;     /* -n: 0 = demo mode (one session) */
    uint64_t duration_ms;  /* -duration: 0 = until SIGINT/SIGTERM */
    bool duration_set;
    double rate;           /* -rate: submits per second per session; 0 = idle (never submit) */
    bool rate_max;         /* -rate max: no pacing, -pipeline submits in flight at all times */
    uint32_t pipeline;     /* -pipeline: submits in flight per session */
    uint32_t connect_rate; /* -connect_rate: new connections per second in the ramp */
    bool has_src;          /* -src given */
    kc_src_range src;
    kc_mix mix;            /* -mix */
    bool json;             /* -json */
    /* tls:// and wss:// */
    char tls_ca[1024];     /* -tls_ca: CA certificates (PEM) to verify the server; "" = system */
    bool tls_insecure;     /* -tls_insecure: no verification (self-signed test certificates) */
    double hashrate;       /* -hashrate per session (SPEC §8); 0 = as fast as one core goes */
    bool hashrate_set;
    uint64_t min_submit_interval_ms; /* -min_submit_interval: the server's rate limit */
} kc_options;

enum kc_options_result { KC_OPTIONS_RUN = 0, KC_OPTIONS_HELP = 1, KC_OPTIONS_VERSION = 2 };

/* Parses argv over the defaults. Returns a kc_options_result, or KP_EINVAL after printing one
 * line naming the bad flag to `err` (exit status 2). */
int kc_options_parse(kc_options *o, int argc, char **argv, FILE *out, FILE *err);

/* Parses "duplicate=0.05,invalid=0.05,frequent=0.02" (any subset, any order). Returns 0 or
 * KP_EINVAL with *why set. */
int kc_mix_parse(const char *text, kc_mix *out, const char **why);

#endif
