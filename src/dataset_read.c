/* dataset_read.c: reading rows of an open dataset (see dataset.h), checked
 * before by sf_dataset_open() in dataset.c.
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

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dataset_internal.h"
#include "h5guard.h"
#include "h5util.h"

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
