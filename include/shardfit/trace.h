/* trace.h: a per-rank timeline of a run, as Chrome-trace JSON (SPEC §9).
 *
 * Horovod's timeline is written by rank 0 alone and grows without bound;
 * this one has a track per rank, so the rank the others wait for shows, and
 * a bounded size: each rank keeps its events in a fixed buffer sized for the
 * window of steps it records (log.trace_steps), 32 bytes an event, and rank
 * 0 gathers them and writes the file once, at the end.
 *
 * Events come from two places: the phase timers (phases.h) give spans
 * (data, forward, backward, allreduce, optimizer, eval, checkpoint, inside a
 * "step" span), and comm.c reports every collective with the time this rank
 * arrived in it and the time it left. Collectives are matched across ranks by
 * their sequence number on the communicator, so each span says which rank
 * arrived last and how long this one waited for it. Clocks are aligned to
 * rank 0's by a ping-pong at creation (comm.h); the offsets and their
 * uncertainty are written in the file's otherData. */
#ifndef SHARDFIT_TRACE_H
#define SHARDFIT_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "shardfit/comm.h"
#include "shardfit/error.h"

typedef struct SfTrace SfTrace;

/* Bytes one recorded event takes in memory. */
#define SF_TRACE_EVENT_BYTES 32

/* Collective over comm. Records optimizer steps first..last (1-based,
 * inclusive) into a buffer of `capacity` events; events past it are counted
 * as dropped, never reallocated. Measures the clock offsets and attaches
 * itself to comm's collectives. NULL with err on ENOMEM (on this rank). */
SfTrace *sf_trace_create(SfComm *comm, int64_t first, int64_t last,
                         int64_t capacity, SfError *err);

/* Detaches from the comm and frees. NULL is fine. Not collective. */
void sf_trace_free(SfTrace *tr);

/* The step the next events belong to: recording is on inside the window. */
void sf_trace_set_step(SfTrace *tr, int64_t step);

/* A span [t0, t1] (sf_clock seconds) of a phase (phases.h's SfPhase, as
 * an int). Dropped outside the window. */
void sf_trace_span(SfTrace *tr, int phase, double t0, double t1);

/* Collective. Gathers every rank's events to rank 0, which writes the
 * Chrome-trace JSON to path (a temporary name, then rename, so a reader
 * never sees half a file) and, when summary is not NULL, prints there the
 * straggler summary: per rank its mean compute time per step and how long
 * the others waited for it in collectives. Detaches from the comm first.
 * Returns 0, or -1 with err on the rank that failed (rank 0 writing; any
 * rank's ENOMEM is agreed so that no rank waits alone). */
int sf_trace_finish(SfTrace *tr, const char *path, FILE *summary, SfError *err);

#endif
