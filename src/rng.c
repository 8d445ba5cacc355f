/* rng.c: splitmix64 as a counter-based generator (see rng.h). */
#include "shardfit/rng.h"

#include <math.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define TWO_PI 6.283185307179586476925286766559

uint64_t sf_rng_mix(uint64_t z)
{
    z += GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t sf_rng_key(uint64_t seed, uint64_t purpose, uint64_t index)
{
    return sf_rng_mix(sf_rng_mix(sf_rng_mix(seed) ^ purpose) ^ index);
}

uint64_t sf_rng_at(uint64_t key, uint64_t i)
{
    return sf_rng_mix(key + i * GOLDEN);
}

double sf_rng_uniform(uint64_t key, uint64_t i)
{
    return (double)(sf_rng_at(key, i) >> 11) * 0x1.0p-53;
}

double sf_rng_normal(uint64_t key, uint64_t i)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - sf_rng_uniform(key, 2 * i);
    double u2 = sf_rng_uniform(key, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}
