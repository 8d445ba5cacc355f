/* trainer.h: one training run, start to end, over the ranks of a comm.
 *
 * The whole of data-parallel SGD as SPEC §2 defines it: rank 0 draws each
 * epoch's permutation and broadcasts it; every step each rank fetches its
 * slice of the global batch, runs it through the model in micro-batches,
 * and one allreduce sums the gradients with the loss and counts; every rank
 * divides by the global count and takes the same optimizer step. */
#ifndef SHARDFIT_TRAINER_H
#define SHARDFIT_TRAINER_H

#include <stdint.h>

#include "shardfit/comm.h"
#include "shardfit/config.h"
#include "shardfit/error.h"
#include "shardfit/metrics.h"

typedef struct SfTrainResult {
    int64_t epochs_done;      /* complete epochs */
    int64_t steps_done;
    int64_t nparams;
    float *params;            /* final weights and layer statistics (nparams =
                                 sf_model_nstate floats, malloc'd), same on every rank */
    int64_t nhistory;
    SfEpochMetrics *history;  /* one record per epoch run (malloc'd) */
    SfEpochMetrics final;     /* metrics of the final weights: the last epoch's,
                                 or with restore_best the best epoch's with
                                 validation measured again after restoring */
    int64_t best_epoch;       /* by stop.monitor (1-based; 0 if never) */
    int64_t stopped_epoch;    /* epoch a stopping rule ended (0 if none) */
    int64_t restored_epoch;   /* restore_best: whose weights these are */
    int preempted;            /* a signal stopped it; a checkpoint holds where */
    char stop_reason[160];    /* "epochs done", "max_steps reached",
                                 "early stopping at epoch 7, best epoch 5",
                                 "target val_accuracy >= 0.9 reached at ..." */
    double seconds;
} SfTrainResult;

/* Runs the training cfg describes; cfg must have passed sf_config_check.
 * Collective over comm. Returns 0, or the exit status all ranks agreed on
 * (SF_EXIT_INPUT for bad data, SF_EXIT_FAILURE otherwise) with err set; only
 * the lowest failing rank has a message in err->msg (prefixed with its rank
 * when there are several), the others an empty one, so the job prints the
 * cause once. Rank 0 prints progress to stdout and writes log.metrics. */
int sf_train(const SfConfig *cfg, SfComm *comm, SfTrainResult *res, SfError *err);

void sf_train_result_free(SfTrainResult *res); /* NULL is fine */

#endif
