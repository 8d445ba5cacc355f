/* loss.c: cross-entropy over softmax, and mean squared error (loss.h). */
#include "shardfit/loss.h"

#include <math.h>
#include <stddef.h>

static int64_t argmax(const float *z, int64_t k)
{
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

/* One row: p = softmax(z) (unless p is NULL; p may be z), and the
 * log-sum-exp log(sum exp(z - m)) + m returned. Each exp is taken once and
 * kept (in double, so p is rounded once, from the same quotient as
 * computing it afresh). */
#define CE_KEEP 64
static double softmax_row(const float *z, int64_t k, float *p)
{
    float m = z[argmax(z, k)];
    double e[CE_KEEP], s = 0.0;
    const int keep = k <= CE_KEEP;
    for (int64_t j = 0; j < k; j++) {
        double ej = exp((double)(z[j] - m));
        if (keep)
            e[j] = ej;
        s += ej;
    }
    const double lse = log(s) + (double)m;
    if (p)
        for (int64_t j = 0; j < k; j++)
            p[j] = (float)((keep ? e[j] : exp((double)(z[j] - m))) / s);
    return lse;
}

/* One row: loss = log(sum exp(z - m)) + m - z[y]; dz = softmax(z) - onehot(y),
 * softmax and loss in one pass. */
static double cross_entropy_row(const float *z, int64_t k, int32_t y, float *dz)
{
    const double loss = softmax_row(z, k, dz) - (double)z[y];
    if (dz)
        dz[y] -= 1.0f;
    return loss;
}

/* One row: loss = mean_j (z_j - t_j)^2; dz = 2 (z - t) / k. */
static double mse_row(const float *z, int64_t k, const float *t, int32_t y,
                      float *dz)
{
    double loss = 0.0;
    for (int64_t j = 0; j < k; j++) {
        float target = t ? t[j] : (j == y ? 1.0f : 0.0f);
        float d = z[j] - target;
        loss += (double)d * d;
        if (dz)
            dz[j] = 2.0f * d / (float)k;
    }
    return loss / (double)k;
}

SfLossSums sf_loss_compute(SfLossKind kind, const float *logits, int64_t n,
                           int64_t k, SfTargets t, float *dlogits)
{
    SfLossSums sums = {0.0, 0.0};
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        float *dz = dlogits ? dlogits + i * k : NULL;
        int32_t y = t.classes ? t.classes[i] : -1;
        if (kind == SF_LOSS_CROSS_ENTROPY)
            sums.loss += cross_entropy_row(z, k, y, dz);
        else
            sums.loss += mse_row(z, k, t.values ? t.values + i * k : NULL, y, dz);
        if (t.classes && argmax(z, k) == y)
            sums.correct += 1.0;
    }
    return sums;
}

void sf_loss_softmax(const float *logits, int64_t n, int64_t k, float *probs)
{
    for (int64_t i = 0; i < n; i++)
        softmax_row(logits + i * k, k, probs + i * k);
}
