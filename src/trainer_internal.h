/* trainer_internal.h: the state of one run, shared by trainer.c (the
 * algorithm) and trainer_report.c (what it prints and writes). Private. */
#ifndef SHARDFIT_TRAINER_INTERNAL_H
#define SHARDFIT_TRAINER_INTERNAL_H

#include <stdint.h>

#include "shardfit/comm.h"
#include "shardfit/config.h"
#include "shardfit/loader.h"
#include "shardfit/metrics.h"
#include "shardfit/model.h"
#include "shardfit/optim.h"
#include "shardfit/phases.h"
#include "shardfit/schedule.h"
#include "shardfit/stopping.h"
#include "shardfit/trace.h"
#include "shardfit/trainer.h"

/* What the step's allreduce carries after the gradients, in the spare tail
 * of the model's gradient block (SF_MODEL_GRAD_TAIL floats). Sums of small
 * integers stay exact in float32. */
enum {
    TAIL_LOSS,    /* sum of per-sample losses */
    TAIL_CORRECT, /* correctly classified samples */
    TAIL_COUNT,   /* samples */
    TAIL_STOP,    /* ranks asked to stop by a signal (preemption) */
    TAIL_ERROR,   /* ranks whose loader failed this step */
    TAIL_USED
};
_Static_assert(TAIL_USED <= SF_MODEL_GRAD_TAIL, "the gradient tail is too short");

#define SF_TRAINER_MAX_BUCKETS 32

typedef struct SfTrainer {
    const SfConfig *cfg;
    SfComm *comm;
    int rank, size;
    SfLoader *train, *val;
    SfModel *model;
    SfOptim *optim;
    SfSchedule schedule;
    /* The plan: N samples, B per step, slices of at most slice_max rows,
     * pushed through the model micro rows at a time. */
    int64_t n, batch, steps_per_epoch, total_steps, slice_max, micro, eval_rows;
    int64_t step;    /* optimizer steps done */
    double lr;       /* of the last step */
    int64_t *perm;   /* this epoch's order, identical on every rank */
    float *x, *values;
    int32_t *classes;
    /* This epoch so far: allreduced sums, and this rank's phase times. */
    double sum_loss, sum_correct, sum_count;
    SfPhases phases;
    SfTrace *trace;           /* log.trace: NULL when off */
    /* Gradient buckets (comm.bucket_mb > 0 on several ranks): bucket k sums
     * floats [bucket_first[k], bucket_first[k-1]) of the gradient block
     * (bucket 0 up to the end of the tail), posted last layer first;
     * bucket_posted counts this step's posts. nbuckets = 0: one blocking
     * allreduce after backward. */
    int nbuckets, bucket_posted;
    int64_t bucket_first[SF_TRAINER_MAX_BUCKETS];
    /* comm.node_shared (trainer_shared.c): this host's window holding the
     * weights, the optimizer's state and each rank's gradient slot (node
     * rank 0's after shared_slot0 floats); this rank sums and updates
     * floats [shared_lo, shared_hi); shared_slots[r] is node rank r's slot;
     * shared_tail holds the step's summed tail. NULL: the allreduce. */
    SfShared *shared;
    float **shared_slots;
    int64_t shared_slot0, shared_lo, shared_hi;
    float shared_tail[SF_MODEL_GRAD_TAIL];
    SfStopper stopper;
    float *best_params;       /* restore_best: the best epoch's weights */
    float *result_params;     /* handed to SfTrainResult at the end */
    SfEpochMetrics *history;  /* one per epoch; handed to SfTrainResult */
    double start;             /* clock when training began */
    const char *diverged;     /* why training diverged, if it did */
    SfError data_err;         /* why this rank's loader failed, if it did */
    int stop_requested;       /* a rank got SIGUSR1/SIGTERM: all stop after
                                 this step (same on every rank) */
    /* Where the run starts (0, 0, or a resumed checkpoint's position) and
     * how far the history goes. */
    int64_t start_epoch, start_step_in_epoch, nhistory;
    int64_t step_in_epoch;    /* steps done in the current epoch */
    char last_checkpoint[2 * SF_CONFIG_STR]; /* "" until one is written */
    SfProgressOut progress;
    char metrics_path[2 * SF_CONFIG_STR];
} SfTrainer;

/* trainer_setup.c: everything that can fail before training, done on each
 * rank alone (data, plan, model, optimizer, buffers, log). 0 or -1 with err. */
int sf_trainer_setup_local(SfTrainer *t, SfError *err);

/* Cuts the gradient block into buckets of about comm.bucket_mb MiB at layer
 * boundaries and starts the thread that sums them. Collective. 0 or -1. */
int sf_trainer_plan_buckets(SfTrainer *t, SfError *err);

/* The config asks for the node-shared sum and nothing in it rules the sum
 * out (gradient buckets need the allreduce). */
static inline int sf_trainer_node_shared_asked(const SfConfig *c)
{
    return c->comm.node_shared && !(c->comm.bucket_mb > 0.0);
}

/* trainer_shared.c. Collective, after setup: with comm.node_shared (and
 * bucket_mb 0) and 2 or more ranks on every host, as many on each, moves
 * the weights, the optimizer's state and the gradients into memory each
 * host's ranks share (t->shared); else leaves t->shared NULL. Always 0 (a
 * failed allocation aborts). */
int sf_trainer_share_node(SfTrainer *t);

/* Collective: the step's gradient summed over all ranks on this rank's
 * slice (its host's, then across hosts), after a sync; returns the summed
 * tail (TAIL_*). */
const float *sf_trainer_node_sum(SfTrainer *t);

/* Collective: clips (clip > 0) and updates this rank's slice, then syncs.
 * -1 on every rank when any rank's update was not finite, else 0. */
int sf_trainer_node_update(SfTrainer *t, float scale, double clip, double lr);

/* Collective: after the writers (sf_trainer_shared_writer) alone wrote the
 * weights or state, every rank sees them. No-op without t->shared. */
void sf_trainer_share_sync(SfTrainer *t);

/* Whether this rank writes the weights that it holds when they change
 * outside a step: every rank without t->shared, node rank 0 of each host
 * with it. */
int sf_trainer_shared_writer(const SfTrainer *t);

/* Collective, after rank 0 read a checkpoint into its weights (and, with
 * with_state, the optimizer's state): with t->shared, every host's window
 * gets them (across hosts, slice by slice) and every rank sees them.
 * No-op without t->shared. */
void sf_trainer_share_restore(SfTrainer *t, int with_state);

/* Every rank holds the same weights: one small allgather; the answer is
 * the same on all ranks. -1 with the message on rank 0 when they differ. */
int sf_trainer_check_replicas(SfTrainer *t, const char *when, SfError *err);

/* Collective. Where the run starts: the newest checkpoint (resume = auto),
 * the named one (resume = PATH) or none, else the init_checkpoint weights.
 * Rank 0 reads the file and broadcasts what it holds, so checkpoints need
 * not be on a filesystem every node sees. 0, or the agreed exit status. */
int sf_trainer_restore(SfTrainer *t, SfError *err);

/* Collective. Writes a checkpoint of the current state (rank 0), after
 * checking the replicas agree: an epoch file when the epoch just ended, else
 * a step file for the position inside epoch `epoch` (0-based). Then prunes
 * to keep_last. 0, or the agreed exit status. */
int sf_trainer_save(SfTrainer *t, int64_t epoch, int epoch_end, SfError *err);

/* Whether checkpoints are written at all (every_epochs or every_steps). */
int sf_trainer_checkpointing(const SfConfig *cfg);

/* Rank 0: creates log.dir and starts a fresh metrics file (and checks the
 * trace file can be written). */
int sf_trainer_open_log(SfTrainer *t, SfError *err);

/* Collective, after setup: with log.trace, the trace recording
 * trace_steps, attached to t->phases. 0, or the agreed exit status. */
int sf_trainer_open_trace(SfTrainer *t, SfError *err);

/* Collective: writes the trace (rank 0) and prints the straggler summary;
 * frees it. No-op without a trace. 0, or the agreed exit status. */
int sf_trainer_close_trace(SfTrainer *t, SfError *err);

/* Rank 0 prints; other ranks return at once. */
void sf_trainer_print_start(const SfTrainer *t);
void sf_trainer_print_end(const SfTrainer *t, const SfTrainResult *res);

/* Rank 0: writes the restored history to the fresh metrics file, so a
 * resumed run's metrics.jsonl reads as if it never stopped. 0 or -1. */
int sf_trainer_replay_history(SfTrainer *t, SfError *err);

/* Rank 0: the epoch's progress line and metrics record. 0 or -1 with err. */
int sf_trainer_report_epoch(SfTrainer *t, const SfEpochMetrics *m, SfError *err);

/* trainer_rundir.c: what log.dir says about the run. */

/* Rank 0: writes log.dir/config.ini (the effective config). 0 or -1. */
int sf_trainer_write_config(const SfTrainer *t, SfError *err);

/* Rank 0, once training has begun, whatever ended it: writes
 * log.dir/summary.json. Returns the run's exit status: status, or
 * SF_EXIT_FAILURE with err set when a run that succeeded cannot write it
 * (a failed run only warns on stderr). Other ranks return status. */
int sf_trainer_write_summary(SfTrainer *t, const SfTrainResult *res, int status,
                             SfError *err);

#endif
