/* Test support: start the real kupool-server binary, talk to it over line-oriented sockets.
 *
 * Blocking sockets with poll()-based timeouts: tests are sequential scripts, so plain blocking
 * code reads best. Every function fails the current cmocka test on error unless it says it
 * returns one. */
#ifndef KP_TESTSUPPORT_H
#define KP_TESTSUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

typedef struct kp_proc {
    pid_t pid;
    int log_fd;        /* read end of the server's stderr */
    char log[1 << 20]; /* everything read from stderr so far, NUL-terminated */
    size_t log_len;
    int port;          /* the TCP port from the "started" line */
} kp_proc;

/* Starts kupool-server with `-addr 127.0.0.1:0` plus the NULL-terminated extra args, waits for
 * its "started" line and fills proc->port. `env` is a NULL-terminated list of "K=V" added to the
 * environment (may be NULL). */
void kp_proc_start(kp_proc *proc, const char *const *args, const char *const *env);

/* Starts `bin args...` (args NULL-terminated, may be NULL). Each env entry "K=V" is set in the
 * child, a bare "K" is unset. With out_fd / err_fd, that stream goes to a pipe whose read end is
 * stored there; without, it is inherited. Returns the pid; the child exits 127 if exec fails. */
pid_t kp_spawn(const char *bin, const char *const *args, const char *const *env, int *out_fd,
               int *err_fd);

/* Waits for the "started" line of `module` (e.g. "http.admin") and returns the port of its
 * listen="host:port"; fails the test if none appears within timeout_ms. */
int kp_proc_listen_port(kp_proc *proc, const char *module, int timeout_ms);

/* Reads stderr until `needle` appears in the log (or timeout_ms passes). Returns 1 if found. */
int kp_proc_wait_log(kp_proc *proc, const char *needle, int timeout_ms);

/* Sends `sig` and waits up to timeout_ms for exit; returns the exit status (or -1 on timeout,
 * after which the process is killed). Reads the rest of stderr into the log. */
int kp_proc_stop(kp_proc *proc, int sig, int timeout_ms);

/* For a fixture's teardown: if the process still runs (the test failed before stopping it), prints
 * its log to stderr, SIGKILLs and reaps it. A no-op for a stopped process. */
void kp_proc_abandon(kp_proc *proc);

/* Connects to 127.0.0.1:port; returns the fd (or -1 when `may_fail` and connect failed). */
int kp_connect(int port, int may_fail);

/* The same from the local IPv4 address `src` (e.g. "127.0.0.2": every 127/8 address is local on
 * Linux), so a test can play several clients; NULL is the kernel's choice. */
int kp_connect_from(const char *src, int port, int may_fail);

/* Sends all of data, or returns -1 when the peer is gone (reset, closed); 0 on success. For a
 * write that may meet a connection the server already closed. */
int kp_try_send(int fd, const char *data, size_t len);

/* Writes all bytes. */
void kp_send(int fd, const char *data, size_t len);
void kp_sendf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads one line (without "\n") into buf using a per-fd buffer kept by testsupport.c. Returns
 * its length, -1 on timeout, -2 on EOF/reset. */
int kp_recv_line(int fd, char *buf, size_t cap, int timeout_ms);

/* Like kp_recv_line but fails the test unless a line arrives. */
void kp_expect_line(int fd, char *buf, size_t cap, int timeout_ms);

/* Returns 1 when the peer closed the connection within timeout_ms (after draining lines). */
int kp_wait_closed(int fd, int timeout_ms);

/* Closes fd and forgets its buffer. */
void kp_close(int fd);

/* hex(sha256(a || b)) into out[65]. */
void kp_test_result(const char *a, const char *b, char out[65]);

/* Monotonic milliseconds. */
uint64_t kp_test_now_ms(void);

/* GET `path` from the admin endpoint on 127.0.0.1:port (HTTP/1.1, Connection: close, read to
 * EOF, at most 256 KiB). Returns the body, malloc'd (the caller frees it), and the status code
 * in *status unless status is NULL. */
char *kp_http_get(int port, const char *path, int *status);

/* The value of `series` (a name with its labels) in the admin endpoint's /metrics; fails the
 * test when the series is not there. */
double kp_metric(int port, const char *series);

#endif
