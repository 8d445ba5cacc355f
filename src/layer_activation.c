/* layer_activation.c: elementwise layers without parameters (relu, tanh,
 * sigmoid) and flatten, which only renames the shape. Backward uses the
 * forward output, so no extra state is kept. */
#include "shardfit/layer.h"

#include <math.h>
#include <string.h>

static void relu_forward(const SfLayer *l, const float *in, float *out,
                         int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t m = n * sf_shape_size(l->in);
    for (int64_t i = 0; i < m; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void relu_backward(const SfLayer *l, const float *in, const float *out,
                          const float *dout, float *din, int64_t n,
                          const SfPass *pass)
{
    (void)in;
    (void)pass;
    if (!din)
        return;
    /* Branch-free, with restrict, so the compiler vectorizes it: a branch
     * per element cost more than the dense layer's bias work. */
    const float *restrict o = out, *restrict d = dout;
    float *restrict g = din;
    const int64_t m = n * sf_shape_size(l->in);
    for (int64_t i = 0; i < m; i++)
        g[i] = d[i] * (float)(o[i] > 0.0f);
}

static void tanh_forward(const SfLayer *l, const float *in, float *out,
                         int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t m = n * sf_shape_size(l->in);
    for (int64_t i = 0; i < m; i++)
        out[i] = tanhf(in[i]);
}

static void tanh_backward(const SfLayer *l, const float *in, const float *out,
                          const float *dout, float *din, int64_t n,
                          const SfPass *pass)
{
    (void)in;
    (void)pass;
    if (!din)
        return;
    const int64_t m = n * sf_shape_size(l->in);
    for (int64_t i = 0; i < m; i++)
        din[i] = dout[i] * (1.0f - out[i] * out[i]);
}

static void sigmoid_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t m = n * sf_shape_size(l->in);
    for (int64_t i = 0; i < m; i++)
        out[i] = 1.0f / (1.0f + expf(-in[i]));
}

static void sigmoid_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)pass;
    if (!din)
        return;
    const int64_t m = n * sf_shape_size(l->in);
    for (int64_t i = 0; i < m; i++)
        din[i] = dout[i] * out[i] * (1.0f - out[i]);
}

static void flatten_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    memcpy(out, in, (size_t)(n * sf_shape_size(l->in)) * sizeof *out);
}

static void flatten_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)out;
    (void)pass;
    if (din)
        memcpy(din, dout, (size_t)(n * sf_shape_size(l->in)) * sizeof *din);
}

const SfLayerOps sf_layer_relu = {"relu", relu_forward, relu_backward};
const SfLayerOps sf_layer_tanh = {"tanh", tanh_forward, tanh_backward};
const SfLayerOps sf_layer_sigmoid = {"sigmoid", sigmoid_forward, sigmoid_backward};
const SfLayerOps sf_layer_flatten = {"flatten", flatten_forward, flatten_backward};
