/* test_strbuf.c: the shared growable string (codec/strbuf.h). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "strbuf.h"

int main(void)
{
    struct strbuf b = {0};
    CHECK(!strbuf_ok(&b)); /* nothing appended yet: no string */
    char *empty = strbuf_take(&b);
    CHECK(empty && empty[0] == '\0');
    free(empty);

    strbuf_puts(&b, "ab");
    strbuf_putc(&b, 'c');
    strbuf_put(&b, "dxx", 1);
    strbuf_printf(&b, "-%d-", 42);
    CHECK(strbuf_ok(&b));
    CHECK_STR(b.p, "abcd-42-");
    CHECK_INT(b.len, 8);

    /* longer than the 256-byte fast path of strbuf_printf, and many doublings */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    strbuf_printf(&b, "%s", big);
    CHECK_INT(b.len, 8 + 999);
    CHECK(b.p[b.len] == '\0' && b.p[8] == 'z' && b.p[b.len - 1] == 'z');

    strbuf_reset(&b);
    CHECK(strbuf_ok(&b) && b.len == 0 && b.p[0] == '\0');
    strbuf_puts(&b, "x");
    char *s = strbuf_take(&b);
    CHECK_STR(s, "x");
    CHECK(b.p == NULL && b.len == 0);
    free(s);

    /* after a failure every append is ignored and take returns NULL */
    strbuf_puts(&b, "y");
    b.oom = true;
    strbuf_puts(&b, "more");
    CHECK(!strbuf_ok(&b));
    CHECK_STR(b.p, "y");
    CHECK(strbuf_take(&b) == NULL);
    strbuf_free(&b);
    return CHECK_DONE();
}
