/* cli.c: how every subcommand reports failure, in one format. */
#include "commands.h"

#include <stdarg.h>
#include <stdio.h>

int sf_cli_report(const char *cmd, const SfError *err)
{
    fprintf(stderr, "shardfit %s: error: %s\n", cmd, err->msg);
    return err->code ? err->code : SF_EXIT_FAILURE;
}

int sf_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shardfit %s: error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'shardfit --help')\n");
    return SF_EXIT_INPUT;
}
