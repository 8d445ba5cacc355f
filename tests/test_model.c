/* test_model.c: every layer's and loss's backward pass against central
 * finite differences of the forward pass, plus the loss values themselves. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/model.h"
#include "shardfit/rng.h"
#include "testutil.h"

#define ROWS 5

typedef struct Problem {
    const char *layers;
    SfShape input;
    SfLossKind loss;
    int float_targets; /* else class ids */
    int training;      /* dropout active */
    float h;           /* finite-difference step: small across relu kinks */
} Problem;

/* The summed loss of the batch at the current parameters (a forward pass;
 * train_batch also accumulates gradients, which the caller ignores). */
static double loss_at(SfModel *m, const float *x, SfTargets t, const SfPass *pass)
{
    return sf_model_train_batch(m, x, ROWS, t, pass).loss;
}

/* Returns the worst |fd - analytic| / (abs_tol + rel_tol*|analytic|). */
static double check_gradients(const Problem *pb)
{
    SfError err = {0};
    SfModel *m = sf_model_create(pb->layers, pb->input, pb->loss, ROWS, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    sf_model_init_params(m, SF_INIT_AUTO, 3);
    const int64_t d = sf_shape_size(pb->input), k = sf_model_output_width(m);
    const int64_t np = sf_model_nparams(m);
    float *x = malloc((size_t)(ROWS * d) * sizeof *x);
    float *values = malloc((size_t)(ROWS * k) * sizeof *values);
    int32_t classes[ROWS];
    int64_t ids[ROWS] = {11, 3, 40, 7, 25};
    uint64_t key = sf_rng_key(99, 7, 0);
    for (int64_t i = 0; i < ROWS * d; i++)
        x[i] = (float)sf_rng_normal(key, (uint64_t)i);
    for (int64_t i = 0; i < ROWS * k; i++)
        values[i] = (float)sf_rng_uniform(key, (uint64_t)(1000 + i));
    for (int i = 0; i < ROWS; i++)
        classes[i] = (int32_t)(i % k);
    /* Biases start at zero; nudge them so their gradients are generic. */
    float *p = sf_model_params(m);
    for (int64_t i = 0; i < np; i++)
        p[i] += 0.05f * (float)sf_rng_normal(key, (uint64_t)(5000 + i));
    SfTargets t = {pb->float_targets ? NULL : classes,
                   pb->float_targets ? values : NULL};
    SfPass pass = {pb->training, 5, 17, ids, NULL, NULL, NULL, 0};

    sf_model_zero_grads(m);
    sf_model_train_batch(m, x, ROWS, t, &pass);
    float *analytic = malloc((size_t)np * sizeof *analytic);
    memcpy(analytic, sf_model_grads(m), (size_t)np * sizeof *analytic);

    double worst = 0.0;
    const float h = pb->h;
    for (int64_t i = 0; i < np; i++) {
        float saved = p[i];
        p[i] = saved + h;
        double up = loss_at(m, x, t, &pass);
        p[i] = saved - h;
        double down = loss_at(m, x, t, &pass);
        p[i] = saved;
        double fd = (up - down) / (2.0 * (double)h);
        double ratio = fabs(fd - analytic[i]) / (2e-3 + 2e-2 * fabs(analytic[i]));
        if (ratio > worst)
            worst = ratio;
    }
    free(analytic);
    free(x);
    free(values);
    sf_model_free(m);
    return worst;
}

static const Problem problems[] = {
    {"dense:7 tanh dense:5 sigmoid dense:3", {4, 1, 1}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    {"flatten dense:6 relu dense:4", {2, 2, 3}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-3f},
    {"dense:6 tanh dense:3", {5, 1, 1}, SF_LOSS_MSE, 0, 1, 1e-2f},
    {"dense:6 sigmoid dense:2", {3, 1, 1}, SF_LOSS_MSE, 1, 1, 1e-2f},
    {"dense:8 tanh dropout:0.5 dense:3", {4, 1, 1}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    /* conv: stride 1, padding 0 then 1, several channels, a non-square image */
    {"conv:3:3 tanh conv:4:2:1:1 dense:3", {2, 5, 6}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    /* stride 2 with padding 1, then stride 2 down to 1x1 */
    {"conv:4:3:2:1 tanh conv:3:3:2 dense:3", {3, 7, 6}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    /* pooling between layers with parameters, so din is checked; floor mode */
    {"conv:3:2 maxpool:2 conv:2:1 dense:3", {2, 6, 7}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-3f},
    /* 2x2 max pooling of a 5x5 map: an odd last row and column no window has */
    {"conv:2:2 tanh maxpool:2 conv:2:1 dense:3", {1, 6, 6}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-3f},
    {"conv:3:3:1:1 avgpool:3:2 tanh dense:3", {1, 7, 5}, SF_LOSS_MSE, 1, 1, 1e-2f},
    /* a second conv that keeps the width (col2im's plane shortcut), 5x5 pad 2 */
    {"conv:3:3:1:1 tanh conv:2:5:1:2 dense:3", {2, 6, 7}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    {"conv:2:3:1:1 tanh conv:2:7:1:3 dense:3", {1, 2, 9}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    /* 16 channels in and out: both convs by Winograd's F(2x2, 3x3)
     * (conv_winograd.c), the second with its input gradient; odd last tiles */
    {"conv:16:3:1:1 tanh conv:16:3:1:1 dense:3", {16, 5, 4}, SF_LOSS_CROSS_ENTROPY, 0, 1,
     1e-2f},
    /* batchnorm per channel after conv, per feature after dense */
    {"conv:4:3 batchnorm tanh conv:3:2 batchnorm flatten dense:4", {2, 6, 5},
     SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
    {"dense:6 batchnorm tanh dense:3", {4, 1, 1}, SF_LOSS_CROSS_ENTROPY, 0, 1, 1e-2f},
};

START_TEST(test_gradients_match_finite_differences)
{
    double worst = check_gradients(&problems[_i]);
    ck_assert_msg(worst <= 1.0, "'%s': finite differences disagree (ratio %g)",
                  problems[_i].layers, worst);
}
END_TEST

START_TEST(test_cross_entropy_values)
{
    float z[2 * 4] = {0, 0, 0, 0, 1000, 0, 0, 0}; /* second row: huge logit */
    int32_t y[2] = {2, 0};
    float dz[8];
    SfLossSums s = sf_loss_compute(SF_LOSS_CROSS_ENTROPY, z, 2, 4,
                                   (SfTargets){y, NULL}, dz);
    ck_assert_double_eq_tol(s.loss, log(4.0), 1e-6); /* stable: no inf, no nan */
    ck_assert_double_eq(s.correct, 1.0); /* row 0 ties pick class 0 */
    ck_assert_float_eq_tol(dz[2], 0.25f - 1.0f, 1e-6f);
    ck_assert_float_eq_tol(dz[4], 0.0f, 1e-6f);
}
END_TEST

/* predict's probabilities: the softmax of a double-precision reference to
 * an ulp, finite for huge logits and for more classes than the kept exps
 * (k > 64), the same in place, and the bits the training gradient starts
 * from (but for the class's own entry, where the gradient subtracts 1). */
START_TEST(test_softmax_values)
{
    enum { K = 70 };
    float z[2 * K], p[2 * K], q[2 * K], dz[2 * K];
    int32_t y[2] = {3, 1};
    for (int j = 0; j < 2 * K; j++)
        z[j] = (j % K < 4) ? 1000.0f * (float)(j % 2) : 0.37f * (float)(j % 13) - 2.0f;
    for (int k = 4; k <= K; k += K - 4) {
        sf_loss_compute(SF_LOSS_CROSS_ENTROPY, z, 2, k, (SfTargets){y, NULL}, dz);
        sf_loss_softmax(z, 2, k, p);
        memcpy(q, z, sizeof q);
        sf_loss_softmax(q, 2, k, q);
        for (int r = 0; r < 2; r++) {
            const float *zr = z + r * k;
            double m = zr[0], sum = 0.0;
            for (int j = 1; j < k; j++)
                m = zr[j] > m ? zr[j] : m;
            for (int j = 0; j < k; j++)
                sum += exp((double)zr[j] - m);
            for (int j = r * k; j < (r + 1) * k; j++) {
                const double want = exp((double)z[j] - m) / sum;
                const int hot = j == r * k + y[r]; /* dz = p - 1 there */
                ck_assert_msg(fabs(p[j] - want) <= 1.2e-7 * want + 1e-38 && p[j] == q[j],
                              "k %d, %d: %g %g against %g", k, j, p[j], q[j], want);
                ck_assert_msg(hot || p[j] == dz[j], "k %d, %d: %g against the "
                              "gradient's %g", k, j, p[j], dz[j]);
            }
        }
    }
}
END_TEST

START_TEST(test_mse_values)
{
    float z[3] = {1, 2, 3}, t[3] = {1, 0, 0}, dz[3];
    SfLossSums s = sf_loss_compute(SF_LOSS_MSE, z, 1, 3, (SfTargets){NULL, t}, dz);
    ck_assert_double_eq_tol(s.loss, (0.0 + 4.0 + 9.0) / 3.0, 1e-9);
    ck_assert_float_eq_tol(dz[1], 2.0f * 2.0f / 3.0f, 1e-6f);
}
END_TEST

START_TEST(test_bad_layer_lists)
{
    const char *bad[] = {"dense:0", "dense:x", "relu dense:3 relu", "conv2d:3",
                         "dense", "relu:2 dense:3", "dropout:1.5 dense:2", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        SfError err = {0};
        SfModel *m = sf_model_create(bad[i], (SfShape){4, 1, 1},
                                     SF_LOSS_CROSS_ENTROPY, 4, &err);
        ck_assert_msg(m == NULL, "'%s' was accepted", bad[i]);
        ck_assert_int_eq(err.code, 2);
        ck_assert_msg(strstr(err.msg, "model.layers") != NULL, "%s", err.msg);
    }
}
END_TEST

START_TEST(test_layers_that_do_not_fit)
{
    const struct { const char *layers; SfShape in; const char *words; } bad[] = {
        {"conv:4:5 dense:2", {1, 4, 6}, "5x5 kernel with padding 0 does not fit a 4x6"},
        {"conv:4:3:1:1 maxpool:4 dense:2", {1, 3, 3}, "(4, 3, 3)"},
        {"avgpool:3 dense:2", {2, 2, 5}, "3x3 window does not fit a 2x5"},
        {"conv:4 dense:2", {1, 4, 4}, "conv needs FILTERS:K"},
        {"conv:4:3:0 dense:2", {1, 4, 4}, "conv needs FILTERS:K"},
        {"maxpool dense:2", {1, 4, 4}, "maxpool needs K"},
        {"batchnorm:1 dense:2", {1, 4, 4}, "batchnorm takes no argument"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        SfError err = {0};
        SfModel *m = sf_model_create(bad[i].layers, bad[i].in,
                                     SF_LOSS_CROSS_ENTROPY, 4, &err);
        ck_assert_msg(m == NULL, "'%s' was accepted", bad[i].layers);
        ck_assert_int_eq(err.code, 2);
        ck_assert_msg(strstr(err.msg, bad[i].words) != NULL, "%s", err.msg);
    }
}
END_TEST

/* A tie goes to the first maximum in row-major window order, and the
 * gradient to it alone (PyTorch's CPU kernel); floor mode drops the rest. */
START_TEST(test_maxpool_ties_and_floor_mode)
{
    SfLayer l;
    char msg[200];
    ck_assert_int_eq(sf_layer_setup(&l, "maxpool:2", (SfShape){1, 3, 5}, msg,
                                    sizeof msg), 0);
    ck_assert(l.out.c == 1 && l.out.h == 1 && l.out.w == 2);
    float work[2]; /* what the model would allocate: work_per_row floats */
    ck_assert_int_eq(l.work_per_row, 2);
    l.work = work;
    float in[15] = {1, 7, 7, 2, 9,
                    7, 3, 1, 7, 9,
                    9, 9, 9, 9, 9};
    float out[2], dout[2] = {1.0f, 10.0f}, din[15];
    SfPass pass = {1, 0, 0, NULL, NULL, NULL, NULL, 0};
    l.ops->forward(&l, in, out, 1, &pass);
    ck_assert_float_eq(out[0], 7.0f);
    ck_assert_float_eq(out[1], 7.0f);
    l.ops->backward(&l, in, out, dout, din, 1, &pass);
    for (int i = 0; i < 15; i++)
        ck_assert_float_eq(din[i], i == 1 ? 1.0f : i == 2 ? 10.0f : 0.0f);
}
END_TEST

/* Max pooling against the rule computed directly, on inputs full of ties
 * (a few integer values) and a NaN: the non-overlapping path (stride K,
 * which writes din without clearing it first: din starts as garbage here),
 * 2x2's vectors of 8 and 4 outputs (rows of 8, 11, 4 and 7: blocks that
 * overlap) and its scalar loop (3),
 * odd sizes that leave rows and columns to floor mode, and strides other
 * than K (overlapping windows and gaps: the general path). */
START_TEST(test_maxpool_matches_direct)
{
    static const struct { const char *layer; SfShape in; } cases[] = {
        {"maxpool:2", {3, 6, 8}},   {"maxpool:2", {2, 7, 9}},   /* rows of 4 */
        {"maxpool:2", {1, 6, 17}},  {"maxpool:2", {1, 4, 22}},  /* 8, 11 */
        {"maxpool:2", {2, 5, 14}},  {"maxpool:2", {2, 4, 6}},   /* 7, 3 */
        {"maxpool:3", {2, 7, 8}},   {"maxpool:1", {1, 3, 4}},
        {"maxpool:3:2", {2, 7, 9}}, {"maxpool:2:3", {2, 8, 7}},
        {"maxpool:2:1", {1, 5, 6}},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        enum { N = 2 };
        char msg[200];
        const SfShape in = cases[t].in;
        SfLayer layer, *l = &layer;
        ck_assert_int_eq(sf_layer_setup(l, cases[t].layer, in, msg, sizeof msg), 0);
        const int64_t d = sf_shape_size(in), od = sf_shape_size(l->out);
        const int64_t k = l->k, s = l->stride, H = in.h, W = in.w;
        float x[N * 200], y[N * 200], dy[N * 200], dx[N * 200];
        double want_dx[N * 200];
        float work[N * 200];
        ck_assert_int_le(d, 200);
        ck_assert_int_le(l->work_per_row, 200);
        l->work = work;
        uint64_t key = sf_rng_key(9, 3, (uint64_t)t);
        for (int64_t i = 0; i < N * d; i++)
            x[i] = (float)((int)(3.0 * sf_rng_uniform(key, (uint64_t)i)));
        x[5] = NAN;
        for (int64_t i = 0; i < N * od; i++)
            dy[i] = 1.0f + (float)i;
        for (int64_t i = 0; i < N * 200; i++) {
            dx[i] = 123.0f; /* backward must write every element, and no more */
            want_dx[i] = 0.0;
            y[i] = 321.0f;
        }
        SfPass pass = {1, 0, 0, NULL, NULL, NULL, NULL, 0};
        l->ops->forward(l, x, y, N, &pass);
        l->ops->backward(l, x, y, dy, dx, N, &pass);
        for (int64_t i = N * od; i < N * 200; i++)
            ck_assert_msg(y[i] == 321.0f, "%s: wrote past the output", cases[t].layer);
        for (int64_t i = N * d; i < N * 200; i++)
            ck_assert_msg(dx[i] == 123.0f, "%s: wrote past din", cases[t].layer);
        for (int64_t p = 0; p < N * in.c; p++)
            for (int64_t oy = 0; oy < l->out.h; oy++)
                for (int64_t ox = 0; ox < l->out.w; ox++) {
                    const float *plane = x + p * H * W;
                    int64_t best = oy * s * W + ox * s;
                    for (int64_t i = 0; i < k; i++)
                        for (int64_t j = 0; j < k; j++) {
                            const int64_t q = (oy * s + i) * W + ox * s + j;
                            if (plane[q] > plane[best] || isnan(plane[q]))
                                best = q;
                        }
                    const int64_t o = (p * l->out.h + oy) * l->out.w + ox;
                    ck_assert_msg(memcmp(&y[o], &plane[best], sizeof y[o]) == 0,
                                  "%s: output %lld is %g, not %g", cases[t].layer,
                                  (long long)o, y[o], plane[best]);
                    want_dx[p * H * W + best] += dy[o];
                }
        for (int64_t i = 0; i < N * d; i++)
            ck_assert_msg(dx[i] == (float)want_dx[i], "%s: din %lld is %g, not %g",
                          cases[t].layer, (long long)i, dx[i], want_dx[i]);
    }
}
END_TEST

/* Output (b, o, oy, ox) of conv layer l (its w and b) on x (n, in),
 * summed directly in double; the sum of its terms' magnitudes in *mag
 * (unless NULL), the scale of float rounding in it. */
static double conv_direct(const SfLayer *l, const float *x, int64_t b, int64_t o,
                          int64_t oy, int64_t ox, double *mag)
{
    const SfShape in = l->in;
    const int64_t k = l->k, s = l->stride, pad = l->pad;
    double want = l->b[o], m = fabs(l->b[o]);
    for (int64_t c = 0; c < in.c; c++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                int64_t iy = oy * s - pad + i, ix = ox * s - pad + j;
                if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w)
                    continue;
                const double t = (double)l->w[((o * in.c + c) * k + i) * k + j] *
                                 x[((b * in.c + c) * in.h + iy) * in.w + ix];
                want += t;
                m += fabs(t);
            }
    if (mag)
        *mag = m;
    return want;
}

/* A conv layer's output against the convolution computed directly, for
 * im2col's plane shortcut (stride 1, width kept) and its general loop
 * (finite differences cannot see a wrong im2col: backward reuses it). */
START_TEST(test_conv_matches_direct)
{
    static const struct { const char *layer; SfShape in; } cases[] = {
        {"conv:3:3:1:1", {2, 6, 7}}, {"conv:2:5:1:2", {1, 4, 9}},
        {"conv:3:3", {2, 6, 7}},     {"conv:2:3:2:1", {3, 7, 6}},
        {"conv:2:2:1:1", {1, 5, 4}}, {"conv:2:3:1:4", {1, 2, 3}},
        {"conv:2:7:1:3", {1, 2, 9}}, /* rows of the kernel that see only padding */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        enum { N = 3 };
        char msg[200];
        const SfShape in = cases[t].in;
        SfLayer layer, *l = &layer;
        ck_assert_int_eq(sf_layer_setup(l, cases[t].layer, in, msg, sizeof msg), 0);
        const int64_t d = sf_shape_size(in), k = l->k;
        float w[200], bias[8], x[N * 200], y[N * 400], work[N * 2000];
        ck_assert_int_le(d, 200);
        ck_assert_int_le(l->units * in.c * k * k, 200);
        ck_assert_int_le(sf_shape_size(l->out), 400);
        ck_assert_int_le(N * l->work_per_row + l->work_fixed, N * 2000);
        l->w = w;
        l->b = bias;
        l->work = work;
        uint64_t key = sf_rng_key(8, 1, 2);
        for (int64_t i = 0; i < l->units * in.c * k * k; i++)
            w[i] = (float)sf_rng_normal(key, (uint64_t)(1000 + i));
        for (int64_t o = 0; o < l->units; o++)
            bias[o] = 0.1f * (float)(o + 1);
        for (int64_t i = 0; i < N * d; i++)
            x[i] = (float)sf_rng_normal(key, (uint64_t)i);
        SfPass pass = {0};
        l->ops->forward(l, x, y, N, &pass);
        for (int64_t b = 0; b < N; b++)
            for (int64_t o = 0; o < l->units; o++)
                for (int64_t oy = 0; oy < l->out.h; oy++)
                    for (int64_t ox = 0; ox < l->out.w; ox++) {
                        const double want = conv_direct(l, x, b, o, oy, ox, NULL);
                        const float got = y[((b * l->units + o) * l->out.h + oy) * l->out.w + ox];
                        ck_assert_msg(fabs(got - want) <= 1e-5 * (1.0 + fabs(want)),
                                      "%s: output (%lld, %lld, %lld, %lld) is %g, not %g",
                                      cases[t].layer, (long long)b, (long long)o,
                                      (long long)oy, (long long)ox, got, want);
                    }
    }
}
END_TEST

/* Conv layers that go by Winograd's F(2x2, 3x3) (16 or more channels in
 * and out, 3x3, padding 1): output, weight, bias and input gradients
 * against the sums computed directly, over more samples than one chunk
 * holds (at most 8): odd heights and widths (a last row or column of tiles
 * half outside), rows of 7 tiles (fashion-cnn's 14x14, one vector of 8 a
 * row) and of 10 (two vectors), channel counts that are not multiples of
 * 8. The tensors are malloc'd to their size, so under the sanitizer a
 * row's spill past the end of a tensor is caught. The output's bound adds
 * 1e-7 of its terms' summed magnitudes (the rounding of 288 products). */
START_TEST(test_conv_winograd_matches_direct)
{
    static const struct { const char *layer; SfShape in; int n; } cases[] = {
        {"conv:16:3:1:1", {16, 7, 6}, 11},
        {"conv:20:3:1:1", {17, 5, 19}, 3},
        {"conv:24:3:1:1", {32, 14, 14}, 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int64_t N = cases[k].n;
        const SfShape in = cases[k].in;
        char msg[200];
        SfLayer layer, *l = &layer;
        ck_assert_int_eq(sf_layer_setup(l, cases[k].layer, in, msg, sizeof msg), 0);
        const int64_t C = in.c, H = in.h, W = in.w, O = l->units;
        const int64_t D = C * H * W, E = O * H * W, nw = O * C * 9;
        float *w = malloc((size_t)nw * sizeof *w), *dw = calloc((size_t)nw, sizeof *dw);
        float *bias = malloc((size_t)O * sizeof *bias), *db = calloc((size_t)O, sizeof *db);
        float *x = malloc((size_t)(N * D) * sizeof *x);
        float *din = malloc((size_t)(N * D) * sizeof *x);
        float *y = malloc((size_t)(N * E) * sizeof *y);
        float *dy = malloc((size_t)(N * E) * sizeof *y);
        float *work = malloc((size_t)(N * l->work_per_row + l->work_fixed) * sizeof *work);
        l->w = w;
        l->b = bias;
        l->dw = dw;
        l->db = db;
        l->work = work;
        uint64_t key = sf_rng_key(9, 1, 2);
        for (int64_t i = 0; i < nw; i++)
            w[i] = (float)sf_rng_normal(key, (uint64_t)(100000 + i));
        for (int64_t o = 0; o < O; o++)
            bias[o] = 0.1f * (float)(o + 1);
        for (int64_t i = 0; i < N * D; i++)
            x[i] = (float)sf_rng_normal(key, (uint64_t)i);
        for (int64_t i = 0; i < N * E; i++)
            dy[i] = (float)sf_rng_normal(key, (uint64_t)(200000 + i));
        SfPass pass = {0};
        l->ops->forward(l, x, y, N, &pass);
        l->ops->backward(l, x, y, dy, din, N, &pass);
        /* input pixel (b, c, iy, ix) of output (oy, ox) and tap (i, j), or -1 */
#define AT(b, c, oy, ox, i, j)                                                \
    ((oy) + (i) - 1 < 0 || (oy) + (i) - 1 >= H || (ox) + (j) - 1 < 0 ||      \
             (ox) + (j) - 1 >= W                                              \
         ? -1                                                                 \
         : (((b) * C + (c)) * H + (oy) + (i) - 1) * W + (ox) + (j) - 1)
        double *want_dx = calloc((size_t)(N * D), sizeof *want_dx);
        for (int64_t o = 0; o < O; o++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t t = 0; t < 9; t++) {
                    double want_dw = 0.0;
                    for (int64_t b = 0; b < N; b++)
                        for (int64_t oy = 0; oy < H; oy++)
                            for (int64_t ox = 0; ox < W; ox++) {
                                const int64_t p = AT(b, c, oy, ox, t / 3, t % 3);
                                const double g = dy[((b * O + o) * H + oy) * W + ox];
                                if (p < 0)
                                    continue;
                                want_dw += g * x[p];
                                want_dx[p] += g * w[(o * C + c) * 9 + t];
                            }
                    const float got = dw[(o * C + c) * 9 + t];
                    ck_assert_msg(fabs(got - want_dw) <= 1e-4 * (1.0 + fabs(want_dw)),
                                  "%s: weight gradient (%lld, %lld, %lld) is %g, not %g",
                                  cases[k].layer, (long long)o, (long long)c, (long long)t, got, want_dw);
                }
        for (int64_t o = 0; o < O; o++) {
            double want_db = 0.0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t p = 0; p < H * W; p++)
                    want_db += dy[(i * O + o) * H * W + p];
            ck_assert_msg(fabs(db[o] - want_db) <= 1e-4 * (1.0 + fabs(want_db)),
                          "%s: bias gradient %lld is %g, not %g", cases[k].layer,
                          (long long)o, db[o], want_db);
        }
        for (int64_t i = 0; i < N * D; i++)
            ck_assert_msg(fabs(din[i] - want_dx[i]) <= 1e-4 * (1.0 + fabs(want_dx[i])),
                          "%s: input gradient %lld is %g, not %g", cases[k].layer,
                          (long long)i, din[i], want_dx[i]);
        for (int64_t b = 0; b < N; b++)
            for (int64_t o = 0; o < O; o++)
                for (int64_t oy = 0; oy < H; oy++)
                    for (int64_t ox = 0; ox < W; ox++) {
                        double mag;
                        const double want = conv_direct(l, x, b, o, oy, ox, &mag);
                        const float got = y[((b * O + o) * H + oy) * W + ox];
                        ck_assert_msg(fabs(got - want) <= 1e-5 * (1.0 + fabs(want)) +
                                                              1e-7 * mag,
                                      "%s: output (%lld, %lld, %lld, %lld) is %g, not %g",
                                      cases[k].layer, (long long)b, (long long)o, (long long)oy,
                                      (long long)ox, got, want);
                    }
#undef AT
        free(want_dx);
        free(w);
        free(dw);
        free(x);
        free(din);
        free(y);
        free(dy);
        free(work);
        free(bias);
        free(db);
    }
}
END_TEST

/* Batch statistics gathered over micro-batches give the gradient and
 * running statistics of the whole share at once. */
START_TEST(test_batchnorm_micro_batches_equal_whole)
{
    const char *layers = "conv:3:3:1:1 batchnorm relu maxpool:2 flatten dense:5 "
                         "batchnorm tanh dense:3";
    SfShape in = {2, 6, 4};
    SfModel *m[2];
    for (int k = 0; k < 2; k++) {
        SfError err = {0};
        m[k] = sf_model_create(layers, in, SF_LOSS_CROSS_ENTROPY, 7, &err);
        ck_assert_msg(m[k] != NULL, "%s", err.msg);
        sf_model_init_params(m[k], SF_INIT_AUTO, 4);
    }
    enum { N = 7 };
    float x[N * 48];
    int32_t y[N];
    int64_t ids[N];
    uint64_t key = sf_rng_key(5, 7, 1);
    for (int i = 0; i < N * 48; i++)
        x[i] = (float)sf_rng_normal(key, (uint64_t)i) + 0.5f;
    for (int i = 0; i < N; i++) {
        y[i] = i % 3;
        ids[i] = i;
    }
    SfTargets t = {y, NULL};
    SfPass pass = {1, 1, 0, ids, NULL, NULL, NULL, 0};
    SfLossSums whole = sf_model_train_share(m[0], x, N, N, 0, t, &pass, NULL);
    SfLossSums parts = sf_model_train_share(m[1], x, N, 3, 1, t, &pass, NULL);
    ck_assert_double_eq_tol(whole.loss, parts.loss, 1e-5 * fabs(whole.loss));
    const float *ga = sf_model_grads(m[0]), *gb = sf_model_grads(m[1]);
    for (int64_t i = 0; i < sf_model_nparams(m[0]); i++)
        ck_assert_msg(fabsf(ga[i] - gb[i]) <= 1e-5f * (1.0f + fabsf(ga[i])),
                      "gradient %lld: %g whole, %g in micro-batches", (long long)i,
                      ga[i], gb[i]);
    const float *pa = sf_model_params(m[0]), *pb = sf_model_params(m[1]);
    for (int64_t i = sf_model_nparams(m[0]); i < sf_model_nstate(m[0]); i++)
        ck_assert_float_eq_tol(pa[i], pb[i], 1e-6f * (1.0f + fabsf(pa[i])));
    ck_assert_float_eq(pa[sf_model_nstate(m[0]) - 1], 1.0f); /* one step tracked */
    sf_model_free(m[0]);
    sf_model_free(m[1]);
}
END_TEST

/* Two models of the same parameters, one with a fusion and one with its
 * layers kept apart: created, the first initialised; its parameters go to
 * the second with twin_copy. */
static void twins(const char *fused, const char *apart, SfShape in, int n, SfModel **m,
                  SfModel **m2)
{
    SfError err = {0};
    *m = sf_model_create(fused, in, SF_LOSS_CROSS_ENTROPY, n, &err);
    *m2 = sf_model_create(apart, in, SF_LOSS_CROSS_ENTROPY, n, &err);
    ck_assert_msg(*m && *m2, "%s", err.msg);
    sf_model_init_params(*m, SF_INIT_AUTO, 3);
    ck_assert_int_eq(sf_model_nstate(*m), sf_model_nstate(*m2));
}

static void twin_copy(SfModel *m, SfModel *m2)
{
    memcpy(sf_model_params(m2), sf_model_params(m), (size_t)sf_model_nstate(m) * sizeof(float));
}

/* A batchnorm applies the activation after it in its normalise pass
 * (forward_act): the same bits as the activation on its own (after
 * flatten, which does not fuse), in training with the whole share and with
 * micro-batches, and in prediction with the running statistics. */
START_TEST(test_batchnorm_fused_activations)
{
    const char *acts[] = {"relu", "tanh", "sigmoid"};
    enum { N = 6 };
    SfShape in = {2, 5, 4};
    float x[N * 40];
    int32_t y[N];
    int64_t ids[N];
    uint64_t key = sf_rng_key(6, 2, 9);
    for (int i = 0; i < N * 40; i++)
        x[i] = (float)sf_rng_normal(key, (uint64_t)i);
    for (int i = 0; i < N; i++) {
        y[i] = i % 4;
        ids[i] = i;
    }
    SfTargets t = {y, NULL};
    SfPass pass = {1, 1, 0, ids, NULL, NULL, NULL, 0};
    for (int a = 0; a < 3; a++)
        for (int micro = N; micro >= 2; micro -= 4) {
            char fused[96], apart[96];
            snprintf(fused, sizeof fused, "conv:3:3:1:1 batchnorm %s flatten dense:4",
                     acts[a]);
            snprintf(apart, sizeof apart, "conv:3:3:1:1 batchnorm flatten %s dense:4",
                     acts[a]);
            SfModel *m, *m2;
            twins(fused, apart, in, N, &m, &m2);
            twin_copy(m, m2);
            SfLossSums l1 = sf_model_train_share(m, x, N, micro, micro < N, t, &pass, NULL);
            SfLossSums l2 = sf_model_train_share(m2, x, N, micro, micro < N, t, &pass, NULL);
            ck_assert_msg(l1.loss == l2.loss, "%s micro %d: loss %g fused, %g apart",
                          acts[a], micro, l1.loss, l2.loss);
            const float *g1 = sf_model_grads(m), *g2 = sf_model_grads(m2);
            for (int64_t i = 0; i < sf_model_nparams(m); i++)
                ck_assert_msg(g1[i] == g2[i], "%s micro %d: gradient %lld %g fused, %g apart",
                              acts[a], micro, (long long)i, g1[i], g2[i]);
            const float *o1 = sf_model_predict(m, x, N), *o2 = sf_model_predict(m2, x, N);
            for (int i = 0; i < N * 4; i++)
                ck_assert_msg(o1[i] == o2[i], "%s: prediction %d %g fused, %g apart",
                              acts[a], i, o1[i], o2[i]);
            sf_model_free(m);
            sf_model_free(m2);
        }
}
END_TEST

/* The fused model against the same layers kept apart (twins), on N samples
 * x of shape in in micro-batches of micro: two training steps (the second
 * with new weights) with the same bits in loss, gradients and statistics,
 * then the same predictions. what names the case in messages. */
enum { TWIN_N = 5 };
static void expect_twins_alike(const char *fused, const char *apart, SfShape in,
                               const float *x, int micro, const char *what)
{
    enum { N = TWIN_N };
    SfModel *m, *m2;
    twins(fused, apart, in, N, &m, &m2);
    int32_t y[N];
    int64_t ids[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % 4;
        ids[i] = i;
    }
    SfTargets t = {y, NULL};
    SfPass pass = {1, 1, 0, ids, NULL, NULL, NULL, 0};
    for (int step = 0; step < 2; step++) { /* the second with new weights */
        twin_copy(m, m2);
        SfLossSums l1 = sf_model_train_share(m, x, N, micro, micro < N, t, &pass, NULL);
        SfLossSums l2 = sf_model_train_share(m2, x, N, micro, micro < N, t, &pass, NULL);
        ck_assert_msg(l1.loss == l2.loss, "%s micro %d: loss %g fused, %g apart", what,
                      micro, l1.loss, l2.loss);
        const float *g1 = sf_model_grads(m), *g2 = sf_model_grads(m2);
        for (int64_t i = 0; i < sf_model_nparams(m); i++)
            ck_assert_msg(g1[i] == g2[i], "%s micro %d: gradient %lld %g fused, %g apart",
                          what, micro, (long long)i, g1[i], g2[i]);
        const float *p1 = sf_model_params(m), *p2 = sf_model_params(m2);
        for (int64_t i = sf_model_nparams(m); i < sf_model_nstate(m); i++)
            ck_assert_msg(p1[i] == p2[i], "%s: statistic %lld differs", what, (long long)i);
        float *p = sf_model_params(m);
        for (int64_t i = 0; i < sf_model_nparams(m); i++)
            p[i] -= 0.5f * g1[i];
    }
    twin_copy(m, m2);
    const float *o1 = sf_model_predict(m, x, N), *o2 = sf_model_predict(m2, x, N);
    for (int i = 0; i < N * 4; i++)
        ck_assert_msg(o1[i] == o2[i], "%s: prediction %d %g fused, %g apart", what, i,
                      o1[i], o2[i]);
    sf_model_free(m);
    sf_model_free(m2);
}

/* n values of -1, 0 and 1 drawn with key (malloc'd): ties before a relu too. */
static float *few_values(int64_t n, uint64_t key)
{
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(int)(3.0 * sf_rng_uniform(key, (uint64_t)i)) - 1.0f;
    return x;
}

/* A batchnorm runs the relu and the max pooling after it in its own passes
 * (layer.h's takes_planes, forward_plane, backward_plane), and takes its
 * statistics from the conv before it sample by sample (take_rows): the
 * same bits as the layers on their own (an avgpool:1, an exact identity,
 * between the conv and the batchnorm and between the relu and the pool
 * keeps them apart), in loss, gradients, running statistics and
 * predictions, with the whole share and with micro-batches.
 * The relu's zeros make ties in every window; the pools cover the 2x2
 * vector paths (rows of 8 and 4 outputs) and scalar path, a 3x3 tiled
 * pool, overlapping windows (3:2, the scatter path), and odd sizes whose
 * last row and column floor mode drops. */
START_TEST(test_batchnorm_fused_pooling)
{
    static const struct {
        const char *pool;
        SfShape in;
    } cases[] = {
        {"maxpool:2", {2, 7, 5}},   /* 3x2 outputs: the scalar windows */
        {"maxpool:2", {1, 9, 17}},  /* rows of 8 outputs, a dropped column */
        {"maxpool:2", {2, 6, 11}},  /* rows of 5: two blocks of 4 that overlap */
        {"maxpool:3", {2, 7, 8}},   /* tiled, k 3 */
        {"maxpool:3:2", {2, 7, 6}}, /* overlapping windows */
    };
    enum { N = TWIN_N };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int micro = N; micro >= 2; micro -= 3) {
            const SfShape in = cases[k].in;
            char fused[128], apart[128];
            snprintf(fused, sizeof fused, "conv:3:3:1:1 batchnorm relu %s flatten "
                     "dense:4", cases[k].pool);
            snprintf(apart, sizeof apart, "conv:3:3:1:1 avgpool:1 batchnorm relu avgpool:1 %s "
                     "flatten dense:4", cases[k].pool);
            float *x = few_values(N * sf_shape_size(in), sf_rng_key(8, 1, k));
            char what[96];
            snprintf(what, sizeof what, "%s %s", cases[k].pool,
                     sf_shape_str(in, (char[64]){0}, 64));
            expect_twins_alike(fused, apart, in, x, micro, what);
            free(x);
        }
}
END_TEST

/* A relu that no layer before takes goes into the max pooling after it
 * (layer.h's forward_relu, backward_relu): the same bits as the two layers
 * on their own (an avgpool:1, an exact identity, between them keeps them
 * apart), in loss, gradients and predictions, with the whole share and
 * with micro-batches. The pools cover the 2x2 vector paths (rows of 8 and
 * 4 outputs) and scalar path, a 3x3 tiled pool and overlapping windows
 * (3:2, the scatter path); the relu's zeros make ties. A relu first in the
 * model sees NaNs and -infinities in the input: a pool that took the
 * maximum before the relu would keep a NaN's place where the relu had made
 * it 0, and pick a different element. */
START_TEST(test_relu_into_pooling)
{
    static const struct {
        const char *head, *pool;
        SfShape in;
    } cases[] = {
        {"conv:3:3:1:1", "maxpool:2", {2, 7, 5}},
        {"conv:2:3:1:1", "maxpool:2", {1, 9, 17}},
        {"conv:3:3:1:1", "maxpool:2", {2, 6, 11}},
        {"conv:2:3:1:1", "maxpool:3", {2, 7, 8}},
        {"conv:3:3:1:1", "maxpool:3:2", {2, 7, 6}},
        {"conv:16:3:1:1 relu conv:16:3:1:1", "maxpool:2", {16, 6, 8}}, /* Winograd */
        {NULL, "maxpool:2", {2, 4, 16}},
        {NULL, "maxpool:3:2", {1, 7, 7}},
    };
    enum { N = TWIN_N };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int micro = N; micro >= 2; micro -= 3) {
            const SfShape in = cases[k].in;
            const int64_t d = sf_shape_size(in);
            const char *head = cases[k].head ? cases[k].head : "";
            char fused[128], apart[128];
            snprintf(fused, sizeof fused, "%s relu %s flatten dense:4", head,
                     cases[k].pool);
            snprintf(apart, sizeof apart, "%s relu avgpool:1 %s flatten dense:4", head,
                     cases[k].pool);
            float *x = few_values(N * d, sf_rng_key(8, 2, k));
            if (!cases[k].head)
                for (int64_t i = 0; i < N * d; i += 7)
                    x[i] = i % 2 ? NAN : -INFINITY; /* both 0 after the relu */
            char what[96];
            snprintf(what, sizeof what, "%s %s", head, cases[k].pool);
            expect_twins_alike(fused, apart, in, x, micro, what);
            free(x);
        }
}
END_TEST

/* A dense layer applies the activation after it in its own pass (layer.h's
 * forward_act): the same bits as the activation layer run on its own (after
 * flatten, which does not fuse), and close to libm in double precision over
 * [-20, 20] (tanh and sigmoid carry their own vectorizable exp). */
START_TEST(test_fused_activations)
{
    const char *acts[] = {"relu", "tanh", "sigmoid"};
    const double tol[] = {0.0, 1.5e-7, 1.5e-7};
    enum { U = 401 };
    float x[ROWS] = {0.0f, 0.013f, -0.31f, 0.2499f, -0.0004f};
    for (int a = 0; a < 3; a++) {
        char fused[64], apart[64];
        /* The last layer must be dense: an identity, exact on what it reads. */
        snprintf(fused, sizeof fused, "dense:%d %s dense:%d", U, acts[a], U);
        snprintf(apart, sizeof apart, "dense:%d flatten %s dense:%d", U, acts[a], U);
        SfError err = {0};
        SfModel *m = sf_model_create(fused, (SfShape){1, 1, 1}, SF_LOSS_MSE, ROWS, &err);
        SfModel *m2 = sf_model_create(apart, (SfShape){1, 1, 1}, SF_LOSS_MSE, ROWS, &err);
        ck_assert_msg(m && m2, "%s", err.msg);
        /* weight (U, 1), bias (U), then the identity (U, U) and zeros (U) */
        float *p = sf_model_params(m);
        memset(p, 0, (size_t)sf_model_nparams(m) * sizeof *p);
        for (int u = 0; u < U; u++) {
            p[u] = u % 2 ? 1.0f : -1.0f;
            p[U + u] = -20.0f + 0.1f * (float)u;
            p[2 * U + u * U + u] = 1.0f;
        }
        memcpy(sf_model_params(m2), p, (size_t)sf_model_nparams(m) * sizeof *p);
        const float *y = sf_model_predict(m, x, ROWS);
        const float *y2 = sf_model_predict(m2, x, ROWS);
        ck_assert_msg(memcmp(y, y2, ROWS * U * sizeof *y) == 0,
                      "%s: fused and separate forward differ", acts[a]);
        for (int i = 0; i < ROWS; i++)
            for (int u = 0; u < U; u++) {
                double v = p[u] * x[i] + p[U + u]; /* w = +-1: as sgemm rounds */
                double want = a == 0 ? (v > 0 ? v : 0) : a == 1 ? tanh(v)
                                                               : 1 / (1 + exp(-v));
                ck_assert_msg(fabs(y[i * U + u] - want) <= tol[a],
                              "%s(%.9g) = %.9g, want %.9g", acts[a], v,
                              (double)y[i * U + u], want);
            }
        sf_model_free(m);
        sf_model_free(m2);
    }
}
END_TEST

START_TEST(test_init_is_deterministic_and_scaled)
{
    SfError err = {0};
    SfModel *a = sf_model_create("dense:256 relu dense:10", (SfShape){784, 1, 1},
                                 SF_LOSS_CROSS_ENTROPY, 1, &err);
    SfModel *b = sf_model_create("dense:256 relu dense:10", (SfShape){784, 1, 1},
                                 SF_LOSS_CROSS_ENTROPY, 1, &err);
    sf_model_init_params(a, SF_INIT_AUTO, 1);
    sf_model_init_params(b, SF_INIT_AUTO, 1);
    ck_assert_int_eq(sf_model_nparams(a), 784 * 256 + 256 + 2560 + 10);
    ck_assert_mem_eq(sf_model_params(a), sf_model_params(b),
                     (size_t)sf_model_nparams(a) * sizeof(float));
    /* He normal for the relu layer: std sqrt(2/784). */
    const SfLayer *l = sf_model_layer(a, 0);
    double sq = 0.0;
    for (int64_t i = 0; i < l->nweight; i++)
        sq += (double)l->w[i] * l->w[i];
    ck_assert_double_eq_tol(sqrt(sq / (double)l->nweight), sqrt(2.0 / 784.0), 2e-3);
    /* Glorot uniform for the last: |w| <= sqrt(6/(256+10)). */
    const SfLayer *o = sf_model_layer(a, 2);
    for (int64_t i = 0; i < o->nweight; i++)
        ck_assert(fabsf(o->w[i]) <= sqrtf(6.0f / 266.0f));
    sf_model_init_params(b, SF_INIT_AUTO, 2);
    ck_assert(memcmp(sf_model_params(a), sf_model_params(b), 100 * sizeof(float)));
    sf_model_free(a);
    sf_model_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("core");
    /* A hang guard, not a speed check: under ASan the finite differences of
     * the 16-channel Winograd model take 3-4 s, and Check's default is 4. */
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_gradients_match_finite_differences, 0,
                        (int)(sizeof problems / sizeof problems[0]));
    tcase_add_test(tc, test_cross_entropy_values);
    tcase_add_test(tc, test_softmax_values);
    tcase_add_test(tc, test_mse_values);
    tcase_add_test(tc, test_bad_layer_lists);
    tcase_add_test(tc, test_init_is_deterministic_and_scaled);
    tcase_add_test(tc, test_fused_activations);
    tcase_add_test(tc, test_layers_that_do_not_fit);
    tcase_add_test(tc, test_maxpool_ties_and_floor_mode);
    tcase_add_test(tc, test_maxpool_matches_direct);
    tcase_add_test(tc, test_batchnorm_fused_activations);
    tcase_add_test(tc, test_batchnorm_fused_pooling);
    tcase_add_test(tc, test_relu_into_pooling);
    tcase_add_test(tc, test_batchnorm_micro_batches_equal_whole);
    tcase_add_test(tc, test_conv_matches_direct);
    tcase_add_test(tc, test_conv_winograd_matches_direct);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
