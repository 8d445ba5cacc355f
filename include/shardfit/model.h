/* model.h: a stack of layers with one flat block of parameters and one of
 * gradients (llm.c's layout): zeroing the gradients is one memset, the
 * allreduce sends one buffer, and a checkpoint stores per-layer views.
 *
 * The gradient block is followed by SF_MODEL_GRAD_TAIL spare floats. The
 * trainer puts the step's loss sum, correct count and sample count there, so
 * a single allreduce of nparams + SF_MODEL_GRAD_TAIL floats carries it all.
 * The model itself never touches the tail except to zero it. */
#ifndef SHARDFIT_MODEL_H
#define SHARDFIT_MODEL_H

#include <stdint.h>

#include "shardfit/config.h"
#include "shardfit/error.h"
#include "shardfit/layer.h"
#include "shardfit/loss.h"

#define SF_MODEL_GRAD_TAIL 8

typedef struct SfModel SfModel;

/* Builds the model described by `layers` (SPEC §6) for samples of shape
 * input, able to run up to max_rows samples per pass. A layer list that does
 * not parse, or a model without a dense layer, fails with err naming the
 * token (exit 2). Parameters are zero until sf_model_init_params. */
SfModel *sf_model_create(const char *layers, SfShape input, SfLossKind loss,
                         int64_t max_rows, SfError *err);
void sf_model_free(SfModel *m); /* NULL is fine */

/* He normal (std sqrt(2/fan_in)) or Glorot uniform (limit
 * sqrt(6/(fan_in+fan_out))) weights, zero biases; auto picks He for a dense
 * layer followed by relu. Element i of layer l's weight is drawn from
 * counters of sf_rng_key(seed, SF_RNG_INIT, l), so every rank agrees. */
void sf_model_init_params(SfModel *m, SfInitKind init, uint64_t seed);

int64_t sf_model_nparams(const SfModel *m);
float *sf_model_params(SfModel *m);
float *sf_model_grads(SfModel *m);  /* nparams + SF_MODEL_GRAD_TAIL floats */
void sf_model_zero_grads(SfModel *m);
int64_t sf_model_max_rows(const SfModel *m);
int64_t sf_model_output_width(const SfModel *m);
int sf_model_nlayers(const SfModel *m);
const SfLayer *sf_model_layer(const SfModel *m, int i);

/* x (n, input) with n <= max_rows: forward, loss, backward. Adds the
 * per-sample gradient sum into the gradient block; returns the loss sums. */
SfLossSums sf_model_train_batch(SfModel *m, const float *x, int64_t n,
                                SfTargets t, const SfPass *pass);

/* The same in two halves, so each can be timed (phases.h): forward and
 * loss, keeping the activations and the loss gradient; then backward of
 * that same x, n and pass, which adds into the gradient block. */
SfLossSums sf_model_train_forward(SfModel *m, const float *x, int64_t n,
                                  SfTargets t, const SfPass *pass);
void sf_model_train_backward(SfModel *m, const float *x, int64_t n,
                             const SfPass *pass);

/* Forward and loss only (dropout off). */
SfLossSums sf_model_eval_batch(SfModel *m, const float *x, int64_t n,
                               SfTargets t);

/* Forward only (dropout off): the outputs (n, output_width) of x, n <=
 * max_rows; valid until the model's next pass. */
const float *sf_model_predict(SfModel *m, const float *x, int64_t n);

/* The loss the model was built with. */
SfLossKind sf_model_loss(const SfModel *m);

/* "784 -> dense:512 relu dense:10" style summary into buf. */
void sf_model_describe(const SfModel *m, char *buf, int size);

#endif
