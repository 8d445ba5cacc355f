/* dataset_visit.c: what an HDF5 file holds, for `shardfit inspect`.
 *
 * Listing is lenient where opening for training is strict (dataset.c): a
 * dataset shardfit cannot train on is still listed, with what it is, and
 * root attributes are shown as text, so one command answers "what is in
 * this file" for data files and checkpoints alike. */
#include "shardfit/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5guard.h"
#include "h5util.h"

/* Attributes with more values than this are described, not printed. */
#define ATTR_MAX_VALUES 8

/* Groups nested deeper than this are listed but not entered. HDF5's own
 * H5Lvisit recurses once per level and overflowed the stack on a file of
 * 20 000 nested groups (and opening each object by its full path from the
 * root made the listing quadratic in the depth). */
#define VISIT_MAX_DEPTH 64

typedef struct {
    const char *path;
    SfDatasetVisitFn fn;
    SfAttrVisitFn attr_fn;
    void *user;
    SfError *err;
    char full[1024];   /* path of the link being visited, "/a/b" */
    int depth;         /* groups entered below the root */
    haddr_t *seen;     /* groups with more than one hard link, entered once */
    size_t nseen;
} VisitCtx;

static herr_t visit_link(hid_t group, const char *name, const H5L_info_t *li,
                         void *data);

/* Lists the links of group g, whose path is ctx->full, and what they lead
 * to. A group reachable by several hard links is entered only once, so
 * hard-link cycles cannot loop. 0, or -1 with ctx->err set. */
static int visit_group(VisitCtx *ctx, hid_t g)
{
    char detail[256];
    H5O_info_t oi;
    if (H5Oget_info2(g, &oi, H5O_INFO_BASIC) < 0) {
        sf_error_set(ctx->err, SF_EXIT_INPUT, "'%s': cannot open '%s': %s",
                     ctx->path, ctx->full[0] ? ctx->full : "/",
                     sf_h5_error_detail(detail, sizeof detail));
        return -1;
    }
    if (oi.rc > 1) {
        for (size_t i = 0; i < ctx->nseen; i++)
            if (ctx->seen[i] == oi.addr)
                return 0;
        haddr_t *seen = realloc(ctx->seen, (ctx->nseen + 1) * sizeof *seen);
        if (!seen) {
            sf_error_set(ctx->err, SF_EXIT_FAILURE, "out of memory");
            return -1;
        }
        ctx->seen = seen;
        ctx->seen[ctx->nseen++] = oi.addr;
    }
    if (ctx->depth == VISIT_MAX_DEPTH) {
        ctx->fn(ctx->full, NULL, "group nested too deep: not listed", ctx->user);
        return 0;
    }
    ctx->depth++;
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, visit_link, ctx);
    ctx->depth--;
    return rc < 0 ? -1 : 0;
}

static herr_t visit_link(hid_t group, const char *name, const H5L_info_t *li,
                         void *data)
{
    VisitCtx *ctx = data;
    char detail[256], what[64];
    if (li->type != H5L_TYPE_HARD)
        return 0;
    size_t len = strlen(ctx->full);
    snprintf(ctx->full + len, sizeof ctx->full - len, "/%s", name);
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) {
        sf_error_set(ctx->err, SF_EXIT_INPUT, "'%s': cannot open '%s': %s",
                     ctx->path, ctx->full,
                     sf_h5_error_detail(detail, sizeof detail));
        ctx->full[len] = '\0';
        return -1;
    }
    int rc = 0;
    if (H5Iget_type(obj) == H5I_GROUP) {
        rc = visit_group(ctx, obj);
    } else if (H5Iget_type(obj) == H5I_DATASET) {
        SfArrayInfo info;
        const char *cls;
        switch (sf_h5_probe(obj, &info, &cls)) {
        case SF_H5_PROBE_OK:
            ctx->fn(ctx->full, &info, sf_dtype_name(info.dtype), ctx->user);
            break;
        case SF_H5_PROBE_RANK:
            snprintf(what, sizeof what, "%s, %d dimensions",
                     sf_dtype_name(info.dtype), info.ndims);
            ctx->fn(ctx->full, NULL, what, ctx->user);
            break;
        default:
            ctx->fn(ctx->full, NULL, cls, ctx->user);
            break;
        }
    }
    H5Oclose(obj);
    ctx->full[len] = '\0';
    return rc;
}

static int visit_here(const char *path, SfDatasetVisitFn fn, void *user,
                      SfError *err)
{
    char detail[256];
    VisitCtx ctx = {.path = path, .fn = fn, .user = user, .err = err};
    hid_t file = sf_h5_open_read(path, err);
    if (file < 0)
        return -1;
    hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
    int rc = root < 0 ? -1 : visit_group(&ctx, root);
    if (rc < 0)
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot list its datasets: %s",
                     path, sf_h5_error_detail(detail, sizeof detail));
    if (root >= 0)
        H5Gclose(root);
    H5Fclose(file);
    free(ctx.seen);
    return rc;
}

/* A one-value string attribute, fixed or variable length, as a string the
 * caller frees; NULL if it is not one string or cannot be read. */
static char *read_string(hid_t attr, hid_t type)
{
    char *out = NULL;
    hid_t space = H5Aget_space(attr), mem = H5Tcopy(H5T_C_S1);
    if (space < 0 || H5Sget_simple_extent_npoints(space) != 1 || mem < 0 ||
        H5Tset_cset(mem, H5Tget_cset(type)) < 0)
        goto cleanup;
    if (H5Tis_variable_str(type) > 0) { /* h5py's default */
        char *v = NULL;
        if (H5Tset_size(mem, H5T_VARIABLE) >= 0 && H5Aread(attr, mem, &v) >= 0
            && v) {
            out = strdup(v);
            H5free_memory(v);
        }
    } else {
        /* HDF5 holds size bytes of it already (see get_string in
         * checkpoint_info.c) */
        size_t size = H5Tget_size(type);
        out = size ? malloc(size + 1) : NULL;
        if (out && (H5Tset_size(mem, size + 1) < 0 ||
                    H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
                    H5Aread(attr, mem, out) < 0)) {
            free(out);
            out = NULL;
        }
    }
cleanup:
    if (space >= 0)
        H5Sclose(space);
    if (mem >= 0)
        H5Tclose(mem);
    return out;
}

/* Up to ATTR_MAX_VALUES numbers as "3" or "[0.9, 0.999]"; more, as their
 * dtype and shape. */
static const char *number_text(hid_t attr, const SfArrayInfo *info, char *buf,
                               size_t n)
{
    union { int64_t i[ATTR_MAX_VALUES]; uint64_t u[ATTR_MAX_VALUES];
            double f[ATTR_MAX_VALUES]; } v;
    char shape[128];
    int64_t count = 1;
    for (int d = 0; d < info->ndims; d++)
        count *= info->dims[d];
    if (count > ATTR_MAX_VALUES || count == 0) {
        snprintf(buf, n, "%s %s", sf_dtype_name(info->dtype),
                 sf_array_shape_str(info, shape, sizeof shape));
        return buf;
    }
    int fl = sf_dtype_is_float(info->dtype), u = info->dtype == SF_DTYPE_U64;
    hid_t mem = fl ? H5T_NATIVE_DOUBLE
                : u ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64;
    if (H5Aread(attr, mem, &v) < 0)
        return "unreadable";
    size_t used = (size_t)snprintf(buf, n, "%s", info->ndims ? "[" : "");
    for (int64_t k = 0; k < count && used < n; k++) {
        char *at = buf + used;
        const char *sep = k ? ", " : "";
        size_t left = n - used;
        used += (size_t)(fl ? snprintf(at, left, "%s%g", sep, v.f[k])
                         : u ? snprintf(at, left, "%s%llu", sep,
                                        (unsigned long long)v.u[k])
                         : snprintf(at, left, "%s%lld", sep,
                                    (long long)v.i[k]));
    }
    if (info->ndims && used < n)
        snprintf(buf + used, n - used, "]");
    return buf;
}

static herr_t visit_attr(hid_t loc, const char *name, const H5A_info_t *ai,
                         void *data)
{
    VisitCtx *ctx = data;
    SfArrayInfo info = {0};
    const char *cls;
    char text[512];
    (void)ai;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : -1;
    if (type < 0) {
        ctx->attr_fn(name, "unreadable", ctx->user);
    } else if (H5Tget_class(type) == H5T_STRING) {
        char *s = read_string(attr, type);
        ctx->attr_fn(name, s ? s : "string (not one value)", ctx->user);
        free(s);
    } else {
        SfH5Probe p = sf_h5_probe(attr, &info, &cls);
        ctx->attr_fn(name, p == SF_H5_PROBE_OK
                     ? number_text(attr, &info, text, sizeof text) : cls,
                     ctx->user);
    }
    if (type >= 0)
        H5Tclose(type);
    if (attr >= 0)
        H5Aclose(attr);
    return 0;
}

static int visit_attrs_here(const char *path, SfAttrVisitFn fn, void *user,
                            SfError *err)
{
    char detail[256];
    hsize_t idx = 0;
    VisitCtx ctx = {.path = path, .attr_fn = fn, .user = user, .err = err};
    hid_t file = sf_h5_open_read(path, err);
    if (file < 0)
        return -1;
    herr_t rc = H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_attr,
                            &ctx);
    if (rc < 0)
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot list its attributes: %s",
                     path, sf_h5_error_detail(detail, sizeof detail));
    H5Fclose(file);
    return rc < 0 ? -1 : 0;
}

/* ---- through the guard (h5guard.h) ------------------------------------- */

static void ignore_dataset(const char *name, const SfArrayInfo *info,
                           const char *type_name, void *user)
{
    (void)name, (void)info, (void)type_name, (void)user;
}

static void ignore_attr(const char *name, const char *value, void *user)
{
    (void)name, (void)value, (void)user;
}

static int visit_in_child(void *path, SfError *err)
{
    return visit_here(path, ignore_dataset, NULL, err);
}

static int visit_attrs_in_child(void *path, SfError *err)
{
    return visit_attrs_here(path, ignore_attr, NULL, err);
}

/* The guard's own message gets the path first, as the others have it. */
static int guard(const char *path, SfH5GuardFn fn, SfError *err)
{
    int rc = sf_h5_guard(path, fn, (void *)path, err);
    if (rc == SF_H5_GUARD_FAILED)
        sf_error_prefix(err, "'%s': ", path);
    return rc < 0 ? -1 : 0;
}

int sf_dataset_visit(const char *path, SfDatasetVisitFn fn, void *user,
                     SfError *err)
{
    return guard(path, visit_in_child, err) < 0 ? -1
           : visit_here(path, fn, user, err);
}

int sf_dataset_visit_attrs(const char *path, SfAttrVisitFn fn, void *user,
                           SfError *err)
{
    return guard(path, visit_attrs_in_child, err) < 0 ? -1
           : visit_attrs_here(path, fn, user, err);
}
