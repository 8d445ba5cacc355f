/* trainer.c: the training run (trainer.h). trainer_setup.c builds
 * everything on each rank and sf_train() has the ranks agree that it worked;
 * train_step() is one optimizer step; the epoch loop in sf_train() reads as
 * the algorithm. What is printed lives in trainer_report.c. */
#include "shardfit/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/evaluate.h"
#include "shardfit/loader.h"
#include "shardfit/model.h"
#include "shardfit/optim.h"
#include "shardfit/sampler.h"
#include "shardfit/signals.h"
#include "shardfit/schedule.h"
#include "shardfit/stopping.h"
#include "trainer_internal.h"

/* The step's sums after the gradients, in the block's tail (TAIL_*). */
static void fill_tail(SfTrainer *t, SfLossSums sums, int64_t len, int bad_data)
{
    float *tail = sf_model_grads(t->model) + sf_model_nparams(t->model);
    tail[TAIL_LOSS] = (float)sums.loss;
    tail[TAIL_CORRECT] = (float)sums.correct;
    tail[TAIL_COUNT] = (float)len;
    tail[TAIL_STOP] = sf_signals_pending() ? 1.0f : 0.0f;
    tail[TAIL_ERROR] = bad_data ? 1.0f : 0.0f;
}

/* Posts every bucket not yet posted whose gradients all lie at or after
 * ready (nparams: none yet; 0: all). Bucket 0 carries the tail. */
static void post_buckets(SfTrainer *t, int64_t ready)
{
    const int64_t np = sf_model_nparams(t->model);
    float *g = sf_model_grads(t->model);
    while (t->bucket_posted < t->nbuckets &&
           t->bucket_first[t->bucket_posted] >= ready) {
        int k = t->bucket_posted++;
        int64_t first = t->bucket_first[k];
        int64_t end = k == 0 ? np + SF_MODEL_GRAD_TAIL : t->bucket_first[k - 1];
        sf_comm_post_sum_f32(t->comm, g + first, end - first);
    }
}

/* The last micro-batch's gradient hook: the first call fills the tail
 * (the share's loss is known before its last backward starts), each call
 * posts the buckets backward has finished. */
typedef struct {
    SfTrainer *t;
    int64_t len;
    int bad_data;
} BucketHook;

static void bucket_ready(void *ctx, int64_t first, SfLossSums share)
{
    BucketHook *h = ctx;
    if (h->t->bucket_posted == 0)
        fill_tail(h->t, share, h->len, h->bad_data);
    post_buckets(h->t, first);
}

/* Rank 0 draws the epoch's order; everyone receives the same. */
static void draw_permutation(SfTrainer *t, int64_t epoch)
{
    if (t->rank == 0)
        sf_sampler_permutation(t->cfg->train.seed, epoch, t->cfg->train.shuffle,
                               t->n, t->perm);
    sf_comm_bcast_i64(t->comm, t->perm, t->n, 0);
}

/* The model's reduction for batch statistics (SfReduceFn). */
static void reduce_f64(void *comm, double *buf, int64_t n)
{
    sf_comm_allreduce_sum_f64(comm, buf, n);
}

/* One optimizer step on global batch s; adds the step's allreduced sums and
 * phase times to the epoch's running totals in t. Returns -1 when training
 * diverged (t->diverged says how), -2 when a rank's loader failed (that
 * rank's t->data_err says why): every rank sees the same allreduced values,
 * so every rank returns the same at the same step. */
static int train_step(SfTrainer *t, int64_t s)
{
    int64_t start, count, off, len;
    sf_sampler_batch(t->n, t->batch, s, &start, &count);
    sf_sampler_part(count, t->size, t->rank, &off, &len);
    const int classes = sf_loader_has_classes(t->train);

    SfPhases *ph = &t->phases;
    sf_phases_begin(ph, SF_PHASE_DATA);
    /* A rank whose loader fails still joins the step's allreduce, with the
     * failure flagged in its tail, so all ranks stop here together. */
    int bad_data = sf_loader_fetch(t->train, t->perm + start, count, t->x,
                                   t->classes, t->values, &t->data_err) < 0;
    if (bad_data)
        len = 0;
    else if (s + 1 < t->steps_per_epoch) {
        int64_t next_start, next_count;
        sf_sampler_batch(t->n, t->batch, s + 1, &next_start, &next_count);
        sf_loader_prefetch(t->train, t->perm + next_start, next_count);
    }
    sf_phases_end(ph, SF_PHASE_DATA);

    /* Gradient accumulation: micro-batches add into one gradient block;
     * batch statistics are reduced over the ranks through the pass, which
     * also times forward and backward. With buckets, the last micro-batch's
     * backward posts each bucket as its layers finish (last layer first); a
     * rank without samples, or whose loader failed, posts them all after, so
     * every rank makes the same collectives. */
    SfTargets tg = {classes ? t->classes : NULL, classes ? NULL : t->values};
    SfPass pass = {1, t->cfg->train.seed, t->step, t->perm + start + off,
                   reduce_f64, t->comm, ph, !sf_trainer_shared_writer(t)};
    t->bucket_posted = 0;
    BucketHook bh = {t, len, bad_data};
    SfGradHook hook = {bucket_ready, &bh};
    SfLossSums sums = sf_model_train_share(t->model, t->x, len, t->micro,
                                           t->micro < t->slice_max, tg, &pass,
                                           t->nbuckets > 0 ? &hook : NULL);
    const int64_t np = sf_model_nparams(t->model);
    float *g = sf_model_grads(t->model);
    if (t->bucket_posted == 0)
        fill_tail(t, sums, len, bad_data);

    /* The allreduce phase is what the step waits for after backward: with
     * buckets, only the part not hidden behind it; in node-shared memory,
     * the sync and this rank's slice of the sum. */
    sf_phases_begin(ph, SF_PHASE_ALLREDUCE);
    const float *tail = g + np;
    if (t->shared) {
        tail = sf_trainer_node_sum(t);
    } else if (t->nbuckets > 0) {
        post_buckets(t, 0);
        sf_comm_wait_sums(t->comm);
    } else {
        sf_comm_allreduce_sum_f32(t->comm, g, np + SF_MODEL_GRAD_TAIL);
    }
    sf_phases_end(ph, SF_PHASE_ALLREDUCE);
    if (tail[TAIL_ERROR] > 0.0f)
        return -2;
    if (!isfinite(tail[TAIL_LOSS])) {
        t->diverged = "the loss is not finite";
        return -1;
    }

    /* SPEC §2: the mean gradient over the global batch, whatever the slices. */
    sf_phases_begin(ph, SF_PHASE_OPTIMIZER);
    float scale = 1.0f / tail[TAIL_COUNT];
    const double clip = t->cfg->optimizer.clip_norm;
    t->lr = sf_schedule_lr(&t->schedule, t->step);
    int bad_step;
    if (t->shared) {
        bad_step = sf_trainer_node_update(t, scale, clip, t->lr);
    } else {
        if (clip > 0.0)
            scale = sf_optim_clip_scale(scale, sf_optim_grad_norm(g, np, scale), clip);
        bad_step = sf_optim_step(t->optim, sf_model_params(t->model), g, scale, t->lr);
    }
    sf_phases_end(ph, SF_PHASE_OPTIMIZER);
    if (bad_step) {
        t->diverged = "the gradient or the updated weights are not finite";
        return -1;
    }

    t->sum_loss += tail[TAIL_LOSS];
    t->sum_correct += tail[TAIL_CORRECT];
    t->sum_count += tail[TAIL_COUNT];
    t->stop_requested = tail[TAIL_STOP] > 0.0f;
    t->step++;
    return 0;
}

/* Each rank evaluates its block of the validation set; sums are allreduced,
 * so the mean is sample-weighted, never a mean of per-rank means. Returns -1
 * on every rank when any rank's loader failed (its t->data_err says why). */
static int evaluate(SfTrainer *t, SfEpochMetrics *m)
{
    if (!t->val)
        return 0;
    const double before = t->phases.total[SF_PHASE_EVAL];
    sf_phases_begin(&t->phases, SF_PHASE_EVAL);
    double sums[4] = {0.0, 0.0, 0.0, 0.0}; /* loss, correct, count, failed */
    if (sf_evaluate_block(t->model, t->val, t->eval_rows, t->x, t->classes, t->values,
                          sums, &t->data_err))
        sums[3] = 1.0;
    sf_comm_allreduce_sum_f64(t->comm, sums, 4);
    sf_phases_end(&t->phases, SF_PHASE_EVAL);
    if (sums[3] > 0.0)
        return -1;
    m->has_val = 1;
    m->val_loss = sums[0] / sums[2];
    m->val_accuracy = sums[1] / sums[2];
    m->eval_seconds = t->phases.total[SF_PHASE_EVAL] - before;
    return 0;
}

/* How an epoch ended. */
typedef enum { EPOCH_DONE, EPOCH_DIVERGED, EPOCH_PREEMPTED, EPOCH_FAILED,
               EPOCH_BAD_DATA } EpochEnd;

/* Writes a step checkpoint after this step when every_steps asks for one or
 * a signal asked to stop, unless the epoch ends here (the epoch file covers
 * that). Collective. 0, or the agreed exit status. */
static int maybe_save_step(SfTrainer *t, int64_t e, int64_t s, SfError *err)
{
    const SfConfig *c = t->cfg;
    int every = c->checkpoint.every_steps > 0 && t->step % c->checkpoint.every_steps == 0;
    if (s + 1 == t->steps_per_epoch || !(every || t->stop_requested) ||
        !sf_trainer_checkpointing(c))
        return 0;
    return sf_trainer_save(t, e, 0, err);
}

/* Runs epoch e (0-based) from its first step, or from where a resumed
 * checkpoint left it, up to its end or max_steps; fills m. Divergence and
 * stop requests are seen alike on every rank, so all ranks return alike. */
static EpochEnd run_epoch(SfTrainer *t, int64_t e, SfEpochMetrics *m, SfError *err)
{
    const SfConfig *c = t->cfg;
    double start = sf_clock();
    int64_t s = e == t->start_epoch ? t->start_step_in_epoch : 0;
    if (s == 0)
        t->sum_loss = t->sum_correct = t->sum_count = 0.0;
    sf_phases_reset(&t->phases);
    t->step_in_epoch = s;
    draw_permutation(t, e);
    for (; s < t->steps_per_epoch; s++) {
        if (c->train.max_steps > 0 && t->step >= c->train.max_steps)
            break;
        sf_comm_set_position(t->comm, e + 1, t->step + 1);
        sf_phases_set_step(&t->phases, t->step + 1);
        sf_phases_begin(&t->phases, SF_PHASE_STEP);
        int r = train_step(t, s);
        sf_phases_end(&t->phases, SF_PHASE_STEP);
        if (r)
            return r == -2 ? EPOCH_BAD_DATA : EPOCH_DIVERGED;
        t->step_in_epoch = s + 1;
        if (t->rank == 0)
            sf_progress_step(&t->progress, e + 1, c->train.epochs, s + 1,
                             t->steps_per_epoch, t->sum_loss / t->sum_count,
                             t->sum_correct / t->sum_count,
                             sf_loader_has_classes(t->train));
        if (maybe_save_step(t, e, s, err))
            return EPOCH_FAILED;
        if (t->stop_requested && s + 1 < t->steps_per_epoch)
            return EPOCH_PREEMPTED;
    }
    double train_seconds = sf_clock() - start;
    *m = (SfEpochMetrics){0};
    m->epoch = e + 1;
    m->step = t->step;
    m->steps_in_epoch = s;
    m->lr = t->lr;
    m->loss = t->sum_loss / t->sum_count;
    m->accuracy = t->sum_correct / t->sum_count;
    m->has_accuracy = sf_loader_has_classes(t->train);
    m->world_size = t->size;
    m->samples = (int64_t)t->sum_count;
    m->samples_per_sec = t->sum_count / train_seconds;
    const double *pt = t->phases.total;
    m->step_seconds = pt[SF_PHASE_STEP];
    m->compute_seconds = sf_phases_compute(&t->phases);
    m->forward_seconds = pt[SF_PHASE_FORWARD];
    m->backward_seconds = pt[SF_PHASE_BACKWARD];
    m->optimizer_seconds = pt[SF_PHASE_OPTIMIZER];
    m->allreduce_seconds = pt[SF_PHASE_ALLREDUCE];
    m->data_seconds = pt[SF_PHASE_DATA];
    if (evaluate(t, m))
        return EPOCH_BAD_DATA;
    m->seconds = sf_clock() - start;
    return EPOCH_DONE;
}

/* Agrees on a local status; the message stays on the first failing rank. */
static int agree(SfTrainer *t, int local, SfError *err)
{
    return sf_comm_agree_error(t->comm, local, 1, err);
}

static void teardown(SfTrainer *t)
{
    sf_loader_free(t->train);
    sf_loader_free(t->val);
    sf_model_free(t->model);
    sf_optim_free(t->optim);
    sf_shared_free(t->shared); /* after the model and optimizer that used it */
    free(t->shared_slots);
    free(t->perm);
    free(t->x);
    free(t->classes);
    free(t->values);
    free(t->history);
    free(t->result_params);
    free(t->best_params);
}

/* Every rank must hold the same weights (SPEC §2.5). Compared at every
 * epoch end and before every checkpoint, by one small allgather; the answer
 * is the same on all ranks, so all stop together. */
int sf_trainer_check_replicas(SfTrainer *t, const char *when, SfError *err)
{
    int bad[8];
    int n = sf_comm_count_drifted(t->comm, sf_model_params(t->model),
                                  (size_t)sf_model_nstate(t->model) * sizeof(float),
                                  bad, 8);
    if (!n)
        return 0;
    if (t->rank != 0) {
        err->code = SF_EXIT_FAILURE;
        return -1;
    }
    char list[128] = "";
    for (int i = 0, used = 0; i < n && i < 8; i++)
        used += snprintf(list + used, sizeof list - (size_t)used, "%s%d",
                         i ? ", " : "", bad[i]);
    sf_error_set(err, SF_EXIT_FAILURE, "replica drift %s: rank%s %s%s hold%s "
                 "weights that differ from rank 0's. This is a bug or silent "
                 "memory corruption, never expected: please report it", when,
                 n > 1 ? "s" : "", list, n > 8 ? ", ..." : "", n > 1 ? "" : "s");
    return -1;
}

/* After epoch e's metrics: keeps the best weights for restore_best and says
 * whether a stopping rule ends the run (stopping.h). */
static int should_stop(SfTrainer *t, SfTrainResult *res, const SfEpochMetrics *m)
{
    int improved;
    SfStopDecision d = sf_stopper_update(&t->stopper, m->epoch,
                                         sf_stopper_value(t->cfg, m), &improved);
    if (improved && t->best_params)
        memcpy(t->best_params, sf_model_params(t->model),
               (size_t)sf_model_nstate(t->model) * sizeof(float));
    res->best_epoch = t->stopper.best_epoch;
    if (d == SF_STOP_EARLY) {
        res->stopped_epoch = m->epoch;
        snprintf(res->stop_reason, sizeof res->stop_reason,
                 "early stopping at epoch %lld, best epoch %lld",
                 (long long)m->epoch, (long long)t->stopper.best_epoch);
    } else if (d == SF_STOP_TARGET) {
        res->stopped_epoch = m->epoch;
        snprintf(res->stop_reason, sizeof res->stop_reason,
                 "target %s %s %g reached at epoch %lld, step %lld, after %.1fs",
                 sf_config_monitor_name(t->cfg->stop.monitor),
                 t->stopper.maximize ? ">=" : "<=", t->cfg->stop.target,
                 (long long)m->epoch, (long long)m->step, sf_clock() - t->start);
    }
    return d != SF_STOP_CONTINUE;
}

/* The run's final weights: the best epoch's with restore_best (then
 * evaluated again, so `final` describes the weights handed back). */
static void finish(SfTrainer *t, SfTrainResult *res)
{
    const int64_t np = sf_model_nstate(t->model);
    res->nhistory = t->nhistory;
    if (t->nhistory > 0)
        res->final = t->history[t->nhistory - 1];
    if (t->best_params && t->stopper.best_epoch > 0) {
        if (sf_trainer_shared_writer(t))
            memcpy(sf_model_params(t->model), t->best_params, (size_t)np * sizeof(float));
        sf_trainer_share_sync(t);
        res->restored_epoch = t->stopper.best_epoch;
        res->final = t->history[t->stopper.best_epoch - 1];
        (void)evaluate(t, &res->final); /* the same rows were read each epoch */
    }
    memcpy(t->result_params, sf_model_params(t->model), (size_t)np * sizeof(float));
    res->params = t->result_params;
    res->nparams = np;
    t->result_params = NULL;
    res->history = t->history;
    t->history = NULL;
    res->steps_done = t->step;
    res->seconds = sf_clock() - t->start;
}

/* Every rank diverged at the same step: one message, from rank 0. */
static int report_divergence(SfTrainer *t, int64_t e, SfError *err)
{
    if (t->rank != 0) {
        err->code = SF_EXIT_FAILURE;
        return SF_EXIT_FAILURE;
    }
    char last[sizeof t->last_checkpoint + 64] = "no checkpoint has been written";
    if (t->last_checkpoint[0])
        snprintf(last, sizeof last, "the last good checkpoint is %s", t->last_checkpoint);
    sf_error_set(err, SF_EXIT_FAILURE, "training diverged in epoch %lld at "
                 "optimizer step %lld: %s. Lower optimizer.lr, or set "
                 "optimizer.clip_norm; nothing was saved from this state, and %s",
                 (long long)(e + 1), (long long)(t->step + 1), t->diverged, last);
    return SF_EXIT_FAILURE;
}

/* An epoch file when every_epochs asks, and always at the run's end. */
static int maybe_save_epoch(SfTrainer *t, int64_t e, int last, SfError *err)
{
    const int64_t every = t->cfg->checkpoint.every_epochs;
    if (every <= 0 || !((e + 1) % every == 0 || last))
        return 0;
    return sf_trainer_save(t, e, 1, err);
}

static void preempted(SfTrainer *t, SfTrainResult *res)
{
    res->preempted = 1;
    snprintf(res->stop_reason, sizeof res->stop_reason,
             "stopped by a signal after step %lld; %s", (long long)t->step,
             t->last_checkpoint[0] && sf_trainer_checkpointing(t->cfg)
                 ? "run the same command again to continue"
                 : "checkpointing is off, so nothing was saved");
}

int sf_train(const SfConfig *cfg, SfComm *comm, SfTrainResult *res, SfError *err)
{
    SfTrainer t = {.cfg = cfg, .comm = comm, .rank = sf_comm_rank(comm),
                   .size = sf_comm_size(comm)};
    memset(res, 0, sizeof *res);
    sf_layer_blas_threads((int)cfg->train.threads);
    int status = agree(&t, sf_trainer_setup_local(&t, err), err);
    if (status || (status = sf_trainer_share_node(&t)) ||
        (status = sf_trainer_open_trace(&t, err)) ||
        (status = sf_trainer_restore(&t, err)))
        goto done;
    if (agree(&t, sf_trainer_replay_history(&t, err), err) ||
        agree(&t, sf_trainer_plan_buckets(&t, err), err)) {
        status = err->code;
        goto done;
    }
    sf_trainer_print_start(&t);
    /* The clocks start together, so no epoch's seconds hold another rank's
     * slower set-up (it would show as a wait in the first collective). */
    sf_comm_barrier(comm);
    t.start = sf_clock();
    snprintf(res->stop_reason, sizeof res->stop_reason, "epochs done");
    res->epochs_done = t.start_epoch;
    for (int64_t e = t.start_epoch; e < cfg->train.epochs; e++) {
        if (cfg->train.max_steps > 0 && t.step >= cfg->train.max_steps) {
            snprintf(res->stop_reason, sizeof res->stop_reason, "max_steps reached");
            break;
        }
        SfEpochMetrics *m = &t.history[t.nhistory];
        EpochEnd end = run_epoch(&t, e, m, err);
        if (end == EPOCH_DIVERGED)
            status = report_divergence(&t, e, err);
        if (end == EPOCH_FAILED)
            status = err->code;
        if (end == EPOCH_BAD_DATA) {
            /* Every rank stopped at this step; the failing ones agree who
             * speaks (one extra collective, on this path only). */
            if (t.data_err.code)
                *err = t.data_err;
            status = agree(&t, t.data_err.code != 0, err);
        }
        if (status)
            goto done;
        if (end == EPOCH_PREEMPTED) {
            preempted(&t, res);
            break;
        }
        /* max_steps cut the epoch: its position goes in a step checkpoint
         * whose history ends before it, so a resumed run finishes the epoch
         * and writes its line once. */
        int partial = m->steps_in_epoch < t.steps_per_epoch;
        if (partial && sf_trainer_checkpointing(cfg) &&
            (status = sf_trainer_save(&t, e, 0, err)))
            goto done;
        t.nhistory++;
        char when[64];
        snprintf(when, sizeof when, "after epoch %lld", (long long)(e + 1));
        if (sf_trainer_check_replicas(&t, when, err) ||
            agree(&t, sf_trainer_report_epoch(&t, m, err), err)) {
            status = err->code;
            goto done;
        }
        if (partial) {
            snprintf(res->stop_reason, sizeof res->stop_reason, "max_steps reached");
            break;
        }
        res->epochs_done = e + 1;
        int stop = should_stop(&t, res, m);
        int last = stop || t.stop_requested || e + 1 == cfg->train.epochs ||
                   (cfg->train.max_steps > 0 && t.step >= cfg->train.max_steps);
        if ((status = maybe_save_epoch(&t, e, last, err)))
            goto done;
        if (t.stop_requested) {
            preempted(&t, res);
            break;
        }
        if (stop)
            break;
    }
    finish(&t, res);
    sf_trainer_print_end(&t, res);
done:
    /* Every path here is taken by all ranks together: the trace is gathered
     * on failures too, with what it holds. */
    if (t.trace) {
        int closed = sf_trainer_close_trace(&t, status ? &(SfError){0} : err);
        status = status ? status : closed;
    }
    if (t.start > 0.0) /* training began: say how it ended */
        status = sf_trainer_write_summary(&t, res, status, err);
    teardown(&t);
    return status;
}

void sf_train_result_free(SfTrainResult *res)
{
    if (!res)
        return;
    free(res->params);
    free(res->history);
    memset(res, 0, sizeof *res);
}
