/* trainer_setup.c: what a run builds before its first step, on each rank
 * alone (trainer_internal.h): the data, the plan of steps and slices, the
 * model, optimizer and buffers, and the gradient buckets. trainer.c has the
 * ranks agree that it worked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/checkpoint.h"
#include "shardfit/dataset.h"
#include "shardfit/loader.h"
#include "shardfit/model.h"
#include "shardfit/optim.h"
#include "shardfit/sampler.h"
#include "shardfit/schedule.h"
#include "shardfit/stopping.h"
#include "trainer_internal.h"

/* Opens the training and validation sets; 0 or -1 with err. */
static int open_data(SfTrainer *t, SfError *err)
{
    const SfConfig *c = t->cfg;
    SfLoaderSpec spec = {c->data.loader, c->data.path, c->data.features,
                         c->data.labels, "data", "data.path", 0, -1,
                         (float)c->data.scale, (float)c->data.offset};
    if (c->data.validation_split > 0.0) {
        /* Keras: the LAST fraction of rows, split_at = floor(N * (1 - split)). */
        SfDataset *ds = sf_dataset_open(spec.path, spec.features, spec.labels, err);
        if (!ds) {
            sf_error_prefix(err, "data.path ");
            return -1;
        }
        int64_t n = sf_dataset_info(ds)->rows;
        sf_dataset_close(ds);
        int64_t split_at = (int64_t)floor((double)n * (1.0 - c->data.validation_split));
        if (split_at < 1 || split_at >= n) {
            sf_error_set(err, SF_EXIT_INPUT, "data.validation_split = %g leaves "
                         "%lld of %lld rows for training: need at least one "
                         "row on each side", c->data.validation_split,
                         (long long)split_at, (long long)n);
            return -1;
        }
        spec.rows = split_at;
        if (!(t->train = sf_loader_open(&spec, t->comm, err)))
            return -1;
        spec.what = "validation";
        spec.row0 = split_at;
        spec.rows = n - split_at;
        t->val = sf_loader_open(&spec, t->comm, err);
        return t->val ? 0 : -1;
    }
    if (!(t->train = sf_loader_open(&spec, t->comm, err)))
        return -1;
    if (!c->data.val_features[0])
        return 0;
    spec.what = "validation";
    spec.path_key = c->data.val_path[0] ? "data.val_path" : "data.path";
    spec.path = c->data.val_path[0] ? c->data.val_path : c->data.path;
    spec.features = c->data.val_features;
    spec.labels = c->data.val_labels;
    t->val = sf_loader_open(&spec, t->comm, err);
    return t->val ? 0 : -1;
}

/* Works out the batch plan from N, B, P and micro_batch. */
static int plan(SfTrainer *t, SfError *err)
{
    const SfConfig *c = t->cfg;
    t->n = sf_loader_rows(t->train);
    if (c->train.batch_size > t->n) {
        sf_error_set(err, SF_EXIT_INPUT, "train.batch_size = %lld is larger than "
                     "the %lld training samples (use batch_size = all for "
                     "full-batch gradient descent)",
                     (long long)c->train.batch_size, (long long)t->n);
        return -1;
    }
    t->batch = c->train.batch_size > 0 ? c->train.batch_size : t->n;
    t->steps_per_epoch = sf_sampler_steps(t->n, t->batch, c->train.drop_last);
    t->total_steps = t->steps_per_epoch * c->train.epochs;
    if (c->train.max_steps > 0 && c->train.max_steps < t->total_steps)
        t->total_steps = c->train.max_steps;
    t->slice_max = (t->batch + t->size - 1) / t->size;
    t->micro = c->train.micro_batch > 0 && c->train.micro_batch < t->slice_max
                   ? c->train.micro_batch : t->slice_max;
    t->eval_rows = t->micro > 256 ? t->micro : 256;
    return 0;
}

/* Scratch for one slice (or one evaluation chunk) of inputs and targets.
 * Targets take at most output-width floats per row, whichever set they come
 * from (sf_loader_check_targets has made sure of that). */
static int allocate_buffers(SfTrainer *t, SfError *err)
{
    int64_t rows = t->slice_max > t->eval_rows ? t->slice_max : t->eval_rows;
    int64_t fsize = sf_shape_size(sf_loader_sample_shape(t->train));
    int64_t lw = sf_model_output_width(t->model);
    int64_t np = sf_model_nstate(t->model);
    t->perm = malloc((size_t)t->n * sizeof *t->perm);
    t->x = malloc((size_t)(rows * fsize) * sizeof *t->x);
    t->classes = malloc((size_t)rows * sizeof *t->classes);
    t->values = malloc((size_t)(rows * lw) * sizeof *t->values);
    t->history = calloc((size_t)t->cfg->train.epochs, sizeof *t->history);
    t->result_params = malloc((size_t)np * sizeof(float));
    if (t->cfg->stop.restore_best)
        t->best_params = malloc((size_t)np * sizeof(float));
    if (!t->perm || !t->x || !t->classes || !t->values || !t->history ||
        !t->result_params || (t->cfg->stop.restore_best && !t->best_params)) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for batch buffers "
                     "(%lld rows of %lld features)", (long long)rows,
                     (long long)fsize);
        return -1;
    }
    return sf_loader_reserve(t->train, t->batch, err);
}

/* Everything that can fail before training, done on each rank alone. */
int sf_trainer_setup_local(SfTrainer *t, SfError *err)
{
    const SfConfig *c = t->cfg;
    if (open_data(t, err) || plan(t, err))
        return -1;
    int64_t rows = t->micro > t->eval_rows ? t->micro : t->eval_rows;
    t->model = sf_model_create(c->model.layers, sf_loader_sample_shape(t->train),
                               c->model.loss, rows, err);
    if (!t->model)
        return -1;
    /* With validation_split the validation rows are the tail of data.labels. */
    int split = c->data.validation_split > 0.0;
    int64_t k = sf_model_output_width(t->model);
    if (sf_loader_check_targets(t->train, k, c->model.loss, "data.labels",
                                c->data.labels, err) ||
        (t->val && sf_loader_check_targets(t->val, k, c->model.loss,
                                           split ? "data.labels" : "data.val_labels",
                                           split ? c->data.labels : c->data.val_labels,
                                           err)))
        return -1;
    if (t->val && sf_shape_size(sf_loader_sample_shape(t->val)) !=
                      sf_shape_size(sf_loader_sample_shape(t->train))) {
        sf_error_set(err, SF_EXIT_INPUT, "validation features have %lld values "
                     "per row, training features %lld",
                     (long long)sf_shape_size(sf_loader_sample_shape(t->val)),
                     (long long)sf_shape_size(sf_loader_sample_shape(t->train)));
        return -1;
    }
    SfMonitor mon = c->stop.monitor;
    int stopping = c->stop.early_stopping || c->stop.target != 0.0;
    if (stopping && (mon == SF_MONITOR_ACCURACY || mon == SF_MONITOR_VAL_ACCURACY) &&
        !sf_loader_has_classes(t->train)) {
        sf_error_set(err, SF_EXIT_INPUT, "stop.monitor = %s needs integer class "
                     "labels; data.labels holds float targets (monitor a loss)",
                     sf_config_monitor_name(mon));
        return -1;
    }
    if (!(t->optim = sf_optim_create(c, sf_model_nparams(t->model), err)))
        return -1;
    sf_model_init_params(t->model, c->model.init, c->train.seed);
    sf_schedule_init(&t->schedule, c, t->steps_per_epoch, t->total_steps);
    if (allocate_buffers(t, err))
        return -1;
    sf_stopper_init(&t->stopper, c);
    if (t->rank != 0)
        return 0;
    if (sf_trainer_checkpointing(c) &&
        sf_checkpoint_prepare_dir(c->checkpoint.dir, err))
        return -1;
    return sf_trainer_open_log(t, err);
}

/* Cuts the gradient block into buckets of about comm.bucket_mb MiB at layer
 * boundaries, from the last layer back (the order backward finishes them),
 * and starts the helper thread that sums them. Collective. 0 or -1 with
 * err. One bucket, or one rank, keeps the blocking allreduce. */
int sf_trainer_plan_buckets(SfTrainer *t, SfError *err)
{
    t->nbuckets = 0;
    const double mb = t->cfg->comm.bucket_mb;
    if (mb <= 0.0 || t->size == 1)
        return 0;
    const float *g0 = sf_model_grads(t->model);
    const double cap = mb * 1024.0 * 1024.0 / sizeof(float);
    int64_t end = sf_model_nparams(t->model);
    for (int i = sf_model_nlayers(t->model) - 1; i >= 0; i--) {
        const SfLayer *l = sf_model_layer(t->model, i);
        int64_t first = l->dw - g0;
        if (l->nweight + l->nbias == 0)
            continue;
        int last_room = t->nbuckets == SF_TRAINER_MAX_BUCKETS - 1;
        if (first == 0 || (!last_room && (double)(end - first) >= cap)) {
            t->bucket_first[t->nbuckets++] = first;
            end = first;
        }
    }
    if (t->nbuckets <= 1) {
        t->nbuckets = 0;
        return 0;
    }
    if (sf_comm_enable_buckets(t->comm)) {
        sf_error_set(err, SF_EXIT_FAILURE, "comm.bucket_mb = %g: cannot start "
                     "the thread that sums gradient buckets", mb);
        return -1;
    }
    return 0;
}
