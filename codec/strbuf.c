/* strbuf.c: see strbuf.h. Capacity doubles, so n appends cost O(n) copies in total. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *strbuf_room(struct strbuf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (n > (size_t)-1 / 4 - b->len) {
        b->oom = true;
        return NULL;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

void strbuf_commit(struct strbuf *b, size_t n)
{
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_put(struct strbuf *b, const char *s, size_t n)
{
    char *p = strbuf_room(b, n);
    if (p) {
        memcpy(p, s, n);
        strbuf_commit(b, n);
    }
}

void strbuf_puts(struct strbuf *b, const char *s)
{
    strbuf_put(b, s, strlen(s));
}

void strbuf_putc(struct strbuf *b, char c)
{
    strbuf_put(b, &c, 1);
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        b->oom = true;
    } else if ((size_t)n < sizeof small) {
        strbuf_put(b, small, (size_t)n);
    } else {
        char *p = strbuf_room(b, (size_t)n);
        if (p) {
            vsnprintf(p, (size_t)n + 1, fmt, again);
            strbuf_commit(b, (size_t)n);
        }
    }
    va_end(again);
    va_end(ap);
}

bool strbuf_ok(const struct strbuf *b)
{
    return !b->oom && b->p;
}

void strbuf_reset(struct strbuf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

char *strbuf_take(struct strbuf *b)
{
    char *s = b->oom ? NULL : b->p ? b->p : strdup("");
    if (b->oom)
        free(b->p);
    memset(b, 0, sizeof *b);
    return s;
}

void strbuf_free(struct strbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
