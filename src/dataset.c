/* dataset.c: training data out of HDF5 (see dataset.h).
 *
 * Everything about a dataset that can be wrong is checked once, in
 * sf_dataset_open(), so a read on the hot path is one hyperslab with nothing
 * left to ask. The file is read-only and opened by each rank on its own.
 * HDF5 is not thread-safe here (MEASUREMENTS.md): one thread at a time may
 * call into a dataset. Writing lives in h5writer.c, listing a file's
 * contents in dataset_visit.c. */
#include "shardfit/dataset.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"

/* A read of a chunked dataset keeps decompressed chunks in this cache, so
 * row-by-row reads do not inflate a chunk per row: the whole dataset when it
 * fits in CACHE_BUDGET, and at least two row bands of chunks (all a read of
 * up to one chunk's rows can touch), capped at CACHE_MAX. */
#define CACHE_BUDGET ((size_t)64 << 20)
#define CACHE_MAX ((size_t)1 << 30)

typedef struct {
    char *name;       /* "/train/images" */
    hid_t id;         /* the open HDF5 dataset */
} Array;

struct SfDataset {
    char *path;
    hid_t file;
    Array features, labels;
    SfDatasetInfo info;
};

/* ---- dtypes ----------------------------------------------------------- */

static const struct {
    size_t size;
    const char *name;
} dtypes[] = {
    [SF_DTYPE_U8] = {1, "uint8"},    [SF_DTYPE_I8] = {1, "int8"},
    [SF_DTYPE_U16] = {2, "uint16"},  [SF_DTYPE_I16] = {2, "int16"},
    [SF_DTYPE_U32] = {4, "uint32"},  [SF_DTYPE_I32] = {4, "int32"},
    [SF_DTYPE_U64] = {8, "uint64"},  [SF_DTYPE_I64] = {8, "int64"},
    [SF_DTYPE_F32] = {4, "float32"}, [SF_DTYPE_F64] = {8, "float64"},
};

size_t sf_dtype_size(SfDtype t)
{
    assert((unsigned)t <= SF_DTYPE_F64);
    return dtypes[t].size;
}

const char *sf_dtype_name(SfDtype t)
{
    assert((unsigned)t <= SF_DTYPE_F64);
    return dtypes[t].name;
}

int sf_dtype_is_float(SfDtype t)
{
    return t == SF_DTYPE_F32 || t == SF_DTYPE_F64;
}

/* One tight loop per type, so the compiler can vectorize each. */
#define TO_FLOAT(T)                                                   \
    do {                                                              \
        const T *restrict s = src;                                    \
        for (size_t i = 0; i < count; i++)                            \
            out[i] = (float)s[i] * scale + offset;                    \
    } while (0)

void sf_dtype_to_float(SfDtype t, const void *src, size_t count,
                       float scale, float offset, float *dst)
{
    float *restrict out = dst;
    switch (t) {
    case SF_DTYPE_U8:  TO_FLOAT(uint8_t);  return;
    case SF_DTYPE_I8:  TO_FLOAT(int8_t);   return;
    case SF_DTYPE_U16: TO_FLOAT(uint16_t); return;
    case SF_DTYPE_I16: TO_FLOAT(int16_t);  return;
    case SF_DTYPE_U32: TO_FLOAT(uint32_t); return;
    case SF_DTYPE_I32: TO_FLOAT(int32_t);  return;
    case SF_DTYPE_U64: TO_FLOAT(uint64_t); return;
    case SF_DTYPE_I64: TO_FLOAT(int64_t);  return;
    case SF_DTYPE_F32: TO_FLOAT(float);    return;
    case SF_DTYPE_F64: TO_FLOAT(double);   return;
    }
    assert(!"unknown SfDtype");
}

const char *sf_array_shape_str(const SfArrayInfo *info, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < info->ndims && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld",
                                 d ? ", " : "", (long long)info->dims[d]);
    if (used < n)
        snprintf(buf + used, n - used, info->ndims == 1 ? ",)" : ")");
    return buf;
}

/* ---- opening ---------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t n, used;
    int count;
} NameList;

static herr_t add_name(hid_t g, const char *name, const H5L_info_t *li,
                       void *data)
{
    (void)g;
    (void)li;
    NameList *l = data;
    const char *sep = l->count++ ? ", " : "";
    if (l->used + strlen(sep) + strlen(name) + sizeof ", ..." > l->n) {
        snprintf(l->buf + l->used, l->n - l->used, "%s...", sep);
        return 1; /* full: stop */
    }
    l->used += (size_t)snprintf(l->buf + l->used, l->n - l->used, "%s%s", sep,
                                name);
    return 0;
}

/* A hint for a dataset name that does not exist: what the deepest existing
 * group holds, e.g. " ('/train' holds: images, labels)". */
static void missing_hint(hid_t file, const char *name, char *buf, size_t n)
{
    char parent[256], names[200];
    NameList list = {names, sizeof names, 0, 0};
    buf[0] = names[0] = '\0';
    if (sf_h5_path_exists(file, name, parent, sizeof parent) != 0)
        return;
    hid_t g = H5Gopen2(file, parent, H5P_DEFAULT);
    if (g < 0)
        return;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, add_name, &list) >= 0)
        snprintf(buf, n, list.count ? " ('%s' holds: %s)" : " ('%s' is empty)",
                 parent, names);
    H5Gclose(g);
}

/* sf_h5_probe() plus what training needs: rows, and a size that fits memory. */
static int describe(hid_t dset, const char *path, const char *name,
                    SfArrayInfo *info, SfError *err)
{
    char detail[256];
    const char *cls = "";
    switch (sf_h5_probe(dset, info, &cls)) {
    case SF_H5_PROBE_OK:
        break;
    case SF_H5_PROBE_TYPE:
        sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s' has type %s; "
                     "need an integer or float type", path, name, cls);
        return -1;
    case SF_H5_PROBE_RANK:
        sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s' has %d dimensions; "
                     "at most %d are supported", path, name, info->ndims,
                     SF_MAX_DIMS);
        return -1;
    case SF_H5_PROBE_FAIL:
        sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s': cannot read its "
                     "type or shape: %s", path, name,
                     sf_h5_error_detail(detail, sizeof detail));
        return -1;
    }
    if (info->ndims == 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s' is a scalar; "
                     "need one row per sample", path, name);
        return -1;
    }
    if (info->dims[0] == 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s' has 0 rows",
                     path, name);
        return -1;
    }
    int64_t elems = 1, limit = INT64_MAX / (int64_t)sf_dtype_size(info->dtype);
    if ((uint64_t)limit > SIZE_MAX / sf_dtype_size(info->dtype))
        limit = (int64_t)(SIZE_MAX / sf_dtype_size(info->dtype));
    for (int d = 0; d < info->ndims; d++) {
        if (info->dims[d] != 0 && elems > limit / info->dims[d]) {
            char shape[256];
            sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s' of shape %s is "
                         "too large to address", path, name,
                         sf_array_shape_str(info, shape, sizeof shape));
            return -1;
        }
        elems *= info->dims[d];
    }
    return 0;
}

static size_t next_prime(size_t n)
{
    for (;; n++) {
        size_t d = 2;
        while (d * d <= n && n % d)
            d++;
        if (n > 1 && d * d > n)
            return n;
    }
}

/* H5P_DEFAULT for contiguous data; for chunked data a new access property
 * list with a chunk cache sized as CACHE_BUDGET says. -1 on failure. */
static hid_t chunk_cache_dapl(hid_t obj, const SfArrayInfo *info)
{
    hsize_t cdims[SF_MAX_DIMS];
    hid_t dapl = H5P_DEFAULT, dcpl = H5Dget_create_plist(obj);
    if (dcpl < 0)
        return -1;
    if (H5Pget_layout(dcpl) != H5D_CHUNKED ||
        H5Pget_chunk(dcpl, info->ndims, cdims) != info->ndims)
        goto cleanup;
    /* bytes of one chunk, of a band of chunks across a row, of all */
    double chunk = (double)sf_dtype_size(info->dtype), band = 1, total = 1;
    for (int d = 0; d < info->ndims; d++) {
        double across = (double)((info->dims[d] + cdims[d] - 1) / cdims[d]);
        chunk *= (double)cdims[d];
        total *= across;
        band *= d > 0 ? across : 1;
    }
    band *= chunk;
    total *= chunk;
    double bytes = fmin(fmax(fmin(total, (double)CACHE_BUDGET),
                             fmin(2 * band, total)), (double)CACHE_MAX);
    /* HDF5 suggests about 100 hash slots per cached chunk, a prime count */
    size_t slots = next_prime((size_t)fmin(100 * (bytes / chunk + 1), 1e6));
    dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0 && H5Pset_chunk_cache(dapl, slots, (size_t)bytes, 0.75) < 0) {
        H5Pclose(dapl);
        dapl = -1;
    }
cleanup:
    H5Pclose(dcpl);
    return dapl;
}

/* Opens and describes one dataset; errors name the file and dataset. */
static int open_array(hid_t file, const char *path, const char *name,
                      Array *a, SfArrayInfo *info, SfError *err)
{
    char detail[512];
    hid_t obj = -1, dapl = -1;
    a->id = -1;
    a->name = strdup(name);
    if (!a->name) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        return -1;
    }
    if (sf_h5_path_exists(file, name, NULL, 0) != 1) {
        missing_hint(file, name, detail, sizeof detail);
        sf_error_set(err, SF_EXIT_INPUT, "'%s' has no dataset '%s'%s", path,
                     name, detail);
        goto cleanup;
    }
    obj = H5Oopen(file, name, H5P_DEFAULT);
    if (obj < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open '%s': %s", path,
                     name, sf_h5_error_detail(detail, sizeof detail));
        goto cleanup;
    }
    if (H5Iget_type(obj) != H5I_DATASET) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': '%s' is a %s, not a dataset",
                     path, name, H5Iget_type(obj) == H5I_GROUP ? "group"
                                                               : "named type");
        goto cleanup;
    }
    if (describe(obj, path, name, info, err) < 0)
        goto cleanup;
    dapl = chunk_cache_dapl(obj, info);
    H5Oclose(obj); /* a second open while it is open would share its cache */
    obj = -1;
    if (dapl >= 0)
        a->id = H5Dopen2(file, name, dapl);
    if (a->id < 0)
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open '%s': %s", path,
                     name, sf_h5_error_detail(detail, sizeof detail));
cleanup:
    if (dapl > 0)
        H5Pclose(dapl);
    if (obj >= 0)
        H5Oclose(obj);
    return a->id >= 0 ? 0 : -1;
}

static int64_t row_elems(const SfArrayInfo *info)
{
    int64_t n = 1;
    for (int d = 1; d < info->ndims; d++)
        n *= info->dims[d];
    return n;
}

SfDataset *sf_dataset_open(const char *path, const char *features,
                           const char *labels, SfError *err)
{
    SfDataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->path = strdup(path))) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        free(ds);
        return NULL;
    }
    ds->features.id = ds->labels.id = -1;
    SfDatasetInfo *info = &ds->info;
    ds->file = sf_h5_open_read(path, err);
    if (ds->file < 0 ||
        open_array(ds->file, path, features, &ds->features, &info->features,
                   err) < 0 ||
        open_array(ds->file, path, labels, &ds->labels, &info->labels, err) < 0)
        goto fail;
    if (info->features.dims[0] != info->labels.dims[0]) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': features '%s' have %lld rows "
                     "but labels '%s' have %lld", path, features,
                     (long long)info->features.dims[0], labels,
                     (long long)info->labels.dims[0]);
        goto fail;
    }
    info->rows = info->features.dims[0];
    info->feature_size = row_elems(&info->features);
    info->label_width = row_elems(&info->labels);
    if (info->feature_size == 0 || info->label_width == 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': '%s' has empty rows", path,
                     info->feature_size ? labels : features);
        goto fail;
    }
    return ds;
fail:
    sf_dataset_close(ds);
    return NULL;
}

static void close_array(Array *a)
{
    if (a->id >= 0)
        H5Dclose(a->id);
    free(a->name);
}

void sf_dataset_close(SfDataset *ds)
{
    if (!ds)
        return;
    close_array(&ds->features);
    close_array(&ds->labels);
    if (ds->file >= 0)
        H5Fclose(ds->file);
    free(ds->path);
    free(ds);
}

const SfDatasetInfo *sf_dataset_info(const SfDataset *ds)
{
    return &ds->info;
}

/* ---- reading ---------------------------------------------------------- */

static int check_rows(const SfDataset *ds, const Array *a, int64_t row0,
                      int64_t n, SfError *err)
{
    if (row0 >= 0 && n >= 0 && row0 <= ds->info.rows - n)
        return 0;
    sf_error_set(err, SF_EXIT_FAILURE, "'%s': rows [%lld, %lld) of '%s' are "
                 "out of range: it has %lld rows", ds->path, (long long)row0,
                 (long long)((uint64_t)row0 + (uint64_t)n), /* wraps, no UB */
                 a->name, (long long)ds->info.rows);
    return -1;
}

/* Rows [row0, row0 + n) of a, converted by HDF5 to memtype, as one
 * hyperslab of whole rows. */
static int read_rows(const SfDataset *ds, const Array *a,
                     const SfArrayInfo *info, hid_t memtype, int64_t row0,
                     int64_t n, void *buf, SfError *err)
{
    hsize_t start[SF_MAX_DIMS] = {0}, count[SF_MAX_DIMS];
    char detail[256];
    hid_t fspace = -1, mspace = -1;
    int rc = -1;
    if (check_rows(ds, a, row0, n, err) < 0)
        return -1;
    if (n == 0)
        return 0;
    for (int d = 0; d < info->ndims; d++)
        count[d] = (hsize_t)info->dims[d];
    start[0] = (hsize_t)row0;
    count[0] = (hsize_t)n;
    /* The memory space has the selection's shape: HDF5 then copies whole
     * runs, 6x (whole set) to 13x (single rows) faster than into a flat
     * space of the same size. */
    fspace = H5Dget_space(a->id);
    mspace = H5Screate_simple(info->ndims, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count,
                            NULL) < 0 ||
        H5Dread(a->id, memtype, mspace, fspace, H5P_DEFAULT, buf) < 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': reading rows [%lld, %lld) "
                     "of '%s' failed: %s", ds->path, (long long)row0,
                     (long long)(row0 + n), a->name,
                     sf_h5_error_detail(detail, sizeof detail));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    return rc;
}

int sf_dataset_read_features(SfDataset *ds, int64_t row0, int64_t n,
                             void *buf, SfError *err)
{
    const SfArrayInfo *f = &ds->info.features;
    return read_rows(ds, &ds->features, f, sf_h5_native_type(f->dtype), row0,
                     n, buf, err);
}

int sf_dataset_read_class_labels(SfDataset *ds, int64_t row0, int64_t n,
                                 int32_t *out, SfError *err)
{
    const SfArrayInfo *l = &ds->info.labels;
    char shape[256];
    if (sf_dtype_is_float(l->dtype) || ds->info.label_width != 1) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': labels '%s' are %s %s; class "
                     "ids need an integer dataset of shape (N,) or (N, 1)",
                     ds->path, ds->labels.name, sf_dtype_name(l->dtype),
                     sf_array_shape_str(l, shape, sizeof shape));
        return -1;
    }
    if (check_rows(ds, &ds->labels, row0, n, err) < 0)
        return -1;
    int64_t *wide = malloc((size_t)(n ? n : 1) * sizeof *wide);
    if (!wide) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for %lld labels",
                     (long long)n);
        return -1;
    }
    int rc = read_rows(ds, &ds->labels, l, H5T_NATIVE_INT64, row0, n, wide,
                       err);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        if (wide[i] < INT32_MIN || wide[i] > INT32_MAX) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s': label %lld in row %lld of "
                         "'%s' does not fit a class id (int32)", ds->path,
                         (long long)wide[i], (long long)(row0 + i),
                         ds->labels.name);
            rc = -1;
            break;
        }
        out[i] = (int32_t)wide[i];
    }
    free(wide);
    return rc;
}

int sf_dataset_read_target_labels(SfDataset *ds, int64_t row0, int64_t n,
                                  float *out, SfError *err)
{
    return read_rows(ds, &ds->labels, &ds->info.labels, H5T_NATIVE_FLOAT, row0,
                     n, out, err);
}
