/* activation.h: the activations' elementwise math (layer_activation.c), for
 * the layers that apply one in their own output pass (layer.h's
 * forward_act). Private to src/. */
#ifndef SHARDFIT_ACTIVATION_H
#define SHARDFIT_ACTIVATION_H

#include <stdint.h>

#include "shardfit/layer.h"

/* y (n, no) = act(y + b), b (no) added to every row; SF_ACT_NONE adds b
 * only. Bitwise what the activation layer's forward gives on y + b, at
 * every vector width. */
void sf_act_bias_rows(SfAct act, const float *b, float *y, int64_t n, int64_t no);

/* y [0, m) = act(x a + b), in float; SF_ACT_NONE: x a + b. Bitwise what
 * the affine pass and then the activation layer's forward give, at every
 * vector width. */
void sf_act_affine(SfAct act, const float *x, float *y, int64_t m, float a, float b);

#endif
