/* test_dataset.c: the HDF5 gateway (src/dataset.c, src/h5writer.c).
 *
 * Files are written with the module's own writer and read back; the few
 * files the writer cannot make on purpose (strings, scalars, too many
 * dimensions) and the chunk layout check use HDF5 directly, as a hostile
 * third-party file would. Each test runs in a fresh temporary directory. */
#include <check.h>
#include <dirent.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardfit/dataset.h"
#include "testutil.h"

static char tmpdir[64];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_dataset.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    sf_test_remove_tree(tmpdir);
}

/* tmpdir/name; up to four results live at once. */
static const char *tmp(const char *name) { return sf_test_path(tmpdir, name); }

static void write_one(const char *path, const char *name, SfDtype t, int ndims,
                      const int64_t *dims, const void *data, int compress)
{
    SfError err = {0};
    SfH5Writer *w = sf_h5writer_open(path, &err);
    ck_assert_msg(w != NULL, "%s", err.msg);
    ck_assert_msg(sf_h5writer_write(w, name, t, ndims, dims, data, compress,
                                    &err) == 0, "%s", err.msg);
    ck_assert_msg(sf_h5writer_close(w, &err) == 0, "%s", err.msg);
}

/* A (10, 3, 4) uint8 feature set and (10,) int16 labels. */
static void write_small(const char *path, int compress)
{
    uint8_t x[120];
    int16_t y[10];
    for (int i = 0; i < 120; i++)
        x[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 10; i++)
        y[i] = (int16_t)(i * 1000 - 3000);
    write_one(path, "/train/images", SF_DTYPE_U8, 3, (int64_t[]){10, 3, 4}, x,
              compress);
    write_one(path, "/train/labels", SF_DTYPE_I16, 1, (int64_t[]){10}, y,
              compress);
}

/* Opening must fail with code 2 and a message holding each of want[]. */
static void expect_open_error(const char *path, const char *f, const char *l,
                              const char *want1, const char *want2)
{
    SfError err = {0};
    SfDataset *ds = sf_dataset_open(path, f, l, &err);
    ck_assert_ptr_null(ds);
    ck_assert_int_eq(err.code, 2);
    ck_assert_msg(strstr(err.msg, want1), "'%s' not in: %s", want1, err.msg);
    ck_assert_msg(!want2 || strstr(err.msg, want2), "'%s' not in: %s", want2,
                  err.msg);
}

START_TEST(dtype_sizes_and_names)
{
    static const struct { SfDtype t; size_t size; const char *name; int fl; } want[] = {
        {SF_DTYPE_U8, 1, "uint8", 0},     {SF_DTYPE_I8, 1, "int8", 0},
        {SF_DTYPE_U16, 2, "uint16", 0},   {SF_DTYPE_I16, 2, "int16", 0},
        {SF_DTYPE_U32, 4, "uint32", 0},   {SF_DTYPE_I32, 4, "int32", 0},
        {SF_DTYPE_U64, 8, "uint64", 0},   {SF_DTYPE_I64, 8, "int64", 0},
        {SF_DTYPE_F32, 4, "float32", 1},  {SF_DTYPE_F64, 8, "float64", 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_uint_eq(sf_dtype_size(want[i].t), want[i].size);
        ck_assert_str_eq(sf_dtype_name(want[i].t), want[i].name);
        ck_assert_int_eq(sf_dtype_is_float(want[i].t), want[i].fl);
    }
}
END_TEST

START_TEST(to_float_every_dtype)
{
    /* Values chosen so a wrong width or sign gives a different float; the
     * expected results are y = x * 0.5 - 1 rounded to float32. */
    const uint8_t u8[] = {0, 1, 255};
    const int8_t i8[] = {-128, 0, 127};
    const uint16_t u16[] = {0, 3, 65535};
    const int16_t i16[] = {-32768, 5, 32767};
    const uint32_t u32[] = {0, 7, 3000000000u};
    const int32_t i32[] = {INT32_MIN, -3, INT32_MAX};
    const uint64_t u64[] = {0, 9, UINT64_MAX};
    const int64_t i64[] = {-((int64_t)1 << 40), -9, (int64_t)1 << 40};
    const float f32[] = {-1.5f, 0.25f, 1e10f};
    const double f64[] = {-1.5, 0.125, 3.0};
    const struct { SfDtype t; const void *src; float want[3]; } cases[] = {
        {SF_DTYPE_U8, u8, {-1, -0.5f, 126.5f}},
        {SF_DTYPE_I8, i8, {-65, -1, 62.5f}},
        {SF_DTYPE_U16, u16, {-1, 0.5f, 32766.5f}},
        {SF_DTYPE_I16, i16, {-16385, 1.5f, 16382.5f}},
        {SF_DTYPE_U32, u32, {-1, 2.5f, 1.5e9f}},
        {SF_DTYPE_I32, i32, {-1073741824.0f, -2.5f, 1073741824.0f}},
        {SF_DTYPE_U64, u64, {-1, 3.5f, 9223372036854775808.0f}},
        {SF_DTYPE_I64, i64, {-549755813888.0f, -5.5f, 549755813888.0f}},
        {SF_DTYPE_F32, f32, {-1.75f, -0.875f, 5e9f}},
        {SF_DTYPE_F64, f64, {-1.75f, -0.9375f, 0.5f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float out[4] = {7, 7, 7, 7};
        sf_dtype_to_float(cases[c].t, cases[c].src, 3, 0.5f, -1.0f, out);
        for (int i = 0; i < 3; i++)
            ck_assert_msg(out[i] == cases[c].want[i], "%s[%d]: %g, want %g",
                          sf_dtype_name(cases[c].t), i, out[i],
                          cases[c].want[i]);
        ck_assert_float_eq(out[3], 7); /* nothing past count */
    }
    /* a long run, past any unrolled or vectorized body, and its tail */
    uint8_t big[1003];
    float out[1003];
    for (int i = 0; i < 1003; i++)
        big[i] = (uint8_t)i;
    sf_dtype_to_float(SF_DTYPE_U8, big, 1003, 1.0f / 255, 0, out);
    for (int i = 0; i < 1003; i++)
        ck_assert_float_eq(out[i], (float)(uint8_t)i * (1.0f / 255));
}
END_TEST

START_TEST(shape_strings)
{
    char buf[64];
    SfArrayInfo a = {3, {60000, 28, 28}, SF_DTYPE_U8};
    ck_assert_str_eq(sf_array_shape_str(&a, buf, sizeof buf), "(60000, 28, 28)");
    a.ndims = 1;
    ck_assert_str_eq(sf_array_shape_str(&a, buf, sizeof buf), "(60000,)");
    a.ndims = 0;
    ck_assert_str_eq(sf_array_shape_str(&a, buf, sizeof buf), "()");
}
END_TEST

/* Every row, and sub-ranges, exactly; compressed (chunked) and contiguous. */
START_TEST(roundtrip_uint8_int16)
{
    const char *path = tmp(_i ? "small-gz.h5" : "small.h5");
    SfError err = {0};
    write_small(path, _i);
    SfDataset *ds = sf_dataset_open(path, "/train/images", "/train/labels", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    const SfDatasetInfo *info = sf_dataset_info(ds);
    ck_assert_int_eq(info->rows, 10);
    ck_assert_int_eq(info->features.ndims, 3);
    ck_assert_int_eq(info->features.dims[1], 3);
    ck_assert_int_eq(info->features.dims[2], 4);
    ck_assert_int_eq(info->features.dtype, SF_DTYPE_U8);
    ck_assert_int_eq(info->labels.dtype, SF_DTYPE_I16);
    ck_assert_int_eq(info->feature_size, 12);
    ck_assert_int_eq(info->label_width, 1);

    uint8_t x[120];
    ck_assert_int_eq(sf_dataset_read_features(ds, 0, 10, x, &err), 0);
    for (int i = 0; i < 120; i++)
        ck_assert_uint_eq(x[i], (uint8_t)(i * 7));
    const int64_t ranges[][2] = {{3, 4}, {9, 1}, {0, 1}, {5, 0}};
    for (int r = 0; r < 4; r++) {
        memset(x, 0xee, sizeof x);
        ck_assert_int_eq(sf_dataset_read_features(ds, ranges[r][0], ranges[r][1],
                                                  x, &err), 0);
        for (int i = 0; i < ranges[r][1] * 12; i++)
            ck_assert_uint_eq(x[i], (uint8_t)((ranges[r][0] * 12 + i) * 7));
        ck_assert_uint_eq(x[ranges[r][1] * 12], 0xee);
    }
    int32_t y[10];
    float t[10];
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 0, 10, y, &err), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(y[i], i * 1000 - 3000);
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 7, 3, y, &err), 0);
    ck_assert_int_eq(y[0], 4000);
    ck_assert_int_eq(y[2], 6000);
    ck_assert_int_eq(sf_dataset_read_target_labels(ds, 2, 2, t, &err), 0);
    ck_assert_float_eq(t[0], -1000.0f);
    ck_assert_float_eq(t[1], 0.0f);
    sf_dataset_close(ds);
    sf_dataset_close(NULL);
}
END_TEST

START_TEST(float64_features_and_targets)
{
    const char *path = tmp("f64.h5");
    double x[30], y[12];
    for (int i = 0; i < 30; i++)
        x[i] = i * 0.1 - 1.3;
    for (int i = 0; i < 12; i++)
        y[i] = i * 0.25 - 2;
    write_one(path, "/x", SF_DTYPE_F64, 2, (int64_t[]){6, 5}, x, 1);
    write_one(path, "/y", SF_DTYPE_F64, 2, (int64_t[]){6, 2}, y, 0);
    SfError err = {0};
    SfDataset *ds = sf_dataset_open(path, "/x", "/y", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(sf_dataset_info(ds)->label_width, 2);
    ck_assert_int_eq(sf_dataset_info(ds)->features.dtype, SF_DTYPE_F64);
    double back[30];
    ck_assert_int_eq(sf_dataset_read_features(ds, 1, 5, back, &err), 0);
    ck_assert_mem_eq(back, x + 5, 25 * sizeof(double));
    float t[12];
    ck_assert_int_eq(sf_dataset_read_target_labels(ds, 0, 6, t, &err), 0);
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(t[i], (float)y[i]);
    int32_t c[6];
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 0, 6, c, &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_ptr_nonnull(strstr(err.msg, "class ids need an integer"));
    sf_dataset_close(ds);
}
END_TEST

START_TEST(class_labels_beyond_int32)
{
    const char *path = tmp("big.h5");
    const int64_t y[5] = {0, 1, 2, 3000000000LL, 4};
    const float x[5] = {0};
    write_one(path, "/x", SF_DTYPE_F32, 1, (int64_t[]){5}, x, 0);
    write_one(path, "/y", SF_DTYPE_I64, 1, (int64_t[]){5}, y, 0);
    SfError err = {0};
    SfDataset *ds = sf_dataset_open(path, "/x", "/y", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    int32_t c[5];
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 0, 3, c, &err), 0);
    ck_assert_int_eq(c[2], 2);
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 0, 5, c, &err), -1);
    ck_assert_msg(strstr(err.msg, "3000000000") && strstr(err.msg, "row 3"),
                  "%s", err.msg);
    sf_dataset_close(ds);
}
END_TEST

START_TEST(class_labels_shapes)
{
    const char *path = tmp("shapes.h5");
    const uint8_t x[4] = {1, 2, 3, 4};
    const int32_t y[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    write_one(path, "/x", SF_DTYPE_U8, 1, (int64_t[]){4}, x, 0);
    write_one(path, "/y1", SF_DTYPE_I32, 2, (int64_t[]){4, 1}, y, 0);
    write_one(path, "/y2", SF_DTYPE_I32, 2, (int64_t[]){4, 2}, y, 0);
    SfError err = {0};
    int32_t c[8];
    SfDataset *ds = sf_dataset_open(path, "/x", "/y1", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(sf_dataset_info(ds)->feature_size, 1);
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 0, 4, c, &err), 0);
    ck_assert_int_eq(c[3], 8);
    sf_dataset_close(ds);
    ds = sf_dataset_open(path, "/x", "/y2", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 0, 4, c, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "(4, 2)"));
    sf_dataset_close(ds);
}
END_TEST

/* Many chunks read row by row (through the chunk cache) equal one read. */
START_TEST(chunked_row_reads)
{
    const char *path = tmp("rows.h5");
    enum { N = 2000, W = 1000 };
    uint8_t *x = malloc(N * W), row[W];
    for (int i = 0; i < N * W; i++)
        x[i] = (uint8_t)(i % 251);
    write_one(path, "/x", SF_DTYPE_U8, 2, (int64_t[]){N, W}, x, 1);
    write_one(path, "/y", SF_DTYPE_U8, 1, (int64_t[]){N}, x, 1);
    SfError err = {0};
    SfDataset *ds = sf_dataset_open(path, "/x", "/y", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    /* the open /x got a chunk cache that holds all of it */
    hid_t ids[4];
    char name[16];
    ssize_t open = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_DATASET, 4, ids);
    ck_assert_int_eq(open, 2);
    for (int i = 0; i < 2; i++) {
        size_t slots, nbytes;
        double w0;
        hid_t dapl = H5Dget_access_plist(ids[i]);
        ck_assert(H5Pget_chunk_cache(dapl, &slots, &nbytes, &w0) >= 0);
        H5Iget_name(ids[i], name, sizeof name);
        if (!strcmp(name, "/x"))
            ck_assert_uint_ge(nbytes, N * W);
        H5Pclose(dapl);
    }
    for (int r = N - 1; r >= 0; r -= 7) {
        ck_assert_int_eq(sf_dataset_read_features(ds, r, 1, row, &err), 0);
        ck_assert_mem_eq(row, x + (size_t)r * W, W);
    }
    sf_dataset_close(ds);
    free(x);
}
END_TEST

START_TEST(open_missing_file)
{
    expect_open_error(tmp("nope.h5"), "/a", "/b",
                      "cannot open: No such file or directory", "nope.h5");
}
END_TEST

START_TEST(open_not_hdf5)
{
    const char *path = tmp("text.h5");
    FILE *f = fopen(path, "w");
    fputs("these are not the bytes you are looking for\n", f);
    fclose(f);
    expect_open_error(path, "/a", "/b", "is not an HDF5 file", "text.h5");
}
END_TEST

START_TEST(open_missing_dataset)
{
    const char *path = tmp("small.h5");
    write_small(path, 0);
    expect_open_error(path, "/train/imgs", "/train/labels",
                      "has no dataset '/train/imgs'", "holds: images, labels");
    expect_open_error(path, "/train/images", "/tran/labels",
                      "has no dataset '/tran/labels'", "'/' holds: train");
    expect_open_error(path, "/train", "/train/labels", "'/train' is a group",
                      NULL);
}
END_TEST

START_TEST(open_row_mismatch)
{
    const char *path = tmp("mismatch.h5");
    const uint8_t x[20] = {0};
    write_one(path, "/x", SF_DTYPE_U8, 2, (int64_t[]){10, 2}, x, 0);
    write_one(path, "/y", SF_DTYPE_U8, 1, (int64_t[]){9}, x, 0);
    expect_open_error(path, "/x", "/y", "have 10 rows", "have 9");
}
END_TEST

START_TEST(open_zero_rows)
{
    const char *path = tmp("empty.h5");
    const uint8_t x[1] = {0};
    write_one(path, "/x", SF_DTYPE_U8, 2, (int64_t[]){0, 3}, x, 1);
    write_one(path, "/y", SF_DTYPE_U8, 1, (int64_t[]){0}, x, 0);
    expect_open_error(path, "/x", "/y", "'/x' has 0 rows", NULL);
}
END_TEST

/* Datasets our writer will not make: a string, a scalar, 9 dimensions. */
static void write_odd_datasets(const char *path)
{
    hsize_t one = 3, nine[9] = {2, 1, 1, 1, 1, 1, 1, 1, 1};
    int v[2] = {1, 2};
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 4);
    hid_t s1 = H5Screate_simple(1, &one, NULL), s0 = H5Screate(H5S_SCALAR),
          s9 = H5Screate_simple(9, nine, NULL);
    hid_t d1 = H5Dcreate2(f, "names", str, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
          d0 = H5Dcreate2(f, "scalar", H5T_STD_I32LE, s0, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
          d9 = H5Dcreate2(f, "nine", H5T_STD_I32LE, s9, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0 && d1 >= 0 && d0 >= 0 && d9 >= 0);
    ck_assert(H5Dwrite(d1, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, "abcdefghijkl") >= 0);
    ck_assert(H5Dwrite(d0, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    ck_assert(H5Dwrite(d9, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d1), H5Dclose(d0), H5Dclose(d9);
    H5Sclose(s1), H5Sclose(s0), H5Sclose(s9);
    H5Tclose(str);
    H5Fclose(f);
}

START_TEST(open_unsupported)
{
    const char *path = tmp("odd.h5");
    write_odd_datasets(path);
    expect_open_error(path, "/names", "/scalar", "'/names' has type string",
                      "need an integer or float");
    expect_open_error(path, "/nine", "/scalar", "has 9 dimensions", "at most 8");
    expect_open_error(path, "/scalar", "/nine", "'/scalar' is a scalar", NULL);
}
END_TEST

START_TEST(read_out_of_range)
{
    const char *path = tmp("small.h5");
    write_small(path, 1);
    SfError err = {0};
    SfDataset *ds = sf_dataset_open(path, "/train/images", "/train/labels", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    uint8_t x[120];
    int32_t y[10];
    const int64_t bad[][2] = {{8, 3}, {-1, 1}, {10, 1}, {0, -1}, {INT64_MAX, 2}};
    for (int i = 0; i < 5; i++) {
        sf_error_clear(&err);
        ck_assert_int_eq(sf_dataset_read_features(ds, bad[i][0], bad[i][1], x,
                                                  &err), -1);
        ck_assert_msg(strstr(err.msg, "out of range"), "%s", err.msg);
    }
    sf_error_clear(&err);
    ck_assert_int_eq(sf_dataset_read_class_labels(ds, 9, 2, y, &err), -1);
    ck_assert_msg(strstr(err.msg, "rows [9, 11)"), "%s", err.msg);
    sf_dataset_close(ds);
}
END_TEST

START_TEST(writer_refuses_existing)
{
    const char *path = tmp("small.h5");
    write_small(path, 1);
    SfError err = {0};
    uint8_t zeros[120] = {0}, x[120];
    SfH5Writer *w = sf_h5writer_open(path, &err);
    ck_assert_msg(w != NULL, "%s", err.msg);
    ck_assert_int_eq(sf_h5writer_check_free(w, "/train/other", &err), 0);
    ck_assert_int_eq(sf_h5writer_check_free(w, "/test/images", &err), 0);
    ck_assert_int_eq(sf_h5writer_write(w, "/train/images", SF_DTYPE_U8, 3,
                                       (int64_t[]){10, 3, 4}, zeros, 1, &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_msg(strstr(err.msg, "already has '/train/images'"), "%s", err.msg);
    /* a second group in the same file is fine */
    sf_error_clear(&err);
    ck_assert_int_eq(sf_h5writer_write(w, "/test/images", SF_DTYPE_U8, 3,
                                       (int64_t[]){10, 3, 4}, zeros, 0, &err), 0);
    ck_assert_int_eq(sf_h5writer_close(w, &err), 0);
    ck_assert_int_eq(sf_h5writer_close(NULL, &err), 0);

    SfDataset *ds = sf_dataset_open(path, "/train/images", "/train/labels", &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(sf_dataset_read_features(ds, 0, 10, x, &err), 0);
    ck_assert_uint_eq(x[119], (uint8_t)(119 * 7)); /* not overwritten */
    sf_dataset_close(ds);
}
END_TEST

START_TEST(writer_open_errors)
{
    SfError err = {0};
    ck_assert_ptr_null(sf_h5writer_open(tmp("no/such/dir.h5"), &err));
    ck_assert_msg(strstr(err.msg, "cannot create: No such file"), "%s", err.msg);
    const char *text = tmp("text.txt");
    FILE *f = fopen(text, "w");
    fputs("hello\n", f);
    fclose(f);
    sf_error_clear(&err);
    ck_assert_ptr_null(sf_h5writer_open(text, &err));
    ck_assert_msg(strstr(err.msg, "exists and is not an HDF5 file"), "%s", err.msg);
}
END_TEST

/* Chunks of whole rows near 1 MiB, gzip + shuffle; contiguous otherwise. */
START_TEST(writer_layout)
{
    const char *path = tmp("layout.h5");
    uint8_t *x = calloc(5000 * 784, 1);
    write_one(path, "/big", SF_DTYPE_U8, 3, (int64_t[]){5000, 28, 28}, x, 1);
    write_one(path, "/small", SF_DTYPE_F32, 2, (int64_t[]){3, 10}, x, 1);
    write_one(path, "/plain", SF_DTYPE_U8, 3, (int64_t[]){5000, 28, 28}, x, 0);
    free(x);
    hsize_t chunk[3];
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    const struct { const char *name; int layout; hsize_t c0, c1; } want[] = {
        {"/big", H5D_CHUNKED, 1337, 28}, {"/small", H5D_CHUNKED, 3, 10},
        {"/plain", H5D_CONTIGUOUS, 0, 0}};
    for (int i = 0; i < 3; i++) {
        hid_t d = H5Dopen2(f, want[i].name, H5P_DEFAULT);
        hid_t dcpl = H5Dget_create_plist(d), type = H5Dget_type(d);
        ck_assert_int_eq(H5Pget_layout(dcpl), want[i].layout);
        ck_assert(H5Tequal(type, i == 1 ? H5T_IEEE_F32LE : H5T_STD_U8LE) > 0);
        if (want[i].layout == H5D_CHUNKED) {
            ck_assert_int_eq(H5Pget_chunk(dcpl, 3, chunk), i == 1 ? 2 : 3);
            ck_assert_uint_eq(chunk[0], want[i].c0);
            ck_assert_uint_eq(chunk[1], want[i].c1);
            ck_assert_int_eq(H5Pget_nfilters(dcpl), 2);
            ck_assert_int_eq(H5Pget_filter2(dcpl, 0, NULL, NULL, NULL, 0, NULL,
                                            NULL), H5Z_FILTER_SHUFFLE);
            ck_assert_int_eq(H5Pget_filter2(dcpl, 1, NULL, NULL, NULL, 0, NULL,
                                            NULL), H5Z_FILTER_DEFLATE);
        }
        H5Tclose(type);
        H5Pclose(dcpl);
        H5Dclose(d);
    }
    H5Fclose(f);
}
END_TEST

typedef struct {
    char seen[8][160];
    int n;
} Seen;

static void collect(const char *name, const SfArrayInfo *info,
                    const char *type_name, void *user)
{
    Seen *s = user;
    char shape[64] = "-";
    if (info)
        sf_array_shape_str(info, shape, sizeof shape);
    if (s->n < 8)
        snprintf(s->seen[s->n], sizeof s->seen[0], "%s %s %s", name, shape,
                 type_name);
    s->n++;
}

START_TEST(visit_lists_datasets)
{
    const char *path = tmp("visit.h5");
    const float x[6] = {0};
    write_small(path, 1);
    write_one(path, "/test/x", SF_DTYPE_F32, 2, (int64_t[]){2, 3}, x, 0);
    write_one(path, "/a/b/c/deep", SF_DTYPE_F32, 1, (int64_t[]){6}, x, 0);
    Seen s = {.n = 0};
    SfError err = {0};
    ck_assert_msg(sf_dataset_visit(path, collect, &s, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(s.n, 4);
    ck_assert_str_eq(s.seen[0], "/a/b/c/deep (6,) float32");
    ck_assert_str_eq(s.seen[1], "/test/x (2, 3) float32");
    ck_assert_str_eq(s.seen[2], "/train/images (10, 3, 4) uint8");
    ck_assert_str_eq(s.seen[3], "/train/labels (10,) int16");

    const char *odd = tmp("odd.h5");
    write_odd_datasets(odd);
    s.n = 0;
    ck_assert_msg(sf_dataset_visit(odd, collect, &s, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(s.n, 3);
    ck_assert_str_eq(s.seen[0], "/names - string");
    ck_assert_str_eq(s.seen[1], "/nine - int32, 9 dimensions");
    ck_assert_str_eq(s.seen[2], "/scalar () int32");

    ck_assert_int_eq(sf_dataset_visit(tmp("none.h5"), collect, &s, &err), -1);
    ck_assert_int_eq(err.code, 2);
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file"));
}
END_TEST

/* Root attributes as a checkpoint has them, strings both ways h5py and C
 * programs store them. */
static void write_attributes(const char *path)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t scalar = H5Screate(H5S_SCALAR);
    hsize_t two = 2, hundred = 100;
    hid_t s2 = H5Screate_simple(1, &two, NULL), s100 = H5Screate_simple(1, &hundred, NULL);
    hid_t fixed = H5Tcopy(H5T_C_S1), vlen = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed, 19);
    H5Tset_size(vlen, H5T_VARIABLE);
    H5Tset_cset(vlen, H5T_CSET_UTF8);
    const char *config = "[train]\nepochs = 10\nseed = 1\n";
    const int64_t epoch = 3;
    const double betas[2] = {0.9, 0.999};
    static const float many[100];
    const struct { const char *name; hid_t type, space, mem; const void *v; } a[] = {
        {"format", fixed, scalar, fixed, "shardfit-checkpoint"},
        {"config", vlen, scalar, vlen, &config},
        {"epoch", H5T_STD_I64LE, scalar, H5T_NATIVE_INT64, &epoch},
        {"betas", H5T_IEEE_F64LE, s2, H5T_NATIVE_DOUBLE, betas},
        {"many", H5T_IEEE_F32LE, s100, H5T_NATIVE_FLOAT, many},
    };
    for (int i = 0; i < 5; i++) {
        hid_t id = H5Acreate2(f, a[i].name, a[i].type, a[i].space, H5P_DEFAULT,
                              H5P_DEFAULT);
        ck_assert(id >= 0 && H5Awrite(id, a[i].mem, a[i].v) >= 0);
        H5Aclose(id);
    }
    H5Tclose(fixed), H5Tclose(vlen);
    H5Sclose(scalar), H5Sclose(s2), H5Sclose(s100);
    H5Fclose(f);
}

static void collect_attr(const char *name, const char *value, void *user)
{
    Seen *s = user;
    if (s->n < 8)
        snprintf(s->seen[s->n], sizeof s->seen[0], "%s=%s", name, value);
    s->n++;
}

START_TEST(visit_lists_root_attributes)
{
    const char *path = tmp("attrs.h5");
    write_attributes(path);
    Seen s = {.n = 0};
    SfError err = {0};
    ck_assert_msg(sf_dataset_visit_attrs(path, collect_attr, &s, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(s.n, 5);
    ck_assert_str_eq(s.seen[0], "betas=[0.9, 0.999]");
    ck_assert_str_eq(s.seen[1], "config=[train]\nepochs = 10\nseed = 1\n");
    ck_assert_str_eq(s.seen[2], "epoch=3");
    ck_assert_str_eq(s.seen[3], "format=shardfit-checkpoint");
    ck_assert_str_eq(s.seen[4], "many=float32 (100,)");
    ck_assert_int_eq(sf_dataset_visit_attrs(tmp("none.h5"), collect_attr, &s,
                                            &err), -1);
    ck_assert_int_eq(err.code, 2);
}
END_TEST

static Suite *dataset_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dtype_sizes_and_names);
    tcase_add_test(tc, to_float_every_dtype);
    tcase_add_test(tc, shape_strings);
    tcase_add_loop_test(tc, roundtrip_uint8_int16, 0, 2);
    tcase_add_test(tc, float64_features_and_targets);
    tcase_add_test(tc, class_labels_beyond_int32);
    tcase_add_test(tc, class_labels_shapes);
    tcase_add_test(tc, chunked_row_reads);
    tcase_add_test(tc, open_missing_file);
    tcase_add_test(tc, open_not_hdf5);
    tcase_add_test(tc, open_missing_dataset);
    tcase_add_test(tc, open_row_mismatch);
    tcase_add_test(tc, open_zero_rows);
    tcase_add_test(tc, open_unsupported);
    tcase_add_test(tc, read_out_of_range);
    tcase_add_test(tc, writer_refuses_existing);
    tcase_add_test(tc, writer_open_errors);
    tcase_add_test(tc, writer_layout);
    tcase_add_test(tc, visit_lists_datasets);
    tcase_add_test(tc, visit_lists_root_attributes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sf_test_run(dataset_suite());
}
