/* convert_idx.c: reading IDX files (MNIST, Fashion-MNIST) for convert.
 *
 * The files come from the internet, so every number in the header is
 * checked before it sizes an allocation, and the data must be exactly as
 * long as the header says: a truncated download is an error naming both
 * counts, never a dataset padded with garbage. zlib reads .gz and plain
 * files alike. */
#include "convert.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Larger inputs are refused rather than loaded: the whole array is held in
 * memory before it is written. */
#define IDX_MAX_BYTES ((uint64_t)16 << 30)
#define IDX_BUFFER (1u << 17)

void sf_array_free(SfArray *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

static int idx_dtype(unsigned code, SfDtype *t)
{
    switch (code) {
    case 0x08: *t = SF_DTYPE_U8;  return 0;
    case 0x09: *t = SF_DTYPE_I8;  return 0;
    case 0x0B: *t = SF_DTYPE_I16; return 0;
    case 0x0C: *t = SF_DTYPE_I32; return 0;
    case 0x0D: *t = SF_DTYPE_F32; return 0;
    case 0x0E: *t = SF_DTYPE_F64; return 0;
    default:   return -1;
    }
}

/* zlib's message for the last error, without the path it starts with. */
static const char *gz_message(gzFile f, const char *path, int *errnum)
{
    const char *msg = gzerror(f, errnum);
    size_t len = strlen(path);
    if (*errnum == Z_ERRNO)
        return strerror(errno);
    if (!strncmp(msg, path, len) && msg[len] == ':')
        msg += len + 1 + (msg[len + 1] == ' ');
    return msg;
}

/* Reads up to n bytes; *got says how many came. -1 only on a read error
 * (a short file or a gzip stream cut short are 0 with *got < n). */
static int read_full(gzFile f, const char *path, void *buf, uint64_t n,
                     uint64_t *got, SfError *err)
{
    int errnum;
    for (*got = 0; *got < n;) {
        uint64_t want = n - *got < INT_MAX ? n - *got : INT_MAX;
        int r = gzread(f, (char *)buf + *got, (unsigned)want);
        if (r > 0)
            *got += (uint64_t)r;
        const char *msg = gz_message(f, path, &errnum);
        if (errnum == Z_BUF_ERROR || r == 0) /* end of (compressed) data */
            return 0;
        if (r < 0) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot read: %s", path,
                         msg);
            return -1;
        }
    }
    return 0;
}

/* The header: dtype, dims, and the data size it promises. */
static int read_header(gzFile f, const char *path, SfArrayInfo *info,
                       uint64_t *bytes, SfError *err)
{
    unsigned char head[4 + 4 * SF_MAX_DIMS];
    uint64_t got;
    if (read_full(f, path, head, 4, &got, err) < 0)
        return -1;
    if (got < 4 || head[0] || head[1] || idx_dtype(head[2], &info->dtype) < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' is not an IDX file: it starts "
                     "%02x %02x %02x %02x, not 00 00 TYPE NDIMS with TYPE one "
                     "of 08 09 0b 0c 0d 0e", path, got > 0 ? head[0] : 0,
                     got > 1 ? head[1] : 0, got > 2 ? head[2] : 0,
                     got > 3 ? head[3] : 0);
        return -1;
    }
    info->ndims = head[3];
    if (info->ndims < 1 || info->ndims > SF_MAX_DIMS) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': IDX header has %d dimensions; "
                     "need 1 to %d", path, info->ndims, SF_MAX_DIMS);
        return -1;
    }
    uint64_t want = 4 * (uint64_t)info->ndims;
    if (read_full(f, path, head + 4, want, &got, err) < 0)
        return -1;
    if (got < want) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' is truncated inside its IDX "
                     "header", path);
        return -1;
    }
    *bytes = sf_dtype_size(info->dtype);
    for (int d = 0; d < info->ndims; d++) {
        const unsigned char *p = head + 4 + 4 * d;
        uint64_t dim = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 |
                       (uint64_t)p[2] << 8 | p[3];
        info->dims[d] = (int64_t)dim;
        if (dim == 0 || *bytes > IDX_MAX_BYTES / dim) {
            char shape[256];
            sf_error_set(err, SF_EXIT_INPUT, "'%s': IDX shape %s %s", path,
                         sf_array_shape_str(info, shape, sizeof shape),
                         dim ? "is larger than 16 GiB"
                             : "has a zero dimension");
            return -1;
        }
        *bytes *= dim;
    }
    return 0;
}

/* IDX stores big-endian; flips each value in place on a little-endian host. */
static void to_host_order(void *data, size_t count, size_t size)
{
    const uint16_t probe = 1;
    if (size == 1 || *(const unsigned char *)&probe == 0)
        return;
    unsigned char *p = data;
    for (size_t i = 0; i < count; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* The data, then a check that nothing follows it. The buffer grows
 * (doubling) as the data arrives instead of taking the header's word for
 * it: found by fuzz/fuzz_idx.c, a 16-byte file declaring 2 GiB made us
 * allocate 2 GiB before finding it short. */
static int read_data(gzFile f, const char *path, SfArray *out, uint64_t bytes,
                     SfError *err)
{
    unsigned char extra[4096];
    uint64_t got = 0, part, more = 0;
    for (uint64_t cap = 0; got == cap && cap < bytes;) {
        cap = cap == 0 ? (bytes < IDX_BUFFER ? bytes : IDX_BUFFER)
                       : (cap > bytes / 2 ? bytes : 2 * cap);
        void *grown = realloc(out->data, cap);
        if (!grown) {
            sf_error_set(err, SF_EXIT_FAILURE, "'%s': cannot allocate %llu "
                         "bytes", path, (unsigned long long)cap);
            return -1;
        }
        out->data = grown;
        if (read_full(f, path, (char *)out->data + got, cap - got, &part,
                      err) < 0)
            return -1;
        got += part;
    }
    if (got < bytes) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' is truncated: its IDX header "
                     "promises %llu data bytes, found %llu", path,
                     (unsigned long long)bytes, (unsigned long long)got);
        return -1;
    }
    do {
        if (read_full(f, path, extra, sizeof extra, &got, err) < 0)
            return -1;
        more += got;
    } while (got == sizeof extra);
    if (more) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' has %llu bytes after the %llu "
                     "data bytes its IDX header promises", path,
                     (unsigned long long)more, (unsigned long long)bytes);
        return -1;
    }
    to_host_order(out->data, bytes / sf_dtype_size(out->info.dtype),
                  sf_dtype_size(out->info.dtype));
    return 0;
}

int sf_idx_read(const char *path, SfArray *out, SfError *err)
{
    uint64_t bytes = 0;
    memset(out, 0, sizeof *out);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open: %s", path,
                     errno ? strerror(errno) : "out of memory");
        return -1;
    }
    gzbuffer(f, IDX_BUFFER);
    int rc = read_header(f, path, &out->info, &bytes, err) < 0 ||
             read_data(f, path, out, bytes, err) < 0 ? -1 : 0;
    gzclose_r(f);
    if (rc < 0)
        sf_array_free(out);
    return rc;
}
