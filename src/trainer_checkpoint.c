/* trainer_checkpoint.c: the trainer's side of checkpoints: where a run
 * starts (resume, init_checkpoint) and when it writes (every_epochs,
 * every_steps, preemption). Only rank 0 touches the files; the other ranks
 * receive the state by broadcast, so checkpoints need not sit on a
 * filesystem every node sees. Everything that makes the next step what it
 * would have been is restored: weights, optimizer state and step count, the
 * position in the epoch and the epoch's running sums, the stopping rule's
 * state and best weights, and the metrics history. The permutation, the
 * learning rate and dropout masks are functions of (seed, epoch, step). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardfit/checkpoint.h"
#include "trainer_internal.h"

/* What rank 0 read, broadcast as one plain struct: the checkpoint's
 * scalars (info, its pointers cleared) and where they came from. */
typedef struct Position {
    int found;                 /* a checkpoint was read */
    int init_only;             /* only init_checkpoint weights were read */
    int64_t optim_t;
    double read_seconds;
    SfCheckpointInfo info;     /* config, layers and history are NULL */
    char path[2 * SF_CONFIG_STR];
} Position;

int sf_trainer_checkpointing(const SfConfig *cfg)
{
    return cfg->checkpoint.every_epochs > 0 || cfg->checkpoint.every_steps > 0;
}

/* Rank 0: which checkpoint resume names; 1 found (path in pos), 0 none. */
static int resolve(SfTrainer *t, Position *pos, SfError *err)
{
    const char *resume = t->cfg->checkpoint.resume;
    if (!strcmp(resume, "never"))
        return 0;
    if (strcmp(resume, "auto")) {
        if (access(resume, R_OK)) {
            sf_error_set(err, SF_EXIT_INPUT, "checkpoint.resume = '%s': no such "
                         "readable file (use auto for the newest in checkpoint.dir, "
                         "or never)", resume);
            return -1;
        }
        snprintf(pos->path, sizeof pos->path, "%s", resume);
        return 1;
    }
    int found = sf_checkpoint_find_latest(t->cfg->checkpoint.dir, t->model, stderr,
                                          pos->path, sizeof pos->path, err);
    if (found < 0)
        sf_error_prefix(err, "checkpoint.dir '%s': ", t->cfg->checkpoint.dir);
    return found;
}

/* Rank 0: reads what the run starts from into t's model, optimizer, best
 * weights and history; fills pos. 0 or -1. */
static int read_local(SfTrainer *t, Position *pos, SfError *err)
{
    int found = resolve(t, pos, err);
    if (found < 0)
        return -1;
    if (!found) {
        const char *init = t->cfg->model.init_checkpoint;
        if (!init[0])
            return 0;
        if (sf_checkpoint_load_params(init, t->model, err)) {
            sf_error_prefix(err, "model.init_checkpoint: ");
            return -1;
        }
        pos->init_only = 1;
        snprintf(pos->path, sizeof pos->path, "%s", init);
        return 0;
    }
    SfCheckpointInfo info = {0};
    double t0 = sf_clock();
    if (sf_checkpoint_read(pos->path, t->model, t->optim, t->best_params, &info, err)) {
        sf_error_prefix(err, "checkpoint.resume: ");
        return -1;
    }
    pos->read_seconds = sf_clock() - t0;
    int rc = 0;
    if (info.nhistory > t->cfg->train.epochs) {
        sf_error_set(err, SF_EXIT_INPUT, "checkpoint '%s' has %lld epochs of "
                     "history, more than train.epochs = %lld: raise epochs to "
                     "continue it, or set checkpoint.resume = never",
                     pos->path, (long long)info.nhistory,
                     (long long)t->cfg->train.epochs);
        rc = -1;
    } else {
        pos->found = 1;
        pos->optim_t = sf_optim_steps(t->optim);
        memcpy(t->history, info.history, (size_t)info.nhistory * sizeof *t->history);
        pos->info = info;
        pos->info.has_best = info.has_best && t->best_params;
        pos->info.config = pos->info.layers = NULL;
        pos->info.history = NULL;
    }
    sf_checkpoint_info_free(&info);
    return rc;
}

/* Everyone takes rank 0's state. */
static void broadcast(SfTrainer *t, Position *pos)
{
    sf_comm_bcast_bytes(t->comm, pos, sizeof *pos, 0);
    if (!pos->found && !pos->init_only)
        return;
    const int64_t np = sf_model_nparams(t->model), ns = sf_model_nstate(t->model);
    if (t->shared) /* the weights and state: rank 0's host's window already */
        sf_trainer_share_restore(t, pos->found);
    else
        sf_comm_bcast_f32(t->comm, sf_model_params(t->model), ns, 0);
    if (!pos->found)
        return;
    const char *blocks[] = {"momentum", "m", "v"};
    for (int i = 0; i < 3 && !t->shared; i++) {
        float *b = sf_optim_state(t->optim, blocks[i]);
        if (b)
            sf_comm_bcast_f32(t->comm, b, np, 0);
    }
    if (pos->info.has_best)
        sf_comm_bcast_f32(t->comm, t->best_params, ns, 0);
    sf_comm_bcast_bytes(t->comm, t->history,
                        (size_t)pos->info.nhistory * sizeof *t->history, 0);
}

/* Puts the run where the checkpoint left it, on every rank alike. */
static void apply(SfTrainer *t, const Position *pos)
{
    const SfCheckpointInfo *i = &pos->info;
    sf_optim_set_steps(t->optim, pos->optim_t);
    t->step = i->step;
    t->start_epoch = i->epoch;
    t->start_step_in_epoch = i->step_in_epoch;
    t->nhistory = i->nhistory;
    t->sum_loss = i->sum_loss;
    t->sum_correct = i->sum_correct;
    t->sum_count = i->sum_count;
    t->stopper.best = i->stop_best;
    t->stopper.best_epoch = i->stop_best_epoch;
    t->stopper.wait = i->stop_wait;
    snprintf(t->last_checkpoint, sizeof t->last_checkpoint, "%s", pos->path);
}

int sf_trainer_restore(SfTrainer *t, SfError *err)
{
    static Position pos; /* large path buffer; one restore per process */
    memset(&pos, 0, sizeof pos);
    int local = t->rank == 0 ? read_local(t, &pos, err) : 0;
    int status = sf_comm_agree_error(t->comm, local, 0, err);
    if (status)
        return status;
    broadcast(t, &pos);
    if (pos.found)
        apply(t, &pos);
    /* Said even with progress = none: a run that continues an older one
     * must never pass for a fresh start. */
    if (t->rank == 0) {
        if (pos.found)
            printf("shardfit: resuming from %s: %lld epochs and %lld steps done "
                   "(written by %lld rank%s, continuing on %d; read in %.3fs)\n",
                   pos.path, (long long)pos.info.epoch, (long long)pos.info.step,
                   (long long)pos.info.world_size, pos.info.world_size == 1 ? "" : "s",
                   t->size, pos.read_seconds);
        else if (pos.init_only)
            printf("shardfit: starting from the weights in %s\n", pos.path);
    }
    if (t->rank == 0 && pos.found && pos.info.seed != t->cfg->train.seed)
        fprintf(stderr, "shardfit: warning: %s was written with train.seed = "
                "%llu, this run has %llu: the epochs from here on are shuffled "
                "differently\n", pos.path, (unsigned long long)pos.info.seed,
                (unsigned long long)t->cfg->train.seed);
    return 0;
}

/* Rank 0: writes and prunes. 0 or -1. */
static int save_local(SfTrainer *t, int64_t epoch, int epoch_end, SfError *err)
{
    const SfConfig *c = t->cfg;
    char name[64];
    if (epoch_end)
        sf_checkpoint_epoch_name(epoch + 1, name, sizeof name);
    else
        sf_checkpoint_step_name(t->step, name, sizeof name);
    char *config = sf_config_format(c);
    if (!config) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory formatting the config");
        return -1;
    }
    SfCheckpointInfo info = {
        .epoch = epoch_end ? epoch + 1 : epoch,
        .step = t->step,
        .step_in_epoch = epoch_end ? 0 : t->step_in_epoch,
        .seed = c->train.seed,
        .world_size = t->size,
        .sum_loss = epoch_end ? 0.0 : t->sum_loss,
        .sum_correct = epoch_end ? 0.0 : t->sum_correct,
        .sum_count = epoch_end ? 0.0 : t->sum_count,
        .stop_best = t->stopper.best,
        .stop_best_epoch = t->stopper.best_epoch,
        .stop_wait = t->stopper.wait,
        .has_best = t->best_params && t->stopper.best_epoch > 0,
        .config = config,
        .layers = (char *)c->model.layers,
        .nhistory = t->nhistory,
        .history = t->history,
    };
    double t0 = sf_clock();
    int rc = sf_checkpoint_write(c->checkpoint.dir, name, t->model, t->optim,
                                 info.has_best ? t->best_params : NULL, &info, err);
    double seconds = sf_clock() - t0;
    free(config);
    if (rc)
        return -1;
    snprintf(t->last_checkpoint, sizeof t->last_checkpoint, "%s/%s",
             c->checkpoint.dir, name);
    struct stat st;
    if (t->progress.mode != SF_PROGRESS_NONE && stat(t->last_checkpoint, &st) == 0)
        printf("shardfit: wrote %s (%.1f MB) in %.3fs, %.0f MB/s\n",
               t->last_checkpoint, (double)st.st_size / 1e6, seconds,
               (double)st.st_size / 1e6 / seconds);
    /* With early stopping, the best epoch's file outlives keep_last. */
    char best[64];
    const char *keep = NULL;
    if (c->stop.early_stopping && t->stopper.best_epoch > 0) {
        sf_checkpoint_epoch_name(t->stopper.best_epoch, best, sizeof best);
        keep = best;
    }
    return sf_checkpoint_prune(c->checkpoint.dir, c->checkpoint.keep_last, keep, err);
}

static int save(SfTrainer *t, int64_t epoch, int epoch_end, SfError *err);

int sf_trainer_save(SfTrainer *t, int64_t epoch, int epoch_end, SfError *err)
{
    sf_phases_begin(&t->phases, SF_PHASE_CHECKPOINT);
    int status = save(t, epoch, epoch_end, err);
    sf_phases_end(&t->phases, SF_PHASE_CHECKPOINT);
    return status;
}

static int save(SfTrainer *t, int64_t epoch, int epoch_end, SfError *err)
{
    char when[96];
    snprintf(when, sizeof when, "before the checkpoint at step %lld",
             (long long)t->step);
    if (sf_trainer_check_replicas(t, when, err))
        return err->code;
    int local = t->rank == 0 ? save_local(t, epoch, epoch_end, err) : 0;
    int status = sf_comm_agree_error(t->comm, local, 0, err);
    /* Everyone knows the name; only rank 0 computed it. */
    sf_comm_bcast_bytes(t->comm, t->last_checkpoint, sizeof t->last_checkpoint, 0);
    return status;
}
