/* layer_pool.c: max and average pooling over k x k windows, per channel,
 * no padding, floor mode (windows that would pass the edge are dropped).
 *
 * Max pooling keeps the first maximum in row-major window order, as
 * PyTorch's CPU kernel (MaxPoolKernel.cpp: `val > max || isnan(val)`), and
 * its gradient goes to that element only. No index is stored: backward
 * scans the window again from the forward input, which finds the same
 * element. */
#include "shardfit/layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Offset in the channel plane of the first maximum of window (y, x). */
static int64_t argmax(const SfLayer *l, const float *plane, int64_t y, int64_t x)
{
    const int64_t W = l->in.w, k = l->k, y0 = y * l->stride, x0 = x * l->stride;
    int64_t best = y0 * W + x0;
    float m = plane[best];
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            const int64_t at = (y0 + i) * W + x0 + j;
            if (plane[at] > m || isnan(plane[at])) {
                m = plane[at];
                best = at;
                if (isnan(m))
                    return best;
            }
        }
    return best;
}

/* in (n, C, H, W), out (n, C, OH, OW). */
static void maxpool_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t planes = n * l->in.c, HW = l->in.h * l->in.w;
    const int64_t OH = l->out.h, OW = l->out.w;
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = in + p * HW;
        float *o = out + p * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++)
                o[y * OW + x] = plane[argmax(l, plane, y, x)];
    }
}

static void maxpool_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)out;
    (void)pass;
    if (!din)
        return;
    const int64_t planes = n * l->in.c, HW = l->in.h * l->in.w;
    const int64_t OH = l->out.h, OW = l->out.w;
    memset(din, 0, (size_t)(planes * HW) * sizeof *din);
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = in + p * HW, *d = dout + p * OH * OW;
        float *g = din + p * HW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++)
                g[argmax(l, plane, y, x)] += d[y * OW + x];
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
