/* error.c: the SfError record (see error.h). */
#include "shardfit/error.h"

#include <stdarg.h>
#include <stdio.h>

void sf_error_set(SfError *err, int code, const char *fmt, ...)
{
    if (!err || err->code)
        return;
    err->code = code ? code : SF_EXIT_FAILURE;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

void sf_error_clear(SfError *err)
{
    err->code = 0;
    err->msg[0] = '\0';
}
