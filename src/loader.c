/* loader.c: the three loaders (loader.h); stream's reader thread lives in
 * loader_stream.c.
 *
 * Invariant: this rank holds set rows [held_off, held_off + held_len) in
 * their stored type (features) and as int32 or float32 (labels). Under
 * shard that is its block sf_sampler_part(N, P, rank); under replicate it is
 * every row; under stream none (held_len = 0): rows come from the file, in
 * the same layout, and pass through the same unpack_row(). A sample's owner
 * under shard is sf_sampler_part_owner(N, P, id). An exchanged row is its
 * feature bytes followed by its label bytes. */
#include "shardfit/loader.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bigalloc.h"
#include "loader_stream.h"
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
    SfDataset *ds;                   /* stream: the open file */
    SfStream *stream;                /* stream: batches, after reserve */
    unsigned char *bfeat, *blab;     /* stream: rows of read_block */
    int64_t bcap;                    /* ... room for this many */
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

/* A NaN or infinity in float features would only show up steps later as a
 * diverged loss; it is reported instead, naming the row and column: at load
 * for shard and replicate, as each batch arrives for stream (which keeps no
 * rows to scan at load). frow holds one row in its stored type. */
static int check_finite_row(const SfLoader *l, const unsigned char *frow,
                            int64_t file_row, SfError *err)
{
    if (l->dtype != SF_DTYPE_F32 && l->dtype != SF_DTYPE_F64)
        return 0;
    for (int64_t i = 0; i < l->fsize; i++) {
        double v = l->dtype == SF_DTYPE_F32 ? ((const float *)frow)[i]
                                            : ((const double *)frow)[i];
        if (!isfinite(v)) {
            sf_error_set(err, SF_EXIT_INPUT, "features row %lld, column %lld "
                         "is %g: the data must be finite", (long long)file_row,
                         (long long)i, v);
            return -1;
        }
    }
    return 0;
}

static int check_finite(const SfLoader *l, int64_t first_row, SfError *err)
{
    for (int64_t r = 0; r < l->held_len; r++)
        if (check_finite_row(l, l->feat + (size_t)r * l->frow, first_row + r,
                             err))
            return -1;
    return 0;
}

/* Reads the held rows from the open dataset; 0 or -1 with err. */
static int load_rows(SfLoader *l, SfDataset *ds, SfError *err)
{
    size_t n = (size_t)l->held_len;
    l->feat = sf_big_calloc(n * l->frow + 1, 1);
    l->lab = sf_big_calloc(n * l->lrow + 1, 1);
    if (!l->feat || !l->lab) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory holding %lld rows",
                     (long long)l->held_len);
        return -1;
    }
    int64_t first = l->row0 + l->held_off;
    if (sf_dataset_read_features(ds, first, l->held_len, l->feat, err) ||
        check_finite(l, first, err))
        return -1;
    return !l->lwidth ? 0
           : l->classes
               ? sf_dataset_read_class_labels(ds, first, l->held_len,
                                              (int32_t *)l->lab, err)
               : sf_dataset_read_target_labels(ds, first, l->held_len,
                                               (float *)l->lab, err);
}

/* Stream: rows [first, first + n) of the set into bfeat and blab. */
static int read_range(SfLoader *l, int64_t first, int64_t n, SfError *err)
{
    if (n > l->bcap) {
        free(l->bfeat);
        free(l->blab);
        l->bfeat = malloc((size_t)n * l->frow);
        l->blab = malloc((size_t)n * l->lrow);
        l->bcap = l->bfeat && l->blab ? n : 0;
        if (!l->bcap) {
            sf_error_set(err, SF_EXIT_FAILURE, "out of memory reading %lld "
                         "rows", (long long)n);
            return -1;
        }
    }
    first += l->row0;
    if (sf_dataset_read_features(l->ds, first, n, l->bfeat, err))
        return -1;
    return !l->lwidth ? 0
           : l->classes
               ? sf_dataset_read_class_labels(l->ds, first, n,
                                              (int32_t *)l->blab, err)
               : sf_dataset_read_target_labels(l->ds, first, n,
                                               (float *)l->blab, err);
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
    l->classes = spec->labels && !sf_dtype_is_float(info->labels.dtype);
    l->lwidth = !spec->labels ? 0 : l->classes ? 1 : info->label_width;
    l->lrow = (size_t)l->lwidth * 4; /* int32 or float32 */
    l->scale = spec->scale;
    l->offset = spec->offset;
    sf_sampler_part(l->rows, l->size, l->rank, &l->block_off, &l->block_len);
    l->held_off = l->kind == SF_LOADER_SHARD ? l->block_off : 0;
    l->held_len = l->kind == SF_LOADER_SHARD ? l->block_len
                  : l->kind == SF_LOADER_REPLICATE ? l->rows : 0;
    if (l->kind == SF_LOADER_STREAM) {
        /* Nothing is held; reading one row finds now what the first step
         * would (class ids of shape (N, 2), an unreadable file). */
        l->ds = ds;
        ds = NULL;
        if (read_range(l, 0, 1, err))
            goto fail;
        return l;
    }
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
    sf_stream_free(l->stream); /* before the file it reads */
    sf_dataset_close(l->ds);
    free(l->bfeat);
    free(l->blab);
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

/* Class ids y of set rows [first, first + n) lie in [0, classes). */
static int check_ids(const SfLoader *l, const int32_t *y, int64_t first,
                     int64_t n, int64_t classes, SfError *err)
{
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= classes) {
            sf_error_set(err, SF_EXIT_INPUT,
                         "label %d at row %lld is outside [0, %lld): the last "
                         "dense layer has %lld units, one per class",
                         (int)y[i], (long long)(l->row0 + first + i),
                         (long long)classes, (long long)classes);
            return -1;
        }
    return 0;
}

/* Labels read this many at a time when stream checks its block. */
#define CHECK_ROWS 65536

int sf_loader_check_classes(const SfLoader *l, int64_t classes, SfError *err)
{
    if (l->kind != SF_LOADER_STREAM)
        return check_ids(l, (const int32_t *)l->lab, l->held_off, l->held_len,
                         classes, err);
    int64_t step = l->block_len < CHECK_ROWS ? l->block_len : CHECK_ROWS;
    int32_t *y = malloc((size_t)(step + 1) * sizeof *y);
    int rc = y ? 0 : -1;
    if (!y)
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for %lld labels",
                     (long long)step);
    for (int64_t i = 0; rc == 0 && i < l->block_len; i += step) {
        int64_t n = l->block_len - i < step ? l->block_len - i : step;
        rc = sf_dataset_read_class_labels(l->ds, l->row0 + l->block_off + i, n,
                                          y, err) ||
             check_ids(l, y, l->block_off + i, n, classes, err) ? -1 : 0;
    }
    free(y);
    return rc;
}

int sf_loader_check_targets(const SfLoader *l, int64_t outputs, SfLossKind loss,
                            const char *key, const char *dataset, SfError *err)
{
    if (l->classes) {
        if (sf_loader_check_classes(l, outputs, err) == 0)
            return 0;
        sf_error_prefix(err, "%s '%s': ", key, dataset);
        return -1;
    }
    if (loss == SF_LOSS_CROSS_ENTROPY) {
        sf_error_set(err, SF_EXIT_INPUT, "%s holds float targets, but "
                     "model.loss = cross_entropy needs integer class ids "
                     "(use loss = mse for regression)", key);
        return -1;
    }
    if (l->lwidth != outputs) {
        sf_error_set(err, SF_EXIT_INPUT, "%s has %lld targets per row, but the "
                     "last dense layer has %lld units", key,
                     (long long)l->lwidth, (long long)outputs);
        return -1;
    }
    return 0;
}

int sf_loader_reserve(SfLoader *l, int64_t max_count, SfError *err)
{
    if (l->kind == SF_LOADER_STREAM) {
        int64_t max_slice = (max_count + l->size - 1) / l->size;
        l->stream = sf_stream_create(l->ds, l->row0, l->classes, max_slice, err);
        return l->stream ? 0 : -1;
    }
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
    else if (l->lwidth)
        memcpy(values + j * l->lwidth, lrow, l->lrow);
}

int sf_loader_read_block(SfLoader *l, int64_t i, int64_t n, float *x,
                         int32_t *classes, float *values, SfError *err)
{
    const unsigned char *feat = l->feat, *lab = l->lab;
    int64_t r0 = l->block_off + i - l->held_off;
    if (l->kind == SF_LOADER_STREAM) {
        if (read_range(l, l->block_off + i, n, err))
            return -1;
        feat = l->bfeat;
        lab = l->blab;
        r0 = 0;
    }
    for (int64_t j = 0; j < n; j++) {
        size_t r = (size_t)(r0 + j);
        unpack_row(l, feat + r * l->frow, lab + r * l->lrow, j, x, classes,
                   values);
    }
    return 0;
}

/* Rows are taken in permutation order, each from anywhere in the held
 * block: every one a cache miss, which the conversion stalled on (80% of
 * its samples on the loads), and so did the label's copy. Ask for the
 * row and label a few ahead while converting this one. */
#define PREFETCH_AHEAD 4

static void prefetch_row(const unsigned char *row, size_t bytes)
{
#if defined(__GNUC__)
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(row + o);
#else
    (void)row;
    (void)bytes;
#endif
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
                        float *x, int32_t *classes, float *values,
                        SfError *err)
{
    int64_t off, len;
    sf_sampler_part(count, l->size, l->rank, &off, &len);
    if (l->kind == SF_LOADER_STREAM) {
        assert(l->stream && "sf_loader_reserve must be called before fetch");
        const unsigned char *feat, *lab;
        if (sf_stream_read(l->stream, ids + off, len, &feat, &lab, err))
            return -1;
        for (int64_t j = 0; j < len; j++) {
            if (check_finite_row(l, feat + (size_t)j * l->frow,
                                 l->row0 + ids[off + j], err))
                return -1;
            unpack_row(l, feat + (size_t)j * l->frow, lab + (size_t)j * l->lrow,
                       j, x, classes, values);
        }
        return len;
    }
    if (l->kind != SF_LOADER_SHARD || l->size == 1) {
        for (int64_t j = 0; j < len; j++) {
            if (j + PREFETCH_AHEAD < len) {
                size_t a = (size_t)(ids[off + j + PREFETCH_AHEAD] - l->held_off);
                prefetch_row(l->feat + a * l->frow, l->frow);
                prefetch_row(l->lab + a * l->lrow, l->lrow);
            }
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
    if (l->kind != SF_LOADER_STREAM)
        return;
    assert(l->stream && "sf_loader_reserve must be called before prefetch");
    int64_t off, len;
    sf_sampler_part(count, l->size, l->rank, &off, &len);
    sf_stream_prefetch(l->stream, ids + off, len);
}
