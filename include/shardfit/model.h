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

#include "shardfit/error.h"
#include "shardfit/layer.h"
#include "shardfit/loss.h"

#define SF_MODEL_GRAD_TAIL 8

/* model.init: how sf_model_init_params draws the weights. */
typedef enum { SF_INIT_AUTO, SF_INIT_HE, SF_INIT_GLOROT } SfInitKind;

typedef struct SfModel SfModel;

/* Builds the model described by `layers` (SPEC §6) for samples of shape
 * input, able to run up to max_rows samples per pass. A layer list that does
 * not parse, a layer that does not fit its input, or a model whose last
 * layer is not dense, fails with err naming the token and the shapes
 * (exit 2). Parameters are zero until sf_model_init_params. */
SfModel *sf_model_create(const char *layers, SfShape input, SfLossKind loss,
                         int64_t max_rows, SfError *err);
void sf_model_free(SfModel *m); /* NULL is fine */

/* He normal (std sqrt(2/fan_in)) or Glorot uniform (limit
 * sqrt(6/(fan_in+fan_out))) weights, zero biases, with the fans each kind
 * declares (conv: in_c*k*k and out_c*k*k); auto picks He for a layer
 * followed by relu (a batchnorm between them allowed). Batchnorm starts at
 * weight 1, bias 0, running mean 0, running variance 1. Element i of layer l's weight is drawn from
 * counters of sf_rng_key(seed, SF_RNG_INIT, l), so every rank agrees. */
void sf_model_init_params(SfModel *m, SfInitKind init, uint64_t seed);

/* The trained parameters are the first nparams floats of the params block;
 * the layers' statistics (batchnorm's running mean, variance and count)
 * follow, nstate floats in all. The optimizer and the gradients cover
 * nparams; checkpoints, broadcasts and copies of the weights cover nstate. */
int64_t sf_model_nparams(const SfModel *m);
int64_t sf_model_nstate(const SfModel *m);
float *sf_model_params(SfModel *m);
float *sf_model_grads(SfModel *m);  /* nparams + SF_MODEL_GRAD_TAIL floats */
void sf_model_zero_grads(SfModel *m);
/* Moves the model onto blocks the caller owns (node-shared memory):
 * params (nstate floats) and grads (nparams + SF_MODEL_GRAD_TAIL floats)
 * replace the model's own, which are freed; the contents are not copied.
 * The caller keeps them alive until sf_model_free, which leaves them. */
void sf_model_place(SfModel *m, float *params, float *grads);
int64_t sf_model_max_rows(const SfModel *m);
int64_t sf_model_output_width(const SfModel *m);
int sf_model_nlayers(const SfModel *m);
const SfLayer *sf_model_layer(const SfModel *m, int i);

/* x (n, input) with n <= max_rows: forward, loss, backward. Adds the
 * per-sample gradient sum into the gradient block; returns the loss sums.
 * Batch statistics (batchnorm) are those of these n rows, reduced over the
 * ranks by pass->allreduce. */
SfLossSums sf_model_train_batch(SfModel *m, const float *x, int64_t n,
                                SfTargets t, const SfPass *pass);

/* Told during backward, last layer first, each time a layer's parameter
 * gradients are final for this step: the gradients [first, nparams) will
 * not change again. share holds the loss sums of the whole share, known
 * before the last backward starts. The trainer starts gradient buckets
 * from it. */
typedef struct SfGradHook {
    void (*ready)(void *ctx, int64_t first, SfLossSums share);
    void *ctx;
} SfGradHook;

/* One rank's share of a global batch: x (n, input), any n >= 0, in
 * micro-batches of at most micro <= max_rows rows (targets and
 * pass->sample_ids cover all n rows). Zeroes the gradient block (tail
 * included), then accumulates the share's gradient sum; returns its loss
 * sums. split is nonzero when some rank's share in this run can exceed
 * micro; it must be the same on every rank. With batchnorm in the model,
 * every rank calls this every step, even with n = 0, and the statistics
 * are those of the whole global batch whatever micro is (see
 * train_gathered in model.c for what micro-batches cost then). hook (NULL:
 * none) rides on the share's last backward; it is not called when n = 0
 * and the model has no batch statistics. */
SfLossSums sf_model_train_share(SfModel *m, const float *x, int64_t n,
                                int64_t micro, int split, SfTargets t,
                                const SfPass *pass, const SfGradHook *hook);

/* 1 if a layer keeps batch statistics (batchnorm). */
int sf_model_has_batch_stats(const SfModel *m);

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
