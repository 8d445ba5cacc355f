/* commands.h: the subcommands of the shardfit binary (private to src/).
 *
 * Each takes the arguments after its name (argv[0] is the subcommand name)
 * and returns the process exit status of SPEC §3: 0 success, 2 bad usage,
 * config, data or checkpoint, 1 anything else. Messages go to stderr as
 * "shardfit CMD: error: ...", via sf_cli_report(). */
#ifndef SHARDFIT_COMMANDS_H
#define SHARDFIT_COMMANDS_H

#include "shardfit/error.h"

int sf_cmd_train(int argc, char **argv);
int sf_cmd_convert(int argc, char **argv);
int sf_cmd_inspect(int argc, char **argv);
int sf_cmd_eval(int argc, char **argv);
int sf_cmd_predict(int argc, char **argv);
int sf_cmd_bench_comm(int argc, char **argv);

/* Prints err as "shardfit CMD: error: MSG" and returns err->code. */
int sf_cli_report(const char *cmd, const SfError *err);

/* Prints "shardfit CMD: error: MSG" plus a usage hint; returns 2. */
int sf_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
