/* test_checkpoint.c: the checkpoint module (src/checkpoint*.c).
 *
 * Round trips are bitwise: parameters, optimizer state, best weights, every
 * info field and the history. The files the module never writes on purpose
 * (fixed-length strings, a newer version, a renamed or missing layer, a
 * params-only init file) are made by editing a good file with HDF5 directly,
 * as a third-party tool would; h5py is used when /usr/bin/python3 has it.
 * Each test runs in a fresh temporary directory. */
#include <check.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardfit/checkpoint.h"
#include "testutil.h"

static char tmpdir[64];

static void setup(void)
{
    H5dont_atexit(); /* as sf_h5_init: a failed close must not crash exit */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_checkpoint.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    sf_test_remove_tree(tmpdir);
}

/* tmpdir/name; up to four results live at once. */
static const char *tmp(const char *name) { return sf_test_path(tmpdir, name); }

static int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- fixtures ----------------------------------------------------------- */

/* Distinct, non-round values, different for each salt. */
static void fill(float *x, int64_t n, int salt)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)sin(0.37 * (double)i + salt) * (1.0f + (float)salt / 7);
}

/* A model for 5 features; parameters filled from salt. */
static SfModel *model(const char *layers, int salt)
{
    SfError err = {0};
    SfShape in = {5, 1, 1};
    SfModel *m = sf_model_create(layers, in, SF_LOSS_CROSS_ENTROPY, 4, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    fill(sf_model_params(m), sf_model_nparams(m), salt);
    return m;
}

/* An optimizer for m with its state blocks filled from salt and t = 7. */
static SfOptim *optim(const SfModel *m, SfOptimKind kind, double momentum,
                      int salt)
{
    SfConfig c;
    SfError err = {0};
    sf_config_defaults(&c);
    c.optimizer.name = kind;
    c.optimizer.momentum = momentum;
    SfOptim *o = sf_optim_create(&c, sf_model_nparams(m), &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    const char *names[] = {"momentum", "m", "v"};
    for (int k = 0; k < 3; k++) {
        float *s = sf_optim_state(o, names[k]);
        if (s)
            fill(s, sf_model_nparams(m), salt + 10 * k + 1);
    }
    sf_optim_set_steps(o, 7);
    return o;
}

/* Every field set, none to a value another field has; history of three
 * epochs with a NaN and an infinity in it. Free with sf_checkpoint_info_free. */
static SfCheckpointInfo info_at(int64_t step)
{
    SfCheckpointInfo in = {
        .epoch = 3, .step = step, .step_in_epoch = 5,
        .seed = UINT64_C(0xfedcba9876543210), .world_size = 3,
        .sum_loss = 12.375, .sum_correct = 41, .sum_count = 64,
        .stop_best = 0.3125, .stop_best_epoch = 2, .stop_wait = 1,
        .config = strdup("[model]\nlayers = dense:6 relu dense:3\n; é\n"),
        .layers = strdup("dense:6 relu dense:3"), .nhistory = 3,
    };
    in.history = calloc(3, sizeof *in.history);
    for (int e = 0; e < 3; e++) {
        SfEpochMetrics *h = &in.history[e];
        h->epoch = e + 1;
        h->step = (e + 1) * 10 + ((int64_t)1 << 40);
        h->steps_in_epoch = 10 + e;
        h->samples = 1000 + e;
        h->lr = 0.1 / (e + 1);
        h->loss = 2.0 / 3.0 + e;
        h->accuracy = 0.5 + e / 10.0;
        h->has_accuracy = 1;
        h->has_val = e != 1;
        h->val_loss = e == 1 ? NAN : 1.0 / 7.0;
        h->val_accuracy = e == 2 ? INFINITY : 0.25;
        h->seconds = 1.5 + e;
        h->samples_per_sec = 12345.678 + e;
        h->world_size = 3;
        h->compute_seconds = 0.1 + e;
        h->allreduce_seconds = 0.2 + e;
        h->data_seconds = 0.3 + e;
        h->eval_seconds = 0.4 + e;
    }
    return in;
}

static void write_ok(const char *name, const SfModel *m, SfOptim *o,
                     const float *best, int64_t step)
{
    SfError err = {0};
    SfCheckpointInfo info = info_at(step);
    ck_assert_msg(sf_checkpoint_write(tmpdir, name, m, o, best, &info, &err) == 0,
                  "%s", err.msg);
    sf_checkpoint_info_free(&info);
}

static int same_bits(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

static void expect_same_info(const SfCheckpointInfo *a, const SfCheckpointInfo *b)
{
    ck_assert_int_eq(a->epoch, b->epoch);
    ck_assert_int_eq(a->step, b->step);
    ck_assert_int_eq(a->step_in_epoch, b->step_in_epoch);
    ck_assert(a->seed == b->seed);
    ck_assert_int_eq(a->world_size, b->world_size);
    ck_assert(same_bits(&a->sum_loss, &b->sum_loss, sizeof a->sum_loss));
    ck_assert(same_bits(&a->sum_correct, &b->sum_correct, sizeof(double)));
    ck_assert(same_bits(&a->sum_count, &b->sum_count, sizeof(double)));
    ck_assert(same_bits(&a->stop_best, &b->stop_best, sizeof(double)));
    ck_assert_int_eq(a->stop_best_epoch, b->stop_best_epoch);
    ck_assert_int_eq(a->stop_wait, b->stop_wait);
    ck_assert_str_eq(a->config, b->config);
    ck_assert_str_eq(a->layers, b->layers);
    ck_assert_int_eq(a->nhistory, b->nhistory);
    /* Both were zeroed before being filled, padding included. */
    ck_assert(same_bits(a->history, b->history,
                        (size_t)a->nhistory * sizeof *a->history));
}

/* Reading path must fail with code and a message holding want1 and want2. */
static void expect_read_error(const char *path, SfModel *m, SfOptim *o,
                              int code, const char *want1, const char *want2)
{
    SfError err = {0};
    SfCheckpointInfo info;
    ck_assert_int_eq(sf_checkpoint_read(path, m, o, NULL, &info, &err), -1);
    ck_assert_int_eq(err.code, code);
    ck_assert_msg(strstr(err.msg, want1), "'%s' not in: %s", want1, err.msg);
    ck_assert_msg(!want2 || strstr(err.msg, want2), "'%s' not in: %s", want2,
                  err.msg);
}

/* ---- raw HDF5 edits, as another tool would make them -------------------- */

static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    return f;
}

/* Replaces (or adds) scalar attribute name of object obj ("/", ...). */
static void set_attr(const char *path, const char *obj, const char *name,
                     hid_t type, const void *value)
{
    hid_t f = open_rw(path);
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0)
        ck_assert(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, s, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    ck_assert(a >= 0);
    ck_assert(H5Awrite(a, type, value) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    ck_assert(H5Fclose(f) >= 0);
}

/* A fixed-length string attribute of s plus 3 bytes of padding pad. */
static void set_fixed_string(const char *path, const char *name, const char *s,
                             H5T_str_t pad)
{
    size_t n = strlen(s) + 3;
    char *buf = malloc(n);
    memset(buf, pad == H5T_STR_SPACEPAD ? ' ' : '\0', n);
    memcpy(buf, s, strlen(s));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, pad);
    set_attr(path, "/", name, t, buf);
    H5Tclose(t);
    free(buf);
}

static void move_link(const char *path, const char *from, const char *to)
{
    hid_t f = open_rw(path);
    ck_assert(H5Lmove(f, from, f, to, H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Fclose(f) >= 0);
}

static void copy_object(const char *path, const char *from, const char *to)
{
    hid_t f = open_rw(path);
    ck_assert(H5Ocopy(f, from, f, to, H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Fclose(f) >= 0);
}

static void delete_link(const char *path, const char *link)
{
    hid_t f = open_rw(path);
    ck_assert(H5Ldelete(f, link, H5P_DEFAULT) >= 0);
    ck_assert(H5Fclose(f) >= 0);
}

/* A float64 dataset of the given shape holding 0.25 * (i + salt). */
static void put_f64(hid_t f, const char *name, int ndims, const hsize_t *dims,
                    int salt)
{
    hsize_t n = 1;
    for (int d = 0; d < ndims; d++)
        n *= dims[d];
    double *v = malloc(n * sizeof *v);
    for (hsize_t i = 0; i < n; i++)
        v[i] = 0.25 * (double)(i + (hsize_t)salt);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(ndims, dims, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F64LE, s, lcpl, H5P_DEFAULT,
                         H5P_DEFAULT);
    ck_assert(d >= 0);
    ck_assert(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(lcpl);
    free(v);
}

/* ---- round trips -------------------------------------------------------- */

START_TEST(names)
{
    char buf[64];
    sf_checkpoint_epoch_name(3, buf, sizeof buf);
    ck_assert_str_eq(buf, "epoch-0003.h5");
    sf_checkpoint_step_name(100, buf, sizeof buf);
    ck_assert_str_eq(buf, "step-00000100.h5");
}
END_TEST

START_TEST(roundtrip_sgd_momentum_and_best)
{
    SfModel *m = model("dense:6 relu dense:3", 1);
    SfOptim *o = optim(m, SF_OPTIM_SGD, 0.9, 2);
    const int64_t n = sf_model_nparams(m);
    float *best = malloc((size_t)n * sizeof *best);
    fill(best, n, 5);
    write_ok("epoch-0003.h5", m, o, best, 30);

    SfModel *m2 = model("dense:6 relu dense:3", 9);
    SfOptim *o2 = optim(m2, SF_OPTIM_SGD, 0.9, 9);
    float *best2 = calloc((size_t)n, sizeof *best2);
    SfCheckpointInfo got, want = info_at(30);
    SfError err = {0};
    ck_assert_msg(sf_checkpoint_read(tmp("epoch-0003.h5"), m2, o2, best2, &got,
                                     &err) == 0, "%s", err.msg);
    size_t bytes = (size_t)n * sizeof(float);
    ck_assert(same_bits(sf_model_params(m2), sf_model_params(m), bytes));
    ck_assert(same_bits(sf_optim_state(o2, "momentum"),
                        sf_optim_state(o, "momentum"), bytes));
    ck_assert_int_eq(sf_optim_steps(o2), 7);
    ck_assert(same_bits(best2, best, bytes));
    ck_assert_int_eq(got.has_best, 1);
    expect_same_info(&got, &want);
    sf_checkpoint_info_free(&got);
    /* The same info without a model. */
    ck_assert_msg(sf_checkpoint_read_info(tmp("epoch-0003.h5"), &got, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(got.has_best, 1);
    expect_same_info(&got, &want);
    sf_checkpoint_info_free(&got);
    sf_checkpoint_info_free(&want);
    free(best);
    free(best2);
    sf_optim_free(o);
    sf_optim_free(o2);
    sf_model_free(m);
    sf_model_free(m2);
}
END_TEST

START_TEST(roundtrip_adam_without_best)
{
    SfModel *m = model("dense:6 tanh dense:4 relu dense:3", 1);
    SfOptim *o = optim(m, SF_OPTIM_ADAM, 0.0, 3);
    sf_optim_set_steps(o, 123456789012LL);
    write_ok("step-00000017.h5", m, o, NULL, 17);

    SfModel *m2 = model("dense:6 tanh dense:4 relu dense:3", 8);
    SfOptim *o2 = optim(m2, SF_OPTIM_ADAM, 0.0, 8);
    const int64_t n = sf_model_nparams(m);
    float *best = malloc((size_t)n * sizeof *best), *best0 = malloc((size_t)n * 4);
    fill(best, n, 4);
    memcpy(best0, best, (size_t)n * sizeof *best);
    SfCheckpointInfo got;
    SfError err = {0};
    ck_assert_msg(sf_checkpoint_read(tmp("step-00000017.h5"), m2, o2, best, &got,
                                     &err) == 0, "%s", err.msg);
    size_t bytes = (size_t)n * sizeof(float);
    ck_assert(same_bits(sf_model_params(m2), sf_model_params(m), bytes));
    ck_assert(same_bits(sf_optim_state(o2, "m"), sf_optim_state(o, "m"), bytes));
    ck_assert(same_bits(sf_optim_state(o2, "v"), sf_optim_state(o, "v"), bytes));
    ck_assert_int_eq(sf_optim_steps(o2), 123456789012LL);
    ck_assert_int_eq(got.has_best, 0);
    ck_assert(same_bits(best, best0, bytes)); /* no /best: left alone */
    ck_assert_int_eq(got.step, 17);
    sf_checkpoint_info_free(&got);
    /* Without an optimizer and without info (evaluation). */
    fill(sf_model_params(m2), n, 11);
    ck_assert_msg(sf_checkpoint_read(tmp("step-00000017.h5"), m2, NULL, NULL,
                                     NULL, &err) == 0, "%s", err.msg);
    ck_assert(same_bits(sf_model_params(m2), sf_model_params(m), bytes));
    free(best);
    free(best0);
    sf_optim_free(o);
    sf_optim_free(o2);
    sf_model_free(m);
    sf_model_free(m2);
}
END_TEST

/* What an h5py user sees: names, natural shapes, types. */
START_TEST(layout_as_stored)
{
    SfModel *m = model("dense:6 relu dense:3", 1);
    SfOptim *o = optim(m, SF_OPTIM_SGD, 0.9, 2);
    write_ok("epoch-0003.h5", m, o, sf_model_params(m), 30);
    hid_t f = H5Fopen(tmp("epoch-0003.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    static const struct { const char *path; int ndims; hsize_t d0, d1; } ds[] = {
        {"/params/00_dense/weight", 2, 6, 5}, {"/params/00_dense/bias", 1, 6, 0},
        {"/params/02_dense/weight", 2, 3, 6}, {"/params/02_dense/bias", 1, 3, 0},
        {"/best/02_dense/weight", 2, 3, 6},
        {"/optimizer/00_dense/weight/momentum", 2, 6, 5},
        {"/optimizer/02_dense/bias/momentum", 1, 3, 0},
    };
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        hsize_t dims[2] = {0, 0};
        hid_t d = H5Dopen2(f, ds[i].path, H5P_DEFAULT);
        ck_assert_msg(d >= 0, "no %s", ds[i].path);
        hid_t s = H5Dget_space(d), t = H5Dget_type(d);
        ck_assert_int_eq(H5Sget_simple_extent_dims(s, dims, NULL), ds[i].ndims);
        ck_assert(dims[0] == ds[i].d0 && dims[1] == ds[i].d1);
        ck_assert(H5Tequal(t, H5T_IEEE_F32LE) > 0);
        H5Tclose(t);
        H5Sclose(s);
        H5Dclose(d);
    }
    ck_assert(H5Lexists(f, "/params/01_relu", H5P_DEFAULT) == 0);
    /* Attribute types: int64, uint64 seed, float64 sums, UTF-8 vlen str. */
    const struct { const char *obj, *name; hid_t type; } at[] = {
        {"/", "version", H5T_STD_I64LE}, {"/", "epoch", H5T_STD_I64LE},
        {"/", "step", H5T_STD_I64LE}, {"/", "step_in_epoch", H5T_STD_I64LE},
        {"/", "world_size", H5T_STD_I64LE}, {"/", "seed", H5T_STD_U64LE},
        {"/", "stop_wait", H5T_STD_I64LE}, {"/", "sum_loss", H5T_IEEE_F64LE},
        {"/optimizer", "t", H5T_STD_I64LE},
    };
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        hid_t a = H5Aopen_by_name(f, at[i].obj, at[i].name, H5P_DEFAULT,
                                  H5P_DEFAULT);
        ck_assert_msg(a >= 0, "no attribute %s", at[i].name);
        hid_t t = H5Aget_type(a);
        ck_assert_msg(H5Tequal(t, at[i].type) > 0, "type of %s", at[i].name);
        H5Tclose(t);
        H5Aclose(a);
    }
    const char *strs[] = {"format", "config", "layers"};
    for (int i = 0; i < 3; i++) {
        hid_t a = H5Aopen(f, strs[i], H5P_DEFAULT), t = H5Aget_type(a);
        ck_assert(H5Tis_variable_str(t) > 0);
        ck_assert_int_eq(H5Tget_cset(t), H5T_CSET_UTF8);
        H5Tclose(t);
        H5Aclose(a);
    }
    hid_t d = H5Dopen2(f, "/history/val_loss", H5P_DEFAULT), t = H5Dget_type(d);
    ck_assert(H5Tequal(t, H5T_IEEE_F64LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    sf_optim_free(o);
    sf_model_free(m);
}
END_TEST

START_TEST(strings_fixed_or_variable_length)
{
    SfModel *m = model("dense:6 relu dense:3", 1);
    write_ok("epoch-0003.h5", m, NULL, NULL, 30);
    SfCheckpointInfo want = info_at(30), got;
    const char *p = tmp("epoch-0003.h5");
    set_fixed_string(p, "format", SF_CHECKPOINT_FORMAT, H5T_STR_NULLTERM);
    set_fixed_string(p, "config", want.config, H5T_STR_NULLPAD);
    set_fixed_string(p, "layers", want.layers, H5T_STR_SPACEPAD);
    SfError err = {0};
    ck_assert_msg(sf_checkpoint_read(p, m, NULL, NULL, &got, &err) == 0, "%s",
                  err.msg);
    ck_assert_str_eq(got.config, want.config);
    ck_assert_str_eq(got.layers, want.layers);
    sf_checkpoint_info_free(&got);
    sf_checkpoint_info_free(&want);
    /* A string where a number belongs, and the reverse. */
    set_fixed_string(p, "step", "30", H5T_STR_NULLTERM);
    expect_read_error(p, m, NULL, 2, "attribute 'step' is not an integer", p);
    int64_t v = 1;
    set_attr(p, "/", "config", H5T_NATIVE_INT64, &v);
    set_attr(p, "/", "step", H5T_NATIVE_INT64, &v);
    expect_read_error(p, m, NULL, 2, "attribute 'config' is not a string", NULL);
    sf_model_free(m);
}
END_TEST

/* ---- what a reader refuses ---------------------------------------------- */

START_TEST(shape_mismatch_names_layer_and_shapes)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    SfOptim *o = optim(m, SF_OPTIM_SGD, 0.9, 2);
    write_ok("epoch-0001.h5", m, o, NULL, 10);
    SfModel *m2 = model("dense:8 relu dense:7", 3);
    SfOptim *o2 = optim(m2, SF_OPTIM_SGD, 0.9, 4);
    size_t bytes = (size_t)sf_model_nparams(m2) * sizeof(float);
    float *p0 = malloc(bytes), *s0 = malloc(bytes);
    memcpy(p0, sf_model_params(m2), bytes);
    memcpy(s0, sf_optim_state(o2, "momentum"), bytes);
    expect_read_error(tmp("epoch-0001.h5"), m2, o2, 2, tmp("epoch-0001.h5"),
                      "layer 02_dense: checkpoint weight (10, 8), model (7, 8)");
    /* Nothing changed. */
    ck_assert(same_bits(sf_model_params(m2), p0, bytes));
    ck_assert(same_bits(sf_optim_state(o2, "momentum"), s0, bytes));
    ck_assert_int_eq(sf_optim_steps(o2), 7);
    SfModel *m3 = model("dense:4 relu dense:10", 3);
    expect_read_error(tmp("epoch-0001.h5"), m3, NULL, 2,
                      "layer 00_dense: checkpoint weight (8, 5), model (4, 5)",
                      NULL);
    SfError err = {0};
    ck_assert_int_eq(sf_checkpoint_load_params(tmp("epoch-0001.h5"), m3, &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_msg(strstr(err.msg, "layer 00_dense: checkpoint weight (8, 5), "
                         "model (4, 5)"), "%s", err.msg);
    /* A bias alone of the wrong length. */
    hid_t f = open_rw(tmp("epoch-0001.h5"));
    H5Ldelete(f, "/params/02_dense/bias", H5P_DEFAULT);
    put_f64(f, "/params/02_dense/bias", 1, (hsize_t[]){9}, 0);
    H5Fclose(f);
    expect_read_error(tmp("epoch-0001.h5"), m, NULL, 2,
                      "layer 02_dense: checkpoint bias (9,), model (10,)", NULL);
    free(p0);
    free(s0);
    sf_optim_free(o);
    sf_optim_free(o2);
    sf_model_free(m);
    sf_model_free(m2);
    sf_model_free(m3);
}
END_TEST

START_TEST(kind_mismatch)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    write_ok("epoch-0001.h5", m, NULL, NULL, 10);
    move_link(tmp("epoch-0001.h5"), "/params/02_dense", "/params/02_conv");
    expect_read_error(tmp("epoch-0001.h5"), m, NULL, 2,
                      "layer 02_dense: the checkpoint has 02_conv there", NULL);
    sf_model_free(m);
}
END_TEST

START_TEST(missing_or_extra_layer)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    SfOptim *o = optim(m, SF_OPTIM_ADAM, 0, 1);
    float *best = calloc((size_t)sf_model_nparams(m), sizeof *best);
    write_ok("epoch-0001.h5", m, o, best, 10);
    const char *p = tmp("epoch-0001.h5");
    copy_object(p, "/params/02_dense", "/params/04_dense");
    expect_read_error(p, m, o, 2, "the checkpoint has layer 04_dense, which "
                      "the model does not have", NULL);
    delete_link(p, "/params/04_dense");
    delete_link(p, "/params/02_dense");
    expect_read_error(p, m, o, 2, "layer 02_dense is missing from the checkpoint",
                      NULL);
    write_ok("epoch-0002.h5", m, o, best, 20);
    p = tmp("epoch-0002.h5");
    delete_link(p, "/best/00_dense/bias");
    expect_read_error(p, m, o, 2, "/best: layer 00_dense has no bias", NULL);
    write_ok("epoch-0003.h5", m, o, best, 30);
    p = tmp("epoch-0003.h5");
    delete_link(p, "/optimizer/02_dense/weight/v");
    expect_read_error(p, m, o, 2, "/optimizer: layer 02_dense has no weight/v",
                      NULL);
    free(best);
    sf_optim_free(o);
    sf_model_free(m);
}
END_TEST

START_TEST(optimizer_mismatch)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    SfOptim *sgd = optim(m, SF_OPTIM_SGD, 0.9, 1);
    SfOptim *adam = optim(m, SF_OPTIM_ADAM, 0, 1);
    SfOptim *plain = optim(m, SF_OPTIM_SGD, 0, 1);
    write_ok("epoch-0001.h5", m, sgd, NULL, 10);
    expect_read_error(tmp("epoch-0001.h5"), m, adam, 2,
                      "no optimizer state 'm'", NULL);
    expect_read_error(tmp("epoch-0001.h5"), m, plain, 2,
                      "optimizer state 'momentum' is not one", NULL);
    write_ok("epoch-0002.h5", m, NULL, NULL, 20);
    expect_read_error(tmp("epoch-0002.h5"), m, plain, 2,
                      "no optimizer state", NULL);
    /* Plain SGD keeps only t. */
    SfError err = {0};
    write_ok("epoch-0003.h5", m, plain, NULL, 30);
    sf_optim_set_steps(plain, 0);
    ck_assert_msg(sf_checkpoint_read(tmp("epoch-0003.h5"), m, plain, NULL, NULL,
                                     &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sf_optim_steps(plain), 7);
    sf_optim_free(sgd);
    sf_optim_free(adam);
    sf_optim_free(plain);
    sf_model_free(m);
}
END_TEST

START_TEST(newer_version_and_other_format)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    write_ok("epoch-0001.h5", m, NULL, NULL, 10);
    const char *p = tmp("epoch-0001.h5");
    int64_t v = SF_CHECKPOINT_VERSION + 1;
    set_attr(p, "/", "version", H5T_NATIVE_INT64, &v);
    expect_read_error(p, m, NULL, 2, "version 2 was written by a newer shardfit",
                      p);
    SfError err = {0};
    ck_assert_int_eq(sf_checkpoint_load_params(p, m, &err), -1);
    ck_assert_msg(strstr(err.msg, "newer shardfit"), "%s", err.msg);
    SfCheckpointInfo info;
    sf_error_clear(&err);
    ck_assert_int_eq(sf_checkpoint_read_info(p, &info, &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_msg(strstr(err.msg, "newer shardfit"), "%s", err.msg);
    v = SF_CHECKPOINT_VERSION;
    set_attr(p, "/", "version", H5T_NATIVE_INT64, &v);
    set_fixed_string(p, "format", "something-else", H5T_STR_NULLPAD);
    expect_read_error(p, m, NULL, 2, "not a shardfit checkpoint", NULL);
    sf_model_free(m);
}
END_TEST

/* Copies src to dst keeping only its first half. */
static void truncated_copy(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    ck_assert(in && out);
    fseek(in, 0, SEEK_END);
    long n = ftell(in) / 2;
    rewind(in);
    char *buf = malloc((size_t)n);
    ck_assert(fread(buf, 1, (size_t)n, in) == (size_t)n);
    ck_assert(fwrite(buf, 1, (size_t)n, out) == (size_t)n);
    free(buf);
    fclose(in);
    ck_assert(fclose(out) == 0);
}

/* find_latest on tmpdir; returns its result, the path in out, warnings in
 * warnings (malloc'd). */
static int latest(const SfModel *m, char *out, size_t n, char **warnings)
{
    size_t len;
    SfError err = {0};
    FILE *w = open_memstream(warnings, &len);
    int r = sf_checkpoint_find_latest(tmpdir, m, w, out, n, &err);
    fclose(w);
    ck_assert_msg(r >= 0, "%s", err.msg);
    return r;
}

START_TEST(truncated_file_is_refused_and_skipped)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    write_ok("epoch-0001.h5", m, NULL, NULL, 10);
    write_ok("good.h5", m, NULL, NULL, 20);
    truncated_copy(tmp("good.h5"), tmp("epoch-0002.h5"));
    unlink(tmp("good.h5"));
    expect_read_error(tmp("epoch-0002.h5"), m, NULL, 2, tmp("epoch-0002.h5"),
                      NULL);
    char out[512], *warn = NULL, want[600];
    ck_assert_int_eq(latest(m, out, sizeof out, &warn), 1);
    ck_assert_str_eq(out, tmp("epoch-0001.h5"));
    snprintf(want, sizeof want, "shardfit: warning: skipping checkpoint '%s': ",
             tmp("epoch-0002.h5"));
    ck_assert_msg(strstr(warn, want), "%s", warn);
    ck_assert(file_exists(tmp("epoch-0002.h5"))); /* never deleted */
    free(warn);
    sf_model_free(m);
}
END_TEST

START_TEST(non_hdf5_file_is_skipped)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    write_ok("epoch-0001.h5", m, NULL, NULL, 10);
    FILE *f = fopen(tmp("epoch-0009.h5"), "w");
    fputs("not a checkpoint\n", f);
    fclose(f);
    expect_read_error(tmp("epoch-0009.h5"), m, NULL, 2, "not an HDF5 file",
                      tmp("epoch-0009.h5"));
    char out[512], *warn = NULL, want[600];
    ck_assert_int_eq(latest(m, out, sizeof out, &warn), 1);
    ck_assert_str_eq(out, tmp("epoch-0001.h5"));
    snprintf(want, sizeof want, "shardfit: warning: skipping checkpoint '%s': "
             "not an HDF5 file\n", tmp("epoch-0009.h5"));
    ck_assert_msg(strstr(warn, want), "%s", warn);
    free(warn);
    sf_model_free(m);
}
END_TEST

START_TEST(find_latest_orders_by_step)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    SfModel *other = model("dense:4 relu dense:10", 1);
    char out[512], *warn = NULL;
    ck_assert_int_eq(latest(m, out, sizeof out, &warn), 0); /* empty */
    free(warn);
    write_ok("step-00000010.h5", m, NULL, NULL, 10);
    write_ok("epoch-0001.h5", m, NULL, NULL, 10);
    ck_assert_int_eq(latest(m, out, sizeof out, &warn), 1);
    ck_assert_str_eq(out, tmp("epoch-0001.h5")); /* epoch file wins a tie */
    free(warn);
    write_ok("step-00000015.h5", m, NULL, NULL, 15);
    /* Not shardfit's names, whatever they hold: ignored. */
    write_ok(".epoch-0009.h5.tmp.123", m, NULL, NULL, 99);
    write_ok("epoch-9.h5", m, NULL, NULL, 99);
    write_ok("backup.h5", m, NULL, NULL, 99);
    /* The step in the file decides, not the name. */
    write_ok("step-00000001.h5", m, NULL, NULL, 16);
    /* Another model's checkpoint: skipped with a warning. */
    write_ok("epoch-0002.h5", other, NULL, NULL, 20);
    ck_assert_int_eq(latest(m, out, sizeof out, &warn), 1);
    ck_assert_str_eq(out, tmp("step-00000001.h5"));
    ck_assert_msg(strstr(warn, "epoch-0002.h5': layer 00_dense: checkpoint "
                         "weight (4, 5), model (8, 5)"), "%s", warn);
    ck_assert(!strstr(warn, "epoch-9") && !strstr(warn, "backup"));
    free(warn);
    /* No warn stream is fine; too small a buffer is an error. */
    SfError err = {0};
    ck_assert_int_eq(sf_checkpoint_find_latest(tmpdir, m, NULL, out, sizeof out,
                                               &err), 1);
    ck_assert_int_eq(sf_checkpoint_find_latest(tmpdir, m, NULL, out, 8, &err), -1);
    /* A directory that does not exist holds none. */
    sf_error_clear(&err);
    ck_assert_int_eq(sf_checkpoint_find_latest(tmp("nowhere"), m, NULL, out,
                                               sizeof out, &err), 0);
    sf_model_free(m);
    sf_model_free(other);
}
END_TEST

START_TEST(prune_keeps_newest_and_best)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    const struct { const char *name; int64_t step; } files[] = {
        {"epoch-0001.h5", 10}, {"step-00000015.h5", 15}, {"step-00000020.h5", 20},
        {"epoch-0002.h5", 20}, {"epoch-0003.h5", 30}, {"epoch-3.h5", 99},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        write_ok(files[i].name, m, NULL, NULL, files[i].step);
    FILE *f = fopen(tmp("notes.txt"), "w");
    fclose(f);
    f = fopen(tmp("epoch-0000.h5"), "w"); /* unreadable: left alone */
    fclose(f);
    SfError err = {0};
    ck_assert_int_eq(sf_checkpoint_prune(tmpdir, 0, NULL, &err), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        ck_assert(file_exists(tmp(files[i].name)));
    ck_assert_msg(sf_checkpoint_prune(tmpdir, 2, "epoch-0001.h5", &err) == 0,
                  "%s", err.msg);
    ck_assert(file_exists(tmp("epoch-0003.h5")));
    ck_assert(file_exists(tmp("epoch-0002.h5")));  /* wins the tie at 20 */
    ck_assert(!file_exists(tmp("step-00000020.h5")));
    ck_assert(!file_exists(tmp("step-00000015.h5")));
    ck_assert(file_exists(tmp("epoch-0001.h5")));  /* the best */
    ck_assert(file_exists(tmp("epoch-3.h5")));
    ck_assert(file_exists(tmp("notes.txt")));
    ck_assert(file_exists(tmp("epoch-0000.h5")));
    /* keep given as a path. */
    ck_assert_int_eq(sf_checkpoint_prune(tmpdir, 1, tmp("epoch-0001.h5"), &err), 0);
    ck_assert(file_exists(tmp("epoch-0003.h5")));
    ck_assert(!file_exists(tmp("epoch-0002.h5")));
    ck_assert(file_exists(tmp("epoch-0001.h5")));
    sf_model_free(m);
}
END_TEST

START_TEST(prepare_dir_nested_and_unwritable)
{
    SfError err = {0};
    ck_assert_msg(sf_checkpoint_prepare_dir(tmp("a/b/c"), &err) == 0, "%s",
                  err.msg);
    struct stat st;
    ck_assert(stat(tmp("a/b/c"), &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_msg(sf_checkpoint_prepare_dir(tmp("a/b/c/"), &err) == 0, "%s",
                  err.msg);
    DIR *d = opendir(tmp("a/b/c"));
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        entries += e->d_name[0] != '.' || strlen(e->d_name) > 2;
    closedir(d);
    ck_assert_int_eq(entries, 0); /* the probe is gone */
    FILE *f = fopen(tmp("file"), "w");
    fclose(f);
    ck_assert_int_eq(sf_checkpoint_prepare_dir(tmp("file/x"), &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_msg(strstr(err.msg, "checkpoint.dir") &&
                  strstr(err.msg, "Not a directory"), "%s", err.msg);
    sf_error_clear(&err);
    ck_assert_int_eq(sf_checkpoint_prepare_dir(tmp("file"), &err), -1);
    ck_assert_msg(strstr(err.msg, "is not a directory"), "%s", err.msg);
    if (geteuid() != 0) { /* root ignores permission bits */
        sf_error_clear(&err);
        ck_assert(mkdir(tmp("ro"), 0500) == 0);
        ck_assert_int_eq(sf_checkpoint_prepare_dir(tmp("ro"), &err), -1);
        ck_assert_msg(strstr(err.msg, "not writable"), "%s", err.msg);
    }
}
END_TEST

/* ---- write failures ----------------------------------------------------- */

static int temp_files_left(void)
{
    int n = 0;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

START_TEST(full_disk_keeps_the_old_checkpoint)
{
    SfModel *m = model("dense:64 relu dense:10", 1);
    SfOptim *o = optim(m, SF_OPTIM_ADAM, 0, 2);
    write_ok("epoch-0001.h5", m, o, NULL, 10);
    SfModel *want = model("dense:64 relu dense:10", 1);

    /* A file size limit stands in for a full disk: writes past it fail
     * with EFBIG instead of killing the process. */
    struct rlimit old, tiny = {4096, 4096};
    ck_assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    tiny.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert(setrlimit(RLIMIT_FSIZE, &tiny) == 0);
    fill(sf_model_params(m), sf_model_nparams(m), 7);
    SfCheckpointInfo info = info_at(20);
    SfError err = {0};
    int rc = sf_checkpoint_write(tmpdir, "epoch-0001.h5", m, o, NULL, &info, &err);
    ck_assert(setrlimit(RLIMIT_FSIZE, &old) == 0);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(err.code, 1);
    ck_assert_msg(strstr(err.msg, tmp("epoch-0001.h5")) &&
                  strstr(err.msg, "File too large"), "%s", err.msg);
    ck_assert_int_eq(temp_files_left(), 0);

    /* The first checkpoint is intact. */
    SfModel *m2 = model("dense:64 relu dense:10", 5);
    SfCheckpointInfo got;
    sf_error_clear(&err);
    ck_assert_msg(sf_checkpoint_read(tmp("epoch-0001.h5"), m2, NULL, NULL, &got,
                                     &err) == 0, "%s", err.msg);
    ck_assert(same_bits(sf_model_params(m2), sf_model_params(want),
                        (size_t)sf_model_nparams(m2) * sizeof(float)));
    ck_assert_int_eq(got.step, 10);
    sf_checkpoint_info_free(&got);
    sf_checkpoint_info_free(&info);
    sf_optim_free(o);
    sf_model_free(m);
    sf_model_free(m2);
    sf_model_free(want);
}
END_TEST

START_TEST(write_into_missing_dir_fails)
{
    SfModel *m = model("dense:8 relu dense:10", 1);
    SfCheckpointInfo info = info_at(10);
    SfError err = {0};
    ck_assert_int_eq(sf_checkpoint_write(tmp("nowhere"), "epoch-0001.h5", m,
                                         NULL, NULL, &info, &err), -1);
    ck_assert_int_eq(err.code, 1);
    ck_assert_msg(strstr(err.msg, "nowhere/epoch-0001.h5") &&
                  strstr(err.msg, "No such file or directory"), "%s", err.msg);
    sf_checkpoint_info_free(&info);
    sf_model_free(m);
}
END_TEST

/* ---- init_checkpoint ---------------------------------------------------- */

START_TEST(load_params_from_params_only_file)
{
    /* As another tool would write it: a fixed-length format, an int32
     * version, float64 weights, nothing else. */
    const char *p = tmp("init.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    put_f64(f, "/params/00_dense/weight", 2, (hsize_t[]){6, 5}, 0);
    put_f64(f, "/params/00_dense/bias", 1, (hsize_t[]){6}, 100);
    put_f64(f, "/params/02_dense/weight", 2, (hsize_t[]){3, 6}, 200);
    put_f64(f, "/params/02_dense/bias", 1, (hsize_t[]){3}, 300);
    ck_assert(H5Fclose(f) >= 0);
    set_fixed_string(p, "format", SF_CHECKPOINT_FORMAT, H5T_STR_NULLPAD);
    int32_t version = 1;
    set_attr(p, "/", "version", H5T_NATIVE_INT32, &version);

    SfModel *m = model("dense:6 relu dense:3", 1);
    SfError err = {0};
    ck_assert_msg(sf_checkpoint_load_params(p, m, &err) == 0, "%s", err.msg);
    const SfLayer *l0 = sf_model_layer(m, 0), *l2 = sf_model_layer(m, 2);
    for (int i = 0; i < 30; i++)
        ck_assert(l0->w[i] == 0.25f * (float)i); /* row-major (6, 5) */
    ck_assert(l0->b[5] == 0.25f * 105);
    ck_assert(l2->w[17] == 0.25f * 217);
    ck_assert(l2->b[0] == 0.25f * 300);
    /* Enough to start from, not to resume from. */
    expect_read_error(p, m, NULL, 2, "attribute 'epoch' is missing", p);
    /* Its info is what is there: nothing. */
    SfCheckpointInfo info = {.epoch = 5};
    ck_assert_msg(sf_checkpoint_read_info(p, &info, &err) == 0, "%s", err.msg);
    ck_assert_ptr_null(info.config);
    ck_assert_ptr_null(info.layers);
    ck_assert_int_eq(info.epoch, 0);
    ck_assert_int_eq(info.nhistory, 0);
    ck_assert_int_eq(info.has_best, 0);
    /* ... and a file the user named that is wrong is refused. */
    ck_assert_int_eq(sf_checkpoint_read_info(tmp("none.h5"), &info, &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_msg(strstr(err.msg, "none.h5': cannot open: No such file"), "%s",
                  err.msg);
    sf_model_free(m);
}
END_TEST

/* Runs python with h5py on a script; 0 when it exits 0. Skips (returns -1)
 * when /usr/bin/python3 has no h5py. */
static int python(const char *script)
{
    char cmd[4096];
    if (system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0)
        return -1;
    FILE *f = fopen(tmp("check.py"), "w");
    fputs(script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd %s && /usr/bin/python3 check.py", tmpdir);
    return system(cmd) == 0 ? 0 : 1;
}

START_TEST(h5py_reads_and_writes_checkpoints)
{
    SfModel *m = model("dense:6 relu dense:3", 1);
    float *w = sf_model_params(m);
    for (int64_t i = 0; i < sf_model_nparams(m); i++)
        w[i] = 0.5f * (float)i;
    SfOptim *o = optim(m, SF_OPTIM_ADAM, 0, 2);
    write_ok("epoch-0003.h5", m, o, NULL, 30);
    int r = python(
        "import h5py, numpy as np\n"
        "f = h5py.File('epoch-0003.h5', 'r')\n"
        "a = f.attrs\n"
        "assert a['format'] == 'shardfit-checkpoint', a['format']\n"
        "assert a['version'] == 1 and a['version'].dtype == np.int64\n"
        "assert a['seed'] == 0xfedcba9876543210 and a['seed'].dtype == np.uint64\n"
        "assert a['epoch'] == 3 and a['step'] == 30 and a['step_in_epoch'] == 5\n"
        "assert a['layers'] == 'dense:6 relu dense:3'\n"
        "assert a['config'].endswith('; \\u00e9\\n')\n"
        "w = f['params/00_dense/weight']\n"
        "assert w.shape == (6, 5) and w.dtype == np.float32\n"
        "assert (w[()] == 0.5 * np.arange(30).reshape(6, 5)).all()\n"
        "assert (f['params/00_dense/bias'][()] == 0.5 * np.arange(30, 36)).all()\n"
        "assert (f['params/02_dense/bias'][()] == 0.5 * np.arange(54, 57)).all()\n"
        "assert f['optimizer'].attrs['t'] == 7\n"
        "assert f['optimizer/02_dense/weight/v'].shape == (3, 6)\n"
        "assert list(f['history/epoch'][()]) == [1, 2, 3]\n"
        "assert np.isnan(f['history/val_loss'][1])\n"
        "g = h5py.File('init.h5', 'w')\n"
        "g.attrs['format'] = 'shardfit-checkpoint'\n"
        "g.attrs['version'] = 1\n"
        "for k, (o, i) in {'00_dense': (6, 5), '02_dense': (3, 6)}.items():\n"
        "    g[f'params/{k}/weight'] = np.arange(o * i).reshape(o, i) / 4\n"
        "    g[f'params/{k}/bias'] = -np.arange(o) / 8\n"
        "g.close()\n");
    if (r < 0) {
        fprintf(stderr, "h5py_reads_and_writes_checkpoints: skipped, no h5py\n");
    } else {
        ck_assert_int_eq(r, 0);
        SfModel *m2 = model("dense:6 relu dense:3", 1);
        SfError err = {0};
        ck_assert_msg(sf_checkpoint_load_params(tmp("init.h5"), m2, &err) == 0,
                      "%s", err.msg);
        const SfLayer *l2 = sf_model_layer(m2, 2);
        ck_assert(l2->w[17] == 17 / 4.0f);
        ck_assert(l2->b[2] == -2 / 8.0f);
        sf_model_free(m2);
    }
    sf_optim_free(o);
    sf_model_free(m);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, names);
    tcase_add_test(tc, roundtrip_sgd_momentum_and_best);
    tcase_add_test(tc, roundtrip_adam_without_best);
    tcase_add_test(tc, layout_as_stored);
    tcase_add_test(tc, strings_fixed_or_variable_length);
    tcase_add_test(tc, shape_mismatch_names_layer_and_shapes);
    tcase_add_test(tc, kind_mismatch);
    tcase_add_test(tc, missing_or_extra_layer);
    tcase_add_test(tc, optimizer_mismatch);
    tcase_add_test(tc, newer_version_and_other_format);
    tcase_add_test(tc, truncated_file_is_refused_and_skipped);
    tcase_add_test(tc, non_hdf5_file_is_skipped);
    tcase_add_test(tc, find_latest_orders_by_step);
    tcase_add_test(tc, prune_keeps_newest_and_best);
    tcase_add_test(tc, prepare_dir_nested_and_unwritable);
    tcase_add_test(tc, full_disk_keeps_the_old_checkpoint);
    tcase_add_test(tc, write_into_missing_dir_fails);
    tcase_add_test(tc, load_params_from_params_only_file);
    tcase_add_test(tc, h5py_reads_and_writes_checkpoints);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sf_test_run(checkpoint_suite());
}
