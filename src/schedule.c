/* schedule.c: closed-form learning rates per step (schedule.h). */
#include "shardfit/schedule.h"

#include <math.h>

#define PI 3.14159265358979323846

void sf_schedule_init(SfSchedule *s, const SfConfig *cfg,
                      int64_t steps_per_epoch, int64_t total_steps)
{
    const double spe = (double)steps_per_epoch;
    s->kind = cfg->schedule.name;
    s->base = cfg->optimizer.lr;
    if (cfg->optimizer.lr_scaling == SF_LR_SCALING_LINEAR)
        s->base *= (double)cfg->train.batch_size / 256.0; /* Goyal et al. */
    s->gamma = cfg->schedule.gamma;
    s->min_lr = cfg->schedule.min_lr;
    s->steps_per_epoch = steps_per_epoch;
    s->total_steps = total_steps;
    s->warmup = cfg->schedule.warmup_epochs > 0.0
                    ? (int64_t)llround(cfg->schedule.warmup_epochs * spe)
                    : cfg->schedule.warmup_steps;
    s->step_size = cfg->schedule.step_epochs > 0.0
                       ? (int64_t)llround(cfg->schedule.step_epochs * spe)
                       : cfg->schedule.step_size;
    if (s->step_size < 1)
        s->step_size = 1;
    s->n_milestones = cfg->schedule.n_milestones;
    for (int i = 0; i < s->n_milestones; i++)
        s->milestones[i] = cfg->schedule.milestones[i] * steps_per_epoch;
}

static double decayed(const SfSchedule *s, int64_t step)
{
    switch (s->kind) {
    case SF_SCHED_STEP:
        return s->base * pow(s->gamma, (double)(step / s->step_size));
    case SF_SCHED_MULTISTEP: {
        int passed = 0;
        while (passed < s->n_milestones && step >= s->milestones[passed])
            passed++;
        return s->base * pow(s->gamma, passed);
    }
    case SF_SCHED_EXPONENTIAL:
        return s->base * pow(s->gamma, (double)step / (double)s->steps_per_epoch);
    case SF_SCHED_COSINE: {
        if (step < s->warmup)
            return s->base;
        int64_t span = s->total_steps - 1 - s->warmup;
        double progress = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
        if (progress > 1.0)
            progress = 1.0;
        return s->min_lr + (s->base - s->min_lr) * 0.5 * (1.0 + cos(PI * progress));
    }
    case SF_SCHED_CONSTANT:
    default:
        return s->base;
    }
}

double sf_schedule_lr(const SfSchedule *s, int64_t step)
{
    double lr = decayed(s, step);
    if (step < s->warmup)
        lr *= (double)(step + 1) / (double)s->warmup;
    return lr;
}
