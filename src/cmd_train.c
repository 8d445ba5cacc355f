/* cmd_train.c: `shardfit train CONFIG.ini [--set section.key=value ...]`.
 * Prolog (arguments, MPI, config, agreement), the run, epilog. Every rank
 * parses the config; the ranks agree on the outcome before anyone exits, so
 * a config that one node cannot read ends the job on all of them. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "shardfit/comm.h"
#include "shardfit/config.h"
#include "shardfit/signals.h"
#include "shardfit/trainer.h"

/* Loads the config file and the overrides; 0 or -1 with err. */
static int load_config(SfConfig *cfg, int argc, char **argv, SfError *err)
{
    sf_config_defaults(cfg);
    if (sf_config_load(cfg, argv[1], err))
        return -1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") || i + 1 == argc) {
            sf_error_set(err, SF_EXIT_INPUT, "unexpected argument '%s' "
                         "(expected --set section.key=value)", argv[i]);
            return -1;
        }
        if (sf_config_set(cfg, argv[++i], err))
            return -1;
    }
    return sf_config_check(cfg, err);
}

int sf_cmd_train(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: shardfit train CONFIG.ini [--set section.key=value ...]\n"
               "trains the model CONFIG.ini describes; run under mpirun -np P "
               "(P = 1 also works without mpirun); README.md lists the keys\n");
        return SF_EXIT_OK;
    }
    if (argc < 2 || argv[1][0] == '-')
        return sf_cli_usage_error("train", "expected a config file: "
                                  "shardfit train CONFIG.ini [--set section.key=value ...]");
    SfComm *comm = sf_comm_init(&argc, &argv);
    if (!comm) {
        fprintf(stderr, "shardfit train: error: MPI could not start\n");
        return SF_EXIT_FAILURE;
    }
    static SfConfig cfg; /* large (paths); static to spare the stack */
    SfError err = {0};
    int status = sf_comm_agree_error(comm, load_config(&cfg, argc, argv, &err), 0, &err);
    if (status) {
        if (err.msg[0])
            sf_cli_report("train", &err);
    } else if (sf_comm_set_timeout(comm, cfg.comm.timeout) || sf_signals_install()) {
        fprintf(stderr, "shardfit train: error: cannot start the comm.timeout "
                "watchdog or install the SIGUSR1/SIGTERM handlers\n");
        sf_comm_abort(comm, SF_EXIT_FAILURE);
    } else {
        SfTrainResult res;
        status = sf_train(&cfg, comm, &res, &err);
        if (status && err.msg[0])
            sf_cli_report("train", &err);
        sf_train_result_free(&res);
    }
    sf_comm_free(comm);
    return status;
}
