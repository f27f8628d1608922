/* The one JSON string escaper (RFC 8259), for every JSON KuPool writes by hand: log lines
 * (src/log.c) and event messages (src/event.c). cJSON users (admin, client) escape through cJSON.
 *
 * Rules: '"' and '\' are escaped; \b \f \n \r \t by name; other bytes below 0x20 and DEL as
 * \u00XX (lowercase hex); well-formed UTF-8 passes through unchanged; every byte that is not part
 * of a well-formed UTF-8 character becomes \ufffd (U+FFFD REPLACEMENT CHARACTER), so the output
 * is always valid JSON and valid UTF-8 whatever the input, NUL bytes included. */
#ifndef KP_JSON_ESCAPE_H
#define KP_JSON_ESCAPE_H

#include <stddef.h>

enum { KP_JSON_ESCAPE_MAX = 6 }; /* longest escape of one input character ("\u001f") */

/* Escapes whole characters of s[0..n) (no surrounding quotes) into buf[cap], as many as fit; a
 * character is never cut. Returns the bytes written (no NUL is added) and sets *used to the input
 * bytes consumed: *used == n means everything fit. */
size_t kp_json_escape(char *buf, size_t cap, const char *s, size_t n, size_t *used);

#endif
