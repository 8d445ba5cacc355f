/* simd.h: how shardfit's elementwise loops reach the machine's vector width.
 *
 * The build targets baseline x86-64 (SSE2), so a clean-fresh build runs on
 * any x86-64 host; SF_SIMD_CLONES compiles a hot loop three times (AVX-512,
 * AVX2, baseline) and the loader picks the widest the CPU has (GCC's
 * target_clones, through an ifunc). Every clone computes the same float
 * operations in the same order: -std=c11 keeps contraction off (no fused
 * multiply-add appears that the scalar code lacks), and a loop so marked
 * must not reduce floats across iterations (GCC then will not vectorize
 * it; reduce integers, or per-lane, instead). So results are bitwise the
 * same whichever clone runs. Private to src/. */
#ifndef SHARDFIT_SIMD_H
#define SHARDFIT_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SF_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SF_SIMD_CLONES
#endif

/* GCC's two-vector shuffle by an index vector (x's lanes, then y's). Clang
 * (the fuzz build) has no __builtin_shuffle, only constant indices; there
 * it is a loop over the same lanes. F the vector type, V its lanes. */
#if defined(__clang__)
#define SF_VSHUFFLE(F, V, x, y, idx)                                           \
    ({                                                                         \
        F r_;                                                                  \
        for (int j_ = 0; j_ < (V); j_++)                                       \
            r_[j_] = (idx)[j_] < (V) ? (x)[(idx)[j_]] : (y)[(idx)[j_] - (V)];  \
        r_;                                                                    \
    })
#else
#define SF_VSHUFFLE(F, V, x, y, idx) __builtin_shuffle(x, y, idx)
#endif

#endif
