/* dataset.h: the HDF5 gateway for training data.
 *
 * Only dataset.c (and the checkpoint module, later) include <hdf5.h>. A
 * dataset is a pair of HDF5 datasets in one file: features (N, d1, ..., dk)
 * of any integer or float type, and labels (N,) integer class ids or (N, k)
 * float targets. Rows are read in their stored type, so a uint8 image set
 * stays one byte per pixel in memory; sf_dtype_to_float() converts a batch.
 * Every rank opens the file on its own (no MPI-IO): reads are independent
 * hyperslabs. */
#ifndef SHARDFIT_DATASET_H
#define SHARDFIT_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shardfit/error.h"

typedef enum {
    SF_DTYPE_U8, SF_DTYPE_I8, SF_DTYPE_U16, SF_DTYPE_I16,
    SF_DTYPE_U32, SF_DTYPE_I32, SF_DTYPE_U64, SF_DTYPE_I64,
    SF_DTYPE_F32, SF_DTYPE_F64
} SfDtype;

size_t sf_dtype_size(SfDtype t);
const char *sf_dtype_name(SfDtype t); /* "uint8", "float32", ... */
int sf_dtype_is_float(SfDtype t);

/* dst[i] = (float)src[i] * scale + offset, for count elements. */
void sf_dtype_to_float(SfDtype t, const void *src, size_t count,
                       float scale, float offset, float *dst);

#define SF_MAX_DIMS 8

typedef struct SfArrayInfo {
    int ndims;
    int64_t dims[SF_MAX_DIMS];
    SfDtype dtype;
} SfArrayInfo;

/* Formats info's shape as NumPy does, "(60000, 28, 28)" or "(60000,)",
 * into buf (truncated to n bytes). Returns buf. */
const char *sf_array_shape_str(const SfArrayInfo *info, char *buf, size_t n);

typedef struct SfDatasetInfo {
    int64_t rows;           /* N: features and labels agree on it */
    SfArrayInfo features;
    SfArrayInfo labels;
    int64_t feature_size;   /* d1*...*dk elements per row */
    int64_t label_width;    /* 1 for (N,) labels, k for (N, k) */
} SfDatasetInfo;

typedef struct SfDataset SfDataset;

/* Opens the file read-only and checks both datasets: they exist, have a
 * supported numeric type, 1 to SF_MAX_DIMS dimensions, the same non-zero
 * row count, and sizes that cannot overflow. Errors (exit 2) name the path
 * and dataset, the path first ("'x.h5': cannot open: No such file or
 * directory", "'x.h5' has no dataset '/train/imgs' ('/train' holds: images,
 * labels)"), so a caller can prefix the config key with sf_error_prefix().
 * A chunked dataset gets a chunk cache holding all of it up to 64 MiB, so
 * row-by-row reads do not inflate a chunk per row. HDF5 is not built
 * thread-safe: every function here holds sf_h5_lock() (src/h5util.h), so
 * threads may share a dataset; its reads are then serialized. The open, and
 * the first and last rows, are first read in a forked child (src/h5guard.h):
 * a file that crashes or hangs HDF5 fails the open (exit 2, "'x.h5': the
 * HDF5 library crashed reading this file ..."). So do sf_dataset_visit and
 * sf_dataset_visit_attrs. labels may be NULL (features only, for predict):
 * label_width is then 0 and reading labels is an error. */
SfDataset *sf_dataset_open(const char *path, const char *features,
                           const char *labels, SfError *err);
void sf_dataset_close(SfDataset *ds); /* NULL is fine */

const SfDatasetInfo *sf_dataset_info(const SfDataset *ds);

/* Feature rows [row0, row0 + n), stored type, into buf
 * (n * feature_size * sf_dtype_size(features.dtype) bytes). 0 or -1; rows
 * outside [0, rows) are an error (exit 1: the caller's bug), n == 0 is not. */
int sf_dataset_read_features(SfDataset *ds, int64_t row0, int64_t n,
                             void *buf, SfError *err);

/* Label rows [row0, row0 + n) as int32 class ids. Fails (exit 2) if the
 * labels are not an integer dataset of shape (N,) or (N, 1), or a value
 * does not fit int32 (the message names the row). */
int sf_dataset_read_class_labels(SfDataset *ds, int64_t row0, int64_t n,
                                 int32_t *out, SfError *err);

/* Label rows [row0, row0 + n) as float32 targets, n * label_width values. */
int sf_dataset_read_target_labels(SfDataset *ds, int64_t row0, int64_t n,
                                  float *out, SfError *err);

/* The same three reads for a set of rows rows[0] <= rows[1] <= ... <=
 * rows[n-1], packed in that order into the buffer (a row listed twice is
 * read twice). For the stream loader: one read per run of consecutive rows,
 * by pread(2) when the data is contiguous (dataset.c has the measurements).
 * Rows out of range or out of order are an error (exit 1). */
int sf_dataset_read_feature_rows(SfDataset *ds, const int64_t *rows, int64_t n,
                                 void *buf, SfError *err);
int sf_dataset_read_class_label_rows(SfDataset *ds, const int64_t *rows,
                                     int64_t n, int32_t *out, SfError *err);
int sf_dataset_read_target_label_rows(SfDataset *ds, const int64_t *rows,
                                      int64_t n, float *out, SfError *err);

/* Every read first checks that the file is still the one opened: a file
 * deleted or replaced (renamed over), or shorter than when it was opened,
 * fails the read (exit 1, naming the path) instead of returning zeros. */

/* Writing, for `shardfit convert`. The file is created if missing, else
 * opened read-write; an existing dataset of the same name is an error.
 * Types are stored little-endian. With compress non-zero a dataset is
 * chunked (about 1 MiB chunks of whole rows) with shuffle + gzip level 4;
 * without, it is contiguous (the fastest layout for random row reads).
 * Parent groups are created. Errors opening the file or naming an existing
 * dataset are SF_EXIT_INPUT; failures while writing are SF_EXIT_FAILURE. */
typedef struct SfH5Writer SfH5Writer;
SfH5Writer *sf_h5writer_open(const char *path, SfError *err);
/* 0 if no object named dataset exists in the file, so a write of it will not
 * be refused; else -1 with err set. Lets a caller check every name before
 * writing any. */
int sf_h5writer_check_free(SfH5Writer *w, const char *dataset, SfError *err);
int sf_h5writer_write(SfH5Writer *w, const char *dataset, SfDtype t,
                      int ndims, const int64_t *dims, const void *data,
                      int compress, SfError *err);
/* Flushes and closes; returns -1 with err set if the flush fails.
 * NULL is fine (returns 0). */
int sf_h5writer_close(SfH5Writer *w, SfError *err);

/* Calls fn for every dataset in the file, in name order, with its full
 * path and shape; for `shardfit inspect`. Numeric datasets get info (a
 * scalar has ndims 0) and their dtype name in type_name; others get
 * info == NULL and a description such as "string" or "compound". Each group
 * is visited once, so hard-link cycles cannot loop; soft and external links
 * are not followed; a group nested 64 deep is passed to fn (info NULL) but
 * not entered. Returns 0, or -1 with err set (exit 2 for a missing or
 * non-HDF5 file, with the messages of sf_dataset_open). */
typedef void (*SfDatasetVisitFn)(const char *name, const SfArrayInfo *info,
                                 const char *type_name, void *user);
int sf_dataset_visit(const char *path, SfDatasetVisitFn fn, void *user,
                     SfError *err);

/* Calls fn for every attribute of the file's root group, in name order,
 * with its value as text, valid during the call: one string as stored
 * (fixed or variable length, as h5py writes), up to 8 numbers as "3" or
 * "[0.9, 0.999]", anything else described ("float32 (100,)", "compound").
 * For `shardfit inspect` of checkpoints. Returns 0, or -1 with err set (as
 * sf_dataset_visit). */
typedef void (*SfAttrVisitFn)(const char *name, const char *value, void *user);
int sf_dataset_visit_attrs(const char *path, SfAttrVisitFn fn, void *user,
                           SfError *err);

/* The HDF5 library in use, "HDF5 1.10.8", for a run's summary. */
void sf_dataset_library_version(char *buf, size_t n);

#endif
