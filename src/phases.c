/* phases.c: named phase timers (phases.h). */
#include "shardfit/phases.h"

#include <string.h>

#include "shardfit/metrics.h"
#include "shardfit/trace.h"

static const char *const names[SF_NPHASES] = {
    "step", "data", "forward", "backward", "allreduce", "optimizer", "eval",
    "checkpoint"
};

const char *sf_phase_name(SfPhase ph)
{
    return ph >= 0 && ph < SF_NPHASES ? names[ph] : "?";
}

void sf_phases_init(SfPhases *p, struct SfTrace *trace)
{
    memset(p, 0, sizeof *p);
    p->trace = trace;
}

void sf_phases_reset(SfPhases *p)
{
    memset(p->total, 0, sizeof p->total);
}

void sf_phases_set_step(SfPhases *p, int64_t step)
{
    p->step = step;
    if (p->trace)
        sf_trace_set_step(p->trace, step);
}

void sf_phases_begin(SfPhases *p, SfPhase ph)
{
    p->since[ph] = sf_clock();
}

void sf_phases_end(SfPhases *p, SfPhase ph)
{
    double now = sf_clock();
    p->total[ph] += now - p->since[ph];
    if (p->trace)
        sf_trace_span(p->trace, (int)ph, p->since[ph], now);
}

double sf_phases_compute(const SfPhases *p)
{
    return p->total[SF_PHASE_FORWARD] + p->total[SF_PHASE_BACKWARD] +
           p->total[SF_PHASE_OPTIMIZER];
}
