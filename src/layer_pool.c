/* layer_pool.c: max and average pooling over k x k windows, per channel,
 * no padding, floor mode (windows that would pass the edge are dropped).
 *
 * Max pooling keeps the first maximum in row-major window order, as
 * PyTorch's CPU kernel (MaxPoolKernel.cpp: `val > max || isnan(val)`), and
 * its gradient goes to that element only: forward keeps its index in the
 * layer's workspace for the backward of the same pass. */
#include "shardfit/layer.h"

#include <stdio.h>
#include <string.h>

/* 1 when v replaces m as the window's maximum (PyTorch's rule). */
static inline int beats(float v, float m) { return v > m || v != v; }

/* The common 2x2 stride-2 case, the same rule, one output row at a time
 * with independent windows (so the selects pipeline instead of chaining
 * through a loop over the window). */
static void maxpool_2x2(const float *in, float *out, int32_t *at, int64_t planes,
                        int64_t H, int64_t W, int64_t OH, int64_t OW)
{
    for (int64_t p = 0; p < planes; p++)
        for (int64_t y = 0; y < OH; y++) {
            const float *r0 = in + (p * H + 2 * y) * W, *r1 = r0 + W;
            float *o = out + (p * OH + y) * OW;
            int32_t *a = at + (p * OH + y) * OW;
            const int32_t base = (int32_t)(2 * y * W);
            for (int64_t x = 0; x < OW; x++) {
                float m = r0[2 * x];
                int32_t best = base + (int32_t)(2 * x);
                const float v1 = r0[2 * x + 1], v2 = r1[2 * x], v3 = r1[2 * x + 1];
                if (beats(v1, m)) { m = v1; best = base + (int32_t)(2 * x + 1); }
                if (beats(v2, m)) { m = v2; best = base + (int32_t)(W + 2 * x); }
                if (beats(v3, m)) { m = v3; best = base + (int32_t)(W + 2 * x + 1); }
                o[x] = m;
                a[x] = best;
            }
        }
}

/* in (n, C, H, W), out (n, C, OH, OW); the offset in its plane of each
 * output's maximum goes to the workspace (int32, one per output) for
 * backward. The first maximum in row-major order wins (a NaN beats
 * everything, the last NaN winning, as PyTorch's rule has it). */
static void maxpool_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t planes = n * l->in.c, W = l->in.w, HW = l->in.h * W;
    const int64_t OH = l->out.h, OW = l->out.w, k = l->k, s = l->stride;
    int32_t *at = (int32_t *)l->work;
    if (k == 2 && s == 2) {
        maxpool_2x2(in, out, at, planes, l->in.h, W, OH, OW);
        return;
    }
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = in + p * HW;
        float *o = out + p * OH * OW;
        int32_t *a = at + p * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                int32_t best = (int32_t)(y * s * W + x * s);
                float m = plane[best];
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++) {
                        const int32_t q = (int32_t)((y * s + i) * W + x * s + j);
                        const float v = plane[q];
                        const int take = v > m || v != v; /* selects, no branch */
                        m = take ? v : m;
                        best = take ? q : best;
                    }
                o[y * OW + x] = m;
                a[y * OW + x] = best;
            }
    }
}

/* The gradient goes to each window's kept element only. */
static void maxpool_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)out;
    (void)pass;
    if (!din)
        return;
    const int64_t planes = n * l->in.c, HW = l->in.h * l->in.w;
    const int64_t PO = l->out.h * l->out.w;
    const int32_t *at = (const int32_t *)l->work;
    memset(din, 0, (size_t)(planes * HW) * sizeof *din);
    for (int64_t p = 0; p < planes; p++) {
        const float *d = dout + p * PO;
        const int32_t *a = at + p * PO;
        float *g = din + p * HW;
        for (int64_t q = 0; q < PO; q++)
            g[a[q]] += d[q];
    }
}

/* The mean of each window (count k*k: there is no padding). */
static void avgpool_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t planes = n * l->in.c, W = l->in.w, HW = l->in.h * W;
    const int64_t OH = l->out.h, OW = l->out.w, k = l->k, s = l->stride;
    const float inv = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = in + p * HW;
        float *o = out + p * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                float sum = 0.0f;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        sum += plane[(y * s + i) * W + x * s + j];
                o[y * OW + x] = sum * inv;
            }
    }
}

static void avgpool_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)out;
    (void)pass;
    if (!din)
        return;
    const int64_t planes = n * l->in.c, W = l->in.w, HW = l->in.h * W;
    const int64_t OH = l->out.h, OW = l->out.w, k = l->k, s = l->stride;
    const float inv = 1.0f / (float)(k * k);
    memset(din, 0, (size_t)(planes * HW) * sizeof *din);
    for (int64_t p = 0; p < planes; p++) {
        const float *d = dout + p * OH * OW;
        float *g = din + p * HW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                const float v = d[y * OW + x] * inv;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        g[(y * s + i) * W + x * s + j] += v;
            }
    }
}

/* "maxpool:K[:STRIDE]" and "avgpool:K[:STRIDE]", stride K by default. */
static int pool_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    int64_t v[2] = {0, 0};
    int got = sf_layer_parse_ints(arg, v, 2, 0);
    if (got < 1) {
        snprintf(msg, (size_t)msgsize, "%s needs K[:STRIDE] (positive "
                 "integers), as in %s:2", l->ops->kind, l->ops->kind);
        return -1;
    }
    l->k = v[0];
    l->stride = got > 1 ? v[1] : v[0];
    if (l->k > l->in.h || l->k > l->in.w) {
        snprintf(msg, (size_t)msgsize, "a %lldx%lld window does not fit a "
                 "%lldx%lld image: output would be (%lld, 0, 0)",
                 (long long)l->k, (long long)l->k, (long long)l->in.h,
                 (long long)l->in.w, (long long)l->in.c);
        return -1;
    }
    l->out = (SfShape){l->in.c, (l->in.h - l->k) / l->stride + 1,
                       (l->in.w - l->k) / l->stride + 1};
    if (l->ops == &sf_layer_maxpool) /* int32 indices, as many as floats */
        l->work_per_row = sf_shape_size(l->out);
    return 0;
}

const SfLayerOps sf_layer_maxpool = {
    .kind = "maxpool",
    .setup = pool_setup,
    .forward = maxpool_forward,
    .backward = maxpool_backward};
const SfLayerOps sf_layer_avgpool = {
    .kind = "avgpool",
    .setup = pool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward};
