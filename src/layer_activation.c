/* layer_activation.c: elementwise layers without parameters (relu, tanh,
 * sigmoid) and flatten, which only renames the shape. Backward uses the
 * forward output, so no extra state is kept. The loops are plain functions
 * of flat arrays, cloned per vector width (simd.h); check the object code
 * (objdump -d build/obj/layer_activation.o) when you change one: a select
 * written as a comparison times a float turned into a branch per element
 * once, and cost 10% of a training step; libm's tanhf and expf are scalar
 * calls, so tanh and sigmoid carry their own exp and tanh below. The same
 * math serves a dense layer that applies its activation itself
 * (activation.h). */
#include "shardfit/layer.h"

#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "simd.h"

/* The functions below are plain float arithmetic, selects and bit moves, so
 * every clone vectorizes them and computes the same bits (simd.h); a NaN
 * stays NaN, except through the relu, which makes it 0 (PyTorch's relu
 * keeps it). */

static inline float act_relu(float x)
{
    return sf_relu(x);
}

/* e^x within 1.4 ulp over [-87, 88] (Cephes' expf polynomial: x = k ln2 + r,
 * |r| <= ln2/2; 2^k put into the exponent bits). x is clamped to that range,
 * so e^x >= 1.6e-38 and never infinite. */
static inline float act_exp(float x)
{
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    /* k = round(x / ln2): adding 1.5 * 2^23 rounds to an integer, which
     * then sits in the low bits of t (no float-to-int conversion, which a
     * NaN would make undefined) */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float k = t - 12582912.0f;
    float r = x - k * 0.693359375f; /* ln2 in two parts, the first exact */
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4b400000u + 127u) << 23; /* 0x4b400000: 1.5 * 2^23 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* 1 / (1 + e^-x), within 2.5 ulp where it is above 1e-37 (checked against
 * double precision over every 8th float). */
static inline float act_sigmoid(float x)
{
    return 1.0f / (1.0f + act_exp(-x));
}

/* tanh within 5 ulp (1e-7 absolute): below |x| = 0.625 Eigen's rational
 * approximation (degree 7/3 in x^2), above 1 - 2 / (e^2|x| + 1) with the
 * sign of x. Both are computed, one kept: a select, not a branch. */
static inline float act_tanh(float x)
{
    float ax = x < 0.0f ? -x : x;
    float big = 1.0f - 2.0f / (act_exp(2.0f * ax) + 1.0f);
    big = x < 0.0f ? -big : big;
    float s = x > 0.625f ? 0.625f : x;
    s = s < -0.625f ? -0.625f : s;
    float s2 = s * s;
    float p = -2.76076847742355e-16f;
    p = p * s2 + 2.00018790482477e-13f;
    p = p * s2 + -8.60467152213735e-11f;
    p = p * s2 + 5.12229709037114e-08f;
    p = p * s2 + 1.48572235717979e-05f;
    p = p * s2 + 6.37261928875436e-04f;
    p = p * s2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * s2 + 1.18534705686654e-04f;
    q = q * s2 + 2.26843463243900e-03f;
    q = q * s2 + 4.89352518554385e-03f;
    float small = p * s / q;
    return ax < 0.625f ? small : big;
}

/* One clone family per activation: y = f(x) on flat arrays, and
 * y = f(y + b) row by row for the fused bias. */
#define ACT_KERNELS(NAME, F)                                                 \
    SF_SIMD_CLONES                                                           \
    static void NAME##_kernel(const float *restrict x, float *restrict y,    \
                              int64_t m)                                     \
    {                                                                        \
        for (int64_t i = 0; i < m; i++)                                      \
            y[i] = F(x[i]);                                                  \
    }                                                                        \
    ACT_BIAS_KERNEL(NAME, F)

#define ACT_BIAS_KERNEL(NAME, F)                                             \
    SF_SIMD_CLONES                                                           \
    static void NAME##_bias_kernel(const float *restrict b, float *restrict y, \
                                   int64_t n, int64_t no)                    \
    {                                                                        \
        for (int64_t i = 0; i < n; i++)                                      \
            for (int64_t o = 0; o < no; o++)                                 \
                y[i * no + o] = F(y[i * no + o] + b[o]);                     \
    }

static inline float act_none(float x)
{
    return x;
}

ACT_KERNELS(relu, act_relu)
ACT_KERNELS(tanh, act_tanh)
ACT_KERNELS(sigmoid, act_sigmoid)
ACT_BIAS_KERNEL(none, act_none)

/* y = f(x a + b) over [0, m): batchnorm's normalise pass with the next
 * layer's activation in it. */
#define ACT_AFFINE_KERNEL(NAME, F)                                           \
    SF_SIMD_CLONES                                                           \
    static void NAME##_affine_kernel(const float *restrict x, float *restrict y, \
                                     int64_t m, float a, float b)            \
    {                                                                        \
        for (int64_t i = 0; i < m; i++)                                      \
            y[i] = F(x[i] * a + b);                                          \
    }

ACT_AFFINE_KERNEL(none, act_none)
ACT_AFFINE_KERNEL(relu, act_relu)
ACT_AFFINE_KERNEL(tanh, act_tanh)
ACT_AFFINE_KERNEL(sigmoid, act_sigmoid)

void sf_act_affine(SfAct act, const float *x, float *y, int64_t m, float a, float b)
{
    switch (act) {
    case SF_ACT_NONE:    none_affine_kernel(x, y, m, a, b);    return;
    case SF_ACT_RELU:    relu_affine_kernel(x, y, m, a, b);    return;
    case SF_ACT_TANH:    tanh_affine_kernel(x, y, m, a, b);    return;
    case SF_ACT_SIGMOID: sigmoid_affine_kernel(x, y, m, a, b); return;
    }
}

void sf_act_bias_rows(SfAct act, const float *b, float *y, int64_t n, int64_t no)
{
    switch (act) {
    case SF_ACT_NONE:    none_bias_kernel(b, y, n, no);    return;
    case SF_ACT_RELU:    relu_bias_kernel(b, y, n, no);    return;
    case SF_ACT_TANH:    tanh_bias_kernel(b, y, n, no);    return;
    case SF_ACT_SIGMOID: sigmoid_bias_kernel(b, y, n, no); return;
    }
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
    tanh_kernel(in, out, n * sf_shape_size(l->in));
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
    sigmoid_kernel(in, out, n * sf_shape_size(l->in));
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
    .act = SF_ACT_RELU,
    .backward = relu_backward};
const SfLayerOps sf_layer_tanh = {
    .kind = "tanh",
    .forward = tanh_forward,
    .act = SF_ACT_TANH,
    .backward = tanh_backward};
const SfLayerOps sf_layer_sigmoid = {
    .kind = "sigmoid",
    .forward = sigmoid_forward,
    .act = SF_ACT_SIGMOID,
    .backward = sigmoid_backward};
const SfLayerOps sf_layer_flatten = {
    .kind = "flatten",
    .setup = flatten_setup,
    .forward = flatten_forward,
    .backward = flatten_backward};
