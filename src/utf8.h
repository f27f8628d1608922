/* UTF-8 decoding step shared by the escapers of untrusted text (log fields, event JSON). */
#ifndef KP_UTF8_H
#define KP_UTF8_H

#include <stddef.h>

/* Length (2..4) of the well-formed multi-byte UTF-8 character (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) at s[0..n), or 0 when s[0] is ASCII or does not start a
 * complete, well-formed character (n > 0). */
size_t kp_utf8_char_len(const unsigned char *s, size_t n);

#endif
