/* layer_pool.c: max and average pooling over k x k windows, per channel,
 * no padding, floor mode (windows that would pass the edge are dropped).
 *
 * Max pooling keeps the first maximum in row-major window order, as
 * PyTorch's CPU kernel (MaxPoolKernel.cpp: `val > max || isnan(val)`), and
 * its gradient goes to that element only: forward keeps its index in the
 * layer's workspace for the backward of the same pass. */
#include "shardfit/layer.h"

#include <stdio.h>
#include <string.h>

#include "activation.h"
#include "simd.h"

/* 1 when v replaces m as the window's maximum (PyTorch's rule). */
static inline int beats(float v, float m) { return v > m || v != v; }

/* 2x2 windows at stride 2 in explicit vectors of V outputs (GCC vectors,
 * V = 8 or 4): rows of 14 or 7 outputs are too short for the vectorizer, so
 * a row is covered by blocks of V, the last one moved back to end at the
 * row's end (it recomputes, and rewrites with the same bits, a few outputs
 * of the block before). A window's maximum is taken as a tree, top pair,
 * bottom pair, then top against bottom, each step keeping the first on a
 * tie; with the rule of beats() that picks the same element as the
 * row-major scan, NaNs included (the last NaN wins either way). With relu
 * set, the window is that of relu(in) (layer.h's forward_relu): each value
 * goes through the relu as it is loaded, and backward passes a gradient
 * only where the kept value, the output, is above 0 (the relu's mask). */
/* -1 in the lanes where v replaces m (beats()), else 0; the lanes of v
 * where take is -1, of m elsewhere; and sf_relu() lane by lane (macros: a
 * function passing a vector would change the ABI across the clones). */
#define VBEATS(v, m) (((v) > (m)) | ((v) != (v)))
#define VPICK(F, I, take, v, m) ((F)(((take) & (I)(v)) | (~(take) & (I)(m))))
#define VRELU(F, I, v, zero) VPICK(F, I, (v) > (zero), v, zero)

#define MAXPOOL_VEC(V)                                                        \
    typedef float F##V __attribute__((vector_size(V * sizeof(float))));       \
    typedef int32_t I##V __attribute__((vector_size(V * sizeof(int32_t))));   \
                                                                              \
    /* one plane, in (H, W) into out and idx (OH, OW), output row by output   \
     * row: r0, r1 the windows' two input rows, base the plane offset of r0.  \
     * A call a plane, not a row: called per row of 7-14 outputs, the calls   \
     * and their loop took 1.5% of the CNN's step (perf). */                  \
    SF_SIMD_CLONES                                                            \
    static void maxpool_plane##V(const float *restrict in, float *restrict out, \
                                 int32_t *restrict idx, int64_t OH, int64_t OW, \
                                 int32_t W, int relu)                         \
    {                                                                         \
        const F##V zero = {0};                                                \
        I##V even, odd, lane;                                                 \
        for (int j = 0; j < V; j++) {                                         \
            even[j] = 2 * j;                                                  \
            odd[j] = 2 * j + 1;                                               \
            lane[j] = j;                                                      \
        }                                                                     \
        for (int64_t y = 0; y < OH; y++) {                                    \
            const float *r0 = in + 2 * y * W, *r1 = r0 + W;                   \
            float *o = out + y * OW;                                          \
            int32_t *a = idx + y * OW;                                        \
            const int32_t base = (int32_t)(2 * y * W);                        \
            for (int64_t x = 0; x < OW; x += V) {                             \
                const int64_t x0 = x + V <= OW ? x : OW - V;                  \
                F##V u0, u1, w0, w1;                                          \
                memcpy(&u0, r0 + 2 * x0, sizeof u0);                          \
                memcpy(&u1, r0 + 2 * x0 + V, sizeof u1);                      \
                memcpy(&w0, r1 + 2 * x0, sizeof w0);                          \
                memcpy(&w1, r1 + 2 * x0 + V, sizeof w1);                      \
                if (relu) {                                                   \
                    u0 = VRELU(F##V, I##V, u0, zero);                         \
                    u1 = VRELU(F##V, I##V, u1, zero);                         \
                    w0 = VRELU(F##V, I##V, w0, zero);                         \
                    w1 = VRELU(F##V, I##V, w1, zero);                         \
                }                                                             \
                const F##V va = SF_VSHUFFLE(F##V, V, u0, u1, even);           \
                const F##V vb = SF_VSHUFFLE(F##V, V, u0, u1, odd);            \
                const F##V vc = SF_VSHUFFLE(F##V, V, w0, w1, even);           \
                const F##V vd = SF_VSHUFFLE(F##V, V, w0, w1, odd);            \
                const I##V at = base + 2 * ((int32_t)x0 + lane);              \
                const I##V tb = VBEATS(vb, va), bb = VBEATS(vd, vc);          \
                const F##V top = VPICK(F##V, I##V, tb, vb, va);               \
                const F##V bot = VPICK(F##V, I##V, bb, vd, vc);               \
                const I##V ti = at + (tb & 1), bi = at + W + (bb & 1);        \
                const I##V fb = VBEATS(bot, top);                             \
                const F##V m = VPICK(F##V, I##V, fb, bot, top);               \
                const I##V best = (fb & bi) | (~fb & ti);                     \
                memcpy(o + x0, &m, sizeof m);                                 \
                memcpy(a + x0, &best, sizeof best);                           \
            }                                                                 \
        }                                                                     \
    }                                                                         \
                                                                              \
    /* backward of one plane, g (H, W) from d and idx (OH, OW), a pooled      \
     * row's two input rows at a time (one load of its indices and            \
     * gradients for both): g[2x + j] = d[x] where the window's kept          \
     * element is there, else 0, and with o (the outputs; NULL: no relu)     \
     * 0 where o[x] <= 0 too; the columns past 2 OW zeroed (floor mode),      \
     * the rows past 2 OH left to the caller */                               \
    SF_SIMD_CLONES                                                            \
    static void maxpool_grad_plane##V(const int32_t *restrict idx,            \
                                      const float *restrict d,                \
                                      const float *restrict o,                \
                                      float *restrict g, int64_t OH,          \
                                      int64_t OW, int32_t W)                  \
    {                                                                         \
        I##V lane, lo, hi;                                                    \
        for (int j = 0; j < V; j++) {                                         \
            lane[j] = j;                                                      \
            lo[j] = (j % 2) * V + j / 2;           /* e0 o0 e1 o1 ... */      \
            hi[j] = (j % 2) * V + (j + V) / 2;                                \
        }                                                                     \
        const F##V zero = {0};                                                \
        for (int64_t y = 0; y < OH; y++) {                                    \
            const int32_t *a = idx + y * OW;                                  \
            const float *dr = d + y * OW;                                     \
            const int32_t row = (int32_t)(2 * y * W);                         \
            float *g0r = g + 2 * y * W, *g1r = g0r + W;                       \
            for (int64_t x = 0; x < OW; x += V) {                             \
                const int64_t x0 = x + V <= OW ? x : OW - V;                  \
                I##V w;                                                       \
                F##V v;                                                       \
                memcpy(&w, a + x0, sizeof w);                                 \
                memcpy(&v, dr + x0, sizeof v);                                \
                if (o) {                                                      \
                    F##V kept;                                                \
                    memcpy(&kept, o + y * OW + x0, sizeof kept);              \
                    v = VPICK(F##V, I##V, kept > zero, v, zero);              \
                }                                                             \
                const I##V q = row + 2 * ((int32_t)x0 + lane);                \
                const F##V te = VPICK(F##V, I##V, w == q, v, zero);           \
                const F##V to = VPICK(F##V, I##V, w == q + 1, v, zero);       \
                const F##V be = VPICK(F##V, I##V, w == q + W, v, zero);       \
                const F##V bo = VPICK(F##V, I##V, w == q + W + 1, v, zero);   \
                const F##V t0 = SF_VSHUFFLE(F##V, V, te, to, lo);             \
                const F##V t1 = SF_VSHUFFLE(F##V, V, te, to, hi);             \
                const F##V b0 = SF_VSHUFFLE(F##V, V, be, bo, lo);             \
                const F##V b1 = SF_VSHUFFLE(F##V, V, be, bo, hi);             \
                memcpy(g0r + 2 * x0, &t0, sizeof t0);                         \
                memcpy(g0r + 2 * x0 + V, &t1, sizeof t1);                     \
                memcpy(g1r + 2 * x0, &b0, sizeof b0);                         \
                memcpy(g1r + 2 * x0 + V, &b1, sizeof b1);                     \
            }                                                                 \
            for (int64_t x = 2 * OW; x < W; x++)                              \
                g0r[x] = g1r[x] = 0.0f;                                       \
        }                                                                     \
    }

MAXPOOL_VEC(8)
MAXPOOL_VEC(4)

/* The common 2x2 stride-2 case, the same rule, plane by plane: in vectors
 * (above) when a row has 4 outputs or more, else row by row with
 * independent windows (so the selects pipeline instead of chaining through
 * a loop over the window). */
static void maxpool_2x2(const float *in, float *out, int32_t *at, int64_t planes,
                        int64_t H, int64_t W, int64_t OH, int64_t OW, int relu)
{
    for (int64_t p = 0; p < planes; p++) {
        if (OW >= 8) {
            maxpool_plane8(in + p * H * W, out + p * OH * OW, at + p * OH * OW, OH, OW,
                           (int32_t)W, relu);
            continue;
        }
        if (OW >= 4) {
            maxpool_plane4(in + p * H * W, out + p * OH * OW, at + p * OH * OW, OH, OW,
                           (int32_t)W, relu);
            continue;
        }
        for (int64_t y = 0; y < OH; y++) {
            const float *r0 = in + (p * H + 2 * y) * W, *r1 = r0 + W;
            float *o = out + (p * OH + y) * OW;
            int32_t *a = at + (p * OH + y) * OW;
            const int32_t base = (int32_t)(2 * y * W);
            for (int64_t x = 0; x < OW; x++) {
                float m = r0[2 * x], v1 = r0[2 * x + 1], v2 = r1[2 * x], v3 = r1[2 * x + 1];
                if (relu) {
                    m = sf_relu(m);
                    v1 = sf_relu(v1);
                    v2 = sf_relu(v2);
                    v3 = sf_relu(v3);
                }
                int32_t best = base + (int32_t)(2 * x);
                if (beats(v1, m)) { m = v1; best = base + (int32_t)(2 * x + 1); }
                if (beats(v2, m)) { m = v2; best = base + (int32_t)(W + 2 * x); }
                if (beats(v3, m)) { m = v3; best = base + (int32_t)(W + 2 * x + 1); }
                o[x] = m;
                a[x] = best;
            }
        }
    }
}

/* Planes [0, planes) of in (H, W each), or of relu(in) with relu set, into
 * out (OH, OW each), the offset in its plane of each output's maximum into
 * at (int32, one per output). The first maximum in row-major order wins (a
 * NaN beats everything, the last NaN winning, as PyTorch's rule has it). */
static void maxpool_planes(const SfLayer *l, const float *in, float *out, int32_t *at,
                           int64_t planes, int relu)
{
    const int64_t W = l->in.w, HW = l->in.h * W;
    const int64_t OH = l->out.h, OW = l->out.w, k = l->k, s = l->stride;
    if (k == 2 && s == 2) {
        maxpool_2x2(in, out, at, planes, l->in.h, W, OH, OW, relu);
        return;
    }
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = in + p * HW;
        float *o = out + p * OH * OW;
        int32_t *a = at + p * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                int32_t best = (int32_t)(y * s * W + x * s);
                float m = relu ? sf_relu(plane[best]) : plane[best];
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++) {
                        const int32_t q = (int32_t)((y * s + i) * W + x * s + j);
                        const float v = relu ? sf_relu(plane[q]) : plane[q];
                        const int take = v > m || v != v; /* selects, no branch */
                        m = take ? v : m;
                        best = take ? q : best;
                    }
                o[y * OW + x] = m;
                a[y * OW + x] = best;
            }
    }
}

/* in (n, C, H, W), out (n, C, OH, OW); the indices of the maxima go to the
 * workspace (one int32 per output) for backward. */
static void maxpool_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    maxpool_planes(l, in, out, (int32_t *)l->work, n * l->in.c, 0);
}

/* forward_relu (layer.h): the windows of relu(in), in the same pass. */
static void maxpool_forward_relu(const SfLayer *l, const float *in, float *out,
                                 int64_t n, const SfPass *pass)
{
    (void)pass;
    maxpool_planes(l, in, out, (int32_t *)l->work, n * l->in.c, 1);
}

/* forward_plane (layer.h): plane p alone, its indices at their place. */
static void maxpool_forward_plane(const SfLayer *l, const float *in_plane, int64_t p,
                                  float *out)
{
    const int64_t PO = l->out.h * l->out.w;
    maxpool_planes(l, in_plane, out + p * PO, (int32_t *)l->work + p * PO, 1, 0);
}

/* dout[q], or 0 where a relu before the pool masks it: out (the outputs,
 * NULL: no relu) at or below 0. */
static inline float passed(const float *dout, const float *out, int64_t q)
{
    return !out || out[q] > 0.0f ? dout[q] : 0.0f;
}

/* Non-overlapping windows (stride K): every input element of a window is
 * written once, with its gradient or 0, and the rows and columns no window
 * covers (floor mode) are zeroed, so din needs no clearing pass first. out:
 * as passed()'s. */
static void maxpool_backward_tiled(const int32_t *restrict at, const float *restrict dout,
                                   const float *restrict out, float *restrict din,
                                   int64_t planes, int64_t H, int64_t W, int64_t OH,
                                   int64_t OW, int64_t k)
{
    for (int64_t p = 0; p < planes; p++) {
        const float *d = dout + p * OH * OW, *o = out ? out + p * OH * OW : NULL;
        const int32_t *a = at + p * OH * OW;
        float *g = din + p * H * W;
        if (k == 2 && OW >= 4) {
            if (OW >= 8)
                maxpool_grad_plane8(a, d, o, g, OH, OW, (int32_t)W);
            else
                maxpool_grad_plane4(a, d, o, g, OH, OW, (int32_t)W);
            memset(g + OH * k * W, 0, (size_t)((H - OH * k) * W) * sizeof *g);
            continue;
        }
        for (int64_t y = 0; y < OH; y++)
            for (int64_t i = 0; i < k; i++) {
                const int64_t row = (y * k + i) * W;
                float *gr = g + row;
                if (k == 2) /* 2 stores a window */
                    for (int64_t x = 0; x < OW; x++) {
                        const int32_t q = (int32_t)(row + 2 * x), w = a[y * OW + x];
                        const float v = passed(d, o, y * OW + x);
                        gr[2 * x] = w == q ? v : 0.0f;
                        gr[2 * x + 1] = w == q + 1 ? v : 0.0f;
                    }
                else
                    for (int64_t x = 0; x < OW; x++)
                        for (int64_t j = 0; j < k; j++) {
                            const int32_t q = (int32_t)(row + x * k + j);
                            gr[x * k + j] = a[y * OW + x] == q ? passed(d, o, y * OW + x)
                                                               : 0.0f;
                        }
                for (int64_t x = OW * k; x < W; x++)
                    gr[x] = 0.0f;
            }
        memset(g + OH * k * W, 0, (size_t)((H - OH * k) * W) * sizeof *g);
    }
}

/* Planes [0, planes) of din from dout and the indices at: the gradient
 * goes to each window's kept element only, where a relu before the pool
 * lets it (out: as passed()'s). An element kept by several windows has
 * the same output in each, so it is masked alike whether before the sum,
 * as here, or after, as the relu's own backward would. */
static void maxpool_grad_planes(const SfLayer *l, const int32_t *at, const float *dout,
                                const float *out, float *din, int64_t planes)
{
    const int64_t HW = l->in.h * l->in.w, PO = l->out.h * l->out.w;
    if (l->stride == l->k) {
        maxpool_backward_tiled(at, dout, out, din, planes, l->in.h, l->in.w, l->out.h,
                               l->out.w, l->k);
        return;
    }
    memset(din, 0, (size_t)(planes * HW) * sizeof *din);
    for (int64_t p = 0; p < planes; p++) {
        const float *d = dout + p * PO, *o = out ? out + p * PO : NULL;
        const int32_t *a = at + p * PO;
        float *g = din + p * HW;
        for (int64_t q = 0; q < PO; q++)
            g[a[q]] += passed(d, o, q);
    }
}

static void maxpool_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)out;
    (void)pass;
    if (din)
        maxpool_grad_planes(l, (const int32_t *)l->work, dout, NULL, din, n * l->in.c);
}

/* backward_relu (layer.h): through the pool and the relu before it. */
static void maxpool_backward_relu(const SfLayer *l, const float *out, const float *dout,
                                  float *din, int64_t n, const SfPass *pass)
{
    (void)pass;
    if (din)
        maxpool_grad_planes(l, (const int32_t *)l->work, dout, out, din, n * l->in.c);
}

/* backward_plane (layer.h): plane p of the input's gradient alone. */
static void maxpool_backward_plane(const SfLayer *l, const float *dout, int64_t p,
                                   float *din_plane)
{
    const int64_t PO = l->out.h * l->out.w;
    maxpool_grad_planes(l, (const int32_t *)l->work + p * PO, dout + p * PO, NULL,
                        din_plane, 1);
}

/* The mean of each window (count k*k: there is no padding). */
static void avgpool_forward(const SfLayer *l, const float *in, float *out,
                            int64_t n, const SfPass *pass)
{
    (void)pass;
    const int64_t planes = n * l->in.c, W = l->in.w, HW = l->in.h * W;
    const int64_t OH = l->out.h, OW = l->out.w, k = l->k, s = l->stride;
    const float inv = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++) {
        const float *plane = in + p * HW;
        float *o = out + p * OH * OW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                float sum = 0.0f;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        sum += plane[(y * s + i) * W + x * s + j];
                o[y * OW + x] = sum * inv;
            }
    }
}

static void avgpool_backward(const SfLayer *l, const float *in, const float *out,
                             const float *dout, float *din, int64_t n,
                             const SfPass *pass)
{
    (void)in;
    (void)out;
    (void)pass;
    if (!din)
        return;
    const int64_t planes = n * l->in.c, W = l->in.w, HW = l->in.h * W;
    const int64_t OH = l->out.h, OW = l->out.w, k = l->k, s = l->stride;
    const float inv = 1.0f / (float)(k * k);
    memset(din, 0, (size_t)(planes * HW) * sizeof *din);
    for (int64_t p = 0; p < planes; p++) {
        const float *d = dout + p * OH * OW;
        float *g = din + p * HW;
        for (int64_t y = 0; y < OH; y++)
            for (int64_t x = 0; x < OW; x++) {
                const float v = d[y * OW + x] * inv;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        g[(y * s + i) * W + x * s + j] += v;
            }
    }
}

/* "maxpool:K[:STRIDE]" and "avgpool:K[:STRIDE]", stride K by default. */
static int pool_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    int64_t v[2] = {0, 0};
    int got = sf_layer_parse_ints(arg, v, 2, 0);
    if (got < 1) {
        snprintf(msg, (size_t)msgsize, "%s needs K[:STRIDE] (positive "
                 "integers), as in %s:2", l->ops->kind, l->ops->kind);
        return -1;
    }
    l->k = v[0];
    l->stride = got > 1 ? v[1] : v[0];
    if (l->k > l->in.h || l->k > l->in.w) {
        snprintf(msg, (size_t)msgsize, "a %lldx%lld window does not fit a "
                 "%lldx%lld image: output would be (%lld, 0, 0)",
                 (long long)l->k, (long long)l->k, (long long)l->in.h,
                 (long long)l->in.w, (long long)l->in.c);
        return -1;
    }
    l->out = (SfShape){l->in.c, (l->in.h - l->k) / l->stride + 1,
                       (l->in.w - l->k) / l->stride + 1};
    if (l->ops == &sf_layer_maxpool) /* int32 indices, as many as floats */
        l->work_per_row = sf_shape_size(l->out);
    return 0;
}

const SfLayerOps sf_layer_maxpool = {
    .kind = "maxpool",
    .setup = pool_setup,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .forward_plane = maxpool_forward_plane,
    .backward_plane = maxpool_backward_plane,
    .forward_relu = maxpool_forward_relu,
    .backward_relu = maxpool_backward_relu};
const SfLayerOps sf_layer_avgpool = {
    .kind = "avgpool",
    .setup = pool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward};
