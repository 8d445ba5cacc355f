/* test_sampler.c: the permutation, batches and rank slices of SPEC §2. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/rng.h"
#include "shardfit/sampler.h"
#include "testutil.h"

/* The Python generator in README.md gives these; if this fails, README and
 * code disagree about how an epoch's order is drawn. */
START_TEST(test_permutation_matches_readme)
{
    const int64_t e0[10] = {0, 1, 6, 3, 9, 8, 5, 7, 4, 2};
    const int64_t e1[10] = {7, 9, 1, 3, 8, 0, 5, 4, 2, 6};
    const int64_t big[8] = {15272, 40282, 24557, 38733, 18254, 44506, 37185, 4660};
    int64_t p[10];
    sf_sampler_permutation(1, 0, 1, 10, p);
    ck_assert_mem_eq(p, e0, sizeof e0);
    sf_sampler_permutation(1, 1, 1, 10, p);
    ck_assert_mem_eq(p, e1, sizeof e1);
    int64_t *q = malloc(60000 * sizeof *q);
    sf_sampler_permutation(42, 3, 1, 60000, q);
    ck_assert_mem_eq(q, big, sizeof big);
    free(q);
}
END_TEST

START_TEST(test_permutation_is_a_permutation)
{
    const int64_t n = 1237;
    int64_t *p = malloc(n * sizeof *p), *p2 = malloc(n * sizeof *p);
    char *seen = calloc(n, 1);
    sf_sampler_permutation(7, 2, 1, n, p);
    for (int64_t i = 0; i < n; i++) {
        ck_assert(p[i] >= 0 && p[i] < n);
        ck_assert(!seen[p[i]]);
        seen[p[i]] = 1;
    }
    sf_sampler_permutation(7, 2, 1, n, p2);
    ck_assert_mem_eq(p, p2, n * sizeof *p); /* same (seed, epoch): same order */
    sf_sampler_permutation(7, 3, 1, n, p2);
    ck_assert(memcmp(p, p2, n * sizeof *p) != 0); /* epochs differ */
    sf_sampler_permutation(8, 2, 1, n, p2);
    ck_assert(memcmp(p, p2, n * sizeof *p) != 0); /* seeds differ */
    sf_sampler_permutation(7, 2, 0, n, p2);
    for (int64_t i = 0; i < n; i++)
        ck_assert_int_eq(p2[i], i); /* shuffle = false: identity */
    free(p);
    free(p2);
    free(seen);
}
END_TEST

START_TEST(test_steps_per_epoch)
{
    ck_assert_int_eq(sf_sampler_steps(1050, 100, 0), 11);
    ck_assert_int_eq(sf_sampler_steps(1050, 100, 1), 10);
    ck_assert_int_eq(sf_sampler_steps(1000, 100, 0), 10);
    ck_assert_int_eq(sf_sampler_steps(1000, 100, 1), 10);
    ck_assert_int_eq(sf_sampler_steps(60000, 128, 0), 469);
    ck_assert_int_eq(sf_sampler_steps(60000, 1, 0), 60000);
    ck_assert_int_eq(sf_sampler_steps(60000, 0, 0), 1);     /* 'all' */
    ck_assert_int_eq(sf_sampler_steps(60000, 60000, 1), 1);
}
END_TEST

/* For several (N, B, P) with N % B != 0 and P not dividing B: every epoch
 * position is in exactly one batch and exactly one rank's slice; slices are
 * contiguous, in rank order and differ in size by at most one. */
START_TEST(test_slices_cover_epoch_once)
{
    const int64_t cases[][3] = {{1050, 100, 3}, {103, 10, 4}, {17, 5, 3},
                                {10, 3, 4},    {7, 7, 3},    {1000, 1, 2},
                                {5, 2, 7}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t n = cases[c][0], b = cases[c][1];
        int p = (int)cases[c][2];
        int *hits = calloc((size_t)n, sizeof *hits);
        int64_t steps = sf_sampler_steps(n, b, 0);
        for (int64_t s = 0; s < steps; s++) {
            int64_t start, count, prev_end;
            sf_sampler_batch(n, b, s, &start, &count);
            ck_assert_int_eq(start, s * b);
            ck_assert(count >= 1 && count <= b);
            prev_end = 0;
            int64_t min = count, max = 0;
            for (int r = 0; r < p; r++) {
                int64_t off, len;
                sf_sampler_part(count, p, r, &off, &len);
                ck_assert_int_eq(off, prev_end);
                prev_end = off + len;
                if (len < min) min = len;
                if (len > max) max = len;
                for (int64_t q = off; q < off + len; q++) {
                    hits[start + q]++;
                    ck_assert_int_eq(sf_sampler_part_owner(count, p, q), r);
                }
            }
            ck_assert_int_eq(prev_end, count);
            ck_assert(max - min <= 1);
        }
        for (int64_t i = 0; i < n; i++)
            ck_assert_int_eq(hits[i], 1);
        free(hits);
    }
}
END_TEST

START_TEST(test_drop_last_skips_tail)
{
    int64_t start, count;
    int64_t steps = sf_sampler_steps(1050, 100, 1);
    sf_sampler_batch(1050, 100, steps - 1, &start, &count);
    ck_assert_int_eq(start, 900);
    ck_assert_int_eq(count, 100); /* the partial batch of 50 is never drawn */
    sf_sampler_batch(1050, 100, 10, &start, &count);
    ck_assert_int_eq(count, 50);
}
END_TEST

START_TEST(test_rng_counters)
{
    uint64_t k = sf_rng_key(1, SF_RNG_INIT, 0);
    ck_assert(sf_rng_at(k, 0) != sf_rng_at(k, 1));
    ck_assert(k != sf_rng_key(1, SF_RNG_INIT, 1));
    ck_assert(k != sf_rng_key(1, SF_RNG_DROPOUT, 0));
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < 100000; i++) {
        double u = sf_rng_uniform(k, (uint64_t)i);
        ck_assert(u >= 0.0 && u < 1.0);
        double z = sf_rng_normal(k, (uint64_t)i);
        mean += z;
        var += z * z;
    }
    mean /= 100000;
    var = var / 100000 - mean * mean;
    ck_assert(mean > -0.02 && mean < 0.02);
    ck_assert(var > 0.97 && var < 1.03);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_permutation_matches_readme);
    tcase_add_test(tc, test_permutation_is_a_permutation);
    tcase_add_test(tc, test_steps_per_epoch);
    tcase_add_test(tc, test_slices_cover_epoch_once);
    tcase_add_test(tc, test_drop_last_skips_tail);
    tcase_add_test(tc, test_rng_counters);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
