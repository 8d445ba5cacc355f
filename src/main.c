/* main.c: the shardfit command line. Dispatches to one file per subcommand
 * (cmd_*.c); the training loop itself reads top to bottom in cmd_train.c. */
#include <stdio.h>
#include <string.h>

#include "bigalloc.h"
#include "commands.h"
#include "shardfit/layer.h"
#include "shardfit/version.h"

static const char usage[] =
    "usage:\n"
    "  shardfit train CONFIG.ini [--set section.key=value ...]\n"
    "  shardfit eval    --checkpoint CKPT.h5 --data FILE.h5 [--features /p] [--labels /p]\n"
    "  shardfit predict --checkpoint CKPT.h5 --data FILE.h5 [--features /p] --out OUT.h5\n"
    "  shardfit convert idx IMAGES[.gz] LABELS[.gz] --out FILE.h5 --group /train\n"
    "  shardfit convert csv FILE.csv --label-column K --out FILE.h5 --group /train\n"
    "  shardfit inspect FILE.h5\n"
    "  shardfit bench-comm [--min BYTES] [--max BYTES] [--repeat R] [--csv FILE]\n"
    "                      [--compute-us U[,U2] [--exchange-bytes BYTES]\n"
    "                       [--allreduce-bytes BYTES]]\n"
    "  shardfit --help | --version\n"
    "\n"
    "train, eval and predict run under `mpirun -np P` (P = 1 also works without mpirun).\n"
    "Exit status: 0 success, 2 bad usage, config, data or checkpoint, 1 other failure.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return SF_EXIT_INPUT;
    }
    const char *cmd = argv[1];
    sf_memory_keep();
    if (!strcmp(cmd, "train") || !strcmp(cmd, "eval") || !strcmp(cmd, "predict"))
        sf_layer_blas_select_kernels(argv);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return SF_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("shardfit %s\n", SF_VERSION);
        return SF_EXIT_OK;
    }
    if (!strcmp(cmd, "train"))
        return sf_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return sf_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict"))
        return sf_cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert"))
        return sf_cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect"))
        return sf_cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-comm"))
        return sf_cmd_bench_comm(argc - 1, argv + 1);
    fprintf(stderr, "shardfit: error: unknown command '%s'\n%s", cmd, usage);
    return SF_EXIT_INPUT;
}
