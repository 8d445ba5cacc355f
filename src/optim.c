/* optim.c: SGD (momentum, Nesterov, L2), Adam and AdamW (optim.h). */
#include "shardfit/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct SfOptim {
    SfOptimKind kind;
    float momentum, weight_decay, beta1, beta2, eps;
    int nesterov;
    int64_t n, t;
    float *a, *b; /* sgd: a = momentum; adam: a = m, b = v */
};

SfOptim *sf_optim_create(const SfConfig *cfg, int64_t n, SfError *err)
{
    SfOptim *o = calloc(1, sizeof *o);
    if (!o)
        goto oom;
    o->kind = cfg->optimizer.name;
    o->momentum = (float)cfg->optimizer.momentum;
    o->nesterov = cfg->optimizer.nesterov;
    o->weight_decay = (float)cfg->optimizer.weight_decay;
    o->beta1 = (float)cfg->optimizer.beta1;
    o->beta2 = (float)cfg->optimizer.beta2;
    o->eps = (float)cfg->optimizer.eps;
    o->n = n;
    int blocks = o->kind == SF_OPTIM_SGD ? (o->momentum != 0.0f) : 2;
    if (blocks >= 1 && !(o->a = calloc((size_t)n, sizeof(float))))
        goto oom;
    if (blocks == 2 && !(o->b = calloc((size_t)n, sizeof(float))))
        goto oom;
    return o;
oom:
    sf_optim_free(o);
    sf_error_set(err, SF_EXIT_FAILURE, "out of memory for the optimizer state");
    return NULL;
}

void sf_optim_free(SfOptim *o)
{
    if (!o)
        return;
    free(o->a);
    free(o->b);
    free(o);
}

/* The update loops also sum d * 0: zero for finite d, NaN once any value is
 * infinite or NaN. It vectorizes, unlike isfinite, and so costs nothing in
 * these memory-bound loops. */
static float sgd_step(SfOptim *o, float *p, const float *g, float scale, float lr)
{
    const float m = o->momentum, wd = o->weight_decay;
    float *v = o->a, bad = 0.0f;
    if (!v) {
        for (int64_t i = 0; i < o->n; i++) {
            float d = g[i] * scale + wd * p[i];
            bad += d * 0.0f;
            p[i] -= lr * d;
        }
        return bad;
    }
    for (int64_t i = 0; i < o->n; i++) {
        float d = g[i] * scale + wd * p[i];
        v[i] = m * v[i] + d;
        d = o->nesterov ? d + m * v[i] : v[i];
        bad += d * 0.0f;
        p[i] -= lr * d;
    }
    return bad;
}

static float adam_step(SfOptim *o, float *p, const float *g, float scale,
                       double lr, int decoupled)
{
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    const float wd = decoupled ? 0.0f : o->weight_decay;
    const float decay = decoupled ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
    const double t = (double)o->t;
    const float step_size = (float)(lr / (1.0 - pow(b1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
    float *restrict m = o->a, *restrict v = o->b, *restrict w = p;
    const float *restrict gr = g;
    float bad = 0.0f;
    for (int64_t i = 0; i < o->n; i++) {
        w[i] *= decay;
        float gi = gr[i] * scale + wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        bad += w[i] * 0.0f;
    }
    return bad;
}

int sf_optim_step(SfOptim *o, float *params, const float *grads, float scale,
                  double lr)
{
    o->t++;
    float bad = o->kind == SF_OPTIM_SGD
                    ? sgd_step(o, params, grads, scale, (float)lr)
                    : adam_step(o, params, grads, scale, lr, o->kind == SF_OPTIM_ADAMW);
    return bad == 0.0f ? 0 : -1;
}

int64_t sf_optim_steps(const SfOptim *o) { return o->t; }
void sf_optim_set_steps(SfOptim *o, int64_t t) { o->t = t; }

float *sf_optim_state(SfOptim *o, const char *name)
{
    if (o->kind == SF_OPTIM_SGD)
        return !strcmp(name, "momentum") ? o->a : NULL;
    if (!strcmp(name, "m"))
        return o->a;
    if (!strcmp(name, "v"))
        return o->b;
    return NULL;
}

double sf_optim_grad_norm(const float *grads, int64_t n, float scale)
{
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++)
        sq += (double)grads[i] * grads[i];
    return sqrt(sq) * scale;
}

float sf_optim_clip_scale(float scale, double norm, double max_norm)
{
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)(scale * coef) : scale;
}
