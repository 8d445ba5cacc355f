/* cmd_eval.c: `shardfit eval` and `shardfit predict`: a trained checkpoint
 * applied to a dataset, spread over the ranks the way validation is. Each
 * rank takes its block of rows; eval allreduces the loss and correct sums
 * (sample-weighted, as validation), predict gathers the outputs to rank 0 in
 * sample order and writes them. The model, its loss and the feature scaling
 * come from the config stored in the checkpoint, so what was trained is
 * what is applied. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "shardfit/checkpoint.h"
#include "shardfit/comm.h"
#include "shardfit/config.h"
#include "shardfit/dataset.h"
#include "shardfit/evaluate.h"
#include "shardfit/loader.h"
#include "shardfit/model.h"

typedef struct EvalArgs {
    const char *checkpoint, *data, *features, *labels, *out;
} EvalArgs;

typedef struct EvalJob {
    int predict;
    SfConfig cfg;
    SfCheckpointInfo info;
    SfLoader *loader;
    SfModel *model;
    int64_t rows;     /* per forward pass */
    float *x, *values, *outputs;
    int32_t *classes;
} EvalJob;

static const char *cmd_name(int predict) { return predict ? "predict" : "eval"; }

/* 0; an exit status after printing a usage error; or -1 after printing
 * the help (exit 0). */
static int parse_args(int predict, int argc, char **argv, EvalArgs *a)
{
    const char *cmd = cmd_name(predict);
    const char *usage = predict
        ? "usage: shardfit predict --checkpoint CKPT.h5 --data FILE.h5 "
          "[--features /p] --out OUT.h5"
        : "usage: shardfit eval --checkpoint CKPT.h5 --data FILE.h5 "
          "[--features /p] [--labels /p]";
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("%s\n%s\n", usage, predict
                   ? "writes the model's outputs for every row of the data, in "
                     "row order, to OUT.h5"
                   : "loss and accuracy of the checkpoint's model on the data");
            return -1;
        }
        const char **slot = !strcmp(argv[i], "--checkpoint") ? &a->checkpoint
                            : !strcmp(argv[i], "--data")     ? &a->data
                            : !strcmp(argv[i], "--features") ? &a->features
                            : !strcmp(argv[i], "--labels")   ? &a->labels
                            : predict && !strcmp(argv[i], "--out") ? &a->out
                                                                   : NULL;
        if (!slot)
            return sf_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        if (i + 1 == argc)
            return sf_cli_usage_error(cmd, "%s needs a value", argv[i]);
        *slot = argv[++i];
    }
    if (!a->checkpoint || !a->data || (predict && !a->out))
        return sf_cli_usage_error(cmd, "%s", usage);
    return 0;
}

/* Reads the checkpoint's config, opens this rank's block of the data,
 * builds the model and loads its weights. Not collective. 0 or -1. */
static int setup_local(EvalJob *j, const EvalArgs *a, SfComm *comm, SfError *err)
{
    if (sf_checkpoint_read_info(a->checkpoint, &j->info, err)) {
        sf_error_prefix(err, "--checkpoint ");
        return -1;
    }
    if (!j->info.config || !j->info.layers) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' holds weights but no config: it "
                     "can start a run (model.init_checkpoint) but not be "
                     "evaluated", a->checkpoint);
        return -1;
    }
    sf_config_defaults(&j->cfg);
    if (sf_config_load_text(&j->cfg, j->info.config, a->checkpoint, err))
        return -1;
    const SfConfig *c = &j->cfg;
    /* predict reads features only: new data has no labels. */
    const char *labels = a->labels ? a->labels : c->data.labels;
    SfLoaderSpec spec = {SF_LOADER_SHARD, a->data,
                         a->features ? a->features : c->data.features,
                         j->predict ? NULL : labels,
                         "data", "--data", 0, -1,
                         (float)c->data.scale, (float)c->data.offset};
    if (!(j->loader = sf_loader_open(&spec, comm, err)))
        return -1;
    j->rows = 256;
    j->model = sf_model_create(j->info.layers, sf_loader_sample_shape(j->loader),
                               c->model.loss, j->rows, err);
    if (!j->model)
        return -1;
    SfCheckpointInfo again = {0};
    int bad = sf_checkpoint_read(a->checkpoint, j->model, NULL, NULL, &again, err);
    sf_checkpoint_info_free(&again);
    if (bad)
        return -1;
    int64_t k = sf_model_output_width(j->model), off, len;
    int64_t d = sf_shape_size(sf_loader_sample_shape(j->loader));
    if (!j->predict && sf_loader_check_targets(j->loader, k, c->model.loss,
                                               "--labels", labels, err))
        return -1;
    sf_loader_block(j->loader, &off, &len);
    j->x = malloc((size_t)(j->rows * d) * sizeof *j->x);
    j->values = malloc((size_t)(j->rows * k) * sizeof *j->values);
    j->classes = malloc((size_t)j->rows * sizeof *j->classes);
    j->outputs = malloc((size_t)(len * k + 1) * sizeof *j->outputs);
    if (!j->x || !j->values || !j->classes || !j->outputs) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for %lld rows",
                     (long long)len);
        return -1;
    }
    return 0;
}

/* This rank's block, through the model, into j->outputs (softmax
 * probabilities for cross_entropy). 0, or -1 with err when the loader
 * failed. */
static int predict_block(EvalJob *j, SfError *err)
{
    int64_t off, len, k = sf_model_output_width(j->model);
    sf_loader_block(j->loader, &off, &len);
    for (int64_t i = 0; i < len; i += j->rows) {
        int64_t n = len - i < j->rows ? len - i : j->rows;
        if (sf_loader_read_block(j->loader, i, n, j->x, j->classes, j->values, err) < 0)
            return -1;
        const float *y = sf_model_predict(j->model, j->x, n);
        float *out = j->outputs + i * k;
        memcpy(out, y, (size_t)(n * k) * sizeof *out);
        if (sf_model_loss(j->model) == SF_LOSS_CROSS_ENTROPY)
            sf_loss_softmax(out, n, k, out);
    }
    return 0;
}

/* Rank 0: writes the gathered outputs to out via a temporary file renamed
 * into place, so a failed write leaves no half file (and an earlier OUT
 * stays as it was). */
static int write_predictions(const EvalJob *j, const char *out, const float *all,
                             int64_t n, SfError *err)
{
    int64_t k = sf_model_output_width(j->model);
    int ce = sf_model_loss(j->model) == SF_LOSS_CROSS_ENTROPY;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    int32_t *labels = ce ? malloc((size_t)(n + 1) * sizeof *labels) : NULL;
    if (ce && !labels) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for %lld labels", (long long)n);
        return -1;
    }
    for (int64_t r = 0; ce && r < n; r++) {
        int64_t best = 0;
        for (int64_t c = 1; c < k; c++)
            best = all[r * k + c] > all[r * k + best] ? c : best;
        labels[r] = (int32_t)best;
    }
    int64_t dims[2] = {n, k};
    unlink(tmp);
    SfH5Writer *w = sf_h5writer_open(tmp, err);
    int bad = !w ||
              sf_h5writer_write(w, ce ? "/probabilities" : "/outputs", SF_DTYPE_F32,
                                2, dims, all, 0, err) ||
              (ce && sf_h5writer_write(w, "/labels", SF_DTYPE_I32, 1, &n, labels, 0, err));
    if (w && sf_h5writer_close(w, err))
        bad = 1;
    if (!bad && rename(tmp, out)) {
        sf_error_set(err, SF_EXIT_FAILURE, "--out '%s': cannot rename into place: %s",
                     out, strerror(errno));
        bad = 1;
    }
    if (bad) {
        sf_error_prefix(err, "--out '%s': ", out);
        unlink(tmp);
    }
    free(labels);
    return bad ? -1 : 0;
}

static void job_free(EvalJob *j)
{
    sf_loader_free(j->loader);
    sf_model_free(j->model);
    sf_checkpoint_info_free(&j->info);
    free(j->x);
    free(j->values);
    free(j->classes);
    free(j->outputs);
}

/* Agrees on a local status; only the lowest failing rank prints. */
static int agree_or_report(SfComm *comm, int local, const char *cmd, SfError *err)
{
    int status = sf_comm_agree_error(comm, local, 1, err);
    if (status && err->msg[0])
        sf_cli_report(cmd, err);
    return status;
}

static int run(int predict, int argc, char **argv)
{
    EvalArgs a;
    int status = parse_args(predict, argc, argv, &a);
    if (status)
        return status < 0 ? SF_EXIT_OK : status; /* -1: the help was asked */
    SfComm *comm = sf_comm_init(&argc, &argv);
    if (!comm) {
        fprintf(stderr, "shardfit %s: error: MPI could not start\n", cmd_name(predict));
        return SF_EXIT_FAILURE;
    }
    static EvalJob j; /* holds an SfConfig: large, so not on the stack */
    memset(&j, 0, sizeof j);
    j.predict = predict;
    SfError err = {0};
    status = agree_or_report(comm, setup_local(&j, &a, comm, &err), cmd_name(predict), &err);
    if (status)
        goto done;
    double sums[3] = {0.0, 0.0, 0.0};
    int bad = predict ? predict_block(&j, &err)
                      : sf_evaluate_block(j.model, j.loader, j.rows, j.x, j.classes,
                                          j.values, sums, &err);
    status = agree_or_report(comm, bad != 0, cmd_name(predict), &err);
    if (status)
        goto done;
    int64_t n = sf_loader_rows(j.loader), k = sf_model_output_width(j.model);
    int rank = sf_comm_rank(comm);
    if (!predict) {
        sf_comm_allreduce_sum_f64(comm, sums, 3);
        if (rank == 0) {
            printf("eval: %lld samples of %s: loss %.9g", (long long)n, a.data,
                   sums[0] / sums[2]);
            if (sf_loader_has_classes(j.loader))
                printf(" accuracy %.9g", sums[1] / sums[2]);
            printf("\n");
        }
        goto done;
    }
    int64_t off, len;
    sf_loader_block(j.loader, &off, &len);
    float *all = rank == 0 ? malloc((size_t)(n * k) * sizeof *all) : NULL;
    if (rank == 0 && !all)
        sf_error_set(&err, SF_EXIT_FAILURE, "out of memory for %lld outputs", (long long)n);
    if (agree_or_report(comm, rank == 0 && !all, "predict", &err) == 0) {
        sf_comm_gather_f32(comm, j.outputs, len * k, all);
        int local = rank == 0 ? write_predictions(&j, a.out, all, n, &err) : 0;
        status = agree_or_report(comm, local, "predict", &err);
        if (!status && rank == 0)
            printf("predict: wrote %s (%lld, %lld) for %lld samples to %s\n",
                   sf_model_loss(j.model) == SF_LOSS_CROSS_ENTROPY
                       ? "/probabilities and /labels" : "/outputs",
                   (long long)n, (long long)k, (long long)n, a.out);
    } else {
        status = SF_EXIT_FAILURE;
    }
    free(all);
done:
    job_free(&j);
    sf_comm_free(comm);
    return status;
}

int sf_cmd_eval(int argc, char **argv) { return run(0, argc, argv); }
int sf_cmd_predict(int argc, char **argv) { return run(1, argc, argv); }
