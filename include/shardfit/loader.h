/* loader.h: hands each rank its slice of every global batch, as float32
 * feature rows and targets, whatever the loader mode (SPEC §5).
 *
 *  shard      rank r keeps only rows [r*N/P, (r+1)*N/P) of the set, in their
 *             stored type; each step one Alltoallv moves every sample from
 *             the rank that holds it to the rank whose slice contains it.
 *  replicate  every rank keeps all N rows; a step gathers locally.
 *  stream     nothing is kept: each step, rank r reads the rows of its own
 *             slice from the file, sorted by row (loader_stream.c), while
 *             the step before computes (sf_loader_prefetch). Memory per rank
 *             is O(batch), plus the chunk cache of a chunked file (at most
 *             64 MiB, dataset.h).
 *
 * All three give the same bytes in the same order, so the same weights. A
 * "set" is a run of rows [row0, row0 + rows) of the file's datasets: the
 * training set, or the validation set (another file, or the tail of the
 * same one). */
#ifndef SHARDFIT_LOADER_H
#define SHARDFIT_LOADER_H

#include <stdint.h>

#include "shardfit/comm.h"
#include "shardfit/config.h"
#include "shardfit/error.h"
#include "shardfit/layer.h"

typedef struct SfLoaderSpec {
    SfLoaderKind kind;
    const char *path, *features, *labels; /* HDF5 file and dataset paths;
                                           * labels NULL: features only */
    const char *what;          /* "data" or "validation", for messages */
    const char *path_key;      /* "data.path" or "data.val_path" */
    int64_t row0, rows;        /* rows < 0: from row0 to the end of the file */
    float scale, offset;       /* x = stored * scale + offset */
} SfLoaderSpec;

typedef struct SfLoader SfLoader;

/* Opens the file and loads this rank's rows (stream: keeps the file open).
 * Not collective: each rank opens on its own, and the caller agrees on the
 * status with sf_comm_agree before any collective. Errors name the path,
 * the dataset and the row (exit 2). */
SfLoader *sf_loader_open(const SfLoaderSpec *spec, SfComm *comm, SfError *err);
void sf_loader_free(SfLoader *l); /* NULL is fine */

int64_t sf_loader_rows(const SfLoader *l);          /* N of the set */
SfShape sf_loader_sample_shape(const SfLoader *l);  /* (c, h, w) per row */
int64_t sf_loader_label_width(const SfLoader *l);   /* 1 for class ids, 0
                                                     * without labels */

/* 1 when the labels are integer class ids (held as int32), 0 when they are
 * float targets (held as float32): decided by the stored label type. */
int sf_loader_has_classes(const SfLoader *l);

/* Allocates the exchange (shard) or read (stream) buffers for batches of
 * up to max_count samples; call once before the first fetch. 0, or -1 on
 * ENOMEM. Not collective. */
int sf_loader_reserve(SfLoader *l, int64_t max_count, SfError *err);

/* Checks that every class id of this rank's block (replicate: of the set)
 * lies in [0, classes); the error names the file row. Stream reads the
 * block's labels from the file for it, so a read error is possible too.
 * Not collective. */
int sf_loader_check_classes(const SfLoader *l, int64_t classes, SfError *err);

/* Whether the set's labels suit a model with `outputs` outputs trained with
 * loss: class ids in [0, outputs) for cross_entropy (as check_classes), or
 * exactly `outputs` float targets per row for mse. train, eval and the
 * validation set all check through here, so they say the same (exit 2,
 * naming key, the config key or option, and dataset). Not collective. */
int sf_loader_check_targets(const SfLoader *l, int64_t outputs, SfLossKind loss,
                            const char *key, const char *dataset, SfError *err);

/* All ranks pass the same batch, count set-relative sample ids (collective
 * under shard, which exchanges rows; local under replicate and stream).
 * This rank receives its slice, positions [off, off + len) of
 * sf_sampler_part(count, P, rank): len feature rows into x, and len class
 * ids into classes or len * label_width values into values (the other NULL).
 * Returns len, or -1 with err when stream cannot read the file (exit 1,
 * naming the path and dataset; the failure may be the prefetch's). Shard
 * and replicate cannot fail. A stream failure is this rank's alone: the
 * caller must agree on it with the other ranks before it stops. */
int64_t sf_loader_fetch(SfLoader *l, const int64_t *ids, int64_t count,
                        float *x, int32_t *classes, float *values,
                        SfError *err);

/* Tells the loader which batch comes next, so stream can read it in the
 * background while this step computes; the next fetch of the same ids
 * waits for it, a fetch of other ids reads those. Same arguments as fetch;
 * shard and replicate ignore it. Never fails: fetch reports the error. */
void sf_loader_prefetch(SfLoader *l, const int64_t *ids, int64_t count);

/* This rank's evaluation block of the set: [*off, *off + *len). */
void sf_loader_block(const SfLoader *l, int64_t *off, int64_t *len);

/* Rows [i, i + n) of this rank's block, converted as in fetch. Not
 * collective. 0, or -1 with err as fetch (stream only). */
int sf_loader_read_block(SfLoader *l, int64_t i, int64_t n, float *x,
                         int32_t *classes, float *values, SfError *err);

#endif
