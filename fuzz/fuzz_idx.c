/* fuzz_idx.c: the IDX reader of `shardfit convert` (src/convert_idx.c) on
 * mutated files, plain or gzip-compressed (zlib tells them apart).
 *
 * Checked beyond sanitizer reports: the error contract, and that what is
 * accepted has the shape the header promised, every dimension non-zero, and
 * as many data bytes as that shape holds (reading every byte lets ASan see
 * the whole buffer). */
#include <string.h>

#include "convert.h"
#include "fuzz_common.h"

static volatile unsigned sink; /* keeps the reads of every byte */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    SfArray a;
    SfError err = {0};
    int rc = sf_idx_read(fuzz_write_file(data, size), &a, &err);
    fuzz_check_error("sf_idx_read", rc, &err);
    if (rc != 0) {
        if (a.data)
            fuzz_fail("sf_idx_read failed but left data");
        return 0;
    }
    if (a.info.ndims < 1 || a.info.ndims > SF_MAX_DIMS || !a.data)
        fuzz_fail("sf_idx_read accepted %d dimensions", a.info.ndims);
    size_t bytes = sf_dtype_size(a.info.dtype);
    for (int d = 0; d < a.info.ndims; d++) {
        if (a.info.dims[d] < 1 || a.info.dims[d] > UINT32_MAX)
            fuzz_fail("sf_idx_read accepted dimension %lld",
                      (long long)a.info.dims[d]);
        bytes *= (size_t)a.info.dims[d];
    }
    /* A plain file holds header and data; gzip may hold more than it is. */
    if (size >= 2 && !(data[0] == 0x1f && data[1] == 0x8b) &&
        bytes != size - 4 - 4 * (size_t)a.info.ndims)
        fuzz_fail("sf_idx_read accepted %zu data bytes from a %zu byte file",
                  bytes, size);
    for (size_t i = 0; i < bytes; i++)
        sink += ((const unsigned char *)a.data)[i];
    sf_array_free(&a);
    return 0;
}
