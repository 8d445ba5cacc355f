/* evaluate.h: a model's loss over this rank's evaluation block of a set
 * (sf_loader_block), the one loop behind validation (trainer.c) and
 * `shardfit eval` (cmd_eval.c), so the two cannot drift apart. */
#ifndef SHARDFIT_EVALUATE_H
#define SHARDFIT_EVALUATE_H

#include <stdint.h>

#include "shardfit/error.h"
#include "shardfit/loader.h"
#include "shardfit/model.h"

/* Adds this rank's block to sums: [0] the loss summed over samples, [1]
 * the correct predictions, [2] the samples. Passes of at most rows rows
 * (no more than the model was built for) through the caller's buffers: x
 * (rows samples), classes (rows) and values (rows outputs). Not
 * collective: the caller reduces the sums, so means are sample-weighted.
 * 0, or -1 with err when the loader failed (a stream loader can); sums
 * then hold the passes before. */
int sf_evaluate_block(SfModel *m, SfLoader *l, int64_t rows, float *x,
                      int32_t *classes, float *values, double sums[3], SfError *err);

#endif
