/* rng.h: counter-based random numbers, so that every random choice in a run
 * is a pure function of (seed, purpose, index, counter) and never of history.
 * That is what makes runs independent of the rank count and resumable bit for
 * bit: the permutation of epoch e, the initial weights of layer l, and a
 * dropout mask at step s are each recomputed from their coordinates.
 *
 * The generator is splitmix64 (Steele, Lea, Flood 2014):
 *   mix(z):  z += 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *            z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31
 *   key(seed, purpose, index) = mix(mix(mix(seed) ^ purpose) ^ index)
 *   at(key, i) = mix(key + i * 0x9E3779B97F4A7C15)   (i-th splitmix64 output)
 * README.md gives the same in Python. */
#ifndef SHARDFIT_RNG_H
#define SHARDFIT_RNG_H

#include <stdint.h>

enum { /* the 'purpose' coordinate: one independent stream family each */
    SF_RNG_PERMUTATION = 1, /* index: epoch */
    SF_RNG_INIT = 2,        /* index: layer */
    SF_RNG_DROPOUT = 3      /* index: step */
};

uint64_t sf_rng_mix(uint64_t z);
uint64_t sf_rng_key(uint64_t seed, uint64_t purpose, uint64_t index);
uint64_t sf_rng_at(uint64_t key, uint64_t i);

/* Uniform double in [0, 1) from the top 53 bits of at(key, i). */
double sf_rng_uniform(uint64_t key, uint64_t i);

/* Standard normal from counters 2i and 2i+1 (Box-Muller, cosine branch). */
double sf_rng_normal(uint64_t key, uint64_t i);

#endif
