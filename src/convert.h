/* convert.h: the input formats `shardfit convert` reads (private to src/).
 *
 * Each reader loads a whole file into memory, checked as untrusted input,
 * so the command can refuse bad data before it touches the output file.
 * Errors (exit 2) name the path and, for text, the line and column. */
#ifndef SHARDFIT_CONVERT_H
#define SHARDFIT_CONVERT_H

#include "shardfit/dataset.h"

/* An array in memory, ready for sf_h5writer_write(). */
typedef struct SfArray {
    SfArrayInfo info;
    void *data; /* owned, row-major, host byte order */
} SfArray;

/* Frees a->data and clears a; a itself belongs to the caller. NULL is fine. */
void sf_array_free(SfArray *a);

/* An IDX file (the MNIST format), plain or gzip-compressed: magic 00 00
 * TYPE NDIMS, NDIMS big-endian uint32 dims, then exactly that many
 * big-endian values and nothing after. Every dimension must be non-zero.
 * On success out owns the data; on error out is empty. 0 or -1. */
int sf_idx_read(const char *path, SfArray *out, SfError *err);

/* A comma-separated file of numbers, one sample per line; the first line is
 * a header if any of its fields is not a number. label_column is a 0-based
 * index (all digits) or a header name. features become float32
 * (N, columns - 1); labels (N,) int64 if every label is written as an
 * integer, else float32. Blank lines are skipped; quoted fields may not hold
 * commas. On error both arrays are empty. 0 or -1. */
int sf_csv_read(const char *path, const char *label_column, SfArray *features,
                SfArray *labels, SfError *err);

#endif
