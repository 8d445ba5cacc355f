/* layer_batchnorm.c: batch normalisation with the statistics of the WHOLE
 * global batch, across ranks and micro-batches (SPEC §6), so the weights do
 * not depend on P or micro_batch.
 *
 * Per channel after a conv (over n, h, w), per feature after a dense layer,
 * with nn.BatchNorm's rules: normalise with the batch mean and the biased
 * variance, eps 1e-5; running = 0.9 running + 0.1 batch, the running
 * variance from the unbiased one; num_batches_tracked counts steps.
 * Validation, eval and predict (pass->training 0) use the running values.
 *
 * The global statistics cost two small allreduces per layer and step, as
 * PyTorch's SyncBatchNorm: forward sums (count, sum x, sum x^2 per channel,
 * in float within a plane and double across), backward sums (sum dy, sum dy*xhat per channel). With
 * micro-batches the model gathers these sums over its micro-batches first
 * (SfBatchMode, model.c); here a layer only adds, reduces and uses them.
 *
 * l->sums (doubles, C channels): [0] count, [1, C] sum x, [C+1, 2C] sum x^2;
 * mean at 2C+1, inverse std at 3C+1; sum dy at 4C+1, sum dy*xhat at 5C+1;
 * this rank's two backward sums at 6C+1 (scratch); a pass's per-channel
 * float coefficients at 8C+1 (5C, scratch).
 *
 * The loops over a plane are kernels cloned per vector width (simd.h); the
 * sums within a plane run in LANES independent float partial sums (a GCC
 * vector), added in lane order at the end, so every clone adds in the same
 * order. */
#include "shardfit/layer.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "simd.h"

#define LANES 16

#define EPS 1e-5
#define MOMENTUM 0.1

enum { RUNNING_MEAN = 2, RUNNING_VAR = 3, NUM_BATCHES = 4 };

static int64_t channels(const SfLayer *l) { return l->in.c; }
static int64_t plane(const SfLayer *l) { return l->in.h * l->in.w; }

/* LANES floats as one GCC vector: each lane's operations are the same in
 * every clone (one AVX-512 register, two AVX2 or four SSE ones). */
typedef float Lanes __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t LaneMask __attribute__((vector_size(LANES * sizeof(int32_t))));

/* r[0], r[1] = the lanes of s, q added in lane order, then the scalar tails
 * ts, tq (a macro: a function taking a vector would change the ABI across
 * the clones). */
#define FINISH_SUMS(r, s, q, ts, tq)                                            \
    do {                                                                        \
        for (int j_ = 0; j_ < LANES; j_++) {                                    \
            (r)[0] = (j_ ? (r)[0] : 0.0f) + (s)[j_];                            \
            (r)[1] = (j_ ? (r)[1] : 0.0f) + (q)[j_];                            \
        }                                                                       \
        (r)[0] += (ts);                                                         \
        (r)[1] += (tq);                                                         \
    } while (0)

/* r[0] = sum x, r[1] = sum x^2 over x[0, m): per lane, then lane order. */
SF_SIMD_CLONES
static void plane_sums(const float *restrict x, int64_t m, float *restrict r)
{
    Lanes s = {0}, q = {0};
    int64_t p = 0;
    for (; p + LANES <= m; p += LANES) {
        Lanes v;
        memcpy(&v, x + p, sizeof v);
        s += v;
        q += v * v;
    }
    float ts = 0.0f, tq = 0.0f;
    for (; p < m; p++) {
        ts += x[p];
        tq += x[p] * x[p];
    }
    FINISH_SUMS(r, s, q, ts, tq);
}

/* r[0] = sum dy, r[1] = sum dy (x - mu) over [0, m), as plane_sums. With
 * relu, dy is the relu's gradient (backward_act): dy where the relu's
 * output was positive, else +0, the bits the relu's own backward stores.
 * That output is relu(x fa + fb), fa and fb the forward's affine
 * (affine_of), so it is positive where x fa + fb is, computed as forward
 * computed it: the mask without reading the relu's output. */
SF_SIMD_CLONES
static void plane_dsums(const float *restrict x, const float *restrict dy, float mu,
                        int relu, float fa, float fb, int64_t m, float *restrict r)
{
    const Lanes zero = {0};
    Lanes s = {0}, q = {0};
    int64_t p = 0;
    for (; p + LANES <= m; p += LANES) {
        Lanes d, v;
        memcpy(&d, dy + p, sizeof d);
        memcpy(&v, x + p, sizeof v);
        if (relu)
            d = (Lanes)((LaneMask)d & (v * fa + fb > zero));
        s += d;
        q += d * (v - mu);
    }
    float ts = 0.0f, tq = 0.0f;
    for (; p < m; p++) {
        const float d = !relu || x[p] * fa + fb > 0.0f ? dy[p] : 0.0f;
        ts += d;
        tq += d * (x[p] - mu);
    }
    FINISH_SUMS(r, s, q, ts, tq);
}

/* dx = k dy - a x - b over [0, m). dx may be dy (in place: each element
 * read, then written), so neither is restrict. */
SF_SIMD_CLONES
static void affine2(const float *dy, const float *restrict x, float *dx, int64_t m,
                    float k, float a, float b)
{
    for (int64_t p = 0; p < m; p++)
        dx[p] = k * dy[p] - a * x[p] - b;
}

/* affine2 of the relu's gradient, the mask as in plane_dsums. */
SF_SIMD_CLONES
static void affine2_relu(const float *dy, const float *restrict x, float *dx,
                         int64_t m, float k, float a, float b, float fa, float fb)
{
    for (int64_t p = 0; p < m; p++)
        dx[p] = k * (x[p] * fa + fb > 0.0f ? dy[p] : 0.0f) - a * x[p] - b;
}

/* Adds count, sum x and sum x^2 of in (n, C, HW) to s: float within one
 * plane (at most a few thousand values), double across planes and ranks. */
static void add_forward_sums(const SfLayer *l, const float *in, int64_t n, double *s)
{
    const int64_t C = channels(l), HW = plane(l);
    s[0] += (double)(n * HW);
    for (int64_t b = 0; b < n; b++)
        for (int64_t c = 0; c < C; c++) {
            float r[2];
            plane_sums(in + (b * C + c) * HW, HW, r);
            s[1 + c] += r[0];
            s[1 + C + c] += r[1];
        }
}

/* The reduced forward sums into mean and inverse std; running stats. */
static void finish_forward(const SfLayer *l, const SfPass *pass)
{
    const int64_t C = channels(l);
    double *s = l->sums;
    if (pass->allreduce)
        pass->allreduce(pass->allreduce_ctx, s, 1 + 2 * C);
    const double N = s[0];
    if (N <= 0.0)
        return;
    float *rm = l->data[RUNNING_MEAN], *rv = l->data[RUNNING_VAR];
    for (int64_t c = 0; c < C; c++) {
        double mean = s[1 + c] / N;
        double var = s[1 + C + c] / N - mean * mean;
        if (var < 0.0)
            var = 0.0;
        s[1 + 2 * C + c] = mean;
        s[1 + 3 * C + c] = 1.0 / sqrt(var + EPS);
        if (pass->shared_stats)
            continue;
        double unbiased = N > 1.0 ? var * N / (N - 1.0) : var;
        rm[c] = (float)((1.0 - MOMENTUM) * rm[c] + MOMENTUM * mean);
        rv[c] = (float)((1.0 - MOMENTUM) * rv[c] + MOMENTUM * unbiased);
    }
    if (!pass->shared_stats)
        l->data[NUM_BATCHES][0] += 1.0f;
}

/* Channel c's normalisation as x a + b in float: a = invstd gamma,
 * b = beta - mean invstd gamma. Backward recomputes it for the relu's
 * mask. */
static void affine_of(const SfLayer *l, int64_t c, double mean, double invstd,
                      float *a, float *b)
{
    *a = (float)(invstd * l->w[c]);
    *b = (float)(l->b[c] - mean * invstd * l->w[c]);
}

/* out = act((x - mean) * invstd * gamma + beta), as x a + b in float
 * (activation.h): each channel's a and b first, then the planes in memory
 * order (channel by channel they were runs of one plane, a stride apart,
 * too short for the prefetcher). With next (forward_act), each plane goes
 * to the workspace and from there through next's forward_plane into out. */
static void normalise(const SfLayer *l, SfAct act, const SfLayer *next,
                      const float *in, float *out, int64_t n, const double *mean,
                      const double *invstd, int running)
{
    const int64_t C = channels(l), HW = plane(l);
    double *coef = l->sums + 1 + 8 * C;
    for (int64_t c = 0; c < C; c++) {
        double m = running ? l->data[RUNNING_MEAN][c] : mean[c];
        double is = running ? 1.0 / sqrt((double)l->data[RUNNING_VAR][c] + EPS)
                            : invstd[c];
        float a, b;
        affine_of(l, c, m, is, &a, &b);
        coef[c] = a;
        coef[C + c] = b;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t p = i * C + c;
            if (!next) {
                sf_act_affine(act, in + p * HW, out + p * HW, HW, (float)coef[c],
                              (float)coef[C + c]);
                continue;
            }
            sf_act_affine(act, in + p * HW, l->work, HW, (float)coef[c],
                          (float)coef[C + c]);
            next->ops->forward_plane(next, l->work, p, out);
        }
}

/* The forward, and the next layer's activation in the same pass over the
 * output when the model asks (layer.h's forward_act): the relu after a
 * batchnorm costs no pass of its own, nor, with next, the max pooling
 * after that relu (which then reads each plane from cache). */
static void bn_forward_act(const SfLayer *l, SfAct act, const SfLayer *next,
                           const float *in, float *out, int64_t n,
                           const SfPass *pass)
{
    const int64_t C = channels(l);
    if (!pass->training) {
        normalise(l, act, next, in, out, n, NULL, NULL, 1);
        return;
    }
    if (l->fmode == SF_BATCH_GATHER) {
        if (!l->fed) /* else bn_take_rows added them */
            add_forward_sums(l, in, n, l->sums);
        return;
    }
    if (l->fmode == SF_BATCH_WHOLE) {
        if (!l->fed || n == 0) { /* n = 0: bn_take_rows never ran to zero them */
            memset(l->sums, 0, (size_t)(1 + 2 * C) * sizeof *l->sums);
            add_forward_sums(l, in, n, l->sums);
        }
        finish_forward(l, pass);
    }
    normalise(l, act, next, in, out, n, l->sums + 1 + 2 * C, l->sums + 1 + 3 * C, 0);
}

/* take_rows (layer.h): the forward sums of rows [b, b + count) as the layer
 * before writes them, added in the order add_forward_sums adds them over
 * the whole input, so the statistics have the same bits. */
static void bn_take_rows(const SfLayer *l, const float *rows, int64_t b,
                         int64_t count, int64_t n, const SfPass *pass)
{
    (void)n;
    if (!pass->training || l->fmode == SF_BATCH_FIXED)
        return;
    if (l->fmode == SF_BATCH_WHOLE && b == 0)
        memset(l->sums, 0, (size_t)(1 + 2 * channels(l)) * sizeof *l->sums);
    add_forward_sums(l, rows, count, l->sums);
}

static void bn_forward(const SfLayer *l, const float *in, float *out,
                       int64_t n, const SfPass *pass)
{
    bn_forward_act(l, SF_ACT_NONE, NULL, in, out, n, pass);
}

/* dy's plane p: dout's, or with next (backward_act) next's backward_plane
 * of its gradient dout, into keep's plane p (when the input gradient pass
 * reads it again), else into the workspace. */
static const float *grad_plane(const SfLayer *l, const SfLayer *next,
                               const float *dout, float *keep, int64_t p)
{
    if (!next)
        return dout + p * plane(l);
    float *g = keep ? keep + p * plane(l) : l->work;
    next->ops->backward_plane(next, dout, p, g);
    return g;
}

/* Adds sum dy and sum dy*xhat per channel to s (2C doubles); dy is dout
 * (through next, into keep unless NULL: see grad_plane) masked by the relu
 * after this layer when relu is 1. */
static void add_backward_sums(const SfLayer *l, const float *in, int relu,
                              const SfLayer *next, const float *dout, float *keep,
                              int64_t n, double *s)
{
    const int64_t C = channels(l), HW = plane(l);
    const double *mean = l->sums + 1 + 2 * C, *invstd = l->sums + 1 + 3 * C;
    for (int64_t b = 0; b < n; b++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t at = (b * C + c) * HW;
            float r[2];
            float fa, fb;
            affine_of(l, c, mean[c], invstd[c], &fa, &fb);
            plane_dsums(in + at, grad_plane(l, next, dout, keep, b * C + c), (float)mean[c],
                        relu, fa, fb, HW, r);
            s[c] += r[0];
            s[C + c] += (double)r[1] * invstd[c];
        }
}

/* dgamma, dbeta += this rank's sums; din from the global sums g:
 * din = gamma invstd (dy - sum dy / N - xhat sum(dy xhat) / N), dy being
 * dout masked by the relu after this layer when act is SF_ACT_RELU
 * (layer.h's backward_act). The mask comes from in, not from the relu's
 * output y: one array fewer to read in each of the two passes. */
static void bn_backward_act(const SfLayer *l, SfAct act, const SfLayer *next,
                            const float *in, const float *y, const float *dout,
                            float *din, int64_t n, const SfPass *pass)
{
    (void)y;
    assert(act == SF_ACT_RELU || act == SF_ACT_NONE);
    const int relu = act == SF_ACT_RELU;
    const int64_t C = channels(l), HW = plane(l);
    double *g = l->sums + 1 + 4 * C;
    if (l->bmode == SF_BATCH_GATHER) {
        add_backward_sums(l, in, relu, next, dout, NULL, n, g);
        return;
    }
    double *local = l->sums + 1 + 6 * C;
    memset(local, 0, (size_t)(2 * C) * sizeof *local);
    /* With next, the expanded gradient goes into din, which the input
     * gradient pass then turns into din in place: one expansion a plane. */
    float *keep = next ? din : NULL;
    add_backward_sums(l, in, relu, next, dout, keep, n, local);
    for (int64_t c = 0; c < C; c++) {
        l->db[c] += (float)local[c];
        l->dw[c] += (float)local[C + c];
    }
    if (l->bmode == SF_BATCH_WHOLE) {
        memcpy(g, local, (size_t)(2 * C) * sizeof *g);
        if (pass->allreduce)
            pass->allreduce(pass->allreduce_ctx, g, 2 * C);
    }
    if (!din)
        return;
    const double N = l->sums[0];
    const double *mean = l->sums + 1 + 2 * C, *invstd = l->sums + 1 + 3 * C;
    double *coef = l->sums + 1 + 8 * C; /* each channel's floats, then the planes
                                           in memory order, as normalise */
    for (int64_t c = 0; c < C; c++) {
        /* din = k dy - k xhat mdyx - k mdy = k dy - a x - b, in float */
        const double k = invstd[c] * l->w[c];
        const double mdy = g[c] / N, mdyx = g[C + c] / N;
        float fa, fb;
        affine_of(l, c, mean[c], invstd[c], &fa, &fb);
        coef[c] = (float)k;
        coef[C + c] = (float)(k * invstd[c] * mdyx);
        coef[2 * C + c] = (float)(k * mdy - k * invstd[c] * mdyx * mean[c]);
        coef[3 * C + c] = fa;
        coef[4 * C + c] = fb;
    }
    for (int64_t b = 0; b < n; b++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t at = (b * C + c) * HW;
            const float kf = (float)coef[c], a = (float)coef[C + c];
            const float b0 = (float)coef[2 * C + c];
            /* With keep, din already holds dy: the pass is in place. */
            const float *dy = keep ? din + at : grad_plane(l, next, dout, NULL, b * C + c);
            if (relu)
                affine2_relu(dy, in + at, din + at, HW, kf, a, b0,
                             (float)coef[3 * C + c], (float)coef[4 * C + c]);
            else
                affine2(dy, in + at, din + at, HW, kf, a, b0);
        }
}

static void bn_backward(const SfLayer *l, const float *in, const float *out,
                        const float *dout, float *din, int64_t n,
                        const SfPass *pass)
{
    (void)out;
    bn_backward_act(l, SF_ACT_NONE, NULL, in, NULL, dout, din, n, pass);
}

static void bn_gather_begin(SfLayer *l, int backward)
{
    const int64_t C = channels(l);
    if (backward)
        memset(l->sums + 1 + 4 * C, 0, (size_t)(2 * C) * sizeof *l->sums);
    else
        memset(l->sums, 0, (size_t)(1 + 2 * C) * sizeof *l->sums);
}

static void bn_gather_end(SfLayer *l, int backward, const SfPass *pass)
{
    const int64_t C = channels(l);
    if (!backward)
        finish_forward(l, pass);
    else if (pass->allreduce)
        pass->allreduce(pass->allreduce_ctx, l->sums + 1 + 4 * C, 2 * C);
}

static void bn_init(SfLayer *l)
{
    const int64_t C = channels(l);
    for (int64_t c = 0; c < C; c++) {
        l->w[c] = 1.0f;
        l->b[c] = 0.0f;
        l->data[RUNNING_MEAN][c] = 0.0f;
        l->data[RUNNING_VAR][c] = 1.0f;
    }
    l->data[NUM_BATCHES][0] = 0.0f;
}

/* "batchnorm": weight, bias, running_mean, running_var (C each) and the
 * scalar num_batches_tracked, stored as int64 as PyTorch does. */
static int bn_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    if (arg) {
        snprintf(msg, (size_t)msgsize, "batchnorm takes no argument");
        return -1;
    }
    int64_t C = channels(l);
    sf_layer_add_part(l, "weight", 0, 1, &C);
    sf_layer_add_part(l, "bias", 0, 1, &C);
    sf_layer_add_part(l, "running_mean", 1, 1, &C);
    sf_layer_add_part(l, "running_var", 1, 1, &C);
    sf_layer_add_part(l, "num_batches_tracked", 1, 0, NULL);
    l->parts[NUM_BATCHES].integer = 1;
    l->nsums = 1 + 13 * C;
    l->work_fixed = plane(l); /* one plane for forward_act's and backward_act's next */
    return 0;
}

const SfLayerOps sf_layer_batchnorm = {
    .kind = "batchnorm",
    .setup = bn_setup,
    .forward = bn_forward,
    .forward_act = bn_forward_act,
    .backward = bn_backward,
    .backward_act = bn_backward_act,
    .takes_planes = 1,
    .take_rows = bn_take_rows,
    .init = bn_init,
    .gather_begin = bn_gather_begin,
    .gather_end = bn_gather_end};
