/* loader_stream.h: the stream loader's reader (private to src/).
 *
 * Reads batches of rows from an open dataset, one batch ahead on a
 * background thread: the trainer names the next batch (sf_stream_prefetch)
 * right after taking this one (sf_stream_read), so the file is read while
 * the step computes. Rows come back in the order asked, features in their
 * stored type and labels as int32 class ids or float32 values: the layout
 * the shard and replicate loaders hold in memory, so loader.c converts all
 * three alike. Memory is a few buffers of `cap` rows, whatever N is.
 *
 * The thread hides waiting for the disk (dataset.c also overlaps the disk
 * reads of one batch). On a rank with no spare core (2 ranks on a 2-core
 * machine) it cannot hide CPU: what a read costs in syscalls and copies
 * comes out of the step, about 130 us a step for 64 rows here.
 *
 * Only the reader thread and the main thread use the dataset, each through
 * dataset.c, which holds the process-wide HDF5 lock. The thread never calls
 * MPI and blocks all signals, so they reach the main thread. */
#ifndef SHARDFIT_LOADER_STREAM_H
#define SHARDFIT_LOADER_STREAM_H

#include <stdint.h>

#include "shardfit/dataset.h"
#include "shardfit/error.h"

typedef struct SfStream SfStream;

/* Reads from ds, which the caller keeps open until sf_stream_free. Rows are
 * asked for relative to row0 (the first row of the set in the file).
 * classes: labels as int32 class ids; else label_width float32 values.
 * Batches hold up to cap rows. NULL with err only on ENOMEM. The thread
 * starts with the first prefetch. */
SfStream *sf_stream_create(SfDataset *ds, int64_t row0, int classes,
                           int64_t cap, SfError *err);

/* Waits for a read in progress, stops the thread. NULL is fine. */
void sf_stream_free(SfStream *s);

/* Starts reading rows[0, n) (n <= cap) in the background. If the thread
 * cannot start, does nothing: sf_stream_read then reads them itself. */
void sf_stream_prefetch(SfStream *s, const int64_t *rows, int64_t n);

/* Rows rows[0, n) (n <= cap), in that order: the prefetched batch when it
 * is these rows (waiting for it if need be), else read now. *feat and *lab
 * then hold n rows each, valid until the next call. 0, or -1 with err
 * naming the path and dataset, also when the failed read was the thread's. */
int sf_stream_read(SfStream *s, const int64_t *rows, int64_t n,
                   const unsigned char **feat, const unsigned char **lab,
                   SfError *err);

#endif
