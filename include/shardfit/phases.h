/* phases.h: the named timers of a training step (CoMD's enum TimerHandle).
 *
 * Every second a run reports per phase, in metrics.jsonl and in the trace,
 * is measured here and nowhere else: the trainer brackets each phase with
 * sf_phases_begin/end, the totals feed the epoch's metrics record, and the
 * same two clock readings become the trace's span when a trace is attached
 * (trace.h). A plain struct, initialised in place; not thread-safe (the
 * trainer's thread only). */
#ifndef SHARDFIT_PHASES_H
#define SHARDFIT_PHASES_H

#include <stdint.h>

typedef enum {
    SF_PHASE_STEP,       /* one whole optimizer step: encloses the next five */
    SF_PHASE_DATA,       /* fetching this rank's slice (loader, alltoallv) */
    SF_PHASE_FORWARD,    /* forward pass and loss, every micro-batch */
    SF_PHASE_BACKWARD,   /* backward pass, every micro-batch */
    SF_PHASE_ALLREDUCE,  /* the step's gradient allreduce, waiting included */
    SF_PHASE_OPTIMIZER,  /* scaling, clipping and the weight update */
    SF_PHASE_EVAL,       /* validation after an epoch */
    SF_PHASE_CHECKPOINT, /* writing a checkpoint (all ranks wait for rank 0) */
    SF_NPHASES
} SfPhase;

struct SfTrace;

typedef struct SfPhases {
    double total[SF_NPHASES]; /* seconds since the last sf_phases_reset */
    double since[SF_NPHASES]; /* clock at the open phase's begin */
    int64_t step;             /* optimizer step being timed (1-based) */
    struct SfTrace *trace;    /* NULL: totals only */
} SfPhases;

/* "data", "forward", ... as metrics.jsonl and the trace spell them. */
const char *sf_phase_name(SfPhase ph);

/* Zeroes everything; trace may be NULL. Cannot fail. */
void sf_phases_init(SfPhases *p, struct SfTrace *trace);

/* Zeroes the totals (at the start of an epoch). */
void sf_phases_reset(SfPhases *p);

/* Names the optimizer step (1-based) the next phases belong to; the trace
 * records only the steps its window holds. */
void sf_phases_set_step(SfPhases *p, int64_t step);

/* Brackets one phase. A phase may be begun again after it ended (forward
 * and backward once per micro-batch); its time adds up. Phases nest only
 * inside SF_PHASE_STEP, never overlap otherwise. */
void sf_phases_begin(SfPhases *p, SfPhase ph);
void sf_phases_end(SfPhases *p, SfPhase ph);

/* Forward + backward + optimizer: what metrics.jsonl calls compute. */
double sf_phases_compute(const SfPhases *p);

#endif
