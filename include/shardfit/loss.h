/* loss.h: the loss at the end of the model, and its gradient.
 *
 * Per SPEC §2 the step's loss is the mean over the global batch, and its
 * gradient is the SUM of per-sample gradients divided by the global count.
 * So this module returns sums and per-sample gradients (never divided by n):
 * the division happens once, after the allreduce, by the global count. */
#ifndef SHARDFIT_LOSS_H
#define SHARDFIT_LOSS_H

#include <stdint.h>

typedef enum { SF_LOSS_CROSS_ENTROPY, SF_LOSS_MSE } SfLossKind;

/* What the model is fitted to: class ids (classes != NULL, one per row) or
 * float targets (values != NULL, k per row). */
typedef struct SfTargets {
    const int32_t *classes;
    const float *values;
} SfTargets;

/* Sums over a batch. correct counts rows whose argmax matches the class id
 * (0 when the targets are float values). */
typedef struct SfLossSums {
    double loss, correct;
} SfLossSums;

/* logits (n, k). cross_entropy: softmax then negative log-likelihood of the
 * class, computed stably (log-sum-exp with the max subtracted); mse: mean over
 * the k outputs of the squared error, one-hot targets for class ids.
 * If dlogits is not NULL it receives d(per-sample loss)/d(logits), (n, k). */
SfLossSums sf_loss_compute(SfLossKind kind, const float *logits, int64_t n,
                           int64_t k, SfTargets t, float *dlogits);

/* probs (n, k) = the softmax of each row of logits, the bits cross_entropy's
 * gradient starts from; probs may be logits (in place). */
void sf_loss_softmax(const float *logits, int64_t n, int64_t k, float *probs);

#endif
