/* evaluate.c: a model's loss sums over this rank's evaluation block
 * (evaluate.h). */
#include "shardfit/evaluate.h"

int sf_evaluate_block(SfModel *m, SfLoader *l, int64_t rows, float *x,
                      int32_t *classes, float *values, double sums[3], SfError *err)
{
    int64_t off, len;
    sf_loader_block(l, &off, &len);
    const int has_classes = sf_loader_has_classes(l);
    for (int64_t i = 0; i < len; i += rows) {
        const int64_t n = len - i < rows ? len - i : rows;
        if (sf_loader_read_block(l, i, n, x, classes, values, err) < 0)
            return -1;
        SfTargets t = {has_classes ? classes : NULL, has_classes ? NULL : values};
        SfLossSums s = sf_model_eval_batch(m, x, n, t);
        sums[0] += s.loss;
        sums[1] += s.correct;
        sums[2] += (double)n;
    }
    return 0;
}
