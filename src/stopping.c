/* stopping.c: early stopping and target (stopping.h). */
#include "shardfit/stopping.h"

#include <math.h>

void sf_stopper_init(SfStopper *s, const SfConfig *cfg)
{
    SfMonitor m = cfg->stop.monitor;
    s->early = cfg->stop.early_stopping;
    s->maximize = m == SF_MONITOR_VAL_ACCURACY || m == SF_MONITOR_ACCURACY;
    s->min_delta = cfg->stop.min_delta;
    s->target = cfg->stop.target;
    s->patience = cfg->stop.patience;
    s->best = s->maximize ? -INFINITY : INFINITY;
    s->best_epoch = 0;
    s->wait = 0;
}

double sf_stopper_value(const SfConfig *cfg, const SfEpochMetrics *m)
{
    switch (cfg->stop.monitor) {
    case SF_MONITOR_VAL_LOSS:
        return m->has_val ? m->val_loss : NAN;
    case SF_MONITOR_VAL_ACCURACY:
        return m->has_val && m->has_accuracy ? m->val_accuracy : NAN;
    case SF_MONITOR_ACCURACY:
        return m->has_accuracy ? m->accuracy : NAN;
    case SF_MONITOR_LOSS:
    default:
        return m->loss;
    }
}

SfStopDecision sf_stopper_update(SfStopper *s, int64_t epoch, double value,
                                 int *improved)
{
    /* Keras: monitor_op(current - min_delta, best), the delta signed so
     * that it always asks for a clear improvement. */
    *improved = s->maximize ? value - s->min_delta > s->best
                            : value + s->min_delta < s->best;
    s->wait++;
    if (*improved) {
        s->best = value;
        s->best_epoch = epoch;
        s->wait = 0;
    }
    if (s->target != 0.0 &&
        (s->maximize ? value >= s->target : value <= s->target))
        return SF_STOP_TARGET;
    /* As Keras: an improving epoch never ends the run by patience. */
    if (s->early && !*improved && s->wait >= s->patience && epoch > 1)
        return SF_STOP_EARLY;
    return SF_STOP_CONTINUE;
}
