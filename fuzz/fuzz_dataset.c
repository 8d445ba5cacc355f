/* fuzz_dataset.c: opening training data from mutated HDF5 files
 * (src/dataset.c, src/dataset_visit.c, src/h5util.c).
 *
 * Each input is written to a file and opened as training data with the
 * default names (/train/images, /train/labels); when that succeeds, the
 * first and last rows are read, as the loaders would (a range, and a sorted
 * list of rows, which dataset.c may read with pread(2)). Then the file is listed
 * as `shardfit inspect` does: every dataset, and the root attributes (where
 * a checkpoint keeps its strings). Checked beyond sanitizer reports: the
 * error contract, the invariants dataset.h promises for an open dataset,
 * that rows outside [0, N) are refused, and that no HDF5 object is left
 * open afterwards (a leaked id would keep the file open in the library). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "shardfit/dataset.h"

/* The harness reads at most this much per call; a larger row is fine for
 * the library (the loader sizes its batches) but not worth the time here. */
#define READ_MAX ((int64_t)1 << 20)

static void check_info(const SfDatasetInfo *info)
{
    const SfArrayInfo *a[2] = {&info->features, &info->labels};
    if (info->rows < 1 || info->feature_size < 1 || info->label_width < 1)
        fuzz_fail("open dataset with rows %lld, feature_size %lld, "
                  "label_width %lld", (long long)info->rows,
                  (long long)info->feature_size, (long long)info->label_width);
    for (int i = 0; i < 2; i++) {
        if (a[i]->ndims < 1 || a[i]->ndims > SF_MAX_DIMS ||
            a[i]->dims[0] != info->rows || (unsigned)a[i]->dtype > SF_DTYPE_F64)
            fuzz_fail("open dataset with a bad %s shape or type",
                      i ? "labels" : "features");
    }
}

/* Rows 0 and N-1 of features and labels, then rows past the end. */
static void read_rows(SfDataset *ds)
{
    const SfDatasetInfo *info = sf_dataset_info(ds);
    const SfArrayInfo *l = &info->labels;
    int64_t fbytes = info->feature_size;
    int64_t last = info->rows - 1;
    int class_ids = !sf_dtype_is_float(l->dtype) && info->label_width == 1;
    if (fbytes <= READ_MAX / (int64_t)sf_dtype_size(info->features.dtype)) {
        fbytes *= (int64_t)sf_dtype_size(info->features.dtype);
        void *row = malloc((size_t)fbytes);
        float *x = malloc((size_t)info->feature_size * sizeof *x);
        if (!row || !x)
            fuzz_fail("out of memory");
        for (int k = 0; k < 2; k++) {
            SfError err = {0};
            int rc = sf_dataset_read_features(ds, k ? last : 0, 1, row, &err);
            fuzz_check_error("sf_dataset_read_features", rc, &err);
            if (rc == 0)
                sf_dtype_to_float(info->features.dtype, row,
                                  (size_t)info->feature_size, 1.0f, 0.0f, x);
        }
        /* the stream loader's read: a sorted list (pread(2) when it can) */
        void *rows2 = malloc(2 * (size_t)fbytes);
        if (!rows2)
            fuzz_fail("out of memory");
        SfError err = {0};
        fuzz_check_error("sf_dataset_read_feature_rows",
                         sf_dataset_read_feature_rows(ds, (int64_t[]){0, last}, 2,
                                                      rows2, &err), &err);
        free(rows2);
        free(row);
        free(x);
    }
    if (info->label_width <= READ_MAX / (int64_t)sizeof(float)) {
        float *y = malloc((size_t)info->label_width * sizeof *y);
        int32_t id;
        if (!y)
            fuzz_fail("out of memory");
        for (int k = 0; k < 2; k++) {
            SfError err = {0};
            int64_t at = k ? last : 0;
            int rc = class_ids
                ? sf_dataset_read_class_labels(ds, at, 1, &id, &err)
                : sf_dataset_read_target_labels(ds, at, 1, y, &err);
            fuzz_check_error("reading labels", rc, &err);
            SfError lerr = {0};
            rc = class_ids
                ? sf_dataset_read_class_label_rows(ds, &at, 1, &id, &lerr)
                : sf_dataset_read_target_label_rows(ds, &at, 1, y, &lerr);
            fuzz_check_error("reading label rows", rc, &lerr);
        }
        free(y);
    }
    SfError err = {0};
    if (sf_dataset_read_features(ds, info->rows, 1, NULL, &err) == 0 ||
        sf_dataset_read_features(ds, -1, 1, NULL, &err) == 0)
        fuzz_fail("rows outside [0, %lld) were not refused",
                  (long long)info->rows);
}

/* The visitors must hand over NUL-terminated text; strlen lets ASan see. */
static void on_dataset(const char *name, const SfArrayInfo *info,
                       const char *type_name, void *user)
{
    size_t *total = user;
    *total += strlen(name) + strlen(type_name);
    if (info && (info->ndims < 0 || info->ndims > SF_MAX_DIMS))
        fuzz_fail("visit: '%s' has %d dimensions", name, info->ndims);
}

static void on_attr(const char *name, const char *value, void *user)
{
    size_t *total = user;
    *total += strlen(name) + strlen(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size);
    SfError err = {0};
    SfDataset *ds = sf_dataset_open(path, "/train/images", "/train/labels", &err);
    fuzz_check_error("sf_dataset_open", ds ? 0 : -1, &err);
    if (getenv("FUZZ_VERBOSE")) /* what a seed does, when writing seeds */
        fprintf(stderr, "open: %s\n", ds ? "ok" : err.msg);
    if (ds) {
        check_info(sf_dataset_info(ds));
        read_rows(ds);
        sf_dataset_close(ds);
    }
    size_t total = 0;
    SfError verr = {0}, aerr = {0};
    fuzz_check_error("sf_dataset_visit",
                     sf_dataset_visit(path, on_dataset, &total, &verr), &verr);
    fuzz_check_error("sf_dataset_visit_attrs",
                     sf_dataset_visit_attrs(path, on_attr, &total, &aerr), &aerr);
    ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open != 0)
        fuzz_fail("%zd HDF5 objects are still open after the input", open);
    return 0;
}
