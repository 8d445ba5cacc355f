/* fuzz_csv.c: the CSV reader of `shardfit convert` (src/convert_csv.c) on
 * mutated text.
 *
 * The input's first line is the --label-column argument (an index or a
 * header name), the rest is the file, so seeds stay readable text. Checked
 * beyond sanitizer reports: the error contract, and that what is accepted is
 * float32 features (N, C) beside int64 or float32 labels (N,), every value
 * finite (reading every value lets ASan see the whole buffers). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "fuzz_common.h"

static volatile int64_t sink; /* keeps the reads of every label */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t spec_len = nl ? (size_t)(nl - data) : size;
    char *spec = malloc(spec_len + 1);
    if (!spec)
        fuzz_fail("out of memory");
    memcpy(spec, data, spec_len);
    spec[spec_len] = '\0';
    size_t skip = nl ? spec_len + 1 : size;
    const char *path = fuzz_write_file(data + skip, size - skip);

    SfArray x, y;
    SfError err = {0};
    int rc = sf_csv_read(path, spec, &x, &y, &err);
    fuzz_check_error("sf_csv_read", rc, &err);
    free(spec);
    if (rc != 0) {
        if (x.data || y.data)
            fuzz_fail("sf_csv_read failed but left data");
        return 0;
    }
    int64_t n = x.info.dims[0], c = x.info.dims[1];
    if (x.info.ndims != 2 || x.info.dtype != SF_DTYPE_F32 || n < 1 || c < 1 ||
        y.info.ndims != 1 || y.info.dims[0] != n ||
        (y.info.dtype != SF_DTYPE_I64 && y.info.dtype != SF_DTYPE_F32))
        fuzz_fail("sf_csv_read accepted a table of a bad shape or type");
    const float *xf = x.data;
    for (int64_t i = 0; i < n * c; i++)
        if (!isfinite(xf[i]))
            fuzz_fail("feature %lld is not finite", (long long)i);
    for (int64_t i = 0; i < n && y.info.dtype == SF_DTYPE_F32; i++)
        if (!isfinite(((const float *)y.data)[i]))
            fuzz_fail("label %lld is not finite", (long long)i);
    for (int64_t i = 0; i < n && y.info.dtype == SF_DTYPE_I64; i++)
        sink += ((const int64_t *)y.data)[i] & 1;
    sf_array_free(&x);
    sf_array_free(&y);
    return 0;
}
