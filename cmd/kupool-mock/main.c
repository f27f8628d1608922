/* kupool-mock: parse the command line (Go style, like the other programs), open the log, run
 * the server or the client. A bad command line is one line on stderr and exit status 2. */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "kupool/config.h"
#include "kupool/error.h"
#include "kupool/version.h"
#include "log.h"
#include "mock.h"
#include "net_addr.h"

#define PROG "kupool-mock"
#define DEFAULT_LISTEN ":8000"
#define DEFAULT_WS_TARGET "ws://localhost:8000"
#define DEFAULT_TCP_TARGET "localhost:8000"

static const char USAGE[] =
    "usage: " PROG " srv [-p tcp|ws] [-a ADDR]\n"
    "       " PROG " cli [-p tcp|ws] [-a ADDR]\n"
    "\n"
    "The transport demo: srv greets each client with \"" KM_GREETING "\" five times and closes\n"
    "the connection; cli prints every message it receives, one line each on stdout, and exits\n"
    "when the server closes (status 0 after a clean close, 1 when it cannot connect or the\n"
    "connection fails). TCP messages are lines; WebSocket messages are text frames.\n"
    "\n"
    "  -p tcp|ws   transport (default ws; cli takes it from the address's scheme if given)\n"
    "  -a ADDR     srv: listen address host:port, :port or [v6]:port (default " DEFAULT_LISTEN ")\n"
    "              cli: ws://host:port/path, tcp://host:port or host:port\n"
    "              (default " DEFAULT_WS_TARGET ", or " DEFAULT_TCP_TARGET " with -p tcp)\n"
    "  -h          this help\n"
    "  -version    print the version\n"
    "\n"
    "Logs go to stderr; KUP_LOG_LEVEL=trace|debug|info|warn|error, KUP_LOG_FORMAT=text|json.\n";

/* What the flags after the command leave: the table below fills it. */
typedef struct km_flag_values {
    km_proto proto;
    char addr[2048];
} km_flag_values;

static const char *const proto_names[] = {[KM_TCP] = "tcp", [KM_WS] = "ws"};

_Static_assert(sizeof(km_proto) == sizeof(int), "the flag engine stores a choice as an int");

/* The flag table. -h prints USAGE instead of kp_flags_usage(): mock's help is prose about its
 * two commands, and its output is part of what the tests pin down. */
static const kp_flag_spec mock_flags[] = {
    {.name = "p", KP_FLAG_ENUM_FIELD(km_flag_values, proto, proto_names), .def = "ws",
     .arg = "tcp|ws", .help = "transport"},
    {.name = "a", KP_FLAG_STRING_FIELD(km_flag_values, addr), .arg = "ADDR",
     .help = "srv: listen address; cli: the address to dial"},
    {.name = "h", .alias = "help", .type = KP_FLAG_HELP, .help = "this help"},
    {.name = "version", .type = KP_FLAG_VERSION, .help = "print the version"},
};
#define MOCK_FLAG_COUNT (sizeof(mock_flags) / sizeof(mock_flags[0]))

typedef struct km_args {
    bool server;
    bool proto_given;
    km_proto proto;
    const char *addr; /* NULL: the default; else points into `values` */
    km_flag_values values;
} km_args;

/* One line naming the problem, exit status 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see " PROG " -h)\n");
    va_end(ap);
    return 2;
}

static bool header_safe(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* "ws://host:port/path", "tcp://host:port" or "host:port[/path]" into *t; *why on failure. */
static int parse_target(const char *text, const km_args *args, km_target *t, const char **why)
{
    memset(t, 0, sizeof(*t));
    t->proto = args->proto;
    const char *rest = text;
    const char *sep = strstr(text, "://");
    if (sep) {
        size_t slen = (size_t)(sep - text);
        km_proto scheme;
        if (slen == 2 && strncmp(text, "ws", 2) == 0) {
            scheme = KM_WS;
        } else if (slen == 3 && strncmp(text, "tcp", 3) == 0) {
            scheme = KM_TCP;
        } else if (slen == 3 && strncmp(text, "wss", 3) == 0) {
            *why = "wss:// (TLS) is not supported";
            return KP_EINVAL;
        } else {
            *why = "unknown scheme: want ws:// or tcp://";
            return KP_EINVAL;
        }
        if (args->proto_given && scheme != args->proto) {
            *why = "the address's scheme contradicts -p";
            return KP_EINVAL;
        }
        t->proto = scheme;
        rest = sep + 3;
    }
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *path = slash ? slash : "/";
    if (!header_safe(text, strlen(text))) {
        *why = "spaces or control characters";
        return KP_EINVAL;
    }
    if (t->proto == KM_TCP && slash && slash[1] != '\0') {
        *why = "a TCP address has no path";
        return KP_EINVAL;
    }
    if (strlen(path) >= sizeof(t->path)) {
        *why = "path too long";
        return KP_EINVAL;
    }
    snprintf(t->path, sizeof(t->path), "%s", path);

    char auth[sizeof(t->host)];
    if (alen == 0 || alen >= sizeof(auth)) {
        *why = "want host:port";
        return KP_EINVAL;
    }
    memcpy(auth, rest, alen);
    auth[alen] = '\0';
    if (strchr(auth, '@')) {
        *why = "user information (user@host) is not supported";
        return KP_EINVAL;
    }
    /* A ws:// URL may leave out the port (80); everything else needs one. */
    const char *colon = strrchr(auth, ':');
    const char *bracket = strrchr(auth, ']');
    bool has_port = colon && (!bracket || colon > bracket);
    if (!has_port && sep && t->proto == KM_WS) {
        size_t n = strlen(auth);
        if (auth[0] == '[' && (n < 3 || auth[n - 1] != ']')) {
            *why = "bad bracketed IPv6 address";
            return KP_EINVAL;
        }
        if (auth[0] == '[')
            snprintf(t->host, sizeof(t->host), "%.*s", (int)(n - 2), auth + 1);
        else
            snprintf(t->host, sizeof(t->host), "%s", auth);
        t->port = 80;
        snprintf(t->host_header, sizeof(t->host_header), "%s", auth);
        return 0;
    }
    if (kp_split_host_port(auth, t->host, sizeof(t->host), &t->port) != 0 || t->port < 1) {
        *why = "want host:port with a port in 1..65535 ([v6]:port for IPv6)";
        return KP_EINVAL;
    }
    if (t->host[0] == '\0') /* ":8000" dials this machine, as Go's net.Dial does */
        snprintf(t->host, sizeof(t->host), "127.0.0.1");
    if (strchr(t->host, ':'))
        snprintf(t->host_header, sizeof(t->host_header), "[%s]:%d", t->host, t->port);
    else
        snprintf(t->host_header, sizeof(t->host_header), "%s:%d", t->host, t->port);
    return 0;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, km_args *args)
{
    memset(args, 0, sizeof(*args));
    args->proto = KM_WS;
    if (argc < 2)
        return usage_error("missing command: want srv or cli");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "-help") == 0 || strcmp(cmd, "--help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "-version") == 0 || strcmp(cmd, "--version") == 0) {
        printf(PROG " %s\n", KP_VERSION);
        return 0;
    }
    if (strcmp(cmd, "srv") == 0)
        args->server = true;
    else if (strcmp(cmd, "cli") != 0)
        return usage_error("unknown command \"%s\": want srv or cli", cmd);

    kp_flags fs;
    kp_flags_begin(&fs, mock_flags, MOCK_FLAG_COUNT, &args->values);
    switch (kp_flags_parse_args(&fs, argc, argv, 2)) {
    case KP_FLAGS_RUN:
        break;
    case KP_FLAGS_HELP:
        fputs(USAGE, stdout);
        return 0;
    case KP_FLAGS_VERSION:
        printf(PROG " %s\n", KP_VERSION);
        return 0;
    default: /* the engine's line already says what to fix */
        fprintf(stderr, PROG ": %s\n", fs.error);
        return 2;
    }
    args->proto = args->values.proto;
    args->proto_given = fs.src[kp_flags_find(&fs, "p")] != KP_FLAG_FROM_DEFAULT;
    if (fs.src[kp_flags_find(&fs, "a")] != KP_FLAG_FROM_DEFAULT)
        args->addr = args->values.addr;
    return -1;
}

static int open_log(void)
{
    kp_log_options lo = {.level = KP_LOG_INFO, .format = KP_LOG_TEXT};
    const char *level = getenv("KUP_LOG_LEVEL");
    const char *format = getenv("KUP_LOG_FORMAT");
    if (level && level[0] && kp_log_level_parse(level, &lo.level) != 0)
        return usage_error("invalid KUP_LOG_LEVEL \"%s\": want trace, debug, info, warn or error",
                           level);
    if (format && format[0] && kp_log_format_parse(format, &lo.format) != 0)
        return usage_error("invalid KUP_LOG_FORMAT \"%s\": want text or json", format);
    return kp_log_open(&lo) == 0 ? -1 : 2;
}

int main(int argc, char **argv)
{
    /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    km_args args;
    int status = parse_args(argc, argv, &args);
    if (status >= 0)
        return status;

    km_listen listen = {.proto = args.proto};
    km_target target;
    if (args.server) {
        const char *addr = args.addr ? args.addr : DEFAULT_LISTEN;
        if (kp_split_host_port(addr, listen.host, sizeof(listen.host), &listen.port) != 0)
            return usage_error("invalid value \"%s\" for flag -a: want host:port, :port or [v6]:port",
                               addr);
    } else {
        const char *addr = args.addr ? args.addr
                           : args.proto == KM_TCP ? DEFAULT_TCP_TARGET
                                                  : DEFAULT_WS_TARGET;
        const char *why = NULL;
        if (parse_target(addr, &args, &target, &why) != 0)
            return usage_error("invalid value \"%s\" for flag -a: %s", addr, why);
    }

    if ((status = open_log()) >= 0)
        return status;
    status = args.server ? km_server_run(&listen) : km_client_run(&target);
    kp_log_close();
    return status;
}

const char *km_module(km_proto proto, int server)
{
    if (proto == KM_WS)
        return server ? "ws.server" : "ws.client";
    return server ? "tcp.server" : "tcp.client";
}
