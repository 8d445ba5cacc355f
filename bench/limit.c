/* bench/limit.c: the floor under one training step, for `make bench`.
 *
 *   mpirun -np P build/bench_limit LAYERS INPUT BATCH [REPS]
 *
 * Builds the model LAYERS (the [model] layers string) for INPUT features per
 * sample, then times, on every rank at once (as training runs them):
 *   gemm:      the sgemm calls of one training step of its dense layers on
 *              this rank's share of BATCH (ceil(BATCH / P) rows), with the
 *              shapes and layouts layer_dense.c uses: forward NT, weight
 *              gradient TN (accumulating), input gradient NN (not for the
 *              first layer);
 *   optim:     one SGD-momentum update of all parameters (sf_optim_step);
 *   allreduce: MPI_Allreduce in place of the gradient block (parameters plus
 *              the step's tail), as the trainer sends it (P > 1 only).
 * Prints one line of key=value pairs from rank 0, over REPS (default 200)
 * after a warm-up: gemm_ms, optim_ms and allreduce_ms are means of wall
 * time, the statistic shardfit's own samples/s is (a step's mean, every
 * slow step counted); gemm_cpu_ms and optim_cpu_ms are medians of thread
 * CPU time, which other jobs on the machine move least. Comparing
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

typedef struct {
    int ni, no, first;
    float *w, *dw, *in, *out, *din;
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

static void step_gemms(const Gemm *g, int ng, int n)
{
    for (int i = 0; i < ng; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, g[i].no, g[i].ni,
                    1.0f, g[i].in, g[i].ni, g[i].w, g[i].ni, 1.0f, g[i].out, g[i].no);
    for (int i = ng - 1; i >= 0; i--) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g[i].no, g[i].ni, n,
                    1.0f, g[i].out, g[i].no, g[i].in, g[i].ni, 1.0f, g[i].dw, g[i].ni);
        if (!g[i].first)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, g[i].ni,
                        g[i].no, 1.0f, g[i].out, g[i].no, g[i].w, g[i].ni, 0.0f,
                        g[i].din, g[i].ni);
    }
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
    const int input = atoi(argv[2]), batch = atoi(argv[3]);
    const int reps = argc > 4 ? atoi(argv[4]) : 200;
    const int n = (batch + size - 1) / size;
    openblas_set_num_threads(1);
    SfError err = {0};
    SfModel *m = sf_model_create(argv[1], (SfShape){input, 1, 1},
                                 SF_LOSS_CROSS_ENTROPY, n, &err);
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
        if (l->ops != &sf_layer_dense) {
            skipped += l->nweight > 0;
            continue;
        }
        Gemm *x = &g[ng];
        x->ni = (int)sf_shape_size(l->in);
        x->no = (int)l->units;
        x->first = ng == 0;
        x->w = filled((size_t)x->no * (size_t)x->ni);
        x->dw = filled((size_t)x->no * (size_t)x->ni);
        x->in = filled((size_t)n * (size_t)x->ni);
        x->out = filled((size_t)n * (size_t)x->no);
        x->din = filled((size_t)n * (size_t)x->ni);
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
    double mine[5] = {gemm, optim, allreduce, gemm_cpu, optim_cpu}, worst[5];
    MPI_Reduce(mine, worst, 5, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("ranks=%d rows=%d params=%lld gemm_ms=%.4f optim_ms=%.4f "
               "allreduce_ms=%.4f gemm_cpu_ms=%.4f optim_cpu_ms=%.4f "
               "other_param_layers=%d\n", size, n, (long long)np, 1e3 * worst[0],
               1e3 * worst[1], 1e3 * worst[2], 1e3 * worst[3], 1e3 * worst[4], skipped);
    free(w);
    free(t);
    sf_optim_free(o);
    sf_model_free(m);
    MPI_Finalize();
    return 0;
}
