/* loader_stream.c: reading each batch from the file, one step ahead
 * (loader_stream.h).
 *
 * One job at a time passes between the main thread and the reader thread.
 * Its state says who owns the batch buffers: the reader while QUEUED, the
 * main thread while IDLE or DONE. A read sorts the rows, reads them in file
 * order (dataset.c picks the fastest way for the layout), then puts each
 * row back in the position it was asked for. */
#include "loader_stream.h"

#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t row;  /* in the file */
    int64_t pos;  /* in the batch as asked */
} RowPos;

typedef enum { IDLE, QUEUED, DONE } JobState;

struct SfStream {
    SfDataset *ds;
    int64_t row0, cap;
    int classes;
    size_t frow, lrow;            /* bytes per feature row, label row */
    /* The batch, owned as JobState says. */
    int64_t *want, n;             /* set rows, in the order asked */
    RowPos *order;                /* the same, sorted by file row */
    int64_t *rows;                /* file rows, sorted */
    unsigned char *sfeat, *slab;  /* as read: in file order */
    unsigned char *feat, *lab;    /* as asked */
    int status;                   /* of the last read: 0 or -1 with err */
    SfError err;
    /* The hand-over. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    JobState state;
    int quit;
    int thread;                   /* 1 running, 0 not yet, -1 could not start */
    pthread_t tid;
};

static int by_row(const void *a, const void *b)
{
    int64_t x = ((const RowPos *)a)->row, y = ((const RowPos *)b)->row;
    return (x > y) - (x < y);
}

/* Reads the batch in s->want; 0 or -1 with s->err. */
static int read_batch(SfStream *s)
{
    const int64_t n = s->n;
    sf_error_clear(&s->err);
    for (int64_t k = 0; k < n; k++)
        s->order[k] = (RowPos){s->row0 + s->want[k], k};
    qsort(s->order, (size_t)n, sizeof *s->order, by_row);
    for (int64_t k = 0; k < n; k++)
        s->rows[k] = s->order[k].row;
    if (sf_dataset_read_feature_rows(s->ds, s->rows, n, s->sfeat, &s->err) ||
        (s->lrow && (s->classes
                     ? sf_dataset_read_class_label_rows(s->ds, s->rows, n,
                                                        (int32_t *)s->slab, &s->err)
                     : sf_dataset_read_target_label_rows(s->ds, s->rows, n,
                                                         (float *)s->slab, &s->err))))
        return -1;
    for (int64_t k = 0; k < n; k++) {
        size_t p = (size_t)s->order[k].pos;
        memcpy(s->feat + p * s->frow, s->sfeat + (size_t)k * s->frow, s->frow);
        memcpy(s->lab + p * s->lrow, s->slab + (size_t)k * s->lrow, s->lrow);
    }
    return 0;
}

static void *reader(void *arg)
{
    SfStream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->quit && s->state != QUEUED)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit)
            break;
        pthread_mutex_unlock(&s->mu);
        int status = read_batch(s);
        pthread_mutex_lock(&s->mu);
        s->status = status;
        s->state = DONE;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The reader blocks every signal: a SIGTERM asking for a checkpoint must
 * reach the main thread, which acts on it. */
static void start_thread(SfStream *s)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    s->thread = pthread_create(&s->tid, NULL, reader, s) == 0 ? 1 : -1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

SfStream *sf_stream_create(SfDataset *ds, int64_t row0, int classes,
                           int64_t cap, SfError *err)
{
    const SfDatasetInfo *info = sf_dataset_info(ds);
    SfStream *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->ds = ds;
    s->row0 = row0;
    s->cap = cap;
    s->classes = classes;
    s->frow = (size_t)info->feature_size * sf_dtype_size(info->features.dtype);
    /* int32 or float32; none when the set was opened without labels */
    s->lrow = (size_t)(classes ? 1 : info->label_width) * 4;
    size_t rows = (size_t)cap + 1;
    s->want = malloc(rows * sizeof *s->want);
    s->order = malloc(rows * sizeof *s->order);
    s->rows = malloc(rows * sizeof *s->rows);
    s->sfeat = malloc(rows * s->frow);
    s->slab = malloc(rows * s->lrow);
    s->feat = malloc(rows * s->frow);
    s->lab = malloc(rows * s->lrow);
    if (!s->want || !s->order || !s->rows || !s->sfeat || !s->slab ||
        !s->feat || !s->lab)
        goto oom;
    s->state = IDLE;
    return s;
oom:
    sf_error_set(err, SF_EXIT_FAILURE, "out of memory for stream buffers of "
                 "%lld rows", (long long)cap);
    sf_stream_free(s);
    return NULL;
}

void sf_stream_free(SfStream *s)
{
    if (!s)
        return;
    if (s->thread == 1) {
        pthread_mutex_lock(&s->mu);
        while (s->state == QUEUED) /* let a read in progress finish */
            pthread_cond_wait(&s->cv, &s->mu);
        s->quit = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->tid, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->want);
    free(s->order);
    free(s->rows);
    free(s->sfeat);
    free(s->slab);
    free(s->feat);
    free(s->lab);
    free(s);
}

void sf_stream_prefetch(SfStream *s, const int64_t *rows, int64_t n)
{
    assert(n >= 0 && n <= s->cap);
    if (s->thread == 0)
        start_thread(s);
    if (s->thread < 0)
        return;
    pthread_mutex_lock(&s->mu);
    while (s->state == QUEUED)
        pthread_cond_wait(&s->cv, &s->mu);
    memcpy(s->want, rows, (size_t)n * sizeof *rows);
    s->n = n;
    s->state = QUEUED;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sf_stream_read(SfStream *s, const int64_t *rows, int64_t n,
                   const unsigned char **feat, const unsigned char **lab,
                   SfError *err)
{
    assert(n >= 0 && n <= s->cap);
    int ready = 0;
    if (s->thread == 1) {
        pthread_mutex_lock(&s->mu);
        while (s->state == QUEUED)
            pthread_cond_wait(&s->cv, &s->mu);
        ready = s->state == DONE && s->n == n &&
                memcmp(s->want, rows, (size_t)n * sizeof *rows) == 0;
        s->state = IDLE;
        pthread_mutex_unlock(&s->mu);
    }
    if (!ready) {
        memcpy(s->want, rows, (size_t)n * sizeof *rows);
        s->n = n;
        s->status = read_batch(s);
    }
    if (s->status) {
        sf_error_set(err, s->err.code, "%s", s->err.msg);
        return -1;
    }
    *feat = s->feat;
    *lab = s->lab;
    return 0;
}
