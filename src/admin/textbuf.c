/* See textbuf.h. Growth doubles from 4 KiB: a /metrics body is about 6 KiB, so one step. */
#include "textbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void kp_textbuf_printf(kp_textbuf *tb, const char *fmt, ...)
{
    if (tb->oom)
        return;
    for (;;) {
        size_t room = tb->cap - tb->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tb->data ? tb->data + tb->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            tb->oom = true;
            return;
        }
        if ((size_t)n < room) {
            tb->len += (size_t)n;
            return;
        }
        size_t cap = tb->cap ? tb->cap * 2 : 4096;
        while (cap < tb->len + (size_t)n + 1)
            cap *= 2;
        char *grown = realloc(tb->data, cap);
        if (!grown) {
            tb->oom = true;
            return;
        }
        tb->data = grown;
        tb->cap = cap;
    }
}

void kp_textbuf_release(kp_textbuf *tb)
{
    free(tb->data);
    *tb = (kp_textbuf){0};
}
