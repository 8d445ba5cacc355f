/* layer_dropout.c: inverted dropout whose mask is a pure function of
 * (seed, step, layer, global sample index, unit). No mask is stored: backward
 * recomputes it. Because the key is the sample's global index, not its rank
 * or position, the masks (and so the weights) do not depend on P, and a
 * resumed run draws the same masks as one that never stopped. */
#include "shardfit/layer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "shardfit/rng.h"

/* Keep unit u of sample s when its 24-bit uniform is >= rate. */
static uint64_t dropout_key(const SfLayer *l, const SfPass *pass)
{
    return sf_rng_mix(sf_rng_key(pass->seed, SF_RNG_DROPOUT, (uint64_t)pass->step)
                      ^ (uint64_t)l->index);
}

static void dropout_apply(const SfLayer *l, const float *src, float *dst,
                          int64_t n, const SfPass *pass)
{
    const int64_t m = sf_shape_size(l->in);
    const uint64_t key = dropout_key(l, pass);
    const uint64_t threshold = (uint64_t)(l->rate * (double)(1 << 24));
    const float scale = (float)(1.0 / (1.0 - l->rate));
    for (int64_t i = 0; i < n; i++) {
        const uint64_t base = (uint64_t)pass->sample_ids[i] * (uint64_t)m;
        for (int64_t u = 0; u < m; u++) {
            uint64_t r = sf_rng_at(key, base + (uint64_t)u) >> 40;
            dst[i * m + u] = r >= threshold ? src[i * m + u] * scale : 0.0f;
        }
    }
}

static void dropout_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    const int64_t m = n * sf_shape_size(l->in);
    if (!pass->training || l->rate == 0.0) {
        for (int64_t i = 0; i < m; i++)
            out[i] = in[i];
        return;
    }
    dropout_apply(l, in, out, n, pass);
}

static void dropout_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)out;
    if (din)
        dropout_apply(l, dout, din, n, pass);
}

/* "dropout:RATE", RATE in [0, 1). */
static int dropout_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    char *end;
    errno = 0;
    double v = arg ? strtod(arg, &end) : -1.0;
    if (!arg || errno || end == arg || *end || !(v >= 0.0 && v < 1.0)) {
        snprintf(msg, (size_t)msgsize,
                 "dropout needs a rate in [0, 1), as in dropout:0.5");
        return -1;
    }
    l->rate = v;
    return 0;
}

const SfLayerOps sf_layer_dropout = {
    .kind = "dropout",
    .setup = dropout_setup,
    .forward = dropout_forward,
    .backward = dropout_backward};
