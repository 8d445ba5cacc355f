/* metrics.h: what a run reports: one record per epoch, appended to
 * metrics.jsonl, and the Keras-like progress on rank 0's terminal.
 * Everything here is computed from allreduced sums, so every rank holds the
 * same values; only rank 0 writes them. */
#ifndef SHARDFIT_METRICS_H
#define SHARDFIT_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "shardfit/config.h"
#include "shardfit/error.h"

typedef struct SfEpochMetrics {
    int64_t epoch;          /* 1-based */
    int64_t step;           /* optimizer steps done since the run began */
    int64_t steps_in_epoch; /* steps this epoch (fewer if max_steps cut it) */
    int64_t samples;        /* training samples seen this epoch */
    double lr;              /* learning rate of the epoch's last step */
    double loss, accuracy;  /* means over the epoch's training samples */
    int has_accuracy;       /* labels are class ids */
    int has_val;
    double val_loss, val_accuracy;
    double seconds;         /* the epoch, validation included */
    double samples_per_sec; /* training samples / training seconds */
    int world_size;
    double compute_seconds, allreduce_seconds, data_seconds, eval_seconds;
    /* compute_seconds split (phases.h); not stored in checkpoints, so a
     * resumed run's replayed epochs have them 0. */
    double forward_seconds, backward_seconds, optimizer_seconds;
    double step_seconds;    /* inside optimizer steps: seconds less the
                               epoch's permutation broadcast and evaluation */
} SfEpochMetrics;

/* Seconds on a monotonic clock. */
double sf_clock(void);

/* This process's peak resident memory so far in MiB (VmHWM of
 * /proc/self/status), or NaN where there is no such file. */
double sf_peak_rss_mb(void);

/* Appends m to the JSON-lines file as one object; non-finite values are
 * written as null. The record ends with peak_rss_mb, read when it is
 * written: the writing rank's (rank 0's). 0, or -1 with err naming the
 * path. */
int sf_metrics_append(const char *path, const SfEpochMetrics *m, SfError *err);

/* The epoch line: "epoch 3/10  469/469  loss 0.4123  acc 0.8512  val_loss ...". */
void sf_metrics_format(const SfEpochMetrics *m, int64_t epochs,
                       int64_t steps_per_epoch, char *buf, int size);

/* Progress on rank 0's terminal: a bar redrawn in place on a terminal, or a
 * line per epoch elsewhere (SPEC §4 log.progress). */
typedef struct SfProgressOut {
    SfProgress mode;     /* resolved: never AUTO */
    FILE *out;
    double last_draw;
} SfProgressOut;

void sf_progress_init(SfProgressOut *p, SfProgress mode, FILE *out);
/* Mid-epoch update with the running means; drawn at most ten times a second. */
void sf_progress_step(SfProgressOut *p, int64_t epoch, int64_t epochs,
                      int64_t step_in_epoch, int64_t steps_per_epoch,
                      double loss, double accuracy, int has_accuracy);
void sf_progress_epoch(SfProgressOut *p, const SfEpochMetrics *m,
                       int64_t epochs, int64_t steps_per_epoch);

#endif
