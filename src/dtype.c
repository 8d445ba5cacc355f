/* dtype.c: the element types of stored arrays (dataset.h's SfDtype): sizes,
 * names, and conversion to float for the model's input. */
#include "shardfit/dataset.h"

#include <assert.h>
#include <stdio.h>

#include "simd.h"

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
