/* optim.h: the optimizer step, applied identically on every rank to the
 * allreduced, averaged gradient. Conventions are PyTorch's (torch.optim.SGD,
 * Adam, AdamW with their default flags), so hyperparameters carry over:
 *   sgd:   d = g + wd*p; v = m*v + d; d = nesterov ? d + m*v : v; p -= lr*d
 *   adam:  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *          p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 *   adamw: p *= 1 - lr*wd, then adam without the wd term.
 * State (momentum, or m and v, and the step count t) lives in flat blocks
 * parallel to the parameters, so a checkpoint stores per-layer views. */
#ifndef SHARDFIT_OPTIM_H
#define SHARDFIT_OPTIM_H

#include <stdint.h>

#include "shardfit/config.h"
#include "shardfit/error.h"

typedef struct SfOptim SfOptim;

/* For n parameters with the [optimizer] settings of cfg. NULL on ENOMEM. */
SfOptim *sf_optim_create(const SfConfig *cfg, int64_t n, SfError *err);
void sf_optim_free(SfOptim *o); /* NULL is fine */

/* One update of params (n) from the gradient grads (n) times scale, at
 * learning rate lr. The scale (1 / global count, times any clipping
 * coefficient) is applied inside the update, sparing a pass over memory.
 * Returns -1 if a gradient or updated value was not finite (divergence; the
 * parameters are then spoiled and the run must stop), else 0. */
int sf_optim_step(SfOptim *o, float *params, const float *grads, float scale,
                  double lr);

/* The same update for elements [lo, hi) only: params, grads and the
 * state blocks are indexed as in the whole (the ranks of one host each
 * update their part of node-shared blocks). Counts one step per call. */
int sf_optim_step_range(SfOptim *o, float *params, const float *grads,
                        int64_t lo, int64_t hi, float scale, double lr);

/* How many state blocks of n floats the optimizer keeps (0, 1 or 2), and
 * a move onto blocks the caller owns (node-shared memory), in the order
 * momentum, or m then v: the optimizer's own are freed, the contents not
 * copied, and sf_optim_free leaves the caller's. */
int sf_optim_nblocks(const SfOptim *o);
void sf_optim_place(SfOptim *o, float *const *blocks);

/* Steps taken so far (PyTorch's state['step']). */
int64_t sf_optim_steps(const SfOptim *o);

/* Restores the step count (resuming from a checkpoint); the state blocks
 * are restored through sf_optim_state. */
void sf_optim_set_steps(SfOptim *o, int64_t t);

/* State blocks by name ("momentum", "m", "v"), n floats each, or NULL when
 * this optimizer has no such state. For checkpoints. */
float *sf_optim_state(SfOptim *o, const char *name);

/* The L2 norm of grads (n) times scale. */
double sf_optim_grad_norm(const float *grads, int64_t n, float scale);

/* The sum of squares of grads (n), in double: one part of a norm. */
double sf_optim_grad_sumsq(const float *grads, int64_t n);

/* The scale that clips a gradient of this norm to max_norm, as PyTorch's
 * clip_grad_norm_ does (coefficient max_norm / (norm + 1e-6), only when
 * below 1). Every rank holds the same gradient, so all clip alike. */
float sf_optim_clip_scale(float scale, double norm, double max_norm);

#endif
