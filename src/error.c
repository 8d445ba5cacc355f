/* error.c: the SfError record (see error.h). */
#include "shardfit/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

void sf_error_prefix(SfError *err, const char *fmt, ...)
{
    if (!err || !err->code)
        return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = n < 0 ? 0 : (size_t)n < sizeof prefix ? (size_t)n : sizeof prefix - 1;
    size_t mlen = strlen(err->msg);
    if (plen + mlen > sizeof err->msg - 1)
        mlen = sizeof err->msg - 1 - plen;
    memmove(err->msg + plen, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + mlen] = '\0';
}

void sf_error_clear(SfError *err)
{
    err->code = 0;
    err->msg[0] = '\0';
}
