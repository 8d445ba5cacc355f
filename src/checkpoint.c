/* checkpoint.c: writing a checkpoint (checkpoint.h), and the layout that
 * reading (checkpoint_read.c) and the directory (checkpoint_dir.c) share.
 *
 * A checkpoint is written whole to dir/.NAME.tmp.PID, flushed, closed,
 * fsynced, and renamed onto dir/NAME; then the directory is fsynced so the
 * rename itself survives a crash. As in Redis's rdbSave: the rename is the
 * only moment the old file turns into the new one, so a crash or a full disk
 * leaves one or the other, never half of one. */
#include "shardfit/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_internal.h"
#include "h5util.h"

/* ---- the layout --------------------------------------------------------- */

const char *const sf_ckpt_states[SF_CKPT_NSTATES] = {"momentum", "m", "v"};

#define INFO(name, type) {#name, offsetof(SfCheckpointInfo, name), type}
const SfCkptField sf_ckpt_info_fields[] = {
    INFO(epoch, SF_CKPT_I64),          INFO(step, SF_CKPT_I64),
    INFO(step_in_epoch, SF_CKPT_I64),  INFO(seed, SF_CKPT_U64),
    INFO(world_size, SF_CKPT_I64),     INFO(config, SF_CKPT_STR),
    INFO(layers, SF_CKPT_STR),         INFO(sum_loss, SF_CKPT_F64),
    INFO(sum_correct, SF_CKPT_F64),    INFO(sum_count, SF_CKPT_F64),
    INFO(stop_best, SF_CKPT_F64),      INFO(stop_best_epoch, SF_CKPT_I64),
    INFO(stop_wait, SF_CKPT_I64),
};
const int sf_ckpt_ninfo_fields =
    (int)(sizeof sf_ckpt_info_fields / sizeof sf_ckpt_info_fields[0]);

#define METRIC(name, type) {#name, offsetof(SfEpochMetrics, name), type}
const SfCkptField sf_ckpt_history_fields[] = {
    METRIC(epoch, SF_CKPT_I64),           METRIC(step, SF_CKPT_I64),
    METRIC(steps_in_epoch, SF_CKPT_I64),  METRIC(samples, SF_CKPT_I64),
    METRIC(lr, SF_CKPT_F64),              METRIC(loss, SF_CKPT_F64),
    METRIC(accuracy, SF_CKPT_F64),        METRIC(has_accuracy, SF_CKPT_INT),
    METRIC(has_val, SF_CKPT_INT),         METRIC(val_loss, SF_CKPT_F64),
    METRIC(val_accuracy, SF_CKPT_F64),    METRIC(seconds, SF_CKPT_F64),
    METRIC(samples_per_sec, SF_CKPT_F64), METRIC(world_size, SF_CKPT_INT),
    METRIC(compute_seconds, SF_CKPT_F64), METRIC(allreduce_seconds, SF_CKPT_F64),
    METRIC(data_seconds, SF_CKPT_F64),    METRIC(eval_seconds, SF_CKPT_F64),
};
const int sf_ckpt_nhistory_fields =
    (int)(sizeof sf_ckpt_history_fields / sizeof sf_ckpt_history_fields[0]);

double sf_ckpt_history_get(const SfEpochMetrics *e, const SfCkptField *f)
{
    const char *p = (const char *)e + f->offset;
    switch (f->type) {
    case SF_CKPT_I64: return (double)*(const int64_t *)p;
    case SF_CKPT_INT: return (double)*(const int *)p;
    default:          return *(const double *)p;
    }
}

void sf_ckpt_history_set(SfEpochMetrics *e, const SfCkptField *f, double v)
{
    char *p = (char *)e + f->offset;
    /* A file written elsewhere may hold anything: no undefined casts. */
    double limit = f->type == SF_CKPT_INT ? 2147483647.0 : 9.2e18;
    if (f->type != SF_CKPT_F64 && !(fabs(v) <= limit))
        v = 0;
    switch (f->type) {
    case SF_CKPT_I64: *(int64_t *)p = (int64_t)v; break;
    case SF_CKPT_INT: *(int *)p = (int)v; break;
    default:          *(double *)p = v; break;
    }
}

int sf_ckpt_has_params(const SfLayer *l)
{
    return l->nparts > 0;
}

void sf_ckpt_layer_name(const SfLayer *l, char *buf, size_t n)
{
    snprintf(buf, n, "%02d_%s", l->index, l->ops->kind);
}

void sf_ckpt_part_shape(const SfLayer *l, int part, SfArrayInfo *out)
{
    const SfLayerPart *p = &l->parts[part];
    memset(out, 0, sizeof *out);
    out->dtype = p->integer ? SF_DTYPE_I64 : SF_DTYPE_F32;
    out->ndims = p->ndims;
    for (int d = 0; d < p->ndims; d++)
        out->dims[d] = p->dims[d];
}

int64_t sf_ckpt_part_offset(const SfModel *m, const SfLayer *l, int part)
{
    /* sf_model_params() has no const form; only the address is used. */
    const float *base = sf_model_params((SfModel *)m);
    return l->data[part] - base;
}

void sf_checkpoint_epoch_name(int64_t epoch, char *buf, size_t n)
{
    snprintf(buf, n, "epoch-%04lld.h5", (long long)epoch);
}

void sf_checkpoint_step_name(int64_t step, char *buf, size_t n)
{
    snprintf(buf, n, "step-%08lld.h5", (long long)step);
}

/* ---- writing the HDF5 file ---------------------------------------------- */

typedef struct {
    hid_t file;
    char detail[256]; /* why the first failing HDF5 call failed */
} Writer;

/* Records why the HDF5 call just made failed (only the first reason is
 * kept). Call it before any other HDF5 call. Returns -1. */
static int failed(Writer *w)
{
    if (!w->detail[0] && !sf_h5_error_detail(w->detail, sizeof w->detail)[0])
        snprintf(w->detail, sizeof w->detail, "HDF5 error");
    return -1;
}

static int put_attr(Writer *w, hid_t loc, const char *name, hid_t ftype,
                    hid_t mtype, const void *value)
{
    int rc = -1;
    hid_t space = H5Screate(H5S_SCALAR), a = -1;
    if (space < 0 ||
        (a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, mtype, value) < 0) {
        failed(w);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (a >= 0 && H5Aclose(a) < 0 && rc == 0)
        rc = failed(w);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* A variable-length UTF-8 string, as h5py writes str. */
static int put_string(Writer *w, hid_t loc, const char *name, const char *s)
{
    const char *value = s ? s : "";
    int rc = -1;
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
        H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        failed(w);
    else
        rc = put_attr(w, loc, name, type, type, &value);
    if (type >= 0)
        H5Tclose(type);
    return rc;
}

static int put_i64(Writer *w, hid_t loc, const char *name, int64_t v)
{
    return put_attr(w, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

/* format, version and the fields of info, on the root group. */
static int put_info(Writer *w, const SfCheckpointInfo *info)
{
    if (put_string(w, w->file, "format", SF_CHECKPOINT_FORMAT) < 0 ||
        put_i64(w, w->file, "version", SF_CHECKPOINT_VERSION) < 0)
        return -1;
    for (int i = 0; i < sf_ckpt_ninfo_fields; i++) {
        const SfCkptField *f = &sf_ckpt_info_fields[i];
        const void *p = (const char *)info + f->offset;
        int rc = f->type == SF_CKPT_STR
            ? put_string(w, w->file, f->name, *(char *const *)p)
            : f->type == SF_CKPT_U64
            ? put_attr(w, w->file, f->name, H5T_STD_U64LE, H5T_NATIVE_UINT64, p)
            : f->type == SF_CKPT_F64
            ? put_attr(w, w->file, f->name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, p)
            : put_attr(w, w->file, f->name, H5T_STD_I64LE, H5T_NATIVE_INT64, p);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* One dataset of the given shape at path (missing groups are created). */
static int put_array(Writer *w, const char *path, hid_t ftype, hid_t mtype,
                     const SfArrayInfo *shape, const void *data)
{
    hsize_t dims[SF_MAX_DIMS], count = 1;
    int rc = -1;
    for (int d = 0; d < shape->ndims; d++)
        count *= dims[d] = (hsize_t)shape->dims[d];
    hid_t space = shape->ndims ? H5Screate_simple(shape->ndims, dims, NULL)
                               : H5Screate(H5S_SCALAR), dset = -1;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (space < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
        (dset = H5Dcreate2(w->file, path, ftype, space, lcpl, H5P_DEFAULT,
                           H5P_DEFAULT)) < 0 ||
        (count > 0 && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                               data) < 0)) {
        failed(w);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (dset >= 0 && H5Dclose(dset) < 0 && rc == 0)
        rc = failed(w);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* The per-layer views of block (parallel to the state block): for /params
 * and /best, group/LL_kind/PART for every part (weight, bias, running_mean,
 * ...); for an optimizer state, group/LL_kind/PART/STATE for the trained
 * parts. Integer parts are stored as int64, the rest as float32. */
static int put_layers(Writer *w, const SfModel *m, const char *group,
                      const char *state, const float *block)
{
    char name[64], path[256];
    for (int i = 0; i < sf_model_nlayers(m); i++) {
        const SfLayer *l = sf_model_layer(m, i);
        if (!sf_ckpt_has_params(l))
            continue;
        sf_ckpt_layer_name(l, name, sizeof name);
        for (int part = 0; part < l->nparts; part++) {
            if (state && l->parts[part].stat)
                continue;
            SfArrayInfo shape;
            sf_ckpt_part_shape(l, part, &shape);
            snprintf(path, sizeof path, "%s/%s/%s%s%s", group, name,
                     l->parts[part].name, state ? "/" : "", state ? state : "");
            hid_t ftype = shape.dtype == SF_DTYPE_I64 ? H5T_STD_I64LE : H5T_IEEE_F32LE;
            if (put_array(w, path, ftype, H5T_NATIVE_FLOAT, &shape,
                          block + sf_ckpt_part_offset(m, l, part)) < 0)
                return -1;
        }
    }
    return 0;
}

/* /optimizer with attribute t, and every state block o keeps. */
static int put_optim(Writer *w, const SfModel *m, SfOptim *o)
{
    hid_t g = H5Gcreate2(w->file, "/optimizer", H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    if (g < 0)
        return failed(w);
    int rc = put_i64(w, g, "t", sf_optim_steps(o));
    if (H5Gclose(g) < 0 && rc == 0)
        rc = failed(w);
    for (int k = 0; k < SF_CKPT_NSTATES && rc == 0; k++) {
        const float *block = sf_optim_state(o, sf_ckpt_states[k]);
        if (block)
            rc = put_layers(w, m, "/optimizer", sf_ckpt_states[k], block);
    }
    return rc;
}

/* /history/FIELD, float64 (E,) for every field of SfEpochMetrics. */
static int put_history(Writer *w, const SfCheckpointInfo *info)
{
    int64_t n = info->nhistory > 0 ? info->nhistory : 0;
    SfArrayInfo shape = {.ndims = 1, .dims = {n}, .dtype = SF_DTYPE_F64};
    char path[128];
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    int rc = 0;
    if (!v) {
        snprintf(w->detail, sizeof w->detail, "out of memory");
        return -1;
    }
    for (int i = 0; i < sf_ckpt_nhistory_fields && rc == 0; i++) {
        const SfCkptField *f = &sf_ckpt_history_fields[i];
        for (int64_t e = 0; e < n; e++)
            v[e] = sf_ckpt_history_get(&info->history[e], f);
        snprintf(path, sizeof path, "/history/%s", f->name);
        rc = put_array(w, path, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &shape, v);
    }
    free(v);
    return rc;
}

/* Writes all of buf to a new file at path and fsyncs it; 0, or -1 with
 * errno set (the file may be left partial: the caller removes it). */
static int write_bytes(const char *path, const void *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return -1;
    const char *p = buf;
    while (n > 0) {
        ssize_t done = write(fd, p, n);
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0) {
            int saved = done < 0 ? errno : EIO;
            close(fd);
            errno = saved;
            return -1;
        }
        p += done;
        n -= (size_t)done;
    }
    if (fsync(fd)) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}

/* Builds the file in memory (HDF5's core driver, no backing store) and
 * writes its image to path with plain write(2). HDF5 1.10.8 crashes at
 * MPI_Finalize after a close that failed on a full disk; this way HDF5 never
 * touches the disk, and a full disk is an errno from our own write.
 * 0, or -1 with w->detail saying why. */
static int write_file(Writer *w, const char *path, const SfModel *m,
                      SfOptim *o, const float *best,
                      const SfCheckpointInfo *info)
{
    int rc = -1;
    void *image = NULL;
    /* The image grows by this much at a time: about the whole file, so it is
     * allocated once instead of copied on every growth. */
    int blocks = 1 + (best != NULL);
    const char *names[] = {"momentum", "m", "v"};
    for (int i = 0; o && i < 3; i++)
        blocks += sf_optim_state(o, names[i]) != NULL;
    size_t increment = (size_t)sf_model_nstate(m) * sizeof(float) * (size_t)blocks +
                       ((size_t)1 << 20);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, increment, 0) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        return failed(w);
    }
    w->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (w->file < 0)
        return failed(w);
    if (put_info(w, info) < 0 ||
        put_layers(w, m, "/params", NULL, sf_model_params((SfModel *)m)) < 0 ||
        (best && put_layers(w, m, "/best", NULL, best) < 0) ||
        (o && put_optim(w, m, o) < 0) || put_history(w, info) < 0 ||
        H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0)
        goto cleanup;
    ssize_t size = H5Fget_file_image(w->file, NULL, 0);
    if (size <= 0 || !(image = malloc((size_t)size)) ||
        H5Fget_file_image(w->file, image, (size_t)size) != size) {
        if (!image && size > 0)
            snprintf(w->detail, sizeof w->detail, "out of memory for %lld bytes",
                     (long long)size);
        goto cleanup;
    }
    if (write_bytes(path, image, (size_t)size)) {
        snprintf(w->detail, sizeof w->detail, "%s", strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (rc && !w->detail[0])
        failed(w);
    H5Fclose(w->file);
    free(image);
    return rc;
}

/* ---- making it durable -------------------------------------------------- */

/* fsync of a file or directory by path; 0, or -1 with errno. */
static int sync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int sf_checkpoint_write(const char *dir, const char *name, const SfModel *m,
                        SfOptim *o, const float *best,
                        const SfCheckpointInfo *info, SfError *err)
{
    char final[SF_CKPT_PATH], tmp[SF_CKPT_PATH], why[320] = "";
    Writer w = {-1, ""};
    int rc = -1, renamed = 0;
    dir = dir && dir[0] ? dir : ".";
    if ((size_t)snprintf(final, sizeof final, "%s/%s", dir, name) >= sizeof final ||
        (size_t)snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name,
                         (long)getpid()) >= sizeof tmp) {
        sf_error_set(err, SF_EXIT_FAILURE, "checkpoint path '%s/%s' is too long",
                     dir, name);
        return -1;
    }
    sf_h5_init();
    sf_h5_lock();
    int written = write_file(&w, tmp, m, o, best, info);
    sf_h5_unlock();
    if (written < 0) {
        snprintf(why, sizeof why, "%s", w.detail);
        goto cleanup;
    }
    if (sync_path(tmp) < 0) {
        snprintf(why, sizeof why, "fsync: %s", strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, final) < 0) {
        snprintf(why, sizeof why, "rename: %s", strerror(errno));
        goto cleanup;
    }
    renamed = 1;
    /* The new file is complete and in place; only its durability across a
     * crash is in question if this fails. */
    if (sync_path(dir) < 0) {
        snprintf(why, sizeof why, "fsync of the directory: %s", strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (rc < 0 && !renamed)
        unlink(tmp);
    if (rc < 0)
        sf_error_set(err, SF_EXIT_FAILURE, "'%s': cannot write checkpoint: %s",
                     final, why);
    return rc;
}
