/* test_mpi_checkpoint.c: resuming is exact (SPEC §2.4). Run under mpirun
 * with 1, 2 and 3 ranks (CK_FORK=no). A run stopped and resumed must end
 * with the same bits as one that never stopped: weights, optimizer state and
 * metrics, from an epoch file and from a mid-epoch step file; resumed on
 * another number of ranks it must end within 1e-5. Collective work comes
 * before assertions, so a failing rank cannot strand the others. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardfit/checkpoint.h"
#include "shardfit/comm.h"
#include "shardfit/dataset.h"
#include "shardfit/rng.h"
#include "shardfit/trainer.h"
#include "testutil.h"

#define N 157
#define NVAL 40

static SfComm *world;
static char root[256], data[300];

static void write_data(void)
{
    const int64_t d = 6;
    float *x = malloc((N + NVAL) * d * sizeof *x);
    int32_t *y = malloc((N + NVAL) * sizeof *y);
    uint64_t key = sf_rng_key(11, 9, 0);
    for (int64_t i = 0; i < (N + NVAL) * d; i++)
        x[i] = (float)sf_rng_normal(key, (uint64_t)i);
    for (int64_t i = 0; i < N + NVAL; i++)
        y[i] = (x[i * d] + x[i * d + 1] > 0.0f) + (x[i * d + 2] > 0.5f);
    SfError err = {0};
    int64_t dims[2] = {N, d}, vdims[2] = {NVAL, d}, n = N, nv = NVAL;
    SfH5Writer *w = sf_h5writer_open(data, &err);
    if (!w || sf_h5writer_write(w, "/train/x", SF_DTYPE_F32, 2, dims, x, 0, &err) ||
        sf_h5writer_write(w, "/train/y", SF_DTYPE_I32, 1, &n, y, 0, &err) ||
        sf_h5writer_write(w, "/val/x", SF_DTYPE_F32, 2, vdims, x + N * d, 0, &err) ||
        sf_h5writer_write(w, "/val/y", SF_DTYPE_I32, 1, &nv, y + N, 0, &err) ||
        sf_h5writer_close(w, &err))
        fprintf(stderr, "writing %s failed: %s\n", data, err.msg);
    free(x);
    free(y);
}

static void set(SfConfig *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set(SfConfig *c, const char *fmt, ...)
{
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    SfError err = {0};
    ck_assert_msg(sf_config_set(c, text, &err) == 0, "%s", err.msg);
}

/* A config whose checkpoints and logs go to root/name. */
static SfConfig config(const char *name, const char *optimizer)
{
    SfConfig c;
    sf_config_defaults(&c);
    set(&c, "data.path=%s", data);
    set(&c, "data.features=/train/x");
    set(&c, "data.labels=/train/y");
    set(&c, "data.val_features=/val/x");
    set(&c, "data.val_labels=/val/y");
    set(&c, "model.layers=dense:12 tanh dropout:0.2 dense:3");
    set(&c, "train.batch_size=16"); /* 10 steps per epoch, the last of 13 */
    set(&c, "optimizer.name=%s", optimizer);
    set(&c, "optimizer.lr=%s", strcmp(optimizer, "sgd") ? "0.01" : "0.1");
    set(&c, "optimizer.momentum=%s", strcmp(optimizer, "sgd") ? "0" : "0.9");
    set(&c, "checkpoint.dir=%s/%s/ckpt", root, name);
    set(&c, "checkpoint.keep_last=0");
    set(&c, "log.dir=%s/%s", root, name);
    set(&c, "log.progress=none");
    return c;
}

static int train(const SfConfig *c, SfComm *comm, SfTrainResult *r)
{
    SfError err = {0};
    int status = sf_train(c, comm, r, &err);
    if (status && err.msg[0])
        fprintf(stderr, "train failed: %s\n", err.msg);
    return status;
}

/* The training metrics of two histories agree exactly (timings aside). */
static void same_history(const SfTrainResult *a, const SfTrainResult *b)
{
    ck_assert_int_eq(a->nhistory, b->nhistory);
    for (int64_t e = 0; e < a->nhistory; e++) {
        const SfEpochMetrics *x = &a->history[e], *y = &b->history[e];
        ck_assert_int_eq(x->epoch, y->epoch);
        ck_assert_int_eq(x->step, y->step);
        ck_assert_int_eq(x->samples, y->samples);
        ck_assert(x->loss == y->loss && x->accuracy == y->accuracy);
        ck_assert(x->val_loss == y->val_loss && x->val_accuracy == y->val_accuracy);
        ck_assert(x->lr == y->lr);
    }
}

/* The optimizer blocks of two checkpoint files, bit for bit. */
static void same_optimizer_state(const char *a, const char *b, const SfConfig *c)
{
    SfError err = {0};
    SfModel *ma = sf_model_create(c->model.layers, (SfShape){6, 1, 1},
                                  SF_LOSS_CROSS_ENTROPY, 4, &err);
    SfModel *mb = sf_model_create(c->model.layers, (SfShape){6, 1, 1},
                                  SF_LOSS_CROSS_ENTROPY, 4, &err);
    int64_t np = sf_model_nparams(ma);
    SfOptim *oa = sf_optim_create(c, np, &err), *ob = sf_optim_create(c, np, &err);
    SfCheckpointInfo ia = {0}, ib = {0};
    ck_assert_msg(sf_checkpoint_read(a, ma, oa, NULL, &ia, &err) == 0, "%s", err.msg);
    ck_assert_msg(sf_checkpoint_read(b, mb, ob, NULL, &ib, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sf_optim_steps(oa), sf_optim_steps(ob));
    const char *names[] = {"momentum", "m", "v"};
    int blocks = 0;
    for (int i = 0; i < 3; i++) {
        float *x = sf_optim_state(oa, names[i]), *y = sf_optim_state(ob, names[i]);
        if (!x)
            continue;
        blocks++;
        ck_assert_mem_eq(x, y, (size_t)np * sizeof(float));
    }
    ck_assert_int_gt(blocks, 0);
    sf_checkpoint_info_free(&ia);
    sf_checkpoint_info_free(&ib);
    sf_optim_free(oa);
    sf_optim_free(ob);
    sf_model_free(ma);
    sf_model_free(mb);
}

/* Stop after 2 epochs, resume to 4: the same bits as 4 straight epochs. */
static void check_resume_from_epoch(const char *optimizer, int node_shared)
{
    char a[64], b[64], fa[400], fb[400];
    snprintf(a, sizeof a, "straight-%s%s", optimizer, node_shared ? "-shared" : "");
    snprintf(b, sizeof b, "resumed-%s%s", optimizer, node_shared ? "-shared" : "");
    SfConfig ca = config(a, optimizer), cb = config(b, optimizer);
    set(&ca, "train.epochs=4");
    set(&cb, "train.epochs=2");
    set(&ca, "comm.node_shared=%s", node_shared ? "true" : "false");
    set(&cb, "comm.node_shared=%s", node_shared ? "true" : "false");
    SfTrainResult straight, first, resumed;
    ck_assert_int_eq(train(&ca, world, &straight), 0);
    ck_assert_int_eq(train(&cb, world, &first), 0);
    set(&cb, "train.epochs=4");
    ck_assert_int_eq(train(&cb, world, &resumed), 0);
    ck_assert_int_eq(resumed.steps_done, straight.steps_done);
    ck_assert_mem_eq(resumed.params, straight.params, (size_t)straight.nparams * 4);
    same_history(&resumed, &straight);
    snprintf(fa, sizeof fa, "%s/%s/ckpt/epoch-0004.h5", root, a);
    snprintf(fb, sizeof fb, "%s/%s/ckpt/epoch-0004.h5", root, b);
    same_optimizer_state(fa, fb, &ca);
    sf_train_result_free(&straight);
    sf_train_result_free(&first);
    sf_train_result_free(&resumed);
}

START_TEST(test_resume_from_epoch_is_bitwise_sgd)
{
    check_resume_from_epoch("sgd", 0);
}
END_TEST

START_TEST(test_resume_from_epoch_is_bitwise_adam)
{
    check_resume_from_epoch("adam", 0);
}
END_TEST

/* comm.node_shared: the weights and the optimizer's state in node-shared
 * memory are what rank 0 saves and what it restores for every rank. */
START_TEST(test_resume_from_epoch_is_bitwise_node_shared)
{
    check_resume_from_epoch("sgd", 1);
    check_resume_from_epoch("adam", 1);
}
END_TEST

/* max_steps stops mid-epoch 2 with a step checkpoint; resuming finishes the
 * epoch from its 6th step and matches a run that never stopped, with
 * gradient buckets (one per layer with parameters on several ranks). With
 * layers, the model is another (batchnorm: its running statistics are in
 * the compared state, and validation uses them). */
static void check_resume_mid_epoch(const char *layers, const char *micro)
{
    SfConfig ca = config("mid-straight", "sgd"), cb = config("mid-resumed", "sgd");
    set(&ca, "comm.bucket_mb=0.0001");
    set(&cb, "comm.bucket_mb=0.0001");
    for (int k = 0; k < 2 && layers; k++) {
        set(k ? &cb : &ca, "model.layers=%s", layers);
        set(k ? &cb : &ca, "train.micro_batch=%s", micro);
        set(k ? &cb : &ca, "checkpoint.dir=%s/%s-bn%s/ckpt", root,
            k ? "mid-resumed" : "mid-straight", micro);
    }
    set(&ca, "train.epochs=3");
    set(&cb, "train.epochs=3");
    set(&cb, "train.max_steps=15");
    set(&cb, "checkpoint.every_steps=4");
    SfTrainResult straight, first, resumed;
    ck_assert_int_eq(train(&ca, world, &straight), 0);
    ck_assert_int_eq(train(&cb, world, &first), 0);
    set(&cb, "train.max_steps=0");
    ck_assert_int_eq(train(&cb, world, &resumed), 0);
    char step[400];
    snprintf(step, sizeof step, "%s/mid-resumed%s%s/ckpt/step-00000015.h5", root,
             layers ? "-bn" : "", layers ? micro : "");
    ck_assert_int_eq(first.steps_done, 15);
    ck_assert_int_eq(access(step, R_OK), 0);
    ck_assert_int_eq(resumed.nparams, straight.nparams);
    ck_assert_mem_eq(resumed.params, straight.params, (size_t)straight.nparams * 4);
    same_history(&resumed, &straight);
    sf_train_result_free(&straight);
    sf_train_result_free(&first);
    sf_train_result_free(&resumed);
}

START_TEST(test_resume_mid_epoch_is_bitwise)
{
    check_resume_mid_epoch(NULL, NULL);
}
END_TEST

/* Running statistics (mean, variance, count) are in the checkpoint. */
START_TEST(test_resume_with_batchnorm_is_bitwise)
{
    check_resume_mid_epoch("dense:12 batchnorm tanh dense:5 batchnorm dense:3", "0");
    check_resume_mid_epoch("dense:12 batchnorm tanh dense:5 batchnorm dense:3", "3");
}
END_TEST

/* Written on some ranks, resumed on others: within 1e-5 of never stopping.
 * With P ranks here: the first P-1 (or 1) ranks write, all P resume; and
 * rank 0 alone resumes what all P wrote. */
START_TEST(test_resume_on_other_rank_counts)
{
    int p = sf_comm_size(world), rank = sf_comm_rank(world);
    SfConfig straight_cfg = config("ranks-straight", "sgd");
    set(&straight_cfg, "train.epochs=4");
    SfTrainResult straight, part = {0}, resumed, alone = {0};
    ck_assert_int_eq(train(&straight_cfg, world, &straight), 0);

    SfConfig c = config("ranks-grow", "sgd");
    set(&c, "train.epochs=2");
    int writers = p > 1 ? p - 1 : 1;
    SfComm *sub = sf_comm_split(world, rank < writers ? 0 : -1);
    int part_status = sub ? train(&c, sub, &part) : 0;
    sf_comm_free(sub);
    sf_comm_barrier(world);
    set(&c, "train.epochs=4");
    ck_assert_int_eq(train(&c, world, &resumed), 0);

    SfConfig d = config("ranks-shrink", "sgd");
    set(&d, "train.epochs=2");
    SfTrainResult first;
    ck_assert_int_eq(train(&d, world, &first), 0);
    int alone_status = 0;
    if (rank == 0) {
        SfComm *self = sf_comm_self();
        set(&d, "train.epochs=4");
        alone_status = train(&d, self, &alone);
        sf_comm_free(self);
    }
    ck_assert_int_eq(part_status, 0);
    ck_assert_int_eq(alone_status, 0);
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < straight.nparams; i++) {
        diff = fmax(diff, fabs((double)resumed.params[i] - straight.params[i]));
        scale = fmax(scale, fabs((double)straight.params[i]));
        if (rank == 0)
            diff = fmax(diff, fabs((double)alone.params[i] - straight.params[i]));
    }
    ck_assert_msg(diff / scale < 1e-5, "relative difference %g", diff / scale);
    sf_train_result_free(&straight);
    sf_train_result_free(&part);
    sf_train_result_free(&resumed);
    sf_train_result_free(&first);
    sf_train_result_free(&alone);
}
END_TEST

/* A truncated newest file is skipped (not deleted) and resume takes the one
 * before it; the run still ends with the uninterrupted run's bits. */
START_TEST(test_truncated_newest_is_skipped)
{
    SfConfig ca = config("trunc-straight", "sgd"), cb = config("trunc-resumed", "sgd");
    set(&ca, "train.epochs=3");
    set(&cb, "train.epochs=3");
    SfTrainResult straight, first, resumed;
    ck_assert_int_eq(train(&ca, world, &straight), 0);
    ck_assert_int_eq(train(&cb, world, &first), 0);
    char newest[400];
    snprintf(newest, sizeof newest, "%s/trunc-resumed/ckpt/epoch-0003.h5", root);
    struct stat st;
    if (sf_comm_rank(world) == 0 && stat(newest, &st) == 0)
        ck_assert_int_eq(truncate(newest, st.st_size / 2), 0);
    sf_comm_barrier(world);
    set(&cb, "train.epochs=3"); /* resume = auto: epoch-0002 */
    ck_assert_int_eq(train(&cb, world, &resumed), 0);
    ck_assert_int_eq(access(newest, F_OK), 0);
    ck_assert_mem_eq(resumed.params, straight.params, (size_t)straight.nparams * 4);
    sf_train_result_free(&straight);
    sf_train_result_free(&first);
    sf_train_result_free(&resumed);
}
END_TEST

int main(int argc, char **argv)
{
    world = sf_comm_init(&argc, &argv);
    if (!world)
        return 1;
    snprintf(root, sizeof root, "/tmp/shardfit-test-ckpt-%d", (int)getppid());
    snprintf(data, sizeof data, "%s/data.h5", root);
    if (sf_comm_rank(world) == 0) {
        mkdir(root, 0777);
        write_data();
    }
    sf_comm_barrier(world);

    Suite *s = suite_create("mpi_checkpoint");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_resume_from_epoch_is_bitwise_sgd);
    tcase_add_test(tc, test_resume_from_epoch_is_bitwise_adam);
    tcase_add_test(tc, test_resume_from_epoch_is_bitwise_node_shared);
    tcase_add_test(tc, test_resume_mid_epoch_is_bitwise);
    tcase_add_test(tc, test_resume_with_batchnorm_is_bitwise);
    tcase_add_test(tc, test_resume_on_other_rank_counts);
    tcase_add_test(tc, test_truncated_newest_is_skipped);
    suite_add_tcase(s, tc);
    int status = sf_test_run(s);

    sf_comm_barrier(world);
    if (sf_comm_rank(world) == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", root);
    }
    sf_comm_free(world);
    return status;
}
