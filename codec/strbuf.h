/* strbuf.h: a growable, always NUL-terminated string for building text (JSON documents,
 * stored language maps). Appends after an allocation failure are ignored and remembered, so a
 * builder checks once at the end (strbuf_ok / strbuf_take). Shared by db/ and manifest/. */
#ifndef VELLUM_STRBUF_H
#define VELLUM_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *p;     /* NULL until the first append */
    size_t len, cap;
    bool oom;    /* an allocation failed: the content is incomplete */
};

/* Room for n more bytes and the NUL: where to write them (then strbuf_commit), or NULL when out
 * of memory. */
char *strbuf_room(struct strbuf *b, size_t n);
void strbuf_commit(struct strbuf *b, size_t n);

void strbuf_put(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_putc(struct strbuf *b, char c);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* No allocation failed and the buffer holds a string (possibly empty after a reset). */
bool strbuf_ok(const struct strbuf *b);
/* Empty the string, keeping the allocation. */
void strbuf_reset(struct strbuf *b);
/* The string, now owned by the caller ("" when nothing was appended), or NULL after a failure
 * (the buffer is freed either way). */
char *strbuf_take(struct strbuf *b);
void strbuf_free(struct strbuf *b);

#endif
