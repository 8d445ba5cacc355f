/* fuzz_checkpoint.c: reading checkpoints from mutated HDF5 files
 * (src/checkpoint_read.c, src/checkpoint_info.c, src/checkpoint_dir.c).
 *
 * Each input is written as DIR/epoch-0001.h5 and read the four ways a run
 * reads checkpoints: the attributes alone (eval, predict, inspect), in full
 * for a resume into a fixed model (dense:6 relu dense:3 on 5 features) with
 * Adam and a best copy, as an init_checkpoint, and as a candidate of
 * find_latest's scan of DIR. Checked beyond sanitizer reports: the error
 * contract; that a failed read leaves the model, the optimizer state and
 * the best copy exactly as they were (checkpoint.h promises it); that the
 * strings and history of an accepted file are whole; and that no HDF5
 * object is left open. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "shardfit/checkpoint.h"

/* What the reads may change, kept to compare after a failed one. */
typedef struct {
    SfModel *m;
    SfOptim *o;
    int64_t n;
    float *best;
    float *saved; /* params, m, v, best, in that order */
} Target;

static const char *const states[] = {"m", "v"};

static Target target;

/* The model, optimizer and best copy, made once with distinct values. */
static void setup(void)
{
    SfConfig cfg;
    SfError err = {0};
    sf_config_defaults(&cfg);
    cfg.optimizer.name = SF_OPTIM_ADAM;
    target.m = sf_model_create("dense:6 relu dense:3", (SfShape){5, 1, 1},
                               SF_LOSS_CROSS_ENTROPY, 4, &err);
    if (!target.m)
        fuzz_fail("model: %s", err.msg);
    target.n = sf_model_nparams(target.m);
    target.o = sf_optim_create(&cfg, target.n, &err);
    target.best = malloc((size_t)target.n * sizeof(float));
    target.saved = malloc(4 * (size_t)target.n * sizeof(float));
    if (!target.o || !target.best || !target.saved)
        fuzz_fail("setup: out of memory");
}

/* The 4n floats the reads may write: params, m, v, best. */
static void blocks(float *out[4])
{
    out[0] = sf_model_params(target.m);
    out[1] = sf_optim_state(target.o, states[0]);
    out[2] = sf_optim_state(target.o, states[1]);
    out[3] = target.best;
}

static void reset(void)
{
    float *b[4];
    blocks(b);
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < target.n; i++)
            b[k][i] = (float)(k * 1000 + i) / 8;
    sf_optim_set_steps(target.o, 3);
    for (int k = 0; k < 4; k++)
        memcpy(target.saved + k * target.n, b[k], (size_t)target.n * sizeof(float));
}

static void expect_unchanged(const char *what, const char *msg)
{
    float *b[4];
    blocks(b);
    for (int k = 0; k < 4; k++)
        if (memcmp(target.saved + k * target.n, b[k],
                   (size_t)target.n * sizeof(float)) != 0)
            fuzz_fail("a failed %s changed block %d: %s", what, k, msg);
    if (sf_optim_steps(target.o) != 3)
        fuzz_fail("a failed %s changed the optimizer's step count: %s", what, msg);
}

/* An accepted file's strings and history must be whole (ASan sees). */
static volatile size_t sink;

static void check_info(const SfCheckpointInfo *info)
{
    size_t n = 0;
    if (info->config)
        n += strlen(info->config);
    if (info->layers)
        n += strlen(info->layers);
    if (info->nhistory < 0 || (info->nhistory > 0 && !info->history))
        fuzz_fail("history of %lld epochs at %p", (long long)info->nhistory,
                  (void *)info->history);
    for (int64_t e = 0; e < info->nhistory; e++)
        n += (size_t)info->history[e].epoch;
    sink += n;
}

static FILE *devnull;

/* FUZZ_VERBOSE=1: what each read said, when writing seeds. */
static void say(const char *what, int rc, const SfError *err)
{
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%s: %s\n", what, rc >= 0 ? "ok" : err->msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!target.m) {
        setup();
        devnull = fopen("/dev/null", "w");
        if (!devnull)
            fuzz_fail("cannot open /dev/null");
    }
    const char *dir;
    const char *path = fuzz_write_named("epoch-0001.h5", data, size, &dir);

    SfCheckpointInfo info = {0};
    SfError err = {0};
    int rc = sf_checkpoint_read_info(path, &info, &err);
    fuzz_check_error("sf_checkpoint_read_info", rc, &err);
    say("sf_checkpoint_read_info", rc, &err);
    if (rc == 0)
        check_info(&info);
    sf_checkpoint_info_free(&info);

    reset();
    memset(&info, 0, sizeof info);
    sf_error_clear(&err);
    rc = sf_checkpoint_read(path, target.m, target.o, target.best, &info, &err);
    fuzz_check_error("sf_checkpoint_read", rc, &err);
    say("sf_checkpoint_read", rc, &err);
    if (rc == 0)
        check_info(&info);
    else
        expect_unchanged("sf_checkpoint_read", err.msg);
    sf_checkpoint_info_free(&info);

    reset();
    sf_error_clear(&err);
    rc = sf_checkpoint_load_params(path, target.m, &err);
    fuzz_check_error("sf_checkpoint_load_params", rc, &err);
    say("sf_checkpoint_load_params", rc, &err);
    if (rc != 0)
        expect_unchanged("sf_checkpoint_load_params", err.msg);

    char latest[4096];
    sf_error_clear(&err);
    rc = sf_checkpoint_find_latest(dir, target.m, devnull, latest, sizeof latest,
                                   &err);
    fuzz_check_error("sf_checkpoint_find_latest", rc < 0 ? -1 : 0, &err);
    say("sf_checkpoint_find_latest", rc == 1 ? 0 : -1, &err);
    if (rc == 1 && strcmp(latest, path) != 0)
        fuzz_fail("find_latest found '%s' in a directory holding only '%s'",
                  latest, path);

    ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open != 0)
        fuzz_fail("%zd HDF5 objects are still open after the input", open);
    return 0;
}
