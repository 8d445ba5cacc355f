/* stopping.h: when a run ends before its last epoch. Keras's EarlyStopping,
 * names and semantics (as in Keras 3), plus a target for time-to-accuracy:
 *
 *  - after each epoch the monitored metric is compared with the best so far;
 *    it improves when it beats the best by more than min_delta (lower for
 *    losses, higher for accuracies);
 *  - with early_stopping, the run stops once `patience` epochs in a row have
 *    not improved, and never after the first epoch;
 *  - with restore_best, the final weights are the best epoch's (the trainer
 *    keeps a copy), whether or not the run stopped early;
 *  - with target != 0, the run stops as soon as the metric reaches the target
 *    (<= for losses, >= for accuracies).
 *
 * Every rank feeds the same allreduced metrics, so every rank decides the
 * same without another collective. */
#ifndef SHARDFIT_STOPPING_H
#define SHARDFIT_STOPPING_H

#include <stdint.h>

#include "shardfit/config.h"
#include "shardfit/metrics.h"

typedef enum { SF_STOP_CONTINUE, SF_STOP_EARLY, SF_STOP_TARGET } SfStopDecision;

typedef struct SfStopper {
    int early, maximize;
    double min_delta, target;
    int64_t patience;
    double best;           /* best monitored value so far */
    int64_t best_epoch;    /* 1-based; 0 before the first epoch */
    int64_t wait;          /* epochs since the last improvement */
} SfStopper;

void sf_stopper_init(SfStopper *s, const SfConfig *cfg);

/* The monitored value in m (NAN if m lacks it). */
double sf_stopper_value(const SfConfig *cfg, const SfEpochMetrics *m);

/* Feeds epoch (1-based) and its monitored value; *improved is set to 1 when
 * this epoch is the new best. NaN never improves. */
SfStopDecision sf_stopper_update(SfStopper *s, int64_t epoch, double value,
                                 int *improved);

#endif
