/* kupool-client: the demo client (one session) or the load generator (-n SESSIONS). Parses the
 * flags, opens the log (KUP_LOG_LEVEL, KUP_LOG_FORMAT, as the server), resolves -addr, runs the
 * mode on one loop. Exit status: 0, 1 (the run failed: see the mode), 2 (bad flags). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "kupool/error.h"
#include "log.h"

#include "client_demo.h"
#include "client_load.h"
#include "client_options.h"
#include "client_run.h"

/* The logger's level and format from the environment, like the server's. Returns 0 or
 * KP_EINVAL after one line naming the variable. */
static int log_options_from_env(kp_log_options *lo)
{
    *lo = (kp_log_options){.level = KP_LOG_INFO, .format = KP_LOG_TEXT};
    const char *level = getenv("KUP_LOG_LEVEL");
    const char *format = getenv("KUP_LOG_FORMAT");
    if (level && level[0] && kp_log_level_parse(level, &lo->level) != 0) {
        fprintf(stderr, "kupool-client: invalid value \"%s\" for KUP_LOG_LEVEL: want "
                        "trace|debug|info|warn|error\n", level);
        return KP_EINVAL;
    }
    if (format && format[0] && kp_log_format_parse(format, &lo->format) != 0) {
        fprintf(stderr, "kupool-client: invalid value \"%s\" for KUP_LOG_FORMAT: want text|json\n",
                format);
        return KP_EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* A server that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    kc_options opt;
    int rc = kc_options_parse(&opt, argc, argv, stdout, stderr);
    if (rc == KC_OPTIONS_HELP || rc == KC_OPTIONS_VERSION)
        return 0;
    if (rc != KC_OPTIONS_RUN)
        return 2;
    kp_log_options lo;
    if (log_options_from_env(&lo) != 0)
        return 2;
    kc_target target;
    if (kc_target_init(&target, &opt, stderr) != 0)
        return 2;
    if (kp_log_open(&lo) != 0)
        return 1;

    uv_loop_t loop;
    uv_loop_init(&loop);
    int status = opt.sessions ? kc_load_run(&loop, &opt, &target)
                              : kc_demo_run(&loop, &opt, &target);
    kc_target_free(&target);
    int leftover = uv_loop_close(&loop);
    if (leftover != 0)
        KP_WARN("client", "loop closed with handles open", KP_QSTR("error", uv_strerror(leftover)));
    kp_log_close();
    return status;
}
