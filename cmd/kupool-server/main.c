/* kupool-server: parse the configuration, open the log, serve until SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <uv.h>

#include "kupool/config.h"
#include "kupool/error.h"
#include "log.h"
#include "app.h"

int main(int argc, char **argv)
{
    /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    kp_config cfg;
    int rc = kp_config_parse(&cfg, argc, argv, stdout, stderr);
    if (rc == KP_CONFIG_HELP || rc == KP_CONFIG_VERSION)
        return 0;
    if (rc != KP_CONFIG_RUN)
        return 2;

    kp_log_options lo = {
        .level = cfg.log_level,
        .format = cfg.log_format,
        .file = cfg.log_file,
        .max_bytes = (uint64_t)cfg.log_max_mb * 1024u * 1024u,
        .keep = cfg.log_keep,
    };
    if (kp_log_open(&lo) != 0)
        return 2;

    uv_loop_t loop;
    uv_loop_init(&loop);
    kp_app *app = NULL;
    rc = kp_app_open(&loop, &cfg, &app);
    int status;
    if (rc != 0) {
        status = rc == KP_EINVAL ? 2 : 1;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        status = kp_app_free(app);
    }
    int leftover = uv_loop_close(&loop);
    if (leftover != 0)
        KP_WARN("app.server", "loop closed with handles open",
                KP_QSTR("error", uv_strerror(leftover)));
    kp_log_close();
    return status;
}
