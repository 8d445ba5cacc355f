/* bench/limit.c: the floor under one training step, for `make bench`.
 *
 *   mpirun -np P build/bench_limit LAYERS INPUT BATCH [REPS]
 *
 * Builds the model LAYERS (the [model] layers string) for samples of shape
 * INPUT (F features, or CxHxW for images), then times, on every rank at
 * once (as training runs them):
 *   gemm:      the sgemm calls of one training step of its dense and conv
 *              layers on this rank's share of BATCH (ceil(BATCH / P) rows),
 *              with the shapes and layouts the layers use. Dense
 *              (layer_dense.c): forward NT, weight gradient TN
 *              (accumulating), input gradient NN. Conv (layer_conv.c), per
 *              sample on its (C k k, OH OW) column matrix: forward NN
 *              (with the bias as one more row of the product),
 *              weight gradient NT (accumulating), column gradient TN; or,
 *              where conv_winograd.c computes the layer, its own 16 sgemms
 *              of each kind per chunk of samples (sf_wino_gemms). The
 *              first layer computes no input gradient. Not timed: im2col,
 *              col2im, bias, batchnorm, pooling, activations: those are
 *              the rest of the step, which the limit leaves out;
 *   optim:     one SGD-momentum update of all parameters (sf_optim_step);
 *   allreduce: MPI_Allreduce in place of the gradient block (parameters plus
 *              the step's tail), as the trainer sends it (P > 1 only);
 *   batchnorm: each batchnorm layer's passes over its input that remain
 *              after shardfit's fusions (bn_passes), as plain vector loops
 *              on tensors of that size: what its statistics over the
 *              global batch cost at this machine's memory speed.
 * Prints one line of key=value pairs from rank 0, over REPS (default 200)
 * after a warm-up: gemm_ms, optim_ms, allreduce_ms and batchnorm_ms are
 * means of wall time, the statistic shardfit's own samples/s is (a step's
 * mean, every slow step counted); gemm_cpu_ms and optim_cpu_ms are medians
 * of thread CPU time, which other jobs on the machine move least. Comparing
 * shardfit's mean wall time with a median CPU time had put it 2-5% further
 * from the bound than it was. A benchmark tool, not part of shardfit: it
 * calls BLAS and MPI itself, which the product leaves to its gateways. */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/bigalloc.h"
#include "../src/conv_winograd.h"
#include "../src/simd.h"
#include "shardfit/model.h"
#include "shardfit/optim.h"

static double clock_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void) { return clock_of(CLOCK_MONOTONIC); }

/* This thread's CPU time: GEMM and the optimizer run in the calling thread
 * (one BLAS thread), so this is their cost even when other jobs preempt
 * the rank, where wall time would count the preemption too. */
static double cpu_now(void) { return clock_of(CLOCK_THREAD_CPUTIME_ID); }

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

static double mean(const double *t, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += t[i];
    return s / n;
}

/* One parametric layer's sgemm shapes. Dense: ni inputs, no outputs per
 * row. Conv: no = out channels, ni = C k k, np = OH OW positions, and
 * in holds one sample's column matrix (ni, np) and a row of ones, din
 * its gradient (ni, np). */
typedef struct {
    int ni, no, np, conv, first;
    float *w, *dw, *in, *out, *din;
    float *wb; /* conv: the weights with the bias as a last column */
    int wino; /* Winograd: w is the layer's workspace */
    const SfLayer *layer;
} Gemm;

/* On the pages shardfit itself uses for its flat blocks (bigalloc.h), so
 * the optimizer's floor is not timed on TLB misses shardfit no longer has. */
static float *filled(size_t n)
{
    float *p = sf_big_calloc(n, sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_limit: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = 0.001f * (float)(i % 97) - 0.04f;
    return p;
}

static void forward_gemms(const Gemm *g, int n)
{
    if (g->wino) {
        sf_wino_gemms(g->layer, g->w, SF_WINO_FORWARD, n);
        return;
    }
    if (!g->conv) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, g->no, g->ni,
                    1.0f, g->in, g->ni, g->w, g->ni, 1.0f, g->out, g->no);
        return;
    }
    for (int b = 0; b < n; b++) /* [W | bias] (no, ni + 1) by [col; ones] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->no, g->np, g->ni + 1,
                    1.0f, g->wb, g->ni + 1, g->in, g->np, 0.0f,
                    g->out + (size_t)b * g->no * g->np, g->np);
}

static void backward_gemms(const Gemm *g, int n)
{
    if (g->wino) {
        sf_wino_gemms(g->layer, g->w, SF_WINO_WEIGHT_GRAD, n);
        if (!g->first)
            sf_wino_gemms(g->layer, g->w, SF_WINO_INPUT_GRAD, n);
        return;
    }
    if (!g->conv) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->no, g->ni, n,
                    1.0f, g->out, g->no, g->in, g->ni, 1.0f, g->dw, g->ni);
        if (!g->first)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, g->ni,
                        g->no, 1.0f, g->out, g->no, g->w, g->ni, 0.0f,
                        g->din, g->ni);
        return;
    }
    for (int b = 0; b < n; b++) {
        const float *dy = g->out + (size_t)b * g->no * g->np;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->no, g->ni, g->np,
                    1.0f, dy, g->np, g->in, g->np, 1.0f, g->dw, g->ni);
        if (!g->first)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->ni, g->np, g->no,
                        1.0f, g->w, g->ni, dy, g->np, 0.0f, g->din, g->np);
    }
}

/* Batchnorm's passes over its input x (m floats: the rows' C H W) as
 * shardfit makes them, each one after a sum over the global batch, which
 * no fusion moves across: forward normalises x (read x: its statistics
 * were summed as the conv wrote it), backward sums dy and dy x (read x and
 * dy), then din = k dy - a x - b (read x and dy, write din). Plain vector
 * loops, 16 independent lanes (a tail under 16 floats left out): what this
 * machine's memory gives for tensors of this size. */
typedef float Lanes __attribute__((vector_size(16 * sizeof(float))));

SF_SIMD_CLONES
static float bn_passes(const float *x, const float *dy, float *din, int64_t m)
{
    Lanes s = {0}, d = {0}, q = {0};
    for (int64_t p = 0; p + 16 <= m; p += 16) {
        Lanes v;
        memcpy(&v, x + p, sizeof v);
        s += v;
    }
    for (int64_t p = 0; p + 16 <= m; p += 16) {
        Lanes v, g;
        memcpy(&v, x + p, sizeof v);
        memcpy(&g, dy + p, sizeof g);
        d += g;
        q += g * v;
    }
    for (int64_t p = 0; p + 16 <= m; p += 16) {
        Lanes v, g;
        memcpy(&v, x + p, sizeof v);
        memcpy(&g, dy + p, sizeof g);
        g = 0.5f * g - 0.25f * v - 0.125f;
        memcpy(din + p, &g, sizeof g);
    }
    float r = 0.0f;
    for (int j = 0; j < 16; j++)
        r += s[j] + d[j] + q[j];
    return r;
}

static void step_gemms(const Gemm *g, int ng, int n)
{
    for (int i = 0; i < ng; i++)
        forward_gemms(&g[i], n);
    for (int i = ng - 1; i >= 0; i--)
        backward_gemms(&g[i], n);
}

/* INPUT: "F" (F features) or "CxHxW"; 0 when malformed. */
static int parse_shape(const char *s, SfShape *shape)
{
    long c = 0, h = 1, w = 1;
    int got = sscanf(s, "%ldx%ldx%ld", &c, &h, &w);
    if ((got != 1 && got != 3) || c < 1 || h < 1 || w < 1)
        return 0;
    *shape = (SfShape){c, h, w};
    return 1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 4) {
        if (rank == 0)
            fprintf(stderr, "usage: bench_limit LAYERS INPUT BATCH [REPS]\n");
        MPI_Finalize();
        return 2;
    }
    SfShape input;
    const int batch = atoi(argv[3]);
    const int reps = argc > 4 ? atoi(argv[4]) : 200;
    const int n = (batch + size - 1) / size;
    openblas_set_num_threads(1);
    SfError err = {0};
    if (!parse_shape(argv[2], &input)) {
        if (rank == 0)
            fprintf(stderr, "bench_limit: INPUT '%s' is neither F nor CxHxW\n", argv[2]);
        MPI_Finalize();
        return 2;
    }
    SfModel *m = sf_model_create(argv[1], input, SF_LOSS_CROSS_ENTROPY, n, &err);
    if (!m) {
        if (rank == 0)
            fprintf(stderr, "bench_limit: %s\n", err.msg);
        MPI_Finalize();
        return 2;
    }
    Gemm g[64];
    int ng = 0, skipped = 0;
    for (int i = 0; i < sf_model_nlayers(m); i++) {
        const SfLayer *l = sf_model_layer(m, i);
        const int conv = l->ops == &sf_layer_conv;
        if (l->ops != &sf_layer_dense && !conv) {
            skipped += l->nweight > 0;
            continue;
        }
        if (ng == (int)(sizeof g / sizeof g[0])) {
            if (rank == 0)
                fprintf(stderr, "bench_limit: more than %d dense and conv layers\n", ng);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        Gemm *x = &g[ng];
        x->conv = conv;
        x->first = i == 0; /* layer 0 gets no input gradient (model.c) */
        x->no = (int)l->units;
        x->ni = conv ? (int)(l->in.c * l->k * l->k) : (int)sf_shape_size(l->in);
        x->np = conv ? (int)(l->out.h * l->out.w) : 1;
        x->wino = conv && sf_wino_applies(l);
        if (x->wino) {
            x->layer = l;
            x->w = filled((size_t)sf_wino_work(l));
            ng++;
            continue;
        }
        /* Dense: n rows of in, out, din. Conv: one sample's columns (in,
         * din) and n samples of out, as layer_conv.c's workspace. */
        const size_t rows = conv ? 1 : (size_t)n;
        x->w = filled((size_t)x->no * (size_t)x->ni);
        x->dw = filled((size_t)x->no * (size_t)x->ni);
        x->in = filled(rows * (size_t)(x->ni + conv) * (size_t)x->np);
        if (conv)
            x->wb = filled((size_t)x->no * (size_t)(x->ni + 1));
        x->out = filled((size_t)n * (size_t)x->no * (size_t)x->np);
        x->din = filled(rows * (size_t)x->ni * (size_t)x->np);
        ng++;
    }
    const int64_t np = sf_model_nparams(m);
    double *t = malloc((size_t)reps * sizeof *t), *w = malloc((size_t)reps * sizeof *w);
    for (int r = 0; r < 20; r++)
        step_gemms(g, ng, n);
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now(), w0 = now();
        step_gemms(g, ng, n);
        w[r] = now() - w0;
        t[r] = cpu_now() - t0;
    }
    const double gemm = mean(w, reps), gemm_cpu = median(t, reps);

    SfConfig cfg;
    sf_config_defaults(&cfg);
    cfg.optimizer.momentum = 0.9;
    SfOptim *o = sf_optim_create(&cfg, np, &err);
    float *p = filled((size_t)np), *grad = filled((size_t)np + SF_MODEL_GRAD_TAIL);
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now(), w0 = now();
        sf_optim_step(o, p, grad, 1e-3f, 1e-3);
        w[r] = now() - w0;
        t[r] = cpu_now() - t0;
    }
    const double optim = mean(w, reps), optim_cpu = median(t, reps);

    double bn = 0.0;
    for (int i = 0; i < sf_model_nlayers(m); i++) {
        const SfLayer *l = sf_model_layer(m, i);
        if (l->ops != &sf_layer_batchnorm)
            continue;
        const int64_t size = n * sf_shape_size(l->in);
        float *x = filled((size_t)size), *dy = filled((size_t)size),
              *din = filled((size_t)size);
        volatile float sink = 0.0f;
        for (int r = 0; r < 5; r++)
            sink += bn_passes(x, dy, din, size);
        for (int r = 0; r < reps; r++) {
            double w0 = now();
            sink += bn_passes(x, dy, din, size);
            w[r] = now() - w0;
        }
        bn += mean(w, reps);
        (void)sink;
        free(x);
        free(dy);
        free(din);
    }

    double allreduce = 0.0;
    if (size > 1) {
        const int count = (int)(np + SF_MODEL_GRAD_TAIL);
        for (int r = 0; r < 20; r++)
            MPI_Allreduce(MPI_IN_PLACE, grad, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        for (int r = 0; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            MPI_Allreduce(MPI_IN_PLACE, grad, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            t[r] = now() - t0;
        }
        allreduce = mean(t, reps);
    }
    /* Every rank's figures; rank 0 reports the slowest rank's (a step waits
     * for it). */
    double mine[6] = {gemm, optim, allreduce, gemm_cpu, optim_cpu, bn}, worst[6];
    MPI_Reduce(mine, worst, 6, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("ranks=%d rows=%d params=%lld gemm_ms=%.4f optim_ms=%.4f "
               "allreduce_ms=%.4f gemm_cpu_ms=%.4f optim_cpu_ms=%.4f "
               "batchnorm_ms=%.4f other_param_layers=%d\n", size, n, (long long)np,
               1e3 * worst[0], 1e3 * worst[1], 1e3 * worst[2], 1e3 * worst[3],
               1e3 * worst[4], 1e3 * worst[5], skipped);
    free(w);
    free(t);
    sf_optim_free(o);
    sf_model_free(m);
    MPI_Finalize();
    return 0;
}
