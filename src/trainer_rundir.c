/* trainer_rundir.c: a run directory that explains itself. log.dir gets
 * config.ini when the run starts (the effective config, --set overrides
 * applied, loadable as it is: `shardfit train log.dir/config.ini` runs the
 * same again) and summary.json when it ends: how and why it ended, its final
 * and best metrics, steps and speed, the ranks and their hosts, and the
 * versions of shardfit, MPI, HDF5 and OpenBLAS with the BLAS kernels in use.
 * Two runs can so be compared without their console output, and
 * scripts/plot-curves labels curves from them. Rank 0 writes both files,
 * each to a temporary name that is flushed and renamed (Redis's rdbSave), so
 * a reader never sees half of one. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardfit/dataset.h"
#include "shardfit/layer.h"
#include "shardfit/version.h"
#include "trainer_internal.h"

/* Writes text to dir/name through dir/.name.tmp.PID: 0, or -1 with errno
 * set and no temporary file left behind. */
static int write_atomically(const char *dir, const char *name, const char *text)
{
    char path[2 * SF_CONFIG_STR], tmp[2 * SF_CONFIG_STR + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int bad = fputs(text, f) < 0 || fflush(f) || fsync(fileno(f));
    int saved = errno;
    if (fclose(f) || bad || rename(tmp, path)) {
        saved = bad ? saved : errno;
        remove(tmp);
        errno = saved;
        return -1;
    }
    return 0;
}

int sf_trainer_write_config(const SfTrainer *t, SfError *err)
{
    char *config = sf_config_format(t->cfg);
    if (!config) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory formatting the config");
        return -1;
    }
    size_t n = strlen(config) + 256;
    char *text = malloc(n);
    int rc = -1;
    if (!text) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory formatting the config");
        goto cleanup;
    }
    snprintf(text, n, "; shardfit %s: the effective config of the run in this "
             "directory,\n; --set overrides applied. `shardfit train` reads it "
             "as it is.\n\n%s", SF_VERSION, config);
    if (write_atomically(t->cfg->log.dir, "config.ini", text)) {
        sf_error_set(err, SF_EXIT_INPUT, "log.dir '%s': cannot write config.ini: "
                     "%s", t->cfg->log.dir, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(config);
    free(text);
    return rc;
}

/* ---- summary.json -------------------------------------------------------- */

/* A growing text buffer; on ENOMEM it stops growing and says so once. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} Text;

static void put(Text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(Text *b, const char *fmt, ...)
{
    va_list ap;
    for (int tries = 0; tries < 2 && !b->failed; tries++) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
        } else if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        } else {
            size_t cap = 2 * (b->cap + (size_t)n) + 256;
            char *s = realloc(b->s, cap);
            if (!s)
                b->failed = 1;
            else
                b->s = s, b->cap = cap;
        }
    }
}

/* A JSON string, or null for NULL. */
static void put_string(Text *b, const char *v)
{
    if (!v) {
        put(b, "null");
        return;
    }
    put(b, "\"");
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(b, "\\%c", *p);
        else if (*p == '\n')
            put(b, "\\n");
        else if (*p < 0x20)
            put(b, "\\u%04x", *p);
        else
            put(b, "%c", *p);
    }
    put(b, "\"");
}

/* JSON has no NaN or Infinity: those are null. */
static void put_number(Text *b, double v)
{
    if (isfinite(v))
        put(b, "%.9g", v);
    else
        put(b, "null");
}

/* One epoch's metrics as an object (null without one). */
static void put_metrics(Text *b, const SfEpochMetrics *m)
{
    if (!m) {
        put(b, "null");
        return;
    }
    put(b, "{\"epoch\": %lld, \"step\": %lld, \"loss\": ", (long long)m->epoch,
        (long long)m->step);
    put_number(b, m->loss);
    put(b, ", \"accuracy\": ");
    put_number(b, m->has_accuracy ? m->accuracy : NAN);
    put(b, ", \"val_loss\": ");
    put_number(b, m->has_val ? m->val_loss : NAN);
    put(b, ", \"val_accuracy\": ");
    put_number(b, m->has_val && m->has_accuracy ? m->val_accuracy : NAN);
    put(b, "}");
}

/* One word for how the run ended, from what trainer.c recorded. */
static const char *how_it_ended(const SfTrainer *t, const SfTrainResult *res,
                                int status)
{
    if (status)
        return t->diverged ? "diverged" : "failed";
    if (res->preempted)
        return "preempted";
    if (res->stopped_epoch > 0)
        return strncmp(res->stop_reason, "early stopping", 14) == 0
                   ? "early_stopping" : "target";
    if (strcmp(res->stop_reason, "max_steps reached") == 0)
        return "max_steps";
    return "epochs_done";
}

/* The hosts in order of their first rank, and each rank's host. */
static void put_hosts(Text *b, const SfTrainer *t)
{
    put(b, "  \"hosts\": [");
    for (int r = 0, n = 0; r < t->size; r++) {
        const char *h = sf_comm_host(t->comm, r);
        int seen = 0;
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(h, sf_comm_host(t->comm, q));
        if (seen)
            continue;
        put(b, "%s", n++ ? ", " : "");
        put_string(b, h);
    }
    put(b, "],\n  \"rank_hosts\": [");
    for (int r = 0; r < t->size; r++) {
        put(b, "%s", r ? ", " : "");
        put_string(b, sf_comm_host(t->comm, r));
    }
    put(b, "],\n");
}

static void put_versions(Text *b)
{
    char mpi[256], hdf5[64];
    sf_comm_library_version(mpi, sizeof mpi);
    sf_dataset_library_version(hdf5, sizeof hdf5);
    put(b, "  \"versions\": {\"shardfit\": \"%s\", \"mpi\": ", SF_VERSION);
    put_string(b, mpi);
    put(b, ", \"hdf5\": ");
    put_string(b, hdf5);
    put(b, ", \"openblas\": ");
    put_string(b, sf_layer_blas_config());
    put(b, "},\n  \"blas_kernel\": ");
    put_string(b, sf_layer_blas_core());
    put(b, ",\n");
}

/* The summary's text; NULL on ENOMEM. */
static char *format_summary(const SfTrainer *t, const SfTrainResult *res,
                            int status, const SfError *err)
{
    const SfConfig *c = t->cfg;
    const SfEpochMetrics *hist = res->history ? res->history : t->history;
    const int64_t nh = t->nhistory;
    Text b = {0};
    double samples = 0.0, seconds = 0.0;
    for (int64_t i = 0; i < nh; i++) {
        samples += (double)hist[i].samples;
        seconds += hist[i].seconds - hist[i].eval_seconds;
    }
    const char *slash = strrchr(c->log.dir, '/');
    put(&b, "{\n  \"name\": ");
    put_string(&b, slash && slash[1] ? slash + 1 : c->log.dir);
    put(&b, ",\n  \"ended\": \"%s\",\n  \"reason\": ", how_it_ended(t, res, status));
    put_string(&b, status ? (err->msg[0] ? err->msg : NULL) : res->stop_reason);
    put(&b, ",\n  \"exit_status\": %d,\n", status);
    put(&b, "  \"epochs\": %lld,\n  \"epochs_done\": %lld,\n  \"steps\": %lld,\n",
        (long long)c->train.epochs, (long long)res->epochs_done,
        (long long)t->step);
    put(&b, "  \"start_epoch\": %lld,\n  \"seconds\": ", (long long)t->start_epoch);
    put_number(&b, sf_clock() - t->start);
    put(&b, ",\n  \"samples_per_sec\": ");
    put_number(&b, seconds > 0.0 ? samples / seconds : NAN);
    put(&b, ",\n  \"final\": ");
    /* No epoch ended (a signal during the first): no final metrics. */
    put_metrics(&b, nh == 0 ? NULL : status ? &hist[nh - 1] : &res->final);
    put(&b, ",\n  \"restored_epoch\": %lld,\n", (long long)res->restored_epoch);
    int64_t best = t->stopper.best_epoch;
    put(&b, "  \"monitor\": \"%s\",\n  \"best_epoch\": ",
        sf_config_monitor_name(c->stop.monitor));
    if (best > 0)
        put(&b, "%lld", (long long)best);
    else
        put(&b, "null");
    put(&b, ",\n  \"best\": ");
    put_metrics(&b, best > 0 && best <= nh ? &hist[best - 1] : NULL);
    put(&b, ",\n  \"early_stopping\": %s,\n", c->stop.early_stopping ? "true" : "false");
    put(&b, "  \"last_checkpoint\": ");
    put_string(&b, t->last_checkpoint[0] ? t->last_checkpoint : NULL);
    put(&b, ",\n  \"ranks\": %d,\n", t->size);
    put_hosts(&b, t);
    /* how the ranks summed the gradient: what scripts/scale's model needs */
    put(&b, "  \"gradient_sum\": \"%s\",\n", t->size == 1 ? "none"
        : t->shared ? "node_shared" : t->nbuckets > 0 ? "buckets" : "allreduce");
    put(&b, "  \"train_samples\": %lld,\n  \"batch_size\": %lld,\n  \"layers\": ",
        (long long)t->n, (long long)t->batch);
    put_string(&b, c->model.layers);
    put(&b, ",\n  \"parameters\": %lld,\n  \"optimizer\": \"%s\",\n  \"lr\": ",
        (long long)sf_model_nparams(t->model), sf_config_optim_name(c->optimizer.name));
    put_number(&b, c->optimizer.lr);
    put(&b, ",\n  \"blas_threads\": %lld,\n", (long long)c->train.threads);
    put_versions(&b);
    put(&b, "  \"config\": \"config.ini\",\n  \"metrics\": ");
    put_string(&b, c->log.metrics[0] ? c->log.metrics : NULL);
    put(&b, "\n}\n");
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

int sf_trainer_write_summary(SfTrainer *t, const SfTrainResult *res, int status,
                             SfError *err)
{
    if (t->rank != 0)
        return status;
    const char *dir = t->cfg->log.dir;
    char *text = format_summary(t, res, status, err);
    int saved = ENOMEM;
    if (text && write_atomically(dir, "summary.json", text) == 0) {
        free(text);
        return status;
    }
    if (text)
        saved = errno;
    free(text);
    if (status) {
        /* The run's own failure is the message that matters. */
        fprintf(stderr, "shardfit: warning: log.dir '%s': cannot write "
                "summary.json: %s\n", dir, strerror(saved));
        return status;
    }
    sf_error_set(err, SF_EXIT_FAILURE, "log.dir '%s': cannot write summary.json: "
                 "%s (the checkpoints and %s are complete)", dir, strerror(saved),
                 t->cfg->log.metrics[0] ? t->cfg->log.metrics : "the metrics");
    return SF_EXIT_FAILURE;
}
