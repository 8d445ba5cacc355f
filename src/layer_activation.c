/* layer_activation.c: elementwise layers without parameters (relu, tanh,
 * sigmoid) and flatten, which only renames the shape. Backward uses the
 * forward output, so no extra state is kept. */
#include "shardfit/layer.h"

#include <math.h>
#include <stdio.h>
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
    /* Branch-free: a branch per element cost more than the dense layer's
     * bias work. (Whether gcc vectorizes it is for the object code to say.) */
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

static int flatten_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    if (arg) {
        snprintf(msg, (size_t)msgsize, "flatten takes no argument");
        return -1;
    }
    l->out = (SfShape){sf_shape_size(l->in), 1, 1};
    return 0;
}

const SfLayerOps sf_layer_relu = {
    .kind = "relu",
    .forward = relu_forward,
    .backward = relu_backward};
const SfLayerOps sf_layer_tanh = {
    .kind = "tanh",
    .forward = tanh_forward,
    .backward = tanh_backward};
const SfLayerOps sf_layer_sigmoid = {
    .kind = "sigmoid",
    .forward = sigmoid_forward,
    .backward = sigmoid_backward};
const SfLayerOps sf_layer_flatten = {
    .kind = "flatten",
    .setup = flatten_setup,
    .forward = flatten_forward,
    .backward = flatten_backward};
