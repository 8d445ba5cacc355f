/* optim.c: SGD (momentum, Nesterov, L2), Adam and AdamW (optim.h). */
#include "shardfit/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bigalloc.h"
#include "simd.h"

struct SfOptim {
    SfOptimKind kind;
    float momentum, weight_decay, beta1, beta2, eps;
    int nesterov, placed; /* placed: a and b are the caller's */
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
    if (blocks >= 1 && !(o->a = sf_big_calloc((size_t)n, sizeof(float))))
        goto oom;
    if (blocks == 2 && !(o->b = sf_big_calloc((size_t)n, sizeof(float))))
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
    if (!o->placed) {
        free(o->a);
        free(o->b);
    }
    free(o);
}

/* Each update is one pass over the flat blocks, cloned per vector width
 * (simd.h). The non-finite check rides along: a float is infinite or NaN
 * when its exponent bits are all ones, and OR-ing those tests is an integer
 * reduction the compiler vectorizes (a float sum, or isfinite, would keep
 * the loop scalar). Returns nonzero when any checked value was not finite. */
static inline uint32_t nonfinite(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* p -= lr * (g*scale + wd*p); checks the step d. */
SF_SIMD_CLONES
static uint32_t sgd_plain(float *restrict p, const float *restrict g, int64_t n,
                          float scale, float wd, float lr)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] * scale + wd * p[i];
        bad |= nonfinite(d);
        p[i] -= lr * d;
    }
    return bad;
}

/* v = m*v + d; p -= lr * (nesterov ? d + m*v : v); checks the step. */
SF_SIMD_CLONES
static uint32_t sgd_momentum(float *restrict p, float *restrict v,
                             const float *restrict g, int64_t n, float scale,
                             float wd, float lr, float m, int nesterov)
{
    uint32_t bad = 0;
    if (nesterov) {
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] * scale + wd * p[i];
            v[i] = m * v[i] + d;
            d = d + m * v[i];
            bad |= nonfinite(d);
            p[i] -= lr * d;
        }
        return bad;
    }
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] * scale + wd * p[i];
        v[i] = m * v[i] + d;
        bad |= nonfinite(v[i]);
        p[i] -= lr * v[i];
    }
    return bad;
}

static uint32_t sgd_step(SfOptim *o, float *p, const float *g, int64_t lo,
                         int64_t hi, float scale, float lr)
{
    if (!o->a)
        return sgd_plain(p + lo, g + lo, hi - lo, scale, o->weight_decay, lr);
    return sgd_momentum(p + lo, o->a + lo, g + lo, hi - lo, scale, o->weight_decay,
                        lr, o->momentum, o->nesterov);
}

/* The Adam/AdamW update of optim.h; checks the updated weights. */
SF_SIMD_CLONES
static uint32_t adam_kernel(float *restrict w, float *restrict m, float *restrict v,
                            const float *restrict gr, int64_t n, float scale,
                            float wd, float decay, float b1, float b2, float eps,
                            float step_size, float bc2_sqrt)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        w[i] *= decay;
        float gi = gr[i] * scale + wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        bad |= nonfinite(w[i]);
    }
    return bad;
}

static uint32_t adam_step(SfOptim *o, float *p, const float *g, int64_t lo,
                          int64_t hi, float scale, double lr, int decoupled)
{
    const float wd = decoupled ? 0.0f : o->weight_decay;
    const float decay = decoupled ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
    const double t = (double)o->t;
    const float step_size = (float)(lr / (1.0 - pow(o->beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, t));
    return adam_kernel(p + lo, o->a + lo, o->b + lo, g + lo, hi - lo, scale, wd,
                       decay, o->beta1, o->beta2, o->eps, step_size, bc2_sqrt);
}

int sf_optim_step_range(SfOptim *o, float *params, const float *grads,
                        int64_t lo, int64_t hi, float scale, double lr)
{
    o->t++;
    uint32_t bad = o->kind == SF_OPTIM_SGD
                       ? sgd_step(o, params, grads, lo, hi, scale, (float)lr)
                       : adam_step(o, params, grads, lo, hi, scale, lr,
                                   o->kind == SF_OPTIM_ADAMW);
    return bad ? -1 : 0;
}

int sf_optim_step(SfOptim *o, float *params, const float *grads, float scale,
                  double lr)
{
    return sf_optim_step_range(o, params, grads, 0, o->n, scale, lr);
}

int sf_optim_nblocks(const SfOptim *o) { return (o->a != NULL) + (o->b != NULL); }

void sf_optim_place(SfOptim *o, float *const *blocks)
{
    const int k = sf_optim_nblocks(o);
    if (!o->placed) {
        free(o->a);
        free(o->b);
    }
    o->a = k >= 1 ? blocks[0] : NULL;
    o->b = k >= 2 ? blocks[1] : NULL;
    o->placed = 1;
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

double sf_optim_grad_sumsq(const float *grads, int64_t n)
{
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++)
        sq += (double)grads[i] * grads[i];
    return sq;
}

double sf_optim_grad_norm(const float *grads, int64_t n, float scale)
{
    return sqrt(sf_optim_grad_sumsq(grads, n)) * scale;
}

float sf_optim_clip_scale(float scale, double norm, double max_norm)
{
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)(scale * coef) : scale;
}
