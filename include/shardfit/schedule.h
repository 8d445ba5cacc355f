/* schedule.h: the learning rate of every optimizer step, as a pure function
 * of (config, step). Nothing accumulates, so a resumed run continues the
 * schedule exactly and every rank computes the same value.
 *
 * With s the 0-based step, T the run's total steps, E the steps per epoch,
 * W the warmup steps and base = lr (times batch_size/256 with linear scaling):
 *   constant     base
 *   step         base * gamma^floor(s / step_size)
 *   multistep    base * gamma^(number of milestones m with s >= m*E)
 *   exponential  base * gamma^(s / E)             (per epoch, applied smoothly)
 *   cosine       min_lr + (base - min_lr) * (1 + cos(pi * (s-W) / (T-1-W))) / 2
 * and during warmup (s < W) the value is multiplied by (s + 1) / W, so the
 * first step is not wasted and step W-1 reaches the scheduled rate. */
#ifndef SHARDFIT_SCHEDULE_H
#define SHARDFIT_SCHEDULE_H

#include <stdint.h>

#include "shardfit/config.h"

typedef struct SfSchedule {
    SfScheduleKind kind;
    double base, gamma, min_lr;
    int64_t warmup, step_size, steps_per_epoch, total_steps;
    int64_t milestones[SF_MAX_MILESTONES]; /* in steps */
    int n_milestones;
} SfSchedule;

/* Resolves epoch-based settings into steps for this run. */
void sf_schedule_init(SfSchedule *s, const SfConfig *cfg,
                      int64_t steps_per_epoch, int64_t total_steps);

double sf_schedule_lr(const SfSchedule *s, int64_t step);

#endif
