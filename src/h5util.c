/* h5util.c: helpers shared by the HDF5 gateway files (see h5util.h). */
#include "h5util.h"

#include <pthread.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void sf_h5_init(void)
{
    H5dont_atexit(); /* fails harmlessly once the library is running */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct {
    char *buf;
    size_t n;
} DetailCtx;

static herr_t keep_innermost(unsigned i, const H5E_error2_t *e, void *data)
{
    static const char key[] = "error message = '";
    DetailCtx *ctx = data;
    const char *desc = e->desc && e->desc[0] ? e->desc
                       : e->func_name ? e->func_name : "";
    const char *colon = strchr(desc, ':'), *msg = strstr(desc, key);
    if (i > 0)
        return 0;
    if (colon && msg) { /* "what: name = ..., error message = 'why', ..." */
        msg += sizeof key - 1;
        const char *end = strchr(msg, '\'');
        snprintf(ctx->buf, ctx->n, "%.*s: %.*s", (int)(colon - desc), desc,
                 end ? (int)(end - msg) : (int)strlen(msg), msg);
    } else {
        snprintf(ctx->buf, ctx->n, "%s", desc);
    }
    return 0;
}

const char *sf_h5_error_detail(char *buf, size_t n)
{
    DetailCtx ctx = {buf, n};
    if (n)
        buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &ctx);
    return buf;
}

hid_t sf_h5_native_type(SfDtype t)
{
    switch (t) {
    case SF_DTYPE_U8:  return H5T_NATIVE_UINT8;
    case SF_DTYPE_I8:  return H5T_NATIVE_INT8;
    case SF_DTYPE_U16: return H5T_NATIVE_UINT16;
    case SF_DTYPE_I16: return H5T_NATIVE_INT16;
    case SF_DTYPE_U32: return H5T_NATIVE_UINT32;
    case SF_DTYPE_I32: return H5T_NATIVE_INT32;
    case SF_DTYPE_U64: return H5T_NATIVE_UINT64;
    case SF_DTYPE_I64: return H5T_NATIVE_INT64;
    case SF_DTYPE_F32: return H5T_NATIVE_FLOAT;
    case SF_DTYPE_F64: return H5T_NATIVE_DOUBLE;
    }
    assert(!"unknown SfDtype");
    return -1;
}

hid_t sf_h5_file_type(SfDtype t)
{
    switch (t) {
    case SF_DTYPE_U8:  return H5T_STD_U8LE;
    case SF_DTYPE_I8:  return H5T_STD_I8LE;
    case SF_DTYPE_U16: return H5T_STD_U16LE;
    case SF_DTYPE_I16: return H5T_STD_I16LE;
    case SF_DTYPE_U32: return H5T_STD_U32LE;
    case SF_DTYPE_I32: return H5T_STD_I32LE;
    case SF_DTYPE_U64: return H5T_STD_U64LE;
    case SF_DTYPE_I64: return H5T_STD_I64LE;
    case SF_DTYPE_F32: return H5T_IEEE_F32LE;
    case SF_DTYPE_F64: return H5T_IEEE_F64LE;
    }
    assert(!"unknown SfDtype");
    return -1;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER:   return "integer";
    case H5T_FLOAT:     return "float";
    case H5T_TIME:      return "time";
    case H5T_STRING:    return "string";
    case H5T_BITFIELD:  return "bitfield";
    case H5T_OPAQUE:    return "opaque";
    case H5T_COMPOUND:  return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM:      return "enum";
    case H5T_VLEN:      return "variable-length";
    case H5T_ARRAY:     return "array";
    default:            return "unknown";
    }
}

int sf_h5_dtype_of(hid_t type, SfDtype *out, const char **cls)
{
    static const SfDtype uints[] = {SF_DTYPE_U8, SF_DTYPE_U16, 0, SF_DTYPE_U32,
                                    0, 0, 0, SF_DTYPE_U64};
    static const SfDtype ints[] = {SF_DTYPE_I8, SF_DTYPE_I16, 0, SF_DTYPE_I32,
                                   0, 0, 0, SF_DTYPE_I64};
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    *cls = class_name(c);
    int pow2 = size == 1 || size == 2 || size == 4 || size == 8;
    if (c == H5T_INTEGER && pow2) {
        H5T_sign_t sign = H5Tget_sign(type);
        if (sign == H5T_SGN_ERROR)
            return -1;
        *out = sign == H5T_SGN_NONE ? uints[size - 1] : ints[size - 1];
        return 0;
    }
    if (c == H5T_FLOAT && (size == 4 || size == 8)) {
        *out = size == 4 ? SF_DTYPE_F32 : SF_DTYPE_F64;
        return 0;
    }
    if (c == H5T_FLOAT)
        *cls = size == 2 ? "float16" : "float of unusual size";
    else if (c == H5T_INTEGER)
        *cls = "integer of unusual size";
    return -1;
}

int sf_h5_path_exists(hid_t loc, const char *path, char *parent, size_t n)
{
    char prefix[1024];
    size_t len = strlen(path);
    if (len >= sizeof prefix)
        return -1;
    size_t plen = 0;
    if (path[0] == '/')
        prefix[plen++] = '/';
    size_t deepest = plen; /* prefix[0, deepest) exists */
    for (size_t i = 0; i < len;) {
        while (i < len && path[i] == '/')
            i++;
        if (i == len)
            break;
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (plen && prefix[plen - 1] != '/')
            prefix[plen++] = '/';
        memcpy(prefix + plen, path + i, j - i);
        plen += j - i;
        prefix[plen] = '\0';
        /* An error here means the parent is not a group: no such path. */
        if (H5Lexists(loc, prefix, H5P_DEFAULT) <= 0) {
            if (parent)
                snprintf(parent, n, "%.*s", deepest ? (int)deepest : 1,
                         deepest ? prefix : "/");
            return 0;
        }
        deepest = plen;
        i = j;
    }
    return 1;
}

hid_t sf_h5_open_read(const char *path, SfError *err)
{
    char detail[256];
    sf_h5_init();
    if (access(path, R_OK) != 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open: %s", path,
                     strerror(errno));
        return -1;
    }
    if (H5Fis_hdf5(path) == 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' is not an HDF5 file", path);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open as HDF5: %s",
                     path, sf_h5_error_detail(detail, sizeof detail));
    return file;
}

SfH5Probe sf_h5_probe(hid_t obj, SfArrayInfo *info, const char **cls)
{
    hsize_t dims[SF_MAX_DIMS];
    SfH5Probe r = SF_H5_PROBE_FAIL;
    int attr = H5Iget_type(obj) == H5I_ATTR;
    hid_t type = attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t space = attr ? H5Aget_space(obj) : H5Dget_space(obj);
    *cls = "unreadable";
    if (type < 0 || space < 0)
        goto cleanup;
    r = SF_H5_PROBE_TYPE;
    if (sf_h5_dtype_of(type, &info->dtype, cls) < 0)
        goto cleanup;
    if (H5Sget_simple_extent_type(space) == H5S_NULL) {
        *cls = "empty (null dataspace)";
        goto cleanup;
    }
    r = SF_H5_PROBE_FAIL;
    info->ndims = H5Sget_simple_extent_ndims(space);
    if (info->ndims < 0)
        goto cleanup;
    r = SF_H5_PROBE_RANK;
    if (info->ndims > SF_MAX_DIMS)
        goto cleanup;
    r = SF_H5_PROBE_FAIL;
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        goto cleanup;
    for (int d = 0; d < info->ndims; d++)
        info->dims[d] = dims[d] > INT64_MAX ? INT64_MAX : (int64_t)dims[d];
    r = SF_H5_PROBE_OK;
cleanup:
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    return r;
}

/* The one piece of process-wide state in shardfit, because the HDF5 library
 * it guards is itself process-wide. */
static pthread_mutex_t h5_mutex;
static pthread_once_t h5_mutex_once = PTHREAD_ONCE_INIT;

static void h5_mutex_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&h5_mutex, &a);
    pthread_mutexattr_destroy(&a);
}

void sf_h5_lock(void)
{
    pthread_once(&h5_mutex_once, h5_mutex_init);
    pthread_mutex_lock(&h5_mutex);
}

void sf_h5_unlock(void)
{
    pthread_mutex_unlock(&h5_mutex);
}

void sf_h5_lock_reset_in_child(void)
{
    pthread_once(&h5_mutex_once, h5_mutex_init);
    h5_mutex_init(); /* the copy is held by a thread this process lacks */
}
