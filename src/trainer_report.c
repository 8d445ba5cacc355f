/* trainer_report.c: what a run says about itself, in the words of SPEC §1:
 * the regime (full-batch, stochastic or mini-batch gradient descent), steps
 * per epoch, micro-batches per step; then a line per epoch and a closing
 * summary. Only rank 0 prints or writes files. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dirs.h"
#include "trainer_internal.h"

/* log.trace, relative paths inside log.dir as log.metrics. */
static void trace_path(const SfConfig *c, char *buf, size_t size)
{
    if (c->log.trace[0] == '/')
        snprintf(buf, size, "%s", c->log.trace);
    else
        snprintf(buf, size, "%s/%s", c->log.dir, c->log.trace);
}

int sf_trainer_open_trace(SfTrainer *t, SfError *err)
{
    const SfConfig *c = t->cfg;
    if (!c->log.trace[0])
        return 0;
    /* The buffer holds the window's steps: per step a step span, data,
     * allreduce and optimizer, forward and backward per micro-batch and the
     * step's collectives (room for 32); per epoch touched, evaluation,
     * checkpoints and the epoch's own collectives (room for 64). */
    int64_t last = c->log.trace_last < t->total_steps ? c->log.trace_last
                                                      : t->total_steps;
    int64_t steps = last >= c->log.trace_first ? last - c->log.trace_first + 1 : 0;
    int64_t micro_per_step = (t->slice_max + t->micro - 1) / t->micro;
    int64_t epochs = steps / t->steps_per_epoch + 2;
    int64_t cap = steps * (2 * micro_per_step + 36) + epochs * 64 + 256;
    t->trace = sf_trace_create(t->comm, c->log.trace_first, c->log.trace_last,
                               cap, err);
    int status = sf_comm_agree_error(t->comm, !t->trace, 0, err);
    if (status) {
        sf_trace_free(t->trace);
        t->trace = NULL;
        return status;
    }
    t->phases.trace = t->trace;
    return 0;
}

int sf_trainer_close_trace(SfTrainer *t, SfError *err)
{
    char path[2 * SF_CONFIG_STR + 8];
    trace_path(t->cfg, path, sizeof path);
    t->phases.trace = NULL;
    FILE *summary = t->rank == 0 && t->progress.mode != SF_PROGRESS_NONE ? stdout
                                                                         : NULL;
    int rc = sf_trace_finish(t->trace, path, summary, err);
    sf_trace_free(t->trace);
    t->trace = NULL;
    return sf_comm_agree_error(t->comm, rc != 0, 0, err);
}

int sf_trainer_open_log(SfTrainer *t, SfError *err)
{
    const SfConfig *c = t->cfg;
    sf_progress_init(&t->progress, c->log.progress, stdout);
    char failed[SF_CONFIG_STR];
    if (sf_make_dirs(c->log.dir, failed, sizeof failed)) {
        sf_error_set(err, SF_EXIT_INPUT, "log.dir '%s': cannot create '%s': %s",
                     c->log.dir, failed, strerror(errno));
        return -1;
    }
    if (sf_trainer_write_config(t, err))
        return -1;
    if (c->log.trace[0]) {
        /* Written at the end: find out now that it cannot be. */
        char path[2 * SF_CONFIG_STR + 8];
        trace_path(c, path, sizeof path);
        snprintf(path + strlen(path), sizeof path - strlen(path), ".tmp");
        FILE *f = fopen(path, "w");
        if (!f) {
            sf_error_set(err, SF_EXIT_INPUT, "log.trace '%s': cannot write: %s",
                         c->log.trace, strerror(errno));
            return -1;
        }
        fclose(f);
        remove(path);
    }
    if (!c->log.metrics[0])
        return 0;
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s/%s", c->log.dir,
             c->log.metrics);
    FILE *f = fopen(t->metrics_path, "w");
    if (!f) {
        sf_error_set(err, SF_EXIT_INPUT, "log.metrics '%s': cannot write: %s",
                     t->metrics_path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static void print_regime(const SfTrainer *t)
{
    const SfConfig *c = t->cfg;
    const char *regime = t->batch == t->n ? "full-batch gradient descent"
                         : t->batch == 1  ? "stochastic gradient descent"
                                          : "mini-batch gradient descent";
    int64_t last = t->n - (t->steps_per_epoch - 1) * t->batch;
    printf("shardfit: %s: %lld samples, batch %lld, %lld step%s per epoch",
           regime, (long long)t->n, (long long)t->batch,
           (long long)t->steps_per_epoch, t->steps_per_epoch == 1 ? "" : "s");
    if (c->train.drop_last && t->n % t->batch)
        printf(" (drop_last: %lld samples skipped each epoch)",
               (long long)(t->n % t->batch));
    else if (!c->train.drop_last && last != t->batch)
        printf(" (last batch %lld samples)", (long long)last);
    printf(", %lld steps in %lld epoch%s", (long long)t->total_steps,
           (long long)c->train.epochs, c->train.epochs == 1 ? "" : "s");
    if (c->train.max_steps > 0 && t->total_steps == c->train.max_steps)
        printf(" (max_steps %lld)", (long long)c->train.max_steps);
    printf("\n");
}

/* The start line of a gradient summed by one allreduce after backward: why
 * not node-shared when that was asked for, and on 3 or more ranks the
 * algorithm Open MPI sums it by (alg, or NULL). */
static void print_allreduce(const SfConfig *c, int nhosts, const char *alg)
{
    const char *why = !sf_trainer_node_shared_asked(c) ? NULL
                      : nhosts > 1 ? "comm.node_shared needs 2 or more ranks on every "
                                     "host, as many on each, and room in /dev/shm"
                                   : "comm.node_shared: no room for its window in "
                                     "/dev/shm, or past the file size limit";
    printf("shardfit: gradient summed by one allreduce after backward");
    if (why || alg)
        printf(" (%s%s%s%s)", why ? why : "", why && alg ? "; " : "",
               alg ? "Open MPI's allreduce: " : "", alg ? alg : "");
    printf("\n");
}

void sf_trainer_print_start(const SfTrainer *t)
{
    if (t->rank != 0)
        return;
    /* Said even with progress = none when the job spans hosts: when a host
     * dies, Open MPI's message names the host, and this line its ranks. */
    char hosts[2048];
    int nhosts = sf_comm_describe_hosts(t->comm, hosts, sizeof hosts);
    if (nhosts > 1)
        printf("shardfit: %d ranks on %d hosts: %s\n", t->size, nhosts, hosts);
    if (t->progress.mode == SF_PROGRESS_NONE) {
        fflush(stdout);
        return;
    }
    const SfConfig *c = t->cfg;
    char model[512];
    sf_model_describe(t->model, model, sizeof model);
    print_regime(t);
    int64_t micro_per_step = (t->slice_max + t->micro - 1) / t->micro;
    printf("shardfit: %d rank%s, loader %s, up to %lld samples per rank per "
           "step, %lld micro-batch%s per step\n", t->size, t->size == 1 ? "" : "s",
           sf_config_loader_name(c->data.loader), (long long)t->slice_max,
           (long long)micro_per_step, micro_per_step == 1 ? "" : "es");
    if (t->size > 1) {
        const char *alg = sf_comm_buckets_algorithm(t->comm); /* or NULL */
        if (t->shared && sf_shared_hosts(t->shared) > 1)
            printf("shardfit: gradient summed in node-shared memory on each of %d hosts, "
                   "then allreduced between them (comm.node_shared)\n",
                   sf_shared_hosts(t->shared));
        else if (t->shared)
            printf("shardfit: gradient summed in node-shared memory (comm.node_shared)\n");
        else if (t->nbuckets > 0)
            printf("shardfit: gradient summed in %d buckets during backward "
                   "(comm.bucket_mb = %g%s%s)\n", t->nbuckets, c->comm.bucket_mb,
                   alg ? "; Open MPI's iallreduce: " : "", alg ? alg : "");
        else
            print_allreduce(c, nhosts, sf_comm_sums_algorithm(t->comm));
    }
    printf("shardfit: model %s, %lld parameters, loss %s, optimizer %s lr %g\n",
           model, (long long)sf_model_nparams(t->model),
           c->model.loss == SF_LOSS_CROSS_ENTROPY ? "cross_entropy" : "mse",
           sf_config_optim_name(c->optimizer.name), t->schedule.base);
    if (t->val)
        printf("shardfit: validation on %lld samples every epoch\n",
               (long long)sf_loader_rows(t->val));
    if (sf_trainer_checkpointing(c)) {
        printf("shardfit: checkpoints in %s", c->checkpoint.dir);
        if (c->checkpoint.every_epochs > 0)
            printf(" every %lld epoch%s", (long long)c->checkpoint.every_epochs,
                   c->checkpoint.every_epochs == 1 ? "" : "s");
        if (c->checkpoint.every_steps > 0)
            printf("%s every %lld steps", c->checkpoint.every_epochs > 0 ? " and" : "",
                   (long long)c->checkpoint.every_steps);
        if (c->checkpoint.keep_last > 0)
            printf(", keeping the last %lld", (long long)c->checkpoint.keep_last);
        printf("\n");
    }
    fflush(stdout);
}

int sf_trainer_replay_history(SfTrainer *t, SfError *err)
{
    if (t->rank != 0 || !t->metrics_path[0])
        return 0;
    for (int64_t i = 0; i < t->nhistory; i++)
        if (sf_metrics_append(t->metrics_path, &t->history[i], err))
            return -1;
    return 0;
}

int sf_trainer_report_epoch(SfTrainer *t, const SfEpochMetrics *m, SfError *err)
{
    if (t->rank != 0)
        return 0;
    sf_progress_epoch(&t->progress, m, t->cfg->train.epochs, t->steps_per_epoch);
    return t->metrics_path[0] ? sf_metrics_append(t->metrics_path, m, err) : 0;
}

void sf_trainer_print_end(const SfTrainer *t, const SfTrainResult *res)
{
    if (t->rank != 0)
        return;
    /* How to continue is printed even with progress = none: it is the one
     * line a preempted job's log must have. */
    if (res->preempted)
        printf("shardfit: %s%s%s\n", res->stop_reason,
               t->last_checkpoint[0] ? "; checkpoint: " : "", t->last_checkpoint);
    if (t->progress.mode == SF_PROGRESS_NONE || res->nhistory == 0) {
        fflush(stdout);
        return;
    }
    const SfEpochMetrics *m = &res->final;
    double samples = 0.0, seconds = 0.0;
    for (int64_t i = 0; i < res->nhistory; i++) {
        samples += (double)res->history[i].samples;
        seconds += res->history[i].seconds - res->history[i].eval_seconds;
    }
    printf("shardfit: done (%s): %lld epochs, %lld steps in %.1fs, "
           "%.0f samples/s; loss %.4f", res->stop_reason,
           (long long)res->epochs_done, (long long)res->steps_done, res->seconds,
           samples / seconds, m->loss);
    if (m->has_accuracy)
        printf(" acc %.4f", m->accuracy);
    if (m->has_val)
        printf(" val_loss %.4f", m->val_loss);
    if (m->has_val && m->has_accuracy)
        printf(" val_acc %.4f", m->val_accuracy);
    if (res->restored_epoch)
        printf(" (restored the weights of epoch %lld)", (long long)res->restored_epoch);
    printf("\n");
    fflush(stdout);
}
