/* dataset_internal.h: the open dataset, shared by dataset.c (opening,
 * checking) and dataset_read.c (reading rows). Not a public header. */
#ifndef SF_DATASET_INTERNAL_H
#define SF_DATASET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "h5util.h"
#include "shardfit/dataset.h"

typedef struct {
    char *name;       /* "/train/images" */
    hid_t id;         /* the open HDF5 dataset */
    hid_t native;     /* the memory type of the stored type */
    size_t row_bytes; /* stored bytes per row */
    /* Where pread(2) finds row 0: the storage is contiguous, allocated, not
     * external, and in native byte order. -1 for anything else. */
    int64_t offset;
} Array;

struct SfDataset {
    char *path;
    hid_t file;
    int fd;           /* HDF5's own descriptor of the file, or -1 */
    int64_t size;     /* the file's size when opened */
    Array features, labels;
    SfDatasetInfo info;
};

#endif
