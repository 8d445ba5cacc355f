/* loader.c: the shard and replicate loaders (loader.h).
 *
 * Invariant: this rank holds set rows [held_off, held_off + held_len) in
 * their stored type (features) and as int32 or float32 (labels). Under
 * shard that is its block sf_sampler_part(N, P, rank); under replicate it is
 * every row. A sample's owner under shard is sf_sampler_part_owner(N, P, id).
 * An exchanged row is its feature bytes followed by its label bytes. */
#include "shardfit/loader.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/dataset.h"
#include "shardfit/sampler.h"

struct SfLoader {
    SfLoaderKind kind;
    SfComm *comm;
    int rank, size;
    int64_t row0, rows;              /* the set, in file rows */
    int64_t held_off, held_len;      /* set rows in memory */
    int64_t block_off, block_len;    /* this rank's evaluation block */
    SfShape shape;
    int64_t fsize, lwidth;           /* elements per feature row, label row */
    SfDtype dtype;
    size_t frow, lrow;               /* bytes per feature row, label row */
    int classes;                     /* labels are int32 class ids */
    float scale, offset;
    unsigned char *feat, *lab;
    unsigned char *send, *recv;      /* exchange buffers (shard only) */
    int *scount, *sdispl, *rcount, *rdispl, *cursor;
};

static SfShape shape_of(const SfArrayInfo *a)
{
    if (a->ndims == 3)
        return (SfShape){1, a->dims[1], a->dims[2]};
    if (a->ndims == 4)
        return (SfShape){a->dims[1], a->dims[2], a->dims[3]};
    int64_t d = 1;
    for (int i = 1; i < a->ndims; i++)
        d *= a->dims[i];
    return (SfShape){d, 1, 1};
}

/* Reads the held rows from the open dataset; 0 or -1 with err. */
static int load_rows(SfLoader *l, SfDataset *ds, SfError *err)
{
    size_t n = (size_t)l->held_len;
    l->feat = malloc(n * l->frow + 1);
    l->lab = malloc(n * l->lrow + 1);
    if (!l->feat || !l->lab) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory holding %lld rows",
                     (long long)l->held_len);
        return -1;
    }
    int64_t first = l->row0 + l->held_off;
    if (sf_dataset_read_features(ds, first, l->held_len, l->feat, err))
        return -1;
    return l->classes
               ? sf_dataset_read_class_labels(ds, first, l->held_len,
                                              (int32_t *)l->lab, err)
               : sf_dataset_read_target_labels(ds, first, l->held_len,
                                               (float *)l->lab, err);
}

SfLoader *sf_loader_open(const SfLoaderSpec *spec, SfComm *comm, SfError *err)
{
    SfLoader *l = calloc(1, sizeof *l);
    SfDataset *ds = sf_dataset_open(spec->path, spec->features, spec->labels, err);
    if (!ds)
        sf_error_prefix(err, "%s ", spec->path_key);
    if (!l || !ds)
        goto fail;
    const SfDatasetInfo *info = sf_dataset_info(ds);
    l->kind = spec->kind;
    l->comm = comm;
    l->rank = sf_comm_rank(comm);
    l->size = sf_comm_size(comm);
    l->row0 = spec->row0;
    l->rows = spec->rows < 0 ? info->rows - spec->row0 : spec->rows;
    if (l->row0 < 0 || l->rows <= 0 || l->row0 + l->rows > info->rows) {
        sf_error_set(err, SF_EXIT_INPUT, "%s: '%s' has %lld rows; the %s set "
                     "would be rows %lld to %lld", spec->what, spec->path,
                     (long long)info->rows, spec->what, (long long)l->row0,
                     (long long)(l->row0 + l->rows));
        goto fail;
    }
    l->shape = shape_of(&info->features);
    l->fsize = info->feature_size;
    l->dtype = info->features.dtype;
    l->frow = (size_t)l->fsize * sf_dtype_size(l->dtype);
    l->classes = !sf_dtype_is_float(info->labels.dtype);
    l->lwidth = l->classes ? 1 : info->label_width;
    l->lrow = (size_t)l->lwidth * 4; /* int32 or float32 */
    l->scale = spec->scale;
    l->offset = spec->offset;
    sf_sampler_part(l->rows, l->size, l->rank, &l->block_off, &l->block_len);
    l->held_off = l->kind == SF_LOADER_SHARD ? l->block_off : 0;
    l->held_len = l->kind == SF_LOADER_SHARD ? l->block_len : l->rows;
    if (load_rows(l, ds, err))
        goto fail;
    sf_dataset_close(ds);
    return l;
fail:
    if (!l)
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory opening the loader");
    sf_dataset_close(ds);
    sf_loader_free(l);
    return NULL;
}

void sf_loader_free(SfLoader *l)
{
    if (!l)
        return;
    free(l->feat);
    free(l->lab);
    free(l->send);
    free(l->recv);
    free(l->scount);
    free(l->sdispl);
    free(l->rcount);
    free(l->rdispl);
    free(l->cursor);
    free(l);
}

int64_t sf_loader_rows(const SfLoader *l) { return l->rows; }
SfShape sf_loader_sample_shape(const SfLoader *l) { return l->shape; }
int64_t sf_loader_label_width(const SfLoader *l) { return l->lwidth; }
int sf_loader_has_classes(const SfLoader *l) { return l->classes; }

void sf_loader_block(const SfLoader *l, int64_t *off, int64_t *len)
{
    *off = l->block_off;
    *len = l->block_len;
}

int sf_loader_check_classes(const SfLoader *l, int64_t classes, SfError *err)
{
    const int32_t *y = (const int32_t *)l->lab;
    for (int64_t i = 0; i < l->held_len; i++)
        if (y[i] < 0 || y[i] >= classes) {
            sf_error_set(err, SF_EXIT_INPUT,
                         "label %d at row %lld is outside [0, %lld): the last "
                         "dense layer has %lld units, one per class",
                         (int)y[i], (long long)(l->row0 + l->held_off + i),
                         (long long)classes, (long long)classes);
            return -1;
        }
    return 0;
}

int sf_loader_reserve(SfLoader *l, int64_t max_count, SfError *err)
{
    if (l->kind != SF_LOADER_SHARD || l->size == 1)
        return 0;
    size_t row = l->frow + l->lrow, p = (size_t)l->size;
    int64_t max_slice = (max_count + l->size - 1) / l->size;
    l->send = malloc((size_t)max_count * row + 1);
    l->recv = malloc((size_t)max_slice * row + 1);
    l->scount = calloc(p, sizeof(int));
    l->sdispl = calloc(p, sizeof(int));
    l->rcount = calloc(p, sizeof(int));
    l->rdispl = calloc(p, sizeof(int));
    l->cursor = calloc(p, sizeof(int));
    if (!l->send || !l->recv || !l->scount || !l->sdispl || !l->rcount ||
        !l->rdispl || !l->cursor) {
        sf_error_set(err, SF_EXIT_FAILURE,
                     "out of memory for exchange buffers of %lld samples",
                     (long long)max_count);
        return -1;
    }
    return 0;
}

/* Converts one exchanged or held row (features then labels) into slot j. */
static void unpack_row(const SfLoader *l, const unsigned char *frow,
                       const unsigned char *lrow, int64_t j, float *x,
                       int32_t *classes, float *values)
{
    sf_dtype_to_float(l->dtype, frow, (size_t)l->fsize, l->scale, l->offset,
                      x + j * l->fsize);
    if (l->classes)
        memcpy(classes + j, lrow, sizeof(int32_t));
    else
        memcpy(values + j * l->lwidth, lrow, l->lrow);
}

void sf_loader_read_block(const SfLoader *l, int64_t i, int64_t n, float *x,
                          int32_t *classes, float *values)
{
    for (int64_t j = 0; j < n; j++) {
        int64_t r = l->block_off + i + j - l->held_off;
        unpack_row(l, l->feat + (size_t)r * l->frow, l->lab + (size_t)r * l->lrow,
                   j, x, classes, values);
    }
}

/* Shard: pack the rows this rank holds for each destination's slice. */
static void pack_sends(SfLoader *l, const int64_t *ids, int64_t count)
{
    size_t pos = 0, row = l->frow + l->lrow;
    for (int d = 0; d < l->size; d++) {
        int64_t off, len;
        sf_sampler_part(count, l->size, d, &off, &len);
        l->sdispl[d] = (int)pos;
        for (int64_t q = off; q < off + len; q++) {
            if (sf_sampler_part_owner(l->rows, l->size, ids[q]) != l->rank)
                continue;
            size_t r = (size_t)(ids[q] - l->held_off);
            memcpy(l->send + pos, l->feat + r * l->frow, l->frow);
            memcpy(l->send + pos + l->frow, l->lab + r * l->lrow, l->lrow);
            pos += row;
        }
        l->scount[d] = (int)(pos - (size_t)l->sdispl[d]);
    }
}

int64_t sf_loader_fetch(SfLoader *l, const int64_t *ids, int64_t count,
                        float *x, int32_t *classes, float *values)
{
    int64_t off, len;
    sf_sampler_part(count, l->size, l->rank, &off, &len);
    if (l->kind != SF_LOADER_SHARD || l->size == 1) {
        for (int64_t j = 0; j < len; j++) {
            size_t r = (size_t)(ids[off + j] - l->held_off);
            unpack_row(l, l->feat + r * l->frow, l->lab + r * l->lrow, j, x,
                       classes, values);
        }
        return len;
    }
    assert(l->send && "sf_loader_reserve must be called before fetch");
    const int row = (int)(l->frow + l->lrow);
    pack_sends(l, ids, count);
    memset(l->rcount, 0, (size_t)l->size * sizeof(int));
    for (int64_t q = off; q < off + len; q++)
        l->rcount[sf_sampler_part_owner(l->rows, l->size, ids[q])] += row;
    for (int s = 0, pos = 0; s < l->size; pos += l->rcount[s], s++)
        l->rdispl[s] = l->cursor[s] = pos;
    sf_comm_alltoallv(l->comm, l->send, l->scount, l->sdispl, l->recv,
                      l->rcount, l->rdispl);
    /* Rows from each source arrive in slice order; take them back in order. */
    for (int64_t j = 0; j < len; j++) {
        int s = sf_sampler_part_owner(l->rows, l->size, ids[off + j]);
        const unsigned char *src = l->recv + l->cursor[s];
        l->cursor[s] += row;
        unpack_row(l, src, src + l->frow, j, x, classes, values);
    }
    return len;
}

void sf_loader_prefetch(SfLoader *l, const int64_t *ids, int64_t count)
{
    (void)l;
    (void)ids;
    (void)count;
}
