/* h5writer.c: writing whole arrays to HDF5, for `shardfit convert`.
 *
 * The reading side (dataset.c) wants rows it can slice cheaply, so this is
 * where the layout is decided: compressed data in chunks of whole rows, about
 * CHUNK_TARGET bytes each, so a batch of neighbouring rows inflates one or
 * two chunks; uncompressed data contiguous. Types are fixed little-endian,
 * whatever the host, so a file reads the same everywhere. */
#include "shardfit/dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"

#define CHUNK_TARGET ((size_t)1 << 20)
/* HDF5 refuses chunks of 4 GiB or more; rows bigger than this are split. */
#define CHUNK_LIMIT ((size_t)1 << 30)
#define DEFLATE_LEVEL 4

struct SfH5Writer {
    char *path;
    hid_t file;
};

/* Why a file cannot be created, in errno words when the directory is the
 * cause (HDF5's own message is long and technical). */
static void create_error(const char *path, SfError *err)
{
    char dir[1024], detail[256];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s",
                 slash == path ? 1 : (int)(slash - path), path);
    sf_h5_error_detail(detail, sizeof detail);
    if (access(dir, W_OK) != 0)
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot create: %s", path,
                     strerror(errno));
    else
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot create: %s", path,
                     detail);
}

SfH5Writer *sf_h5writer_open(const char *path, SfError *err)
{
    char detail[256];
    sf_h5_init();
    SfH5Writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        free(w);
        return NULL;
    }
    if (access(path, F_OK) != 0) {
        w->file = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
        if (w->file < 0)
            create_error(path, err);
    } else if (H5Fis_hdf5(path) <= 0) {
        w->file = -1;
        sf_error_set(err, SF_EXIT_INPUT, "'%s' exists and is not an HDF5 file",
                     path);
    } else {
        w->file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        if (w->file < 0)
            sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open for "
                         "writing: %s", path,
                         sf_h5_error_detail(detail, sizeof detail));
    }
    if (w->file < 0) {
        free(w->path);
        free(w);
        return NULL;
    }
    return w;
}

int sf_h5writer_check_free(SfH5Writer *w, const char *dataset, SfError *err)
{
    int exists = sf_h5_path_exists(w->file, dataset, NULL, 0);
    if (exists == 0)
        return 0;
    if (exists > 0)
        sf_error_set(err, SF_EXIT_INPUT, "'%s' already has '%s'; it is never "
                     "overwritten", w->path, dataset);
    else
        sf_error_set(err, SF_EXIT_INPUT, "dataset name '%.64s...' is too long",
                     dataset);
    return -1;
}

/* Creation properties: for compressed data, chunks of whole rows near
 * CHUNK_TARGET bytes (at least one row, at most all of them), shuffled and
 * deflated; otherwise a contiguous layout. Fill values are never written:
 * every element is written at once. */
static hid_t make_dcpl(SfDtype t, int ndims, const hsize_t *dims, int compress)
{
    hsize_t chunk[SF_MAX_DIMS];
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)
        goto fail;
    size_t row = sf_dtype_size(t);
    for (int d = 0; d < ndims; d++) {
        if (dims[d] == 0) /* nothing to chunk */
            return dcpl;
        chunk[d] = dims[d];
        if (d > 0)
            row *= dims[d];
    }
    if (!compress)
        return dcpl;
    chunk[0] = CHUNK_TARGET / row;
    chunk[0] = chunk[0] < 1 ? 1 : chunk[0] > dims[0] ? dims[0] : chunk[0];
    /* A row past HDF5's chunk limit: halve its largest dimension until the
     * chunk fits. */
    for (size_t bytes = row; bytes > CHUNK_LIMIT;) {
        int big = 1;
        for (int d = 2; d < ndims; d++)
            big = chunk[d] > chunk[big] ? d : big;
        bytes = bytes / chunk[big] * ((chunk[big] + 1) / 2);
        chunk[big] = (chunk[big] + 1) / 2;
    }
    if (H5Pset_chunk(dcpl, ndims, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
        H5Pset_deflate(dcpl, DEFLATE_LEVEL) < 0)
        goto fail;
    return dcpl;
fail:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return -1;
}

/* dims as hsize_t, after checking they are a shape whose bytes fit size_t. */
static int check_shape(const char *name, int ndims, const int64_t *dims,
                       SfDtype t, hsize_t *out, SfError *err)
{
    if (ndims < 1 || ndims > SF_MAX_DIMS) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': %d dimensions; need 1 to %d",
                     name, ndims, SF_MAX_DIMS);
        return -1;
    }
    size_t bytes = sf_dtype_size(t);
    for (int d = 0; d < ndims; d++) {
        if (dims[d] < 0 || (dims[d] && bytes > SIZE_MAX / (uint64_t)dims[d])) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s': dimension %d of %lld is "
                         "negative or too large", name, d, (long long)dims[d]);
            return -1;
        }
        bytes *= (size_t)dims[d];
        out[d] = (hsize_t)dims[d];
    }
    return 0;
}

int sf_h5writer_write(SfH5Writer *w, const char *dataset, SfDtype t,
                      int ndims, const int64_t *dims, const void *data,
                      int compress, SfError *err)
{
    hsize_t hdims[SF_MAX_DIMS];
    char detail[256];
    hid_t space = -1, lcpl = -1, dcpl = -1, dset = -1;
    int rc = -1;
    if (check_shape(dataset, ndims, dims, t, hdims, err) < 0 ||
        sf_h5writer_check_free(w, dataset, err) < 0)
        return -1;
    space = H5Screate_simple(ndims, hdims, NULL);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    dcpl = make_dcpl(t, ndims, hdims, compress);
    if (space < 0 || lcpl < 0 || dcpl < 0 ||
        H5Pset_create_intermediate_group(lcpl, 1) < 0)
        goto cleanup;
    dset = H5Dcreate2(w->file, dataset, sf_h5_file_type(t), space, lcpl, dcpl,
                      H5P_DEFAULT);
    if (dset < 0 || (H5Sget_simple_extent_npoints(space) > 0 &&
                     H5Dwrite(dset, sf_h5_native_type(t), H5S_ALL, H5S_ALL,
                              H5P_DEFAULT, data) < 0))
        goto cleanup;
    rc = 0;
cleanup:
    if (rc < 0) /* first: the next HDF5 call clears the error stack */
        sf_h5_error_detail(detail, sizeof detail);
    /* Closing writes the cached chunks, so it can fail too. */
    if (dset >= 0 && H5Dclose(dset) < 0 && rc == 0) {
        sf_h5_error_detail(detail, sizeof detail);
        rc = -1;
    }
    if (rc < 0 && dset >= 0) /* leave no half-written dataset behind */
        H5Ldelete(w->file, dataset, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (space >= 0)
        H5Sclose(space);
    if (rc < 0)
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': cannot write '%s': %s",
                     w->path, dataset, detail);
    return rc;
}

int sf_h5writer_close(SfH5Writer *w, SfError *err)
{
    char detail[256];
    int rc = 0;
    if (!w)
        return 0;
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': flush failed: %s", w->path,
                     sf_h5_error_detail(detail, sizeof detail));
        rc = -1;
    }
    if (H5Fclose(w->file) < 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': close failed: %s", w->path,
                     sf_h5_error_detail(detail, sizeof detail));
        rc = -1;
    }
    free(w->path);
    free(w);
    return rc;
}
