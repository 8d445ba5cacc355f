/* shared_sum.h: adding up the ranks' gradients where they sit, in
 * node-shared memory (comm.h's SfShared), each rank over its slice: the
 * step of comm.node_shared (trainer_shared.c) and what `shardfit
 * bench-comm --shared` times. Private to src/. */
#ifndef SHARDFIT_SHARED_SUM_H
#define SHARDFIT_SHARED_SUM_H

#include <stdint.h>

#include "shardfit/comm.h"

/* Rank r's slice [*lo, *hi) of n floats split over P ranks: whole 64-byte
 * lines (from a line-aligned start), so no two ranks write one line; the
 * last rank's runs to n. */
void sf_shared_slice(int64_t n, int P, int r, int64_t *lo, int64_t *hi);

/* Drops floats [p, p + n) from every cache (clflushopt where the CPU has
 * it, else nothing). A rank calls it on what it has read and another rank
 * writes next (shared_sum.c says why). */
void sf_shared_drop(const float *p, int64_t n);

/* slots[own] over [lo, hi) becomes slots[0] + slots[1] + ... + slots[P-1]
 * (P >= 2), in that order; then the other slots' [lo, hi) are dropped from
 * this rank's caches, as their ranks write them next. */
void sf_shared_sum_slice(float *const *slots, int P, int own, int64_t lo, int64_t hi);

/* Collective over the job: this rank's slot (slots[its node rank]) over
 * [lo, hi) becomes the sum over every rank: its host's slots added
 * (sf_shared_sum_slice), then, on several hosts, that slice allreduced
 * with the same slice of the other hosts. After a sync of the writes. */
void sf_shared_sum(SfShared *s, float *const *slots, int64_t lo, int64_t hi);

#endif
