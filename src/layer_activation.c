/* layer_activation.c: elementwise layers without parameters (relu, tanh,
 * sigmoid) and flatten, which only renames the shape. Backward uses the
 * forward output, so no extra state is kept. The loops are plain functions
 * of flat arrays, cloned per vector width (simd.h); check the object code
 * (objdump -d build/obj/layer_activation.o) when you change one: a select
 * written as a comparison times a float turned into a branch per element
 * once, and cost 10% of a training step. */
#include "shardfit/layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "simd.h"

/* y = x > 0 ? x : 0 */
SF_SIMD_CLONES
static void relu_kernel(const float *restrict x, float *restrict y, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dx = y > 0 ? dy : 0 (PyTorch's threshold_backward). Written as a select of
 * two loaded values, which GCC turns into a masked blend. */
SF_SIMD_CLONES
static void relu_backward_kernel(const float *restrict y, const float *restrict dy,
                                 float *restrict dx, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

static void relu_forward(const SfLayer *l, const float *in, float *out,
                         int64_t n, const SfPass *pass)
{
    (void)pass;
    relu_kernel(in, out, n * sf_shape_size(l->in));
}

static void relu_backward(const SfLayer *l, const float *in, const float *out,
                          const float *dout, float *din, int64_t n,
                          const SfPass *pass)
{
    (void)in;
    (void)pass;
    if (din)
        relu_backward_kernel(out, dout, din, n * sf_shape_size(l->in));
}

/* dx = dy (1 - y^2) */
SF_SIMD_CLONES
static void tanh_backward_kernel(const float *restrict y, const float *restrict dy,
                                 float *restrict dx, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* dx = dy y (1 - y) */
SF_SIMD_CLONES
static void sigmoid_backward_kernel(const float *restrict y, const float *restrict dy,
                                    float *restrict dx, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
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
    tanh_backward_kernel(out, dout, din, n * sf_shape_size(l->in));
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
    sigmoid_backward_kernel(out, dout, din, n * sf_shape_size(l->in));
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
