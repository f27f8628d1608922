/* The WebSocket side in a real browser: headless Chromium opens tests/browser/kupool.html, which
 * authorizes over WebSocket, computes the SHA-256 with WebCrypto and submits; the server must
 * accept it. Chromium is Debian's (scripts/deps.sh --test installs it); if it cannot start, the
 * test fails. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsupport.h"

static int ws_port_of(kp_proc *p)
{
    assert_true(kp_proc_wait_log(p, "module=ws.server", 5000));
    const char *line = strstr(p->log, "module=ws.server");
    while (line > p->log && line[-1] != '\n')
        line--;
    const char *listen = strstr(line, "listen=\"127.0.0.1:");
    assert_non_null(listen);
    return atoi(listen + strlen("listen=\"127.0.0.1:"));
}

static void test_browser_submits_over_websocket(void **state)
{
    kp_proc p;
    const char *args[] = {"-ws_addr", "127.0.0.1:0", NULL};
    const char *env[] = {"KUP_LOG_LEVEL=debug", NULL};
    kp_proc_start(&p, args, env);

    char profile[] = "/tmp/kp-chromium-XXXXXX";
    assert_non_null(mkdtemp(profile));
    char url[1024], user_dir[1100];
    snprintf(url, sizeof(url), "file://%s?port=%d", KP_BROWSER_PAGE, ws_port_of(&p));
    snprintf(user_dir, sizeof(user_dir), "--user-data-dir=%s", profile);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        execl("/usr/bin/chromium", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", "--disable-quic", user_dir, "--remote-debugging-port=0", url,
              (char *)NULL);
        _exit(127);
    }

    /* The server's debug line for the browser's submit says whether it was accepted. */
    int seen = kp_proc_wait_log(&p, "username=\"browser\" job_id=", 60000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        fail_msg("cannot run /usr/bin/chromium (install Debian's chromium)");
    if (!seen)
        fail_msg("the browser never submitted; server log:\n%s", p.log);
    assert_true(kp_proc_wait_log(&p, "outcome=ok", 1000));
    assert_int_equal(kp_proc_stop(&p, SIGTERM, 15000), 0);
    assert_non_null(strstr(p.log, "stopped accepted=1 "));

    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", profile);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_browser_submits_over_websocket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
