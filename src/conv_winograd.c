/* conv_winograd.c: 3x3 convolutions with padding 1 and stride 1 by
 * Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast
 * Algorithms for Convolutional Neural Networks", 2016), as cuDNN and
 * oneDNN offer it: each 2x2 block of outputs (a tile) comes from the 4x4
 * block of input around it in 16 products per channel pair instead of 36.
 *
 * With V = B^T d B (a tile's input d, per channel), U = G g G^T (a filter
 * g, per output and input channel) and M = sum over c of U (.) V, the
 * tile's output is A^T M A. For each of the 16 entries xi of the 4x4
 * transforms, M[xi] (O, T) = U[xi] (O, C) V[xi] (C, T) over the T tiles
 * of a chunk of samples: 16 sgemms. Backward runs the same algebra
 * transposed: dM = A dY A^T; dV[xi] = U[xi]^T dM[xi], then din's 4x4
 * blocks B dV B^T added up (they overlap); dU[xi] += dM[xi] V[xi]^T,
 * sample by sample (so its sums do not depend on where chunks fall), then
 * dW += G^T dU G.
 *
 * The transformed tensors are channel by channel, a tile per column, as
 * the layer's NCHW planes are, so nothing is transposed: each transform
 * works on one plane, a row of tiles at a time in vectors of 8 tiles (16
 * columns, split into even and odd columns by shuffles). A plane's input
 * (or output gradient) is first copied into a small zero-bordered buffer,
 * so that tiles passing the image's edge read zeros. The version before
 * this one ran the transforms across 16 channels of channels-last copies;
 * the copies took 13% of fashion-cnn's step (BENCHMARKS).
 *
 * Why Winograd: fashion-cnn's second conv (32 to 64 channels, 14x14) spent
 * about 20 ms of a 30 ms step (128 samples, 1 rank, SkylakeX kernels) in
 * its three im2col sgemms; the 48 sgemms here take about half as long. The
 * chunk is sized so that its transformed tensors stay in cache. The
 * results differ from im2col's by rounding (F(2x2, 3x3)'s constants are 1
 * and 1/2: a few ulps more), and are as deterministic: the same on every
 * rank and run.
 *
 * Rows of tiles are stored whole vectors at a time: the lanes past a row's
 * last tile spill into the next row's first tiles (written after) or the
 * slack after the chunk's last tile (SLACK); the output's and din's rows
 * likewise spill into the next row, except at the end of the tensor.
 *
 * The workspace (floats, l->work): U and dU (16 O C each), then for a
 * chunk of S samples V (16 C TS), M or dM (16 O TS), dV (16 C TS), TS = S
 * tiles + SLACK, and three planes: the padded input (PH PW), the padded
 * output gradient (2 TH PW) and din's sums (PH PW). */
#include "conv_winograd.h"

#include <cblas.h>
#include <string.h>

#include "simd.h"

#define XI 16                   /* entries of a transformed 4x4 tile */
#define MIN_CHANNELS 16         /* fewer: im2col (at 14x14 the step by
                                   Winograd was 0.85 of im2col's at 16 to 16
                                   channels, 1.01 at 8 to 8: BENCHMARKS) */
#define MAX_CHUNK 8             /* samples per chunk, at most */
#define CHUNK_BYTES (1 << 20)   /* V, M and dV of a chunk: about L2 */
#define SLACK 8                 /* a vector of tiles past a chunk's last */

/* 8 tiles (or columns) as one GCC vector, loaded and stored whole (macros:
 * a function passing a vector would change the ABI across the clones). */
typedef float F8 __attribute__((vector_size(8 * sizeof(float))));
typedef int32_t I8 __attribute__((vector_size(8 * sizeof(int32_t))));
#define LOAD(v, p) memcpy(&(v), (p), sizeof(F8))
#define STORE(p, e)                                                             \
    do {                                                                        \
        const F8 s_ = (e);                                                      \
        memcpy((p), &s_, sizeof s_);                                            \
    } while (0)
#define SHUF(x, y, idx) SF_VSHUFFLE(F8, 8, x, y, idx)
/* x where the mask is -1, else 0 */
#define KEEP(x, mask) ((F8)((I8)(x) & (mask)))
/* 16 floats, lo then hi, to dst, of which n are wanted: whole when the
 * rest may be spilt (dst + 16 <= end), else only the n */
#define PUT16(dst, lo, hi, n, end)                                              \
    do {                                                                        \
        float *d_ = (dst);                                                      \
        if ((n) >= 16 || d_ + 16 <= (end)) {                                    \
            STORE(d_, lo);                                                      \
            STORE(d_ + 8, hi);                                                  \
        } else {                                                                \
            float t_[16];                                                       \
            STORE(t_, lo);                                                      \
            STORE(t_ + 8, hi);                                                  \
            memcpy(d_, t_, (size_t)(n) * sizeof(float));                        \
        }                                                                       \
    } while (0)

static const I8 EVEN = {0, 2, 4, 6, 8, 10, 12, 14}, ODD = {1, 3, 5, 7, 9, 11, 13, 15};
static const I8 LO = {0, 8, 1, 9, 2, 10, 3, 11}, HI = {4, 12, 5, 13, 6, 14, 7, 15};
static const I8 SHIFT = {0, 8, 9, 10, 11, 12, 13, 14}; /* with zeros first: up a lane */
static const I8 LANE = {0, 1, 2, 3, 4, 5, 6, 7};

typedef struct {
    int64_t C, O, H, W;
    int64_t TH, TW, tiles; /* tiles per sample: ceil(H/2) x ceil(W/2) */
    int64_t NB;            /* vectors of 8 tiles a row of tiles */
    int64_t PH, PW;        /* the padded planes: 2 TH + 2 rows of 16 NB + 8 */
    int64_t S, TS;         /* samples per chunk; a transformed row's floats */
    float *U, *dU, *V, *M, *dV, *pin, *pgrad, *pdin;
    int64_t floats;        /* the workspace's size */
} Wino;

static int64_t chunk_of(int64_t C, int64_t O, int64_t tiles)
{
    int64_t per = XI * tiles * (O + 2 * C) * (int64_t)sizeof(float);
    int64_t s = CHUNK_BYTES / (per > 0 ? per : 1);
    return s < 1 ? 1 : s > MAX_CHUNK ? MAX_CHUNK : s;
}

/* The geometry of l's chunks, and its workspace carved from base (NULL:
 * sizes only). */
static Wino wino_at(const SfLayer *l, float *base)
{
    Wino g;
    g.C = l->in.c;
    g.O = l->units;
    g.H = l->in.h;
    g.W = l->in.w;
    g.TH = (g.H + 1) / 2;
    g.TW = (g.W + 1) / 2;
    g.tiles = g.TH * g.TW;
    g.NB = (g.TW + 7) / 8;
    g.PH = 2 * g.TH + 2;
    g.PW = 16 * g.NB + 8;
    g.S = chunk_of(g.C, g.O, g.tiles);
    g.TS = g.S * g.tiles + SLACK;
    const int64_t sizes[] = {XI * g.C * g.O, XI * g.C * g.O, XI * g.C * g.TS,
                             XI * g.O * g.TS, XI * g.C * g.TS, g.PH * g.PW,
                             2 * g.TH * g.PW, g.PH * g.PW};
    float **parts[] = {&g.U, &g.dU, &g.V, &g.M, &g.dV, &g.pin, &g.pgrad, &g.pdin};
    int64_t at = 0;
    for (int i = 0; i < 8; i++) {
        *parts[i] = base ? base + at : NULL;
        at += sizes[i];
    }
    g.floats = at;
    return g;
}

int sf_wino_applies(const SfLayer *l)
{
    return l->k == 3 && l->pad == 1 && l->stride == 1 && l->in.c >= MIN_CHANNELS &&
           l->units >= MIN_CHANNELS;
}

int64_t sf_wino_work(const SfLayer *l)
{
    return wino_at(l, NULL).floats;
}

/* U[xi] (O, C) = G g G^T of every filter g (3x3) of w (O, C, 3, 3). */
static void filter_transform(const Wino *g, const float *w)
{
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t c = 0; c < g->C; c++) {
            const float *f = w + (o * g->C + c) * 9;
            float t[4][3], u[4][4];
            for (int j = 0; j < 3; j++) {
                t[0][j] = f[j];
                t[1][j] = 0.5f * (f[j] + f[3 + j] + f[6 + j]);
                t[2][j] = 0.5f * (f[j] - f[3 + j] + f[6 + j]);
                t[3][j] = f[6 + j];
            }
            for (int i = 0; i < 4; i++) {
                u[i][0] = t[i][0];
                u[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                u[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                u[i][3] = t[i][2];
            }
            for (int x = 0; x < XI; x++)
                g->U[(x * g->O + o) * g->C + c] = u[x / 4][x % 4];
        }
}

/* dw (O, C, 3, 3) += G^T dU G of every dU[xi] (O, C). */
static void filter_grad(const Wino *g, float *dw)
{
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t c = 0; c < g->C; c++) {
            float d[4][4], s[3][4];
            for (int x = 0; x < XI; x++)
                d[x / 4][x % 4] = g->dU[(x * g->O + o) * g->C + c];
            for (int j = 0; j < 4; j++) {
                s[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
                s[1][j] = 0.5f * (d[1][j] - d[2][j]);
                s[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
            }
            float *f = dw + (o * g->C + c) * 9;
            for (int i = 0; i < 3; i++) {
                f[3 * i] += s[i][0] + 0.5f * (s[i][1] + s[i][2]);
                f[3 * i + 1] += 0.5f * (s[i][1] - s[i][2]);
                f[3 * i + 2] += 0.5f * (s[i][1] + s[i][2]) + s[i][3];
            }
        }
}

/* A plane of src (H rows of W floats) into dst (rows pw apart), whole
 * vectors: the columns past W in a row's last vector zeroed, so a padded
 * plane's right border stays zero. src is read no further than end. */
#define STAGE_ROWS(src, H, W, dst, pw, end)                                     \
    for (int64_t y_ = 0; y_ < (H); y_++) {                                      \
        const float *s_ = (src) + y_ * (W);                                     \
        float *t_ = (dst) + y_ * (pw);                                          \
        for (int64_t x_ = 0; x_ < (W); x_ += 8) {                               \
            F8 v_;                                                              \
            if (x_ + 8 <= (W)) {                                                \
                LOAD(v_, s_ + x_);                                              \
            } else if (s_ + x_ + 8 <= (end)) {                                  \
                LOAD(v_, s_ + x_);                                              \
                v_ = KEEP(v_, LANE < (int32_t)((W) - x_));                      \
            } else {                                                            \
                for (int j_ = 0; j_ < 8; j_++)                                  \
                    v_[j_] = x_ + j_ < (W) ? s_[x_ + j_] : 0.0f;                \
            }                                                                   \
            STORE(t_ + x_, v_);                                                 \
        }                                                                       \
    }

/* V[xi] (at v + xi vs, a tile a column) of every tile of one plane of the
 * input (H, W), through the padded plane p (zero border; PW floats a row):
 * tile (ty, tx) reads its rows 2 ty .. 2 ty + 3, columns 2 tx .. 2 tx + 3,
 * and V = B^T d B. */
SF_SIMD_CLONES
static void plane_in(const Wino *g, const float *restrict src, const float *end,
                     float *restrict v, int64_t vs)
{
    const int64_t pw = g->PW;
    STAGE_ROWS(src, g->H, g->W, g->pin + pw + 1, pw, end);
    for (int64_t ty = 0; ty < g->TH; ty++)
        for (int64_t b = 0; b < g->NB; b++) {
            const float *p = g->pin + 2 * ty * pw + 16 * b;
            float *t = v + ty * g->TW + 8 * b;
            F8 d[4][4], q[4][4];
            for (int i = 0; i < 4; i++) {
                F8 a0, a1, b0, b1;
                LOAD(a0, p + i * pw);
                LOAD(a1, p + i * pw + 8);
                LOAD(b0, p + i * pw + 2);
                LOAD(b1, p + i * pw + 10);
                d[i][0] = SHUF(a0, a1, EVEN);
                d[i][1] = SHUF(a0, a1, ODD);
                d[i][2] = SHUF(b0, b1, EVEN);
                d[i][3] = SHUF(b0, b1, ODD);
            }
            for (int j = 0; j < 4; j++) {
                q[0][j] = d[0][j] - d[2][j];
                q[1][j] = d[1][j] + d[2][j];
                q[2][j] = d[2][j] - d[1][j];
                q[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; i++) {
                STORE(t + (4 * i) * vs, q[i][0] - q[i][2]);
                STORE(t + (4 * i + 1) * vs, q[i][1] + q[i][2]);
                STORE(t + (4 * i + 2) * vs, q[i][2] - q[i][1]);
                STORE(t + (4 * i + 3) * vs, q[i][1] - q[i][3]);
            }
        }
}

/* One plane of the output (H, W) from M[xi] (at m + xi ms): A^T M A +
 * bias, a row of tiles' two output rows at a time. */
SF_SIMD_CLONES
static void plane_out(const Wino *g, const float *restrict m, int64_t ms, float bias,
                      float *restrict y, const float *end)
{
    const int64_t W = g->W;
    for (int64_t ty = 0; ty < g->TH; ty++) {
        const int rows = 2 * ty + 1 < g->H ? 2 : 1;
        for (int64_t b = g->NB - 1; b >= 0; b--) { /* a row's spill, then its start */
            const float *t = m + ty * g->TW + 8 * b;
            F8 q[2][4];
            for (int j = 0; j < 4; j++) {
                F8 m0, m1, m2, m3;
                LOAD(m0, t + j * ms);
                LOAD(m1, t + (4 + j) * ms);
                LOAD(m2, t + (8 + j) * ms);
                LOAD(m3, t + (12 + j) * ms);
                q[0][j] = m0 + m1 + m2;
                q[1][j] = m1 - m2 - m3;
            }
            for (int i = 0; i < rows; i++) {
                const F8 e = (q[i][0] + q[i][1] + q[i][2]) + bias;
                const F8 o = (q[i][1] - q[i][2] - q[i][3]) + bias;
                PUT16(y + (2 * ty + i) * W + 16 * b, SHUF(e, o, LO), SHUF(e, o, HI),
                      W - 16 * b, end);
            }
        }
    }
}

/* dM[xi] (at m + xi ms) of every tile of one plane of the output gradient
 * (H, W), through the padded plane (zeros past the image): A dY A^T of each
 * tile's 2x2 block. */
SF_SIMD_CLONES
static void plane_grad(const Wino *g, const float *restrict src, const float *end,
                       float *restrict m, int64_t ms)
{
    const int64_t pw = g->PW;
    STAGE_ROWS(src, g->H, g->W, g->pgrad, pw, end);
    for (int64_t ty = 0; ty < g->TH; ty++)
        for (int64_t b = 0; b < g->NB; b++) {
            const float *p = g->pgrad + 2 * ty * pw + 16 * b;
            float *t = m + ty * g->TW + 8 * b;
            F8 a0, a1, c0, c1;
            LOAD(a0, p);
            LOAD(a1, p + 8);
            LOAD(c0, p + pw);
            LOAD(c1, p + pw + 8);
            const F8 y00 = SHUF(a0, a1, EVEN), y01 = SHUF(a0, a1, ODD);
            const F8 y10 = SHUF(c0, c1, EVEN), y11 = SHUF(c0, c1, ODD);
            const F8 q[4][2] = {{y00, y01},
                                {y00 + y10, y01 + y11},
                                {y00 - y10, y01 - y11},
                                {-y10, -y11}};
            for (int i = 0; i < 4; i++) {
                STORE(t + (4 * i) * ms, q[i][0]);
                STORE(t + (4 * i + 1) * ms, q[i][0] + q[i][1]);
                STORE(t + (4 * i + 2) * ms, q[i][0] - q[i][1]);
                STORE(t + (4 * i + 3) * ms, -q[i][1]);
            }
        }
}

/* One plane of din (H, W) from dV[xi] (at v + xi vs): every tile's B dV
 * B^T added into the zeroed padded plane (the 4x4 blocks overlap: a row's
 * even columns take a tile's first column and the tile before's third,
 * its odd ones the second and fourth), lanes past a row's last tile left
 * out; then the image's part out to din. */
SF_SIMD_CLONES
static void plane_back(const Wino *g, const float *restrict v, int64_t vs,
                       float *restrict din, const float *end)
{
    const int64_t pw = g->PW, W = g->W;
    const F8 zero = {0};
    memset(g->pdin, 0, (size_t)(g->PH * pw) * sizeof *g->pdin);
    for (int64_t ty = 0; ty < g->TH; ty++)
        for (int64_t b = 0; b < g->NB; b++) {
            const float *t = v + ty * g->TW + 8 * b;
            const I8 valid = LANE < (int32_t)(g->TW - 8 * b);
            F8 e[4][4], q[4][4];
            for (int x = 0; x < XI; x++) {
                LOAD(e[x / 4][x % 4], t + x * vs);
                e[x / 4][x % 4] = KEEP(e[x / 4][x % 4], valid);
            }
            for (int j = 0; j < 4; j++) {
                q[0][j] = e[0][j];
                q[1][j] = e[1][j] - e[2][j] + e[3][j];
                q[2][j] = -e[0][j] + e[1][j] + e[2][j];
                q[3][j] = -e[3][j];
            }
            for (int i = 0; i < 4; i++) {
                float *row = g->pdin + (2 * ty + i) * pw + 16 * b;
                const F8 r0 = q[i][0], r1 = q[i][1] - q[i][2] + q[i][3];
                const F8 r2 = -q[i][0] + q[i][1] + q[i][2], r3 = -q[i][3];
                const F8 ev = r0 + SHUF(zero, r2, SHIFT), od = r1 + SHUF(zero, r3, SHIFT);
                F8 lo, hi;
                LOAD(lo, row);
                LOAD(hi, row + 8);
                STORE(row, lo + SHUF(ev, od, LO));
                STORE(row + 8, hi + SHUF(ev, od, HI));
                row[16] += r2[7];
                row[17] += r3[7];
            }
        }
    for (int64_t y = 0; y < g->H; y++)
        for (int64_t x = 0; x < W; x += 16) {
            const float *p = g->pdin + (y + 1) * pw + 1 + x;
            F8 lo, hi;
            LOAD(lo, p);
            LOAD(hi, p + 8);
            PUT16(din + y * W + x, lo, hi, W - x, end);
        }
}

/* The 16 sgemms of one kind over a chunk of S samples, on the workspace
 * as wino_at carves it. */
static void chunk_gemms(const Wino *g, int kind, int64_t S)
{
    const int C = (int)g->C, O = (int)g->O, TS = (int)g->TS, T = (int)(S * g->tiles);
    for (int x = 0; x < XI; x++) {
        const float *u = g->U + (int64_t)x * O * C;
        float *v = g->V + (int64_t)x * C * TS, *m = g->M + (int64_t)x * O * TS;
        if (kind == SF_WINO_FORWARD) /* M[xi] (O, T) = U[xi] (O, C) V[xi] (C, T) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, T, C, 1.0f, u, C,
                        v, TS, 0.0f, m, TS);
        else if (kind == SF_WINO_WEIGHT_GRAD) /* dU[xi] (O, C) += dM[xi] V[xi]^T */
            for (int64_t s = 0; s < S; s++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, C, (int)g->tiles,
                            1.0f, m + s * g->tiles, TS, v + s * g->tiles, TS, 1.0f,
                            g->dU + (int64_t)x * O * C, C);
        else /* dV[xi] (C, T) = U[xi]^T dM[xi] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, T, O, 1.0f, u, C, m,
                        TS, 0.0f, g->dV + (int64_t)x * C * TS, TS);
    }
}

void sf_wino_gemms(const SfLayer *l, float *work, int kind, int64_t n)
{
    const Wino g = wino_at(l, work);
    for (int64_t s0 = 0; s0 < n; s0 += g.S)
        chunk_gemms(&g, kind, n - s0 < g.S ? n - s0 : g.S);
}

/* V of the chunk of S samples at in, whose tensor ends at end. */
static void input_transform(const Wino *g, const float *in, int64_t S, const float *end)
{
    const int64_t C = g->C, P = g->H * g->W;
    for (int64_t s = 0; s < S; s++)
        for (int64_t c = 0; c < C; c++)
            plane_in(g, in + (s * C + c) * P, end, g->V + c * g->TS + s * g->tiles,
                     C * g->TS);
}

void sf_wino_forward(const SfLayer *l, const float *in, float *out, int64_t n,
                     const SfPass *pass)
{
    const Wino g = wino_at(l, l->work);
    const int64_t C = g.C, O = g.O, P = g.H * g.W, D = C * P, E = O * P;
    filter_transform(&g, l->w);
    memset(g.pin, 0, (size_t)(g.PH * g.PW) * sizeof *g.pin);
    for (int64_t s0 = 0; s0 < n; s0 += g.S) {
        const int64_t S = n - s0 < g.S ? n - s0 : g.S;
        input_transform(&g, in + s0 * D, S, in + n * D);
        chunk_gemms(&g, SF_WINO_FORWARD, S);
        for (int64_t s = 0; s < S; s++)
            for (int64_t o = 0; o < O; o++)
                plane_out(&g, g.M + o * g.TS + s * g.tiles, O * g.TS, l->b[o],
                          out + (s0 + s) * E + o * P, out + n * E);
        if (l->feed) /* the next layer reads each sample while it is in cache */
            for (int64_t s = 0; s < S; s++)
                l->feed->ops->take_rows(l->feed, out + (s0 + s) * E, s0 + s, 1, n, pass);
    }
}

void sf_wino_backward(const SfLayer *l, const float *in, const float *dout, float *din,
                      int64_t n)
{
    const Wino g = wino_at(l, l->work);
    const int64_t C = g.C, O = g.O, P = g.H * g.W, D = C * P, E = O * P;
    if (din)
        filter_transform(&g, l->w);
    memset(g.dU, 0, (size_t)(XI * C * O) * sizeof *g.dU);
    memset(g.pin, 0, (size_t)(g.PH * g.PW) * sizeof *g.pin);
    memset(g.pgrad, 0, (size_t)(2 * g.TH * g.PW) * sizeof *g.pgrad);
    for (int64_t s0 = 0; s0 < n; s0 += g.S) {
        const int64_t S = n - s0 < g.S ? n - s0 : g.S;
        input_transform(&g, in + s0 * D, S, in + n * D);
        for (int64_t s = 0; s < S; s++)
            for (int64_t o = 0; o < O; o++)
                plane_grad(&g, dout + (s0 + s) * E + o * P, dout + n * E,
                           g.M + o * g.TS + s * g.tiles, O * g.TS);
        chunk_gemms(&g, SF_WINO_WEIGHT_GRAD, S);
        if (!din)
            continue;
        chunk_gemms(&g, SF_WINO_INPUT_GRAD, S);
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < C; c++)
                plane_back(&g, g.dV + c * g.TS + s * g.tiles, C * g.TS,
                           din + (s0 + s) * D + c * P, din + n * D);
    }
    filter_grad(&g, l->dw);
}
