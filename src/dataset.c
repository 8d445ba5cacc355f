/* dataset.c: training data out of HDF5 (see dataset.h).
 *
 * Everything about a dataset that can be wrong is checked once, in
 * sf_dataset_open(), so a read on the hot path is one selection with nothing
 * left to ask. The file is read-only and opened by each rank on its own.
 * HDF5 is not thread-safe here (MEASUREMENTS.md): every public function
 * holds sf_h5_lock(), so the stream loader's reader thread and the main
 * thread may both use datasets. Writing lives in h5writer.c, listing a
 * file's contents in dataset_visit.c.
 * Reading rows lives in dataset_read.c, dtypes in dtype.c. */
#include "shardfit/dataset.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset_internal.h"
#include "h5guard.h"
#include "h5util.h"

/* A read of a chunked dataset keeps decompressed chunks in this cache, so
 * row-by-row reads do not inflate a chunk per row: the whole dataset when it
 * fits in CACHE_BUDGET, and at least two row bands of chunks (all a read of
 * up to one chunk's rows can touch), capped at CACHE_MAX. */
#define CACHE_BUDGET ((size_t)64 << 20)
#define CACHE_MAX ((size_t)1 << 30)

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
    /* The scaleoffset and nbit filters record how many values a chunk
     * holds (cd_values[2]); HDF5 1.10.8 trusts that over the chunk's shape
     * and reads past the end of its chunk buffer when they differ (found by
     * fuzz/fuzz_dataset.c: fuzz/regressions/dataset/). */
    hid_t dcpl = H5Dget_create_plist(dset);
    hsize_t cdims[SF_MAX_DIMS];
    int nf = dcpl < 0 ? 0 : H5Pget_nfilters(dcpl);
    uint64_t chunk = 1;
    if (nf > 0 && H5Pget_chunk(dcpl, info->ndims, cdims) == info->ndims)
        for (int d = 0; d < info->ndims; d++)
            chunk *= cdims[d];
    for (int i = 0; i < nf; i++) {
        unsigned flags, cd[3] = {0};
        size_t ncd = 3;
        H5Z_filter_t f = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0,
                                        NULL, NULL);
        if ((f == H5Z_FILTER_SCALEOFFSET || f == H5Z_FILTER_NBIT) &&
            (ncd < 3 || cd[2] != chunk)) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s' dataset '%s' is damaged: "
                         "its %s filter expects chunks of %u values, its "
                         "chunks hold %llu", path, name,
                         f == H5Z_FILTER_NBIT ? "nbit" : "scaleoffset",
                         ncd < 3 ? 0 : cd[2], (unsigned long long)chunk);
            H5Pclose(dcpl);
            return -1;
        }
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
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

static int64_t row_elems(const SfArrayInfo *info)
{
    int64_t n = 1;
    for (int d = 1; d < info->ndims; d++)
        n *= info->dims[d];
    return n;
}

/* The file offset of the open dataset id's first row when pread(2) reads its
 * rows exactly as H5Dread would, else -1 (see Array.offset). */
static int64_t direct_offset(hid_t id, hid_t native)
{
    int64_t offset = -1;
    hid_t dcpl = H5Dget_create_plist(id), type = H5Dget_type(id);
    if (dcpl >= 0 && type >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
        H5Pget_external_count(dcpl) == 0 && H5Tequal(type, native) > 0) {
        haddr_t addr = H5Dget_offset(id); /* from the file's first byte */
        if (addr != HADDR_UNDEF && addr <= (haddr_t)INT64_MAX)
            offset = (int64_t)addr;
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (type >= 0)
        H5Tclose(type);
    return offset;
}

/* Opens and describes one dataset; errors name the file and dataset. */
static int open_array(hid_t file, const char *path, const char *name,
                      Array *a, SfArrayInfo *info, SfError *err)
{
    char detail[512];
    hid_t obj = -1, dapl = -1;
    a->id = -1;
    a->offset = -1;
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
    if (a->id < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open '%s': %s", path,
                     name, sf_h5_error_detail(detail, sizeof detail));
        goto cleanup;
    }
    a->native = sf_h5_native_type(info->dtype);
    a->row_bytes = (size_t)row_elems(info) * sf_dtype_size(info->dtype);
    a->offset = direct_offset(a->id, a->native);
cleanup:
    if (dapl > 0)
        H5Pclose(dapl);
    if (obj >= 0)
        H5Oclose(obj);
    return a->id >= 0 ? 0 : -1;
}

/* HDF5's descriptor of the file (the default sec2 driver has one) and the
 * file's size, so reads can pread(2) and notice a file that vanished or
 * shrank. Without them, reads go through HDF5 only. */
static void find_fd(SfDataset *ds)
{
    void *handle = NULL;
    struct stat st;
    hid_t fapl = H5Fget_access_plist(ds->file);
    ds->fd = -1;
    if (fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2 &&
        H5Fget_vfd_handle(ds->file, fapl, &handle) >= 0 && handle &&
        fstat(*(int *)handle, &st) == 0) {
        ds->fd = *(int *)handle;
        ds->size = (int64_t)st.st_size;
    }
    if (fapl >= 0)
        H5Pclose(fapl);
    /* A damaged file may place the rows beyond its end: let HDF5 say so. */
    Array *arrays[2] = {&ds->features, &ds->labels};
    for (int k = 0; k < 2; k++) {
        Array *a = arrays[k];
        if (a->id < 0)
            continue;
        if (ds->fd < 0 || a->offset > ds->size ||
            (uint64_t)ds->info.rows * a->row_bytes >
                (uint64_t)(ds->size - a->offset))
            a->offset = -1;
    }
}

static SfDataset *open_locked(const char *path, const char *features,
                              const char *labels, SfError *err)
{
    SfDataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->path = strdup(path))) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        free(ds);
        return NULL;
    }
    ds->features.id = ds->labels.id = -1;
    ds->fd = -1;
    SfDatasetInfo *info = &ds->info;
    ds->file = sf_h5_open_read(path, err);
    if (ds->file < 0 ||
        open_array(ds->file, path, features, &ds->features, &info->features,
                   err) < 0 ||
        (labels && open_array(ds->file, path, labels, &ds->labels,
                              &info->labels, err) < 0))
        goto fail;
    if (labels && info->features.dims[0] != info->labels.dims[0]) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': features '%s' have %lld rows "
                     "but labels '%s' have %lld", path, features,
                     (long long)info->features.dims[0], labels,
                     (long long)info->labels.dims[0]);
        goto fail;
    }
    info->rows = info->features.dims[0];
    info->feature_size = row_elems(&info->features);
    info->label_width = labels ? row_elems(&info->labels) : 0;
    if (info->feature_size == 0 || (labels && info->label_width == 0)) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': '%s' has empty rows", path,
                     info->feature_size ? labels : features);
        goto fail;
    }
    find_fd(ds);
    return ds;
fail:
    sf_dataset_close(ds);
    return NULL;
}

typedef struct {
    const char *path, *features, *labels;
} OpenArgs;

static SfDataset *open_here(const char *path, const char *features,
                            const char *labels, SfError *err);

/* The guard's child: the open, then the first and last row of each
 * dataset, which takes HDF5 through the layout, filters and chunk index.
 * A read that fails is not the child's to report: the run meets it when
 * it reads that row, as it would have anyway. */
static int open_in_child(void *arg, SfError *err)
{
    const OpenArgs *a = arg;
    SfDataset *ds = open_here(a->path, a->features, a->labels, err);
    if (!ds)
        return -1;
    const SfDatasetInfo *info = &ds->info;
    size_t frow = (size_t)info->feature_size *
                  sf_dtype_size(info->features.dtype);
    void *row = malloc(frow);
    float *y = malloc((size_t)(info->label_width + 1) * sizeof *y);
    for (int k = 0; k < 2 && row && y; k++) {
        SfError ignored = {0};
        int64_t at = k ? info->rows - 1 : 0;
        sf_dataset_read_features(ds, at, 1, row, &ignored);
        if (a->labels)
            sf_dataset_read_target_labels(ds, at, 1, y, &ignored);
    }
    free(row);
    free(y);
    sf_dataset_close(ds);
    return 0;
}

static SfDataset *open_here(const char *path, const char *features,
                            const char *labels, SfError *err)
{
    sf_h5_lock();
    SfDataset *ds = open_locked(path, features, labels, err);
    sf_h5_unlock();
    return ds;
}

SfDataset *sf_dataset_open(const char *path, const char *features,
                           const char *labels, SfError *err)
{
    OpenArgs a = {path, features, labels};
    int rc = sf_h5_guard(path, open_in_child, &a, err);
    if (rc == SF_H5_GUARD_FAILED) /* the guard's own message lacks the path */
        sf_error_prefix(err, "'%s': ", path);
    if (rc < 0)
        return NULL;
    return open_here(path, features, labels, err);
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
    sf_h5_lock();
    close_array(&ds->features);
    close_array(&ds->labels);
    if (ds->file >= 0)
        H5Fclose(ds->file);
    sf_h5_unlock();
    free(ds->path);
    free(ds);
}

const SfDatasetInfo *sf_dataset_info(const SfDataset *ds)
{
    return &ds->info;
}

void sf_dataset_library_version(char *buf, size_t n)
{
    unsigned major = 0, minor = 0, release = 0;
    H5get_libversion(&major, &minor, &release);
    snprintf(buf, n, "HDF5 %u.%u.%u", major, minor, release);
}
