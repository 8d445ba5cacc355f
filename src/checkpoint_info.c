/* checkpoint_info.c: what a checkpoint says about itself (checkpoint.h):
 * format and version, the root attributes of SfCheckpointInfo, /history.
 *
 * No model is needed to read these, so eval, predict and inspect start
 * here to learn which model to build; the full reader (checkpoint_read.c)
 * uses the same functions. Attributes are read whatever integer type or
 * string kind another tool stored them with: h5py writes variable-length
 * strings, numpy bytes are fixed-length. Messages do not name the file;
 * the public functions put "'PATH': " before them. */
#include "shardfit/checkpoint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_internal.h"
#include "h5guard.h"

void sf_checkpoint_info_free(SfCheckpointInfo *info)
{
    if (!info)
        return;
    free(info->config);
    free(info->layers);
    free(info->history);
    info->config = info->layers = NULL;
    info->history = NULL;
    info->nhistory = 0;
}

/* ---- opening ------------------------------------------------------------ */

int sf_ckpt_exists(hid_t file, const char *path)
{
    return sf_h5_path_exists(file, path, NULL, 0) == 1;
}

/* Like sf_h5_open_read, but the messages leave the path to the caller. */
hid_t sf_ckpt_open(const char *path, SfError *err)
{
    char detail[256];
    if (access(path, R_OK) != 0) {
        sf_error_set(err, SF_EXIT_INPUT, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (H5Fis_hdf5(path) == 0) {
        sf_error_set(err, SF_EXIT_INPUT, "not an HDF5 file");
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        sf_error_set(err, SF_EXIT_INPUT, "cannot open as HDF5: %s",
                     sf_h5_error_detail(detail, sizeof detail));
    return file;
}

/* ---- attributes --------------------------------------------------------- */

/* The attribute name of loc, holding one value (a scalar, or h5py's shape
 * (1,)); where ("", "/optimizer ") starts the messages. */
static hid_t open_attr(hid_t loc, const char *where, const char *name,
                       SfError *err)
{
    if (H5Aexists(loc, name) <= 0) {
        sf_error_set(err, SF_EXIT_INPUT, "%sattribute '%s' is missing", where,
                     name);
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0)
        H5Sclose(space);
    if (n != 1) {
        sf_error_set(err, SF_EXIT_INPUT, "%sattribute '%s' %s", where, name,
                     n < 0 ? "cannot be read" : "does not hold one value");
        if (a >= 0)
            H5Aclose(a);
        return -1;
    }
    return a;
}

/* An integer attribute as int64 or uint64 (t SF_CKPT_I64, SF_CKPT_U64), or
 * an integer or float one as double (SF_CKPT_F64). */
int sf_ckpt_get_number(hid_t loc, const char *where, const char *name,
                       SfCkptType t, void *out, SfError *err)
{
    char detail[256];
    hid_t a = open_attr(loc, where, name, err), type = -1;
    int rc = -1;
    if (a < 0)
        return -1;
    type = H5Aget_type(a);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    if (cls != H5T_INTEGER && !(cls == H5T_FLOAT && t == SF_CKPT_F64)) {
        sf_error_set(err, SF_EXIT_INPUT, "%sattribute '%s' is not %s", where,
                     name, t == SF_CKPT_F64 ? "a number" : "an integer");
        goto cleanup;
    }
    hid_t mem = t == SF_CKPT_I64 ? H5T_NATIVE_INT64
              : t == SF_CKPT_U64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_DOUBLE;
    if (H5Aread(a, mem, out) < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "%sattribute '%s': cannot read: %s",
                     where, name, sf_h5_error_detail(detail, sizeof detail));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (type >= 0)
        H5Tclose(type);
    H5Aclose(a);
    return rc;
}

/* A string attribute, fixed-length or variable-length (h5py's str), into a
 * malloc'd *out. */
static int get_string(hid_t loc, const char *name, char **out, SfError *err)
{
    char detail[256], *s = NULL, *v = NULL;
    hid_t a = open_attr(loc, "", name, err), type = -1, mem = -1;
    int rc = -1;
    if (a < 0)
        return -1;
    type = H5Aget_type(a);
    if (type < 0 || H5Tget_class(type) != H5T_STRING) {
        sf_error_set(err, SF_EXIT_INPUT, "attribute '%s' is not a string",
                     name);
        goto cleanup;
    }
    /* Fixed-length: read with one byte more, null-terminated, and HDF5
     * drops the padding. Same character set as stored: HDF5 will not
     * convert between them. */
    int var = H5Tis_variable_str(type) > 0;
    size_t size = var ? 0 : H5Tget_size(type);
    /* size comes from the file, but HDF5 has already allocated and copied
     * that many bytes when it decoded the attribute (H5O_attr_decode), so
     * this copy adds no new risk; a file that makes that decode misbehave
     * is caught by the guard's child (h5guard.h). */
    if (!var && !(s = malloc(size + 1))) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        goto cleanup;
    }
    mem = H5Tcopy(H5T_C_S1);
    if (mem < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 ||
        H5Tset_size(mem, var ? H5T_VARIABLE : size + 1) < 0 ||
        (!var && H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0) ||
        H5Aread(a, mem, var ? (void *)&v : (void *)s) < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "attribute '%s': cannot read: %s",
                     name, sf_h5_error_detail(detail, sizeof detail));
        goto cleanup;
    }
    if (var) {
        s = strdup(v ? v : "");
        H5free_memory(v);
        if (!s) {
            sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
            goto cleanup;
        }
    }
    *out = s;
    s = NULL;
    rc = 0;
cleanup:
    free(s);
    if (mem >= 0)
        H5Tclose(mem);
    if (type >= 0)
        H5Tclose(type);
    H5Aclose(a);
    return rc;
}

/* format and version: is this a checkpoint this shardfit can read? */
int sf_ckpt_check_format(hid_t file, SfError *err)
{
    char *format = NULL;
    int64_t version = 0;
    int rc = -1;
    if (H5Aexists(file, "format") <= 0) {
        sf_error_set(err, SF_EXIT_INPUT, "not a shardfit checkpoint (no "
                     "'format' attribute)");
        return -1;
    }
    if (get_string(file, "format", &format, err) < 0)
        return -1;
    if (strcmp(format, SF_CHECKPOINT_FORMAT) != 0)
        sf_error_set(err, SF_EXIT_INPUT, "not a shardfit checkpoint (format "
                     "'%.100s', expected '%s')", format, SF_CHECKPOINT_FORMAT);
    else if (sf_ckpt_get_number(file, "", "version", SF_CKPT_I64, &version,
                                err) < 0)
        ;
    else if (version > SF_CHECKPOINT_VERSION)
        sf_error_set(err, SF_EXIT_INPUT, "checkpoint version %lld was written "
                     "by a newer shardfit; this one reads version %d and older",
                     (long long)version, SF_CHECKPOINT_VERSION);
    else if (version < 1)
        sf_error_set(err, SF_EXIT_INPUT, "unknown checkpoint version %lld",
                     (long long)version);
    else
        rc = 0;
    free(format);
    return rc;
}

/* The root attributes of SfCheckpointInfo; with optional, those the file
 * lacks stay 0 or NULL (a params-only file has none). */
int sf_ckpt_read_info(hid_t file, int optional, SfCheckpointInfo *info,
                      SfError *err)
{
    for (int i = 0; i < sf_ckpt_ninfo_fields; i++) {
        const SfCkptField *f = &sf_ckpt_info_fields[i];
        void *p = (char *)info + f->offset;
        if (optional && H5Aexists(file, f->name) == 0)
            continue;
        int rc = f->type == SF_CKPT_STR
            ? get_string(file, f->name, p, err)
            : sf_ckpt_get_number(file, "", f->name, f->type, p, err);
        if (rc < 0)
            return -1;
    }
    return 0;
}


/* ---- /history ----------------------------------------------------------- */

/* /history: one float64 (E,) dataset per SfEpochMetrics field, all the
 * same length. A file without /history has none. */
int sf_ckpt_read_history(hid_t file, SfCheckpointInfo *info, SfError *err)
{
    char path[128], shape[128], detail[256];
    double *v = NULL;
    int rc = -1;
    if (!sf_ckpt_exists(file, "/history"))
        return 0;
    for (int i = 0; i < sf_ckpt_nhistory_fields; i++) {
        const SfCkptField *f = &sf_ckpt_history_fields[i];
        SfArrayInfo a;
        const char *cls;
        snprintf(path, sizeof path, "/history/%s", f->name);
        hid_t d = sf_ckpt_exists(file, path)
                  ? H5Dopen2(file, path, H5P_DEFAULT) : -1;
        if (d < 0) {
            sf_error_set(err, SF_EXIT_INPUT, "no dataset '%s'", path);
            goto cleanup;
        }
        SfH5Probe p = sf_h5_probe(d, &a, &cls);
        if (p != SF_H5_PROBE_OK || a.ndims != 1 ||
            (i > 0 && a.dims[0] != info->nhistory)) {
            if (p == SF_H5_PROBE_OK)
                sf_error_set(err, SF_EXIT_INPUT, "'%s' has shape %s; need "
                             "(%lld,) like /history/%s", path,
                             sf_array_shape_str(&a, shape, sizeof shape),
                             (long long)info->nhistory,
                             sf_ckpt_history_fields[0].name);
            else
                sf_error_set(err, SF_EXIT_INPUT, "'%s' is not a numeric "
                             "array", path);
            H5Dclose(d);
            goto cleanup;
        }
        /* Untrusted size: a history holds one entry per completed epoch,
         * so it is bounded by the epoch attribute (read before this) and by
         * a sanity cap, before anything is allocated from it. */
        if (i == 0 && (a.dims[0] > info->epoch || a.dims[0] > (1 << 24))) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s' declares %lld epochs of "
                         "history, but the checkpoint has %lld completed epochs",
                         path, (long long)a.dims[0], (long long)info->epoch);
            H5Dclose(d);
            goto cleanup;
        }
        if (i == 0) {
            size_t n = (size_t)a.dims[0] ? (size_t)a.dims[0] : 1;
            info->nhistory = a.dims[0];
            info->history = calloc(n, sizeof *info->history);
            v = malloc(n * sizeof *v);
            if (!info->history || !v) {
                sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
                H5Dclose(d);
                goto cleanup;
            }
        }
        if (a.dims[0] > 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                                     H5P_DEFAULT, v) < 0) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot read: %s", path,
                         sf_h5_error_detail(detail, sizeof detail));
            H5Dclose(d);
            goto cleanup;
        }
        H5Dclose(d);
        for (int64_t e = 0; e < info->nhistory; e++)
            sf_ckpt_history_set(&info->history[e], f, v[e]);
    }
    rc = 0;
cleanup:
    free(v);
    return rc;
}

/* The dataset at path against the model's shape want; with dst, read
 * there. Messages: where + "layer 02_dense: checkpoint " + what + shapes. */

/* The reads of sf_checkpoint_read_info; in the guard's child, info is
 * thrown away. */
static int read_info_here(const char *path, SfCheckpointInfo *info,
                          SfError *err)
{
    sf_h5_init();
    sf_h5_lock();
    hid_t file = sf_ckpt_open(path, err);
    int rc = file < 0 || sf_ckpt_check_format(file, err) < 0 ||
             sf_ckpt_read_info(file, 1, info, err) < 0 ||
             sf_ckpt_read_history(file, info, err) < 0 ? -1 : 0;
    if (file >= 0) {
        info->has_best = sf_ckpt_exists(file, "/best");
        H5Fclose(file);
    }
    sf_h5_unlock();
    return rc;
}

static int read_info_in_child(void *arg, SfError *err)
{
    SfCheckpointInfo got;
    memset(&got, 0, sizeof got);
    int rc = read_info_here(arg, &got, err);
    sf_checkpoint_info_free(&got);
    return rc;
}

int sf_checkpoint_read_info(const char *path, SfCheckpointInfo *info,
                            SfError *err)
{
    SfCheckpointInfo got;
    memset(&got, 0, sizeof got);
    int rc = sf_h5_guard(path, read_info_in_child, (void *)path, err) < 0 ||
             read_info_here(path, &got, err) < 0 ? -1 : 0;
    if (rc < 0) {
        sf_error_prefix(err, "'%s': ", path);
        sf_checkpoint_info_free(&got);
    } else {
        *info = got;
    }
    return rc;
}
