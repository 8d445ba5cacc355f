/* activation.h: the activations' elementwise math (layer_activation.c), for
 * the layers that apply one in their own output pass (layer.h's
 * forward_act). Private to src/. */
#ifndef SHARDFIT_ACTIVATION_H
#define SHARDFIT_ACTIVATION_H

#include <stdint.h>

#include "shardfit/layer.h"

/* The relu, one definition for every kernel that applies it (the
 * activation layer's, and max pooling's on its input): x > 0 ? x : 0,
 * so -0 and NaN give 0. */
static inline float sf_relu(float x)
{
    return x > 0.0f ? x : 0.0f;
}

/* y (n, no) = act(y + b), b (no) added to every row; SF_ACT_NONE adds b
 * only. Bitwise what the activation layer's forward gives on y + b, at
 * every vector width. */
void sf_act_bias_rows(SfAct act, const float *b, float *y, int64_t n, int64_t no);

/* y [0, m) = act(x a + b), in float; SF_ACT_NONE: x a + b. Bitwise what
 * the affine pass and then the activation layer's forward give, at every
 * vector width. */
void sf_act_affine(SfAct act, const float *x, float *y, int64_t m, float a, float b);

#endif
