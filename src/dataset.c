/* dataset.c: training data out of HDF5 (see dataset.h).
 *
 * Everything about a dataset that can be wrong is checked once, in
 * sf_dataset_open(), so a read on the hot path is one selection with nothing
 * left to ask. The file is read-only and opened by each rank on its own.
 * HDF5 is not thread-safe here (MEASUREMENTS.md): every public function
 * holds sf_h5_lock(), so the stream loader's reader thread and the main
 * thread may both use datasets. Writing lives in h5writer.c, listing a
 * file's contents in dataset_visit.c.
 *
 * Reading a sorted set of rows (the stream loader, every step). Measured on
 * this machine, Fashion-MNIST train images (60000 x 784 uint8), 64 random
 * rows per read, sorted, file in page cache, microseconds per read:
 *
 *                                    per-row   union of    point    pread of
 *                                    H5Dread   hyperslabs  select.  the rows
 *   contiguous                          198        185      1238        34
 *   contiguous, 0-byte sieve buffer      77         74         -         -
 *   chunked 1337 rows, 1 MiB cache     2850       5100         -         -
 *   chunked 1337 rows, 64 MiB cache      94       2370         -         -
 *   gzip-4 1337-row chunks, 1 MiB     159000     152000         -         -
 *   gzip-4 1337-row chunks, 64 MiB      104       2330         -         -
 *   gzip-4 16-row chunks, 1 MiB        4190       6360         -         -
 *
 * A union of hyperslabs also grows quadratically with the rows: 1024 rows
 * take 5.0 ms against 1.2 ms row by row, 8192 rows 640 ms against 9.8 ms.
 * So: contiguous data stored in native byte order is read with one pread(2)
 * per run of consecutive rows at the dataset's file offset (H5Dget_offset
 * exists for this): 5.8x faster than HDF5, whose 64 KiB sieve buffer is
 * filled for every row (the file is opened with default properties). Any
 * other layout is read with one H5Dread per run of rows, in row order, so a
 * chunk is inflated at most once per read as long as the chunk cache holds
 * one band of chunks; the cache sized in chunk_cache_dapl() holds the whole
 * dataset up to 64 MiB, after which random rows from 1 MiB gzip chunks cost
 * a chunk inflation (about 4 ms) per row: store data for streaming
 * contiguous, or in small chunks.
 *
 * Rows not in the page cache cost a disk read each. pread(2) waits for one
 * before asking for the next: 64 random rows of a 600 MB file none of which
 * was cached took 4.1 ms (65 us a row), longer than a training step. So a
 * row list is read in two passes (read_direct): the first takes what the
 * page cache holds and starts the disk reads of the rest, the second waits
 * for them, which then overlap: 0.9 ms for the same rows, and the same 73 us
 * as plain pread(2) when every row is cached. preadv2(2) with RWF_NOWAIT is
 * Linux's, hence _GNU_SOURCE. */
#define _GNU_SOURCE /* preadv2, RWF_NOWAIT */
#include "shardfit/dataset.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "h5guard.h"
#include "h5util.h"
#include "simd.h"

/* A read of a chunked dataset keeps decompressed chunks in this cache, so
 * row-by-row reads do not inflate a chunk per row: the whole dataset when it
 * fits in CACHE_BUDGET, and at least two row bands of chunks (all a read of
 * up to one chunk's rows can touch), capped at CACHE_MAX. */
#define CACHE_BUDGET ((size_t)64 << 20)
#define CACHE_MAX ((size_t)1 << 30)

typedef struct {
    char *name;       /* "/train/images" */
    hid_t id;         /* the open HDF5 dataset */
    hid_t native;     /* the memory type of the stored type */
    size_t row_bytes; /* stored bytes per row */
    /* Where pread(2) finds row 0: the storage is contiguous, allocated, not
     * external, and in native byte order. -1 for anything else. */
    int64_t offset;
} Array;

struct SfDataset {
    char *path;
    hid_t file;
    int fd;           /* HDF5's own descriptor of the file, or -1 */
    int64_t size;     /* the file's size when opened */
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

/* One tight loop per type, so the compiler can vectorize each, at the
 * machine's vector width (simd.h). */
#define TO_FLOAT(T)                                                   \
    do {                                                              \
        const T *restrict s = src;                                    \
        for (size_t i = 0; i < count; i++)                            \
            out[i] = (float)s[i] * scale + offset;                    \
    } while (0)

SF_SIMD_CLONES
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

/* ---- reading ---------------------------------------------------------- */

/* The rows of one read: row0 + i, or list[i] (non-decreasing). */
typedef struct {
    const int64_t *list;
    int64_t row0, n;
} Rows;

static int64_t row_at(const Rows *r, int64_t i)
{
    return r->list ? r->list[i] : r->row0 + i;
}

/* The end of the run of consecutive rows that starts at i. */
static int64_t run_end(const Rows *r, int64_t i)
{
    if (!r->list)
        return r->n;
    int64_t j = i + 1;
    while (j < r->n && r->list[j] == r->list[j - 1] + 1)
        j++;
    return j;
}

/* Rows outside [0, rows), or a list out of order, are the caller's bug. */
static int check_rows(const SfDataset *ds, const Array *a, const Rows *r,
                      SfError *err)
{
    const int64_t rows = ds->info.rows;
    if (!r->list || r->n < 0) {
        if (r->row0 >= 0 && r->n >= 0 && r->row0 <= rows - r->n)
            return 0;
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': rows [%lld, %lld) of '%s' "
                     "are out of range: it has %lld rows", ds->path,
                     (long long)r->row0,
                     (long long)((uint64_t)r->row0 + (uint64_t)r->n), /* no UB */
                     a->name, (long long)rows);
        return -1;
    }
    for (int64_t i = 0; i < r->n; i++) {
        if (r->list[i] < 0 || r->list[i] >= rows) {
            sf_error_set(err, SF_EXIT_FAILURE, "'%s': row %lld of '%s' is out "
                         "of range: it has %lld rows", ds->path,
                         (long long)r->list[i], a->name, (long long)rows);
            return -1;
        }
        if (i > 0 && r->list[i] < r->list[i - 1]) {
            sf_error_set(err, SF_EXIT_FAILURE, "'%s': rows read from '%s' are "
                         "not sorted (%lld after %lld)", ds->path, a->name,
                         (long long)r->list[i], (long long)r->list[i - 1]);
            return -1;
        }
    }
    return 0;
}

/* The file is still the one we opened, whole: pread(2) from a truncated
 * file stops short, and HDF5 would fill the missing bytes with zeros. */
static int check_file(const SfDataset *ds, SfError *err)
{
    struct stat st;
    if (ds->fd < 0)
        return 0;
    if (fstat(ds->fd, &st) != 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': cannot read: %s", ds->path,
                     strerror(errno));
        return -1;
    }
    if (st.st_nlink == 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "'%s' was deleted or replaced "
                     "while it was being read", ds->path);
        return -1;
    }
    if ((int64_t)st.st_size < ds->size) {
        sf_error_set(err, SF_EXIT_FAILURE, "'%s' shrank from %lld to %lld "
                     "bytes while it was being read", ds->path,
                     (long long)ds->size, (long long)st.st_size);
        return -1;
    }
    return 0;
}

/* n bytes at pos, in full: 0, or -1 with errno (0 at end of file). */
static int pread_all(int fd, void *buf, size_t n, int64_t pos)
{
    for (size_t done = 0; done < n;) {
        ssize_t got = pread(fd, (char *)buf + done, n - done,
                            (off_t)(pos + (int64_t)done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        done += (size_t)got;
    }
    return 0;
}

/* n bytes at pos if the page cache holds them all, without waiting for the
 * disk: 1, else 0 (not cached, or any error: the waiting read that follows
 * reports it). A miss starts the disk read; on kernels whose RWF_NOWAIT
 * does not, POSIX_FADV_WILLNEED does. */
static int pread_cached(int fd, void *buf, size_t n, int64_t pos)
{
    struct iovec v = {buf, n};
    if (preadv2(fd, &v, 1, (off_t)pos, RWF_NOWAIT) == (ssize_t)n)
        return 1;
    posix_fadvise(fd, (off_t)pos, (off_t)n, POSIX_FADV_WILLNEED);
    return 0;
}

/* Reads r with pread(2) into buf, packed in the stored type; 0, or -1 with
 * *bad_row and *what saying why. A row list takes first what the page cache
 * holds, then waits for the rest from the first run it missed on (see the
 * top of this file). */
static int read_direct(const SfDataset *ds, const Array *a, const Rows *r,
                       void *buf, int64_t *bad_row, const char **what)
{
    int64_t missed = r->list ? r->n : 0; /* the first run not read yet */
    for (int64_t i = 0, j; i < r->n && r->list; i = j) {
        j = run_end(r, i);
        if (!pread_cached(ds->fd, (char *)buf + (size_t)i * a->row_bytes,
                          (size_t)(j - i) * a->row_bytes,
                          a->offset + row_at(r, i) * (int64_t)a->row_bytes) &&
            missed == r->n)
            missed = i;
    }
    for (int64_t i = missed, j; i < r->n; i = j) {
        j = run_end(r, i);
        char *dst = (char *)buf + (size_t)i * a->row_bytes;
        size_t n = (size_t)(j - i) * a->row_bytes;
        int64_t pos = a->offset + row_at(r, i) * (int64_t)a->row_bytes;
        if ((r->list && pread_cached(ds->fd, dst, n, pos)) ||
            pread_all(ds->fd, dst, n, pos) == 0)
            continue;
        *bad_row = row_at(r, i);
        *what = errno ? strerror(errno) : "the file ends before them";
        return -1;
    }
    return 0;
}

/* Reads r into buf, packed in the stored type, with one H5Dread per run of
 * rows; 0, or -1 with *bad_row and HDF5's reason in detail (taken at once:
 * the next HDF5 call clears it). */
static int read_hdf5(const Array *a, const SfArrayInfo *info, const Rows *r,
                     void *buf, int64_t *bad_row, char *detail, size_t size)
{
    hsize_t start[SF_MAX_DIMS] = {0}, count[SF_MAX_DIMS], mstart[SF_MAX_DIMS] = {0};
    hid_t fspace = -1, mspace = -1;
    int rc = -1;
    for (int d = 0; d < info->ndims; d++)
        count[d] = (hsize_t)info->dims[d];
    count[0] = (hsize_t)r->n;
    /* The memory space has the rows' shape: HDF5 then copies whole runs,
     * 6x (whole set) to 13x (single rows) faster than into a flat space of
     * the same size. */
    fspace = H5Dget_space(a->id);
    mspace = H5Screate_simple(info->ndims, count, NULL);
    *bad_row = row_at(r, 0);
    if (fspace < 0 || mspace < 0) {
        sf_h5_error_detail(detail, size);
        goto cleanup;
    }
    for (int64_t i = 0, j; i < r->n; i = j) {
        j = run_end(r, i);
        *bad_row = row_at(r, i);
        start[0] = (hsize_t)row_at(r, i);
        mstart[0] = (hsize_t)i;
        count[0] = (hsize_t)(j - i);
        if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count,
                                NULL) < 0 ||
            H5Sselect_hyperslab(mspace, H5S_SELECT_SET, mstart, NULL, count,
                                NULL) < 0 ||
            H5Dread(a->id, a->native, mspace, fspace, H5P_DEFAULT, buf) < 0) {
            sf_h5_error_detail(detail, size);
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    return rc;
}

/* The rows r of a, converted to memtype, packed in order into buf. Rows are
 * read in their stored type and converted once per call, by the conversion
 * H5Dread would use: converting inside each H5Dread of a row costs 7.7 us
 * per row (uint8 to int64 labels), against 1.6 us for the read alone. A
 * narrowing conversion (float64 to float32) needs room for the stored rows.
 * Caller holds the HDF5 lock. */
static int read_rows(const SfDataset *ds, const Array *a,
                     const SfArrayInfo *info, hid_t memtype, const Rows *r,
                     void *buf, SfError *err)
{
    char detail[256] = "";
    const char *what = detail;
    int64_t bad_row = 0;
    if (check_rows(ds, a, r, err) < 0)
        return -1;
    if (r->n == 0)
        return 0;
    if (check_file(ds, err) < 0)
        return -1;
    size_t stored = H5Tget_size(a->native), wanted = H5Tget_size(memtype);
    size_t elems = (size_t)r->n * (a->row_bytes / stored);
    int same = H5Tequal(memtype, a->native) > 0;
    void *raw = wanted >= stored ? buf : malloc(elems * stored);
    if (!raw) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory reading %lld rows",
                     (long long)r->n);
        return -1;
    }
    int rc = a->offset >= 0 ? read_direct(ds, a, r, raw, &bad_row, &what)
                            : read_hdf5(a, info, r, raw, &bad_row, detail,
                                        sizeof detail);
    if (rc == 0 && !same &&
        H5Tconvert(a->native, memtype, elems, raw, NULL, H5P_DEFAULT) < 0) {
        sf_h5_error_detail(detail, sizeof detail);
        bad_row = row_at(r, 0);
        rc = -1;
    }
    if (rc == 0 && raw != buf)
        memcpy(buf, raw, elems * wanted);
    if (raw != buf)
        free(raw);
    if (rc == 0)
        return 0;
    if (r->list)
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': reading row %lld of '%s' "
                     "failed: %s", ds->path, (long long)bad_row, a->name, what);
    else
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': reading rows [%lld, %lld) "
                     "of '%s' failed: %s", ds->path, (long long)r->row0,
                     (long long)(r->row0 + r->n), a->name, what);
    return -1;
}

static int read_features(SfDataset *ds, const Rows *r, void *buf, SfError *err)
{
    sf_h5_lock();
    int rc = read_rows(ds, &ds->features, &ds->info.features,
                       ds->features.native, r, buf, err);
    sf_h5_unlock();
    return rc;
}

/* A dataset opened without labels (predict) has none to read: a caller's
 * bug, not the file's. */
static int no_labels(const SfDataset *ds, SfError *err)
{
    if (ds->labels.id >= 0)
        return 0;
    sf_error_set(err, SF_EXIT_FAILURE, "'%s' was opened without labels",
                 ds->path);
    return -1;
}

/* Class ids are read as int64, so a value that does not fit int32 is
 * reported rather than clipped by HDF5's conversion. */
static int read_class_labels(SfDataset *ds, const Rows *r, int32_t *out,
                             SfError *err)
{
    const SfArrayInfo *l = &ds->info.labels;
    char shape[256];
    if (no_labels(ds, err))
        return -1;
    if (sf_dtype_is_float(l->dtype) || ds->info.label_width != 1) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': labels '%s' are %s %s; class "
                     "ids need an integer dataset of shape (N,) or (N, 1)",
                     ds->path, ds->labels.name, sf_dtype_name(l->dtype),
                     sf_array_shape_str(l, shape, sizeof shape));
        return -1;
    }
    int64_t *wide = malloc((size_t)(r->n > 0 ? r->n : 1) * sizeof *wide);
    if (!wide) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for %lld labels",
                     (long long)r->n);
        return -1;
    }
    sf_h5_lock();
    int rc = read_rows(ds, &ds->labels, l, H5T_NATIVE_INT64, r, wide, err);
    sf_h5_unlock();
    for (int64_t i = 0; rc == 0 && i < r->n; i++) {
        if (wide[i] < INT32_MIN || wide[i] > INT32_MAX) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s': label %lld in row %lld of "
                         "'%s' does not fit a class id (int32)", ds->path,
                         (long long)wide[i], (long long)row_at(r, i),
                         ds->labels.name);
            rc = -1;
            break;
        }
        out[i] = (int32_t)wide[i];
    }
    free(wide);
    return rc;
}

static int read_target_labels(SfDataset *ds, const Rows *r, float *out,
                              SfError *err)
{
    if (no_labels(ds, err))
        return -1;
    sf_h5_lock();
    int rc = read_rows(ds, &ds->labels, &ds->info.labels, H5T_NATIVE_FLOAT, r,
                       out, err);
    sf_h5_unlock();
    return rc;
}

int sf_dataset_read_features(SfDataset *ds, int64_t row0, int64_t n,
                             void *buf, SfError *err)
{
    return read_features(ds, &(Rows){NULL, row0, n}, buf, err);
}

int sf_dataset_read_class_labels(SfDataset *ds, int64_t row0, int64_t n,
                                 int32_t *out, SfError *err)
{
    return read_class_labels(ds, &(Rows){NULL, row0, n}, out, err);
}

int sf_dataset_read_target_labels(SfDataset *ds, int64_t row0, int64_t n,
                                  float *out, SfError *err)
{
    return read_target_labels(ds, &(Rows){NULL, row0, n}, out, err);
}

int sf_dataset_read_feature_rows(SfDataset *ds, const int64_t *rows, int64_t n,
                                 void *buf, SfError *err)
{
    return read_features(ds, &(Rows){rows, 0, n}, buf, err);
}

int sf_dataset_read_class_label_rows(SfDataset *ds, const int64_t *rows,
                                     int64_t n, int32_t *out, SfError *err)
{
    return read_class_labels(ds, &(Rows){rows, 0, n}, out, err);
}

int sf_dataset_read_target_label_rows(SfDataset *ds, const int64_t *rows,
                                      int64_t n, float *out, SfError *err)
{
    return read_target_labels(ds, &(Rows){rows, 0, n}, out, err);
}

void sf_dataset_library_version(char *buf, size_t n)
{
    unsigned major = 0, minor = 0, release = 0;
    H5get_libversion(&major, &minor, &release);
    snprintf(buf, n, "HDF5 %u.%u.%u", major, minor, release);
}
