/* UTF-8 rules shared by everything that handles untrusted text: the escapers (log fields, event
 * JSON) and the username checks (authorize, /stats). */
#ifndef KP_UTF8_H
#define KP_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (2..4) of the well-formed multi-byte UTF-8 character (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) at s[0..n), or 0 when s[0] is ASCII or does not start a
 * complete, well-formed character (n > 0). */
size_t kp_utf8_char_len(const unsigned char *s, size_t n);

/* True when s[0..len) is well-formed UTF-8 without C0 controls, DEL or C1 controls: the rule
 * for client text that ends up in logs, JSON answers and terminals (usernames, /stats queries). */
bool kp_utf8_text_ok(const unsigned char *s, size_t len);

#endif
