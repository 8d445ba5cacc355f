/* layer_dense.c: the fully connected layer, y = x W^T + b, on OpenBLAS.
 * W is (out, in) and b (out), as in PyTorch's nn.Linear, so weights move
 * between the two without transposing. */
#include "shardfit/layer.h"

#include <assert.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activation.h"
#include "simd.h"

/* db (no) += column sums of dout (n, no), row by row: each db[o] adds its
 * rows in order, so the sum is the same at every vector width. */
SF_SIMD_CLONES
static void add_column_sums(const float *restrict dout, float *restrict db,
                            int64_t n, int64_t no)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < no; o++)
            db[o] += dout[i * no + o];
}

/* in is (n, ni), W is (no, ni), b is (no), out is (n, no): out = act(in W^T
 * + b), the bias (and the activation, when fused) added in one pass after
 * the GEMM, which writes out without reading it. */
static void dense_forward_act(const SfLayer *l, SfAct act, const SfLayer *next,
                              const float *in, float *out, int64_t n,
                              const SfPass *pass)
{
    (void)pass;
    assert(!next); /* takes_planes is 0 */
    const int64_t ni = sf_shape_size(l->in), no = l->units;
    if (n == 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)no, (int)ni,
                1.0f, in, (int)ni, l->w, (int)ni, 0.0f, out, (int)no);
    sf_act_bias_rows(act, l->b, out, n, no);
}

static void dense_forward(const SfLayer *l, const float *in, float *out,
                          int64_t n, const SfPass *pass)
{
    dense_forward_act(l, SF_ACT_NONE, NULL, in, out, n, pass);
}

/* dW (no, ni) += dout^T (no, n) . in (n, ni); db += column sums of dout;
 * din (n, ni) = dout (n, no) . W (no, ni). */
static void dense_backward(const SfLayer *l, const float *in, const float *out,
                           const float *dout, float *din, int64_t n,
                           const SfPass *pass)
{
    (void)out;
    (void)pass;
    const int64_t ni = sf_shape_size(l->in), no = l->units;
    if (n == 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)no, (int)ni, (int)n,
                1.0f, dout, (int)no, in, (int)ni, 1.0f, l->dw, (int)ni);
    add_column_sums(dout, l->db, n, no);
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)ni,
                    (int)no, 1.0f, dout, (int)no, l->w, (int)ni, 0.0f, din, (int)ni);
}

/* "dense:UNITS": weight (units, in) and bias (units); an image input is
 * read flat, as after flatten. */
static int dense_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    if (sf_layer_parse_ints(arg, &l->units, 1, 0) != 1) {
        snprintf(msg, (size_t)msgsize,
                 "dense needs a positive unit count, as in dense:128");
        return -1;
    }
    int64_t in = sf_shape_size(l->in);
    l->out = (SfShape){l->units, 1, 1};
    sf_layer_add_part(l, "weight", 0, 2, (int64_t[]){l->units, in});
    sf_layer_add_part(l, "bias", 0, 1, &l->units);
    l->fan_in = (double)in;
    l->fan_out = (double)l->units;
    return 0;
}

const SfLayerOps sf_layer_dense = {
    .kind = "dense",
    .setup = dense_setup,
    .forward = dense_forward,
    .forward_act = dense_forward_act,
    .backward = dense_backward};

/* OpenBLAS would start one thread per core in every rank; the trainer sets
 * train.threads (default 1) so P ranks do not fight over the cores. */
void sf_layer_blas_threads(int n)
{
    openblas_set_num_threads(n);
}

const char *sf_layer_blas_config(void)
{
    return openblas_get_config();
}

const char *sf_layer_blas_core(void)
{
    return openblas_get_corename();
}

/* OpenBLAS 0.3.21 picks its kernels when the library loads, and it maps AMD
 * CPUs with AVX-512 (Zen 4) to its Haswell (AVX2) kernels; the SkylakeX
 * kernels run this trainer's steps about 35% faster there. The choice can
 * only be changed through OPENBLAS_CORETYPE before load, so set it and
 * re-execute once. A user's own OPENBLAS_CORETYPE is left alone. */
void sf_layer_blas_select_kernels(char **argv)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE") || !__builtin_cpu_supports("avx512f") ||
        !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl") ||
        !strcmp(openblas_get_corename(), "SkylakeX") ||
        !strcmp(openblas_get_corename(), "CooperLake") ||
        !strcmp(openblas_get_corename(), "SapphireRapids"))
        return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the default kernels. */
#else
    (void)argv;
#endif
}
