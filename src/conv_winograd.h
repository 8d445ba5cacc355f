/* conv_winograd.h: the 3x3, padding 1, stride 1 convolutions of conv
 * layers with many input channels, by Winograd's minimal filtering
 * F(2x2, 3x3) instead of im2col (layer_conv.c asks sf_wino_applies). Private to
 * src/ and bench/. */
#ifndef SHARDFIT_CONV_WINOGRAD_H
#define SHARDFIT_CONV_WINOGRAD_H

#include <stdint.h>

#include "shardfit/layer.h"

/* 1 when l (a set-up conv layer) is computed here: 3x3, padding 1,
 * stride 1, 16 or more input and output channels. */
int sf_wino_applies(const SfLayer *l);

/* The three kinds of its sgemms. Forward: 16 of M (O, T) = U (O, C) V (C,
 * T) over a chunk of T tiles; weight gradient: 16 of dU (O, C) += dM (O,
 * t) V (C, t)^T per sample of t tiles; input gradient: 16 of dV (C, T) =
 * U^T dM (O, T) over a chunk. */
enum { SF_WINO_FORWARD, SF_WINO_WEIGHT_GRAD, SF_WINO_INPUT_GRAD };

/* The sgemms of one kind over n samples, chunk by chunk, on work
 * (sf_wino_work floats), exactly as the layer runs them: bench/limit.c
 * times these. */
void sf_wino_gemms(const SfLayer *l, float *work, int kind, int64_t n);

/* Floats of l->work the two passes need, whatever the rows. */
int64_t sf_wino_work(const SfLayer *l);

/* As conv's forward: out (n, O, H, W) = conv(in) + bias, each sample's
 * output handed to l->feed's take_rows (when set) as soon as it is
 * written. */
void sf_wino_forward(const SfLayer *l, const float *in, float *out, int64_t n,
                     const SfPass *pass);

/* As conv's backward without the bias: dW += dL/dW, and din (unless NULL)
 * = dL/din, from dout (n, O, H, W) and forward's in. */
void sf_wino_backward(const SfLayer *l, const float *in, const float *dout, float *din,
                      int64_t n);

#endif
