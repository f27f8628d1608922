/* A growable text buffer for response bodies built with printf-style appends. */
#ifndef KP_TEXTBUF_H
#define KP_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Zero-initialize to start empty. Owns `data` (malloc'd, NUL-terminated once anything was
 * appended); release with kp_textbuf_release(). */
typedef struct kp_textbuf {
    char *data;
    size_t len, cap;
    bool oom; /* an append failed: `data` holds what came before it, later appends do nothing */
} kp_textbuf;

void kp_textbuf_printf(kp_textbuf *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the bytes and leaves `tb` empty. */
void kp_textbuf_release(kp_textbuf *tb);

#endif
