/* The WebSocket side in a real browser: the test serves tests/browser/kupool.html over HTTP on
 * loopback, headless Chromium loads it, and the page authorizes over WebSocket (ws://, then
 * wss:// against -wss_addr with the test certificate), computes the SHA-256 with WebCrypto and
 * submits; the server must accept it. Chromium is Debian's
 * (scripts/deps.sh --test installs it); if it cannot start, the test fails. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsupport.h"

/* A one-page HTTP server on a thread: GET /kupool.html gets the page, anything else 404. Each
 * request is answered and the connection closed; it runs until the listening socket is shut. */
typedef struct page_server {
    int fd;
    int port;
    char *page;
    size_t page_len;
    int served; /* pages served, read after the thread ended */
    pthread_t thread;
} page_server;

static void *serve_pages(void *arg)
{
    page_server *ps = arg;
    for (;;) {
        int c = accept(ps->fd, NULL, NULL);
        if (c < 0)
            return NULL; /* shut down */
        char req[4096];
        ssize_t n = recv(c, req, sizeof(req) - 1, 0);
        req[n > 0 ? n : 0] = '\0';
        char head[256];
        if (strncmp(req, "GET /kupool.html", 16) == 0) {
            int len = snprintf(head, sizeof(head),
                               "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                               ps->page_len);
            send(c, head, (size_t)len, MSG_NOSIGNAL);
            send(c, ps->page, ps->page_len, MSG_NOSIGNAL);
            ps->served++;
        } else {
            static const char nf[] =
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            send(c, nf, sizeof(nf) - 1, MSG_NOSIGNAL);
        }
        close(c);
    }
}

static void page_server_start(page_server *ps)
{
    memset(ps, 0, sizeof(*ps));
    FILE *f = fopen(KP_BROWSER_PAGE, "rb");
    assert_non_null(f);
    char buf[65536];
    ps->page_len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(ps->page_len > 0 && ps->page_len < sizeof(buf));
    ps->page = malloc(ps->page_len);
    assert_non_null(ps->page);
    memcpy(ps->page, buf, ps->page_len);

    ps->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ps->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ps->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ps->fd, 16), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(ps->fd, (struct sockaddr *)&sa, &sl), 0);
    ps->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&ps->thread, NULL, serve_pages, ps), 0);
}

static int page_server_stop(page_server *ps)
{
    shutdown(ps->fd, SHUT_RDWR); /* wakes accept() with an error */
    pthread_join(ps->thread, NULL);
    close(ps->fd);
    free(ps->page);
    return ps->served;
}

/* The test certificate's SPKI hash (tests/services/tls_certs.sh wrote it): Chromium then accepts
 * exactly that certificate and no other, with no CA installed anywhere. An NSS database with the
 * test CA (certutil) would do too, but needs another package and a profile set up before the
 * start; the SPKI list is one flag, and pins the key the server really uses. */
static void read_spki(char *out, size_t cap)
{
    const char *dir = getenv("KUP_TEST_TLS_DIR");
    if (!dir)
        fail_msg("KUP_TEST_TLS_DIR is not set (run through ctest: fixture tls_certs)");
    char path[512];
    snprintf(path, sizeof(path), "%s/spki.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)cap, f));
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
}

/* Serves the page, opens it in headless Chromium against `ws_port` (over wss:// with `spki`),
 * and waits for the browser's submit in the server's log. */
static void browser_submits(kp_proc *p, int ws_port, const char *spki)
{
    char profile[] = "/tmp/kp-chromium-XXXXXX";
    assert_non_null(mkdtemp(profile));
    page_server ps;
    page_server_start(&ps);
    char url[1024], user_dir[1100], spki_flag[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/kupool.html?port=%d%s", ps.port, ws_port,
             spki ? "&scheme=wss" : "");
    snprintf(user_dir, sizeof(user_dir), "--user-data-dir=%s", profile);
    snprintf(spki_flag, sizeof(spki_flag), "--ignore-certificate-errors-spki-list=%s",
             spki ? spki : "");

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        execl("/usr/bin/chromium", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", "--disable-quic", user_dir, "--remote-debugging-port=0",
              spki ? spki_flag : "--disable-extensions", url, (char *)NULL);
        _exit(127);
    }

    /* The server's debug line for the browser's submit says whether it was accepted. */
    int seen = kp_proc_wait_log(p, "username=\"browser\" job_id=", 60000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        fail_msg("cannot run /usr/bin/chromium (install Debian's chromium)");
    int served = page_server_stop(&ps);
    if (!seen) {
        kp_proc_abandon(p); /* prints the server's log; a live server would keep ctest waiting */
        fail_msg("the browser never submitted (page served %d times)", served);
    }
    assert_true(served >= 1);
    assert_true(kp_proc_wait_log(p, "outcome=ok", 1000));
    assert_int_equal(kp_proc_stop(p, SIGTERM, 15000), 0);
    assert_non_null(strstr(p->log, "stopped accepted=1 "));

    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", profile);
    assert_int_equal(system(cmd), 0);
}

static void test_browser_submits_over_websocket(void **state)
{
    (void)state;
    kp_proc p;
    const char *args[] = {"-ws_addr", "127.0.0.1:0", NULL};
    const char *env[] = {"KUP_LOG_LEVEL=debug", NULL};
    kp_proc_start(&p, args, env);
    browser_submits(&p, kp_proc_listen_port(&p, "ws.server", 5000), NULL);
}

/* wss://: the browser's own TLS stack against the server's -wss_addr. */
static void test_browser_submits_over_wss(void **state)
{
    (void)state;
    char spki[128], cert[512], key[512];
    read_spki(spki, sizeof(spki));
    snprintf(cert, sizeof(cert), "%s/chain.pem", getenv("KUP_TEST_TLS_DIR"));
    snprintf(key, sizeof(key), "%s/server.key", getenv("KUP_TEST_TLS_DIR"));
    kp_proc p;
    const char *args[] = {"-wss_addr", "127.0.0.1:0", "-tls_cert", cert, "-tls_key", key, NULL};
    const char *env[] = {"KUP_LOG_LEVEL=debug", NULL};
    kp_proc_start(&p, args, env);
    browser_submits(&p, kp_proc_listen_port(&p, "wss.server", 5000), spki);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_browser_submits_over_websocket),
        cmocka_unit_test(test_browser_submits_over_wss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
