/* layer_conv.c: 2-D convolution as im2col plus one sgemm per pass, as in
 * Caffe's im2col_cpu and PyTorch's slow_conv2d, on OpenBLAS.
 *
 * Weight (out_c, in_c, k, k) and bias (out_c), as nn.Conv2d, square kernel,
 * zero padding on both sides. Viewed as (out_c, K) with K = in_c*k*k, the
 * weight multiplies a sample's im2col matrix col (K, P), P = out_h*out_w,
 * whose row (c*k + i)*k + j holds input pixel (c, y*s - pad + i,
 * x*s - pad + j) of output position (y, x). col is built just before its
 * sgemm, in a workspace of one sample's size that stays in cache, and built
 * again in backward: keeping every sample's from forward to backward (n
 * times larger) sent it through memory and back. The product goes by sgemm
 * straight into the sample's (out_c, P) block of the NCHW output, filled
 * with the bias first (beta 1). One sgemm over all n*P columns would give
 * (out_c, n, P) and need a copy into NCHW, and one back in backward
 * (docs/DESIGN.md), and is no faster at these shapes (GFLOP/s of one
 * batched sgemm against per-sample ones, one thread, SkylakeX kernels, 64
 * samples: fashion-cnn's second conv, 64x288 on 14x14, forward 139 against
 * 132, dcol 115 against 135; its first conv 37-67 against 110-170).
 * Backward, per sample: dW += dY_b col_b^T, then dcol_b = W^T dY_b into
 * col's place and col2im adds it into din_b.
 *
 * A stride-1 convolution that keeps the image's width (3x3 with padding 1)
 * moves whole planes: row (c, i, j) of col for one sample is the image
 * plane shifted by (i - pad) rows and (j - pad) columns, one contiguous copy
 * (and col2im one contiguous add) with the few columns that wrap around
 * the edge zeroed. The elementwise loops are kernels cloned per vector
 * width (simd.h).
 *
 * A 3x3 convolution with padding 1 and stride 1 and 16 or more channels
 * in and out goes by Winograd's F(2x2, 3x3) instead
 * (conv_winograd.c, sf_wino_applies): fashion-cnn's second conv spent
 * two thirds of the step in its im2col sgemms. */
#include "shardfit/layer.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "conv_winograd.h"
#include "simd.h"

#define LANES 16

/* LANES floats as one GCC vector: each lane's operations are the same in
 * every clone (one AVX-512 register, two AVX2 or four SSE ones). */
typedef float Lanes __attribute__((vector_size(LANES * sizeof(float))));

/* y += x over [0, m). */
SF_SIMD_CLONES
static void add_to(float *restrict y, const float *restrict x, int64_t m)
{
    for (int64_t p = 0; p < m; p++)
        y[p] += x[p];
}

/* y = v over [0, m). */
SF_SIMD_CLONES
static void fill(float *restrict y, int64_t m, float v)
{
    for (int64_t p = 0; p < m; p++)
        y[p] = v;
}

/* sum x over [0, m), per lane then in lane order. */
SF_SIMD_CLONES
static float plane_sum(const float *restrict x, int64_t m)
{
    Lanes s = {0};
    int64_t p = 0;
    for (; p + LANES <= m; p += LANES) {
        Lanes v;
        memcpy(&v, x + p, sizeof v);
        s += v;
    }
    float t = 0.0f, sum = 0.0f;
    for (; p < m; p++)
        t += x[p];
    for (int j = 0; j < LANES; j++)
        sum += s[j];
    return sum + t;
}

/* The output columns x in [lo, hi) whose input column x*s - pad + j lies
 * inside [0, W): the rest read the zero padding. */
static void inside(int64_t W, int64_t OW, int64_t s, int64_t off,
                   int64_t *lo, int64_t *hi)
{
    *lo = off >= 0 ? 0 : (-off + s - 1) / s;
    *hi = W - off <= 0 ? 0 : (W - off + s - 1) / s;
    if (*hi > OW)
        *hi = OW;
    if (*lo > *hi)
        *lo = *hi;
}

/* The rows [*y0, *y1) of output row positions whose input row y - pad + i
 * lies inside [0, H), for stride 1. */
static void rows_inside(int64_t H, int64_t OH, int64_t i, int64_t pad,
                        int64_t *y0, int64_t *y1)
{
    *y0 = pad - i > 0 ? pad - i : 0;
    *y1 = H + pad - i < OH ? H + pad - i : OH;
    if (*y1 < *y0)
        *y1 = *y0;
}

/* 1 when the plane shortcut applies: stride 1 and OW == W. */
static int same_width(const SfLayer *l) { return l->stride == 1 && l->out.w == l->in.w; }

/* For kernel offset (i, j) of a same_width layer: the columns [lo, hi) and
 * output rows [y0, y1) that see the image; 0 when it sees only padding. */
static int plane_window(const SfLayer *l, int64_t i, int64_t j, int64_t *lo, int64_t *hi,
                        int64_t *y0, int64_t *y1)
{
    inside(l->in.w, l->in.w, 1, j - l->pad, lo, hi);
    rows_inside(l->in.h, l->out.h, i, l->pad, y0, y1);
    return *hi > *lo && *y1 > *y0;
}

/* Zeroes columns [0, lo) and [hi, W) of rows [y0, y1) of d (rows W
 * apart): the wrapped columns of a plane copy. Column by column, as
 * strided stores: row by row, GCC made each row's one or two entries a
 * memset call. */
static void zero_wrapped(float *d, int64_t W, int64_t lo, int64_t hi, int64_t y0,
                         int64_t y1)
{
    for (int64_t x = 0; x < lo; x++)
        for (int64_t y = y0; y < y1; y++)
            d[y * W + x] = 0.0f;
    for (int64_t x = hi; x < W; x++)
        for (int64_t y = y0; y < y1; y++)
            d[y * W + x] = 0.0f;
}

/* im2col of one sample for same_width layers: one copy per row of col.
 * img (C, H, W); d's rows are ld floats apart. */
static void im2col_planes(const SfLayer *l, const float *img, float *col, int64_t ld)
{
    const int64_t C = l->in.c, H = l->in.h, W = l->in.w, k = l->k, pad = l->pad;
    const int64_t OH = l->out.h, P = OH * W;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                float *d = col + ((c * k + i) * k + j) * ld;
                int64_t lo, hi, y0, y1;
                if (!plane_window(l, i, j, &lo, &hi, &y0, &y1)) { /* only padding */
                    memset(d, 0, (size_t)P * sizeof *d);
                    continue;
                }
                /* d[y*W + x] = img[(y + i - pad)*W + x + j - pad] */
                const int64_t from = y0 * W + lo, len = (y1 - 1) * W + hi - from;
                const int64_t shift = (i - pad) * W + (j - pad);
                const float *src = img + c * H * W;
                memset(d, 0, (size_t)from * sizeof *d);
                memcpy(d + from, src + from + shift, (size_t)len * sizeof *d);
                memset(d + from + len, 0, (size_t)(P - from - len) * sizeof *d);
                zero_wrapped(d, W, lo, hi, y0, y1);
            }
}

/* One sample's columns of col (K rows ld floats apart, P each) from its
 * image img (C, H, W). */
static void im2col(const SfLayer *l, const float *img, float *col, int64_t ld)
{
    const int64_t C = l->in.c, H = l->in.h, W = l->in.w, k = l->k;
    const int64_t s = l->stride, pad = l->pad, OH = l->out.h, OW = l->out.w;
    if (same_width(l)) {
        im2col_planes(l, img, col, ld);
        return;
    }
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                float *dst = col + ((c * k + i) * k + j) * ld;
                const float *src = img + c * H * W;
                int64_t lo, hi;
                inside(W, OW, s, j - pad, &lo, &hi);
                for (int64_t y = 0; y < OH; y++) {
                    const int64_t iy = y * s - pad + i;
                    float *d = dst + y * OW;
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, (size_t)OW * sizeof *d);
                        continue;
                    }
                    const int64_t base = iy * W + j - pad; /* + x*s >= 0 */
                    for (int64_t x = 0; x < lo; x++)
                        d[x] = 0.0f;
                    if (s == 1)
                        memcpy(d + lo, src + base + lo, (size_t)(hi - lo) * sizeof *d);
                    else
                        for (int64_t x = lo; x < hi; x++)
                            d[x] = src[base + x * s];
                    for (int64_t x = hi; x < OW; x++)
                        d[x] = 0.0f;
                }
            }
}

/* col2im of one sample for same_width layers: one add per row of col,
 * after zeroing the entries of the wrapped columns (col is scratch by
 * then). The pixels get the same additions in the same order as col2im's
 * loop. */
static void col2im_planes(const SfLayer *l, float *col, int64_t ld, float *img)
{
    const int64_t C = l->in.c, H = l->in.h, W = l->in.w, k = l->k, pad = l->pad;
    memset(img, 0, (size_t)(C * H * W) * sizeof *img);
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                float *src = col + ((c * k + i) * k + j) * ld;
                int64_t lo, hi, y0, y1;
                if (!plane_window(l, i, j, &lo, &hi, &y0, &y1))
                    continue;
                const int64_t from = y0 * W + lo, len = (y1 - 1) * W + hi - from;
                const int64_t shift = (i - pad) * W + (j - pad);
                zero_wrapped(src, W, lo, hi, y0, y1);
                add_to(img + c * H * W + from + shift, src + from, len);
            }
}

/* One sample's image gradient img (C, H, W) = the sum of its columns of
 * col (K rows ld floats apart) at their pixels; those columns are
 * clobbered. */
static void col2im(const SfLayer *l, float *col, int64_t ld, float *img)
{
    const int64_t C = l->in.c, H = l->in.h, W = l->in.w, k = l->k;
    const int64_t s = l->stride, pad = l->pad, OH = l->out.h, OW = l->out.w;
    if (same_width(l)) {
        col2im_planes(l, col, ld, img);
        return;
    }
    memset(img, 0, (size_t)(C * H * W) * sizeof *img);
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                const float *row = col + ((c * k + i) * k + j) * ld;
                float *dst = img + c * H * W;
                int64_t lo, hi;
                inside(W, OW, s, j - pad, &lo, &hi);
                for (int64_t y = 0; y < OH; y++) {
                    const int64_t iy = y * s - pad + i;
                    if (iy < 0 || iy >= H)
                        continue;
                    const int64_t base = iy * W + j - pad; /* + x*s >= 0 */
                    const float *src = row + y * OW;
                    for (int64_t x = lo; x < hi; x++)
                        dst[base + x * s] += src[x];
                }
            }
}

/* in (n, C, H, W), W (O, K); out (n, O, P). Sample by sample: its col_b
 * (K, P) in the workspace, above a row of ones, and its (O, P) block of out
 * = [W | bias] [col_b; 1] by one sgemm, so the product lands in NCHW
 * without a copy and the bias costs no pass of its own (out filled with the
 * bias first, then W col_b added, had taken 1.7% of fashion-cnn's step);
 * then, when the next layer takes rows (batchnorm: its statistics), the
 * block goes to it while in cache. */
static void conv_forward(const SfLayer *l, const float *in, float *out,
                         int64_t n, const SfPass *pass)
{
    const int64_t O = l->units, K = l->in.c * l->k * l->k;
    const int64_t P = l->out.h * l->out.w, D = sf_shape_size(l->in);
    float *col = l->work, *wb = col + (K + 1) * P; /* wb: [W | bias] (O, K + 1) */
    if (sf_wino_applies(l)) {
        sf_wino_forward(l, in, out, n, pass);
        return;
    }
    fill(col + K * P, P, 1.0f);
    for (int64_t o = 0; o < O; o++) {
        memcpy(wb + o * (K + 1), l->w + o * K, (size_t)K * sizeof *wb);
        wb[o * (K + 1) + K] = l->b[o];
    }
    for (int64_t b = 0; b < n; b++) {
        im2col(l, in + b * D, col, P);
        float *y = out + b * O * P;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)O, (int)P, (int)K + 1,
                    1.0f, wb, (int)K + 1, col, (int)P, 0.0f, y, (int)P);
        if (l->feed) /* the next layer reads the sample while it is in cache */
            l->feed->ops->take_rows(l->feed, y, b, 1, n, pass);
    }
}

/* dout (n, O, P), sample by sample: col_b again; db += its row sums; dW
 * (O, K) += dout_b col_b^T; then dcol_b = W^T dout_b into col_b's place
 * and din_b = col2im(dcol_b). Each gradient gets the same additions in the
 * same order as a pass over all samples per step. */
static void conv_backward(const SfLayer *l, const float *in, const float *out,
                          const float *dout, float *din, int64_t n,
                          const SfPass *pass)
{
    (void)out;
    (void)pass;
    const int64_t O = l->units, K = l->in.c * l->k * l->k;
    const int64_t P = l->out.h * l->out.w, D = sf_shape_size(l->in);
    float *col = l->work;
    if (sf_wino_applies(l)) {
        for (int64_t b = 0; b < n; b++)
            for (int64_t o = 0; o < O; o++)
                l->db[o] += plane_sum(dout + (b * O + o) * P, P);
        sf_wino_backward(l, in, dout, din, n);
        return;
    }
    for (int64_t b = 0; b < n; b++) {
        const float *dy = dout + b * O * P;
        im2col(l, in + b * D, col, P);
        for (int64_t o = 0; o < O; o++)
            l->db[o] += plane_sum(dy + o * P, P);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)O, (int)K, (int)P,
                    1.0f, dy, (int)P, col, (int)P, 1.0f, l->dw, (int)K);
        if (!din)
            continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)O,
                    1.0f, l->w, (int)K, dy, (int)P, 0.0f, col, (int)P);
        col2im(l, col, P, din + b * D);
    }
}

/* "conv:FILTERS:K[:STRIDE[:PAD]]", stride 1 and padding 0 by default. */
static int conv_setup(SfLayer *l, const char *arg, char *msg, int msgsize)
{
    int64_t v[4] = {0, 0, 1, 0};
    int got = sf_layer_parse_ints(arg, v, 4, 1u << 3);
    if (got < 2) {
        snprintf(msg, (size_t)msgsize, "conv needs FILTERS:K[:STRIDE[:PAD]] "
                 "(positive integers, PAD >= 0), as in conv:32:3:1:1");
        return -1;
    }
    l->units = v[0];
    l->k = v[1];
    l->stride = v[2];
    l->pad = v[3];
    const int64_t h = l->in.h + 2 * l->pad - l->k, w = l->in.w + 2 * l->pad - l->k;
    l->out = (SfShape){l->units, h < 0 ? 0 : h / l->stride + 1,
                       w < 0 ? 0 : w / l->stride + 1};
    if (h < 0 || w < 0) {
        char shape[64];
        snprintf(msg, (size_t)msgsize, "a %lldx%lld kernel with padding %lld "
                 "does not fit a %lldx%lld image: output would be %s",
                 (long long)l->k, (long long)l->k, (long long)l->pad,
                 (long long)l->in.h, (long long)l->in.w,
                 sf_shape_str((SfShape){l->units, 0, 0}, shape, sizeof shape));
        return -1;
    }
    const int64_t K = l->in.c * l->k * l->k, P = l->out.h * l->out.w;
    sf_layer_add_part(l, "weight", 0, 4,
                      (int64_t[]){l->units, l->in.c, l->k, l->k});
    sf_layer_add_part(l, "bias", 0, 1, &l->units);
    l->fan_in = (double)K;
    l->fan_out = (double)(l->units * l->k * l->k);
    /* im2col: col (K, P), its row of ones, [W | bias] (layer_conv's forward) */
    l->work_fixed = sf_wino_applies(l) ? sf_wino_work(l) : (K + 1) * P + l->units * (K + 1);
    return 0;
}

const SfLayerOps sf_layer_conv = {
    .kind = "conv",
    .setup = conv_setup,
    .forward = conv_forward,
    .backward = conv_backward,
    .feeds_rows = 1};
