/* conv_winograd.c: 3x3 convolutions with padding 1 and stride 1 by
 * Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast
 * Algorithms for Convolutional Neural Networks", 2016), as cuDNN and
 * oneDNN offer it: each 2x2 block of outputs (a tile) comes from the 4x4
 * block of input around it in 16 products per channel pair instead of 36.
 *
 * With V = B^T d B (a tile's input d, per channel), U = G g G^T (a filter
 * g, per output and input channel) and M = sum over c of U (.) V, the
 * tile's output is A^T M A. For each of the 16 entries xi of the 4x4
 * transforms, M[xi] (T, O) = V[xi] (T, C) U[xi] (C, O) over the T tiles
 * of a chunk of samples: 16 sgemms. Backward runs the same algebra
 * transposed: dM = A dY A^T; dV[xi] = dM[xi] U[xi]^T, then din's 4x4
 * blocks B dV B^T added up (they overlap); dU[xi] += V[xi]^T dM[xi],
 * sample by sample (so its sums do not depend on where chunks fall), then
 * dW += G^T dU G.
 *
 * Inside a chunk the tensors are channels-last (a tile's C or O values
 * side by side), so every transform is a loop over channels in vectors
 * (SIMD clones); the layer's NCHW input, output and gradients go in and
 * out through transposing copies. The same transforms written per NCHW
 * plane, scalar, had taken a third of the step.
 *
 * Why: fashion-cnn's second conv (32 to 64 channels, 14x14) spent about
 * 20 ms of a 30 ms step (128 samples, 1 rank, SkylakeX kernels) in its
 * three im2col sgemms; the 48 sgemms here take about half as long. The
 * chunk is sized so that its transformed tensors stay in cache. The
 * results differ from im2col's by rounding (F(2x2, 3x3)'s constants are 1
 * and 1/2: a few ulps more), and are as deterministic: the same on every
 * rank and run.
 *
 * The workspace (floats, l->work): U and dU (16 C O each), then for a
 * chunk of S samples and T tiles V (16 T C), M or dM (16 T O), dV (16 T
 * C), the padded input (S PH PW C: each sample with a zero border, one row
 * and column before and enough after that every tile's 4x4 block is
 * inside; backward adds din's blocks into it), and the output or its
 * gradient by whole tiles (S 2TH 2TW O). */
#include "conv_winograd.h"

#include <cblas.h>
#include <string.h>

#include "simd.h"

#define XI 16                   /* entries of a transformed 4x4 tile */
#define LANES 16                /* channels a vector: C and O are multiples */
#define MAX_CHUNK 8             /* samples per chunk, at most */
#define CHUNK_BYTES (1 << 20)   /* V, M and dV of a chunk: about L2 */

/* LANES floats as one GCC vector, loaded and stored whole (macros: a
 * function passing a vector would change the ABI across the clones). */
typedef float Lanes __attribute__((vector_size(LANES * sizeof(float))));
#define LOAD(v, p) memcpy(&(v), (p), sizeof(Lanes))
#define STORE(p, e)                                                             \
    do {                                                                        \
        const Lanes s_ = (e);                                                   \
        memcpy((p), &s_, sizeof s_);                                            \
    } while (0)

typedef struct {
    int64_t C, O, H, W;
    int64_t TH, TW, tiles; /* tiles per sample: ceil(H/2) x ceil(W/2) */
    int64_t PH, PW;        /* the padded input: 2 TH + 2 by 2 TW + 2 */
    int64_t S;             /* samples per chunk */
    float *U, *dU, *V, *M, *dV, *pad, *stage;
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
    g.PH = 2 * g.TH + 2;
    g.PW = 2 * g.TW + 2;
    g.S = chunk_of(g.C, g.O, g.tiles);
    const int64_t T = g.S * g.tiles;
    const int64_t sizes[] = {XI * g.C * g.O, XI * g.C * g.O, XI * T * g.C, XI * T * g.O,
                             XI * T * g.C, g.S * g.PH * g.PW * g.C,
                             g.S * 4 * g.tiles * g.O};
    float **parts[] = {&g.U, &g.dU, &g.V, &g.M, &g.dV, &g.pad, &g.stage};
    int64_t at = 0;
    for (int i = 0; i < 7; i++) {
        *parts[i] = base ? base + at : NULL;
        at += sizes[i];
    }
    g.floats = at;
    return g;
}

int sf_wino_applies(const SfLayer *l)
{
    return l->k == 3 && l->pad == 1 && l->stride == 1 && l->in.c % LANES == 0 &&
           l->units % LANES == 0;
}

int64_t sf_wino_tiles(const SfLayer *l)
{
    return ((l->in.h + 1) / 2) * ((l->in.w + 1) / 2);
}

int64_t sf_wino_chunk(const SfLayer *l)
{
    return chunk_of(l->in.c, l->units, sf_wino_tiles(l));
}

int64_t sf_wino_work(const SfLayer *l)
{
    return wino_at(l, NULL).floats;
}

/* U[xi] (C, O) = G g G^T of every filter g (3x3) of w (O, C, 3, 3). */
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
                g->U[(x * g->C + c) * g->O + o] = u[x / 4][x % 4];
        }
}

/* dw (O, C, 3, 3) += G^T dU G of every dU[xi] (C, O). */
static void filter_grad(const Wino *g, float *dw)
{
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t c = 0; c < g->C; c++) {
            float d[4][4], s[3][4];
            for (int x = 0; x < XI; x++)
                d[x / 4][x % 4] = g->dU[(x * g->C + c) * g->O + o];
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

/* NCHW to channels-last: the C planes (H, W) of each of S samples of src
 * into dst, whose samples are DH rows of DW pixels of C values, the image
 * at row and column off. Element by element along rows, the channels
 * strided on the channels-last side: about 15% of fashion-cnn's step, and
 * the two other ways measured (the channel loop innermost, 16x16 blocks
 * transposed in registers) were slower (BENCHMARKS). */
static void to_channels_last(const float *src, int64_t S, int64_t C, int64_t H, int64_t W,
                             float *dst, int64_t DH, int64_t DW, int64_t off)
{
    for (int64_t s = 0; s < S; s++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++) {
                const float *from = src + ((s * C + c) * H + y) * W;
                float *to = dst + ((s * DH + y + off) * DW + off) * C + c;
                for (int64_t x = 0; x < W; x++)
                    to[x * C] = from[x];
            }
}

/* The way back: the image part of channels-last src (as above) into the
 * NCHW planes of dst. */
static void from_channels_last(const float *src, int64_t DH, int64_t DW, int64_t off,
                               int64_t S, int64_t C, int64_t H, int64_t W, float *dst)
{
    for (int64_t s = 0; s < S; s++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++) {
                const float *from = src + ((s * DH + y + off) * DW + off) * C + c;
                float *to = dst + ((s * C + c) * H + y) * W;
                for (int64_t x = 0; x < W; x++)
                    to[x] = from[x * C];
            }
}

/* The S samples of in (C, H, W each) into the padded input, channels
 * last, zero around. */
static void pad_input(const Wino *g, const float *in, int64_t S)
{
    const int64_t C = g->C;
    memset(g->pad, 0, (size_t)(S * g->PH * g->PW * C) * sizeof *g->pad);
    to_channels_last(in, S, C, g->H, g->W, g->pad, g->PH, g->PW, 1);
}

/* V[xi] of a row of n tiles: v + xi vs, C values a tile; the 4x4 blocks
 * start at d, 2 C apart, their rows r apart: V = B^T d B, per channel. */
SF_SIMD_CLONES
static void tiles_in(const float *restrict d, int64_t r, float *restrict v, int64_t vs,
                     int64_t n, int64_t C)
{
    for (int64_t t = 0; t < n; t++, d += 2 * C, v += C)
        for (int64_t c = 0; c < C; c += LANES) {
            Lanes q[4][4];
            for (int j = 0; j < 4; j++) {
                Lanes d0, d1, d2, d3;
                LOAD(d0, d + j * C + c);
                LOAD(d1, d + r + j * C + c);
                LOAD(d2, d + 2 * r + j * C + c);
                LOAD(d3, d + 3 * r + j * C + c);
                q[0][j] = d0 - d2;
                q[1][j] = d1 + d2;
                q[2][j] = d2 - d1;
                q[3][j] = d1 - d3;
            }
            for (int i = 0; i < 4; i++) {
                STORE(v + (4 * i) * vs + c, q[i][0] - q[i][2]);
                STORE(v + (4 * i + 1) * vs + c, q[i][1] + q[i][2]);
                STORE(v + (4 * i + 2) * vs + c, q[i][2] - q[i][1]);
                STORE(v + (4 * i + 3) * vs + c, q[i][1] - q[i][3]);
            }
        }
}

/* V[xi] (T, C) of every tile of the padded input; tile t = s tiles + ty TW
 * + tx reads rows 2 ty .. 2 ty + 3 and columns 2 tx .. 2 tx + 3. */
static void input_transform(const Wino *g, int64_t S)
{
    const int64_t C = g->C, T = S * g->tiles;
    for (int64_t s = 0; s < S; s++)
        for (int64_t ty = 0; ty < g->TH; ty++)
            tiles_in(g->pad + (s * g->PH + 2 * ty) * g->PW * C, g->PW * C,
                     g->V + (s * g->tiles + ty * g->TW) * C, T * C, g->TW, C);
}

/* A row of n tiles' outputs from M[xi] (m + xi ms, O values a tile): A^T M
 * A + bias, into y (whole tiles, 2 O apart, rows r apart). */
SF_SIMD_CLONES
static void tiles_out(const float *restrict m, int64_t ms, const float *restrict bias,
                      float *restrict y, int64_t r, int64_t n, int64_t O)
{
    for (int64_t t = 0; t < n; t++, m += O, y += 2 * O)
        for (int64_t o = 0; o < O; o += LANES) {
            Lanes q[2][4], b;
            LOAD(b, bias + o);
            for (int j = 0; j < 4; j++) {
                Lanes m0, m1, m2, m3;
                LOAD(m0, m + j * ms + o);
                LOAD(m1, m + (4 + j) * ms + o);
                LOAD(m2, m + (8 + j) * ms + o);
                LOAD(m3, m + (12 + j) * ms + o);
                q[0][j] = m0 + m1 + m2;
                q[1][j] = m1 - m2 - m3;
            }
            for (int i = 0; i < 2; i++) {
                STORE(y + i * r + o, (q[i][0] + q[i][1] + q[i][2]) + b);
                STORE(y + i * r + O + o, (q[i][1] - q[i][2] - q[i][3]) + b);
            }
        }
}

/* out (S samples, O, H, W) from M: each row of tiles into the staging
 * buffer (whole tiles, channels last), then the image's part of it
 * transposed into out. */
static void output_transform(const Wino *g, const float *bias, float *out, int64_t S)
{
    const int64_t O = g->O, T = S * g->tiles, SW = 2 * g->TW;
    for (int64_t s = 0; s < S; s++)
        for (int64_t ty = 0; ty < g->TH; ty++)
            tiles_out(g->M + (s * g->tiles + ty * g->TW) * O, T * O, bias,
                      g->stage + (s * 2 * g->TH + 2 * ty) * SW * O, SW * O, g->TW, O);
    from_channels_last(g->stage, 2 * g->TH, SW, 0, S, O, g->H, g->W, out);
}

/* dM[xi] of a row of n tiles (m + xi ms, O values a tile) = A dY A^T of
 * their 2x2 blocks of dy (whole tiles, 2 O apart, rows r apart). */
SF_SIMD_CLONES
static void tiles_grad(const float *restrict dy, int64_t r, float *restrict m, int64_t ms,
                       int64_t n, int64_t O)
{
    for (int64_t t = 0; t < n; t++, dy += 2 * O, m += O)
        for (int64_t o = 0; o < O; o += LANES) {
            Lanes y00, y01, y10, y11;
            LOAD(y00, dy + o);
            LOAD(y01, dy + O + o);
            LOAD(y10, dy + r + o);
            LOAD(y11, dy + r + O + o);
            const Lanes q[4][2] = {{y00, y01},
                                   {y00 + y10, y01 + y11},
                                   {y00 - y10, y01 - y11},
                                   {-y10, -y11}};
            for (int i = 0; i < 4; i++) {
                STORE(m + (4 * i) * ms + o, q[i][0]);
                STORE(m + (4 * i + 1) * ms + o, q[i][0] + q[i][1]);
                STORE(m + (4 * i + 2) * ms + o, q[i][0] - q[i][1]);
                STORE(m + (4 * i + 3) * ms + o, -q[i][1]);
            }
        }
}

/* dM[xi] (T, O) of every tile of dout (S samples, O, H, W): dout
 * transposed into the staging buffer, zeros where a last tile passes the
 * image, then tiles_grad. */
static void grad_transform(const Wino *g, const float *dout, int64_t S)
{
    const int64_t O = g->O, T = S * g->tiles, SW = 2 * g->TW;
    if (g->H % 2 || g->W % 2)
        memset(g->stage, 0, (size_t)(S * 4 * g->tiles * O) * sizeof *g->stage);
    to_channels_last(dout, S, O, g->H, g->W, g->stage, 2 * g->TH, SW, 0);
    for (int64_t s = 0; s < S; s++)
        for (int64_t ty = 0; ty < g->TH; ty++)
            tiles_grad(g->stage + (s * 2 * g->TH + 2 * ty) * SW * O, SW * O,
                       g->M + (s * g->tiles + ty * g->TW) * O, T * O, g->TW, O);
}

/* B dV B^T of a row of n tiles (dV[xi] at v + xi vs, C values a tile)
 * added into their 4x4 blocks of d (2 C apart, rows r apart), in order:
 * the blocks overlap. */
SF_SIMD_CLONES
static void tiles_back(const float *restrict v, int64_t vs, float *restrict d, int64_t r,
                       int64_t n, int64_t C)
{
    for (int64_t t = 0; t < n; t++, v += C, d += 2 * C)
        for (int64_t c = 0; c < C; c += LANES) {
            Lanes e[4][4], q[4][4];
            for (int x = 0; x < XI; x++)
                LOAD(e[x / 4][x % 4], v + x * vs + c);
            for (int j = 0; j < 4; j++) {
                q[0][j] = e[0][j];
                q[1][j] = e[1][j] - e[2][j] + e[3][j];
                q[2][j] = -e[0][j] + e[1][j] + e[2][j];
                q[3][j] = -e[3][j];
            }
            for (int i = 0; i < 4; i++) {
                float *row = d + i * r + c;
                const Lanes add[4] = {q[i][0], q[i][1] - q[i][2] + q[i][3],
                                      -q[i][0] + q[i][1] + q[i][2], -q[i][3]};
                for (int j = 0; j < 4; j++) {
                    Lanes a;
                    LOAD(a, row + j * C);
                    STORE(row + j * C, a + add[j]);
                }
            }
        }
}

/* din (S samples, C, H, W) from dV: every tile's block added into the
 * (zeroed) padded buffer, then its inside transposed out. */
static void input_grad(const Wino *g, float *din, int64_t S)
{
    const int64_t C = g->C, T = S * g->tiles;
    memset(g->pad, 0, (size_t)(S * g->PH * g->PW * C) * sizeof *g->pad);
    for (int64_t s = 0; s < S; s++)
        for (int64_t ty = 0; ty < g->TH; ty++)
            tiles_back(g->dV + (s * g->tiles + ty * g->TW) * C, T * C,
                       g->pad + (s * g->PH + 2 * ty) * g->PW * C, g->PW * C, g->TW, C);
    from_channels_last(g->pad, g->PH, g->PW, 1, S, C, g->H, g->W, din);
}

void sf_wino_forward(const SfLayer *l, const float *in, float *out, int64_t n,
                     const SfPass *pass)
{
    const Wino g = wino_at(l, l->work);
    const int64_t C = g.C, O = g.O, D = C * g.H * g.W, E = O * g.H * g.W;
    filter_transform(&g, l->w);
    for (int64_t s0 = 0; s0 < n; s0 += g.S) {
        const int64_t S = n - s0 < g.S ? n - s0 : g.S, T = S * g.tiles;
        pad_input(&g, in + s0 * D, S);
        input_transform(&g, S);
        for (int x = 0; x < XI; x++) /* M[xi] (T, O) = V[xi] (T, C) U[xi] (C, O) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)O, (int)C,
                        1.0f, g.V + x * T * C, (int)C, g.U + x * C * O, (int)O, 0.0f,
                        g.M + x * T * O, (int)O);
        output_transform(&g, l->b, out + s0 * E, S);
        if (l->feed) /* the next layer reads each sample while it is in cache */
            for (int64_t s = 0; s < S; s++)
                l->feed->ops->take_rows(l->feed, out + (s0 + s) * E, s0 + s, 1, n, pass);
    }
}

void sf_wino_backward(const SfLayer *l, const float *in, const float *dout, float *din,
                      int64_t n)
{
    const Wino g = wino_at(l, l->work);
    const int64_t C = g.C, O = g.O, D = C * g.H * g.W, E = O * g.H * g.W;
    if (din)
        filter_transform(&g, l->w);
    memset(g.dU, 0, (size_t)(XI * C * O) * sizeof *g.dU);
    for (int64_t s0 = 0; s0 < n; s0 += g.S) {
        const int64_t S = n - s0 < g.S ? n - s0 : g.S, T = S * g.tiles;
        pad_input(&g, in + s0 * D, S);
        input_transform(&g, S);
        grad_transform(&g, dout + s0 * E, S);
        for (int64_t s = 0; s < S; s++)
            for (int x = 0; x < XI; x++) /* dU[xi] (C, O) += V[xi]^T dM[xi] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)O,
                            (int)g.tiles, 1.0f, g.V + (x * T + s * g.tiles) * C, (int)C,
                            g.M + (x * T + s * g.tiles) * O, (int)O, 1.0f,
                            g.dU + x * C * O, (int)O);
        if (!din)
            continue;
        for (int x = 0; x < XI; x++) /* dV[xi] (T, C) = dM[xi] U[xi]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)C, (int)O,
                        1.0f, g.M + x * T * O, (int)O, g.U + x * C * O, (int)O, 0.0f,
                        g.dV + x * T * C, (int)C);
        input_grad(&g, din + s0 * D, S);
    }
    filter_grad(&g, l->dw);
}
