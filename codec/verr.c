/* verr.c: filling the shared error struct (see verr.h). */
#include "verr.h"

#include <stdarg.h>
#include <stdio.h>

int verr_set(struct verr *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
