/* shared_sum.c: the node-shared gradient sum's arithmetic, cache
 * handling and slice sum across hosts (shared_sum.h).
 *
 * Sums run in rank order, slot 0 + slot 1 + ..., the same for every slice.
 * With two ranks that is bitwise MPI's sum (float addition commutes); with
 * more it is deterministic but grouped unlike Open MPI's allreduce.
 *
 * Why the flushes: a rank's stores to lines another core has read wait for
 * those lines to be invalidated there. On this project's test machine (AMD
 * EPYC, the two cores apparently on different L3s) a 3.7 MB momentum
 * update took 0.76-0.94 ms when another process had just read the weights,
 * 0.17-0.26 ms when that reader had flushed them, which took it 0.09-0.11
 * ms (docs/BENCHMARKS.md). */
#include "shared_sum.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include "simd.h"

void sf_shared_slice(int64_t n, int P, int r, int64_t *lo, int64_t *hi)
{
    *lo = n * r / P / 16 * 16;
    *hi = r + 1 == P ? n : n * (r + 1) / P / 16 * 16;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* CPUID leaf 7's EBX bit 23, asked once: clang (14) does not know
 * __builtin_cpu_supports("clflushopt"), and CPUID traps to the hypervisor
 * in a VM. Only the training thread calls sf_shared_drop. */
static int has_clflushopt(void)
{
    static int known = -1;
    unsigned a, b, c, d;
    if (known < 0)
        known = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 23));
    return known;
}

__attribute__((target("clflushopt")))
void sf_shared_drop(const float *p, int64_t n)
{
    if (n <= 0 || !has_clflushopt())
        return;
    const char *a = (const char *)p, *end = (const char *)(p + n);
    for (a -= (uintptr_t)a % 64; a < end; a += 64)
        __builtin_ia32_clflushopt((void *)a);
    __builtin_ia32_sfence();
}
#else
void sf_shared_drop(const float *p, int64_t n) { (void)p; (void)n; }
#endif

/* dst[i] += src[i] */
SF_SIMD_CLONES
static void add_into(float *restrict dst, const float *restrict src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* dst[i] = a[i] + b[i] */
SF_SIMD_CLONES
static void add_two(float *restrict dst, const float *restrict a,
                    const float *restrict b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = a[i] + b[i];
}

void sf_shared_sum_slice(float *const *slots, int P, int own, int64_t lo, int64_t hi)
{
    float *mine = slots[own];
    if (P == 2) { /* own + other is other + own, bit for bit */
        add_into(mine + lo, slots[1 - own] + lo, hi - lo);
    } else {
        float tmp[2048];
        for (int64_t j = lo; j < hi; j += 2048) {
            int64_t len = hi - j < 2048 ? hi - j : 2048;
            add_two(tmp, slots[0] + j, slots[1] + j, len);
            for (int q = 2; q < P; q++)
                add_into(tmp, slots[q] + j, len);
            memcpy(mine + j, tmp, (size_t)len * sizeof(float));
        }
    }
    for (int q = 0; q < P; q++)
        if (q != own)
            sf_shared_drop(slots[q] + lo, hi - lo);
}

void sf_shared_sum(SfShared *s, float *const *slots, int64_t lo, int64_t hi)
{
    const int r = sf_shared_rank(s);
    sf_shared_sum_slice(slots, sf_shared_size(s), r, lo, hi);
    if (sf_shared_hosts(s) > 1)
        sf_shared_across_sum_f32(s, slots[r] + lo, hi - lo);
}
