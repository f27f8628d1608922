/* The logger's line formats, apart from its writer thread: text and JSON renderings of a line's
 * typed fields (log_format.c). Pure functions over the caller's buffer and a given time. */
#ifndef KP_LOG_FORMAT_H
#define KP_LOG_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

enum {
    KP_LOG_LINE_BYTES = 4096, /* longest line, "\n" included; longer ones are truncated */
    KP_LOG_MODULE_MAX = 128   /* longest module name kept in a line */
};

/* `level` within KP_LOG_TRACE..KP_LOG_ERROR. */
kp_log_level kp_log_clamp_level(kp_log_level level);

/* Formats one complete line ("\n" included, no NUL) stamped `unix_ms` into
 * line[KP_LOG_LINE_BYTES] and returns its length. A NULL module prints as "-", a NULL message
 * as "". */
size_t kp_log_format_line(char *line, kp_log_format format, int64_t unix_ms, kp_log_level level,
                          const char *module, const char *msg, const kp_log_field *fields,
                          size_t n_fields);

#endif
