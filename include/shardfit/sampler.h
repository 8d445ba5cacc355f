/* sampler.h: which samples form each global batch, and which part of it each
 * rank computes (SPEC §2). Pure arithmetic, no MPI: the trainer draws the
 * permutation on rank 0 and broadcasts it; these functions then tell every
 * rank the same thing.
 *
 * Invariants (tests/test_sampler.c):
 *  - an epoch's batches are consecutive runs of the permutation and cover
 *    every position once (the last may be short, or dropped with drop_last);
 *  - a batch's rank slices are contiguous, disjoint, near-equal (sizes differ
 *    by at most one), in rank order, and may be empty when count < P. */
#ifndef SHARDFIT_SAMPLER_H
#define SHARDFIT_SAMPLER_H

#include <stdint.h>

/* Steps in one epoch: ceil(n / batch), or floor with drop_last.
 * batch <= 0 means the whole set (one step). */
int64_t sf_sampler_steps(int64_t n, int64_t batch, int drop_last);

/* perm (n entries) = the epoch's order: a Fisher-Yates shuffle driven by
 * sf_rng_at(sf_rng_key(seed, SF_RNG_PERMUTATION, epoch), k), or the identity
 * when shuffle is 0. For i = n-1 down to 1, with k = n-1-i:
 * j = at(key, k) mod (i+1); swap perm[i], perm[j]. */
void sf_sampler_permutation(uint64_t seed, int64_t epoch, int shuffle,
                            int64_t n, int64_t *perm);

/* Global batch s covers perm positions [*start, *start + *count). */
void sf_sampler_batch(int64_t n, int64_t batch, int64_t s,
                      int64_t *start, int64_t *count);

/* Part r of P of count items: [*off, *off + *len), with
 * off = floor(r * count / P). Used for batch slices and for the shard
 * loader's row blocks alike. */
void sf_sampler_part(int64_t count, int p, int r, int64_t *off, int64_t *len);

/* The r whose part of count items holds item i: floor((P*(i+1) - 1) / count). */
int sf_sampler_part_owner(int64_t count, int p, int64_t i);

#endif
