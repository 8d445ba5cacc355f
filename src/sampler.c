/* sampler.c: epoch permutations, global batches and rank slices (sampler.h). */
#include "shardfit/sampler.h"

#include "shardfit/rng.h"

int64_t sf_sampler_steps(int64_t n, int64_t batch, int drop_last)
{
    if (batch <= 0 || batch >= n)
        return (drop_last && batch > n) ? 0 : 1;
    return drop_last ? n / batch : (n + batch - 1) / batch;
}

void sf_sampler_permutation(uint64_t seed, int64_t epoch, int shuffle,
                            int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    if (!shuffle)
        return;
    uint64_t key = sf_rng_key(seed, SF_RNG_PERMUTATION, (uint64_t)epoch);
    for (int64_t i = n - 1, k = 0; i > 0; i--, k++) {
        int64_t j = (int64_t)(sf_rng_at(key, (uint64_t)k) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void sf_sampler_batch(int64_t n, int64_t batch, int64_t s,
                      int64_t *start, int64_t *count)
{
    if (batch <= 0 || batch > n)
        batch = n;
    int64_t a = s * batch;
    int64_t b = a + batch < n ? a + batch : n;
    *start = a < n ? a : n;
    *count = b > a ? b - a : 0;
}

void sf_sampler_part(int64_t count, int p, int r, int64_t *off, int64_t *len)
{
    /* count * r stays far below 2^63 for any dataset that fits a cluster. */
    int64_t a = count * r / p;
    int64_t b = count * (r + 1) / p;
    *off = a;
    *len = b - a;
}

int sf_sampler_part_owner(int64_t count, int p, int64_t i)
{
    /* off_r <= i  <=>  r*count <= P*(i+1) - 1, so r is the largest such. */
    return (int)(((int64_t)p * (i + 1) - 1) / count);
}
