/* test_optim_reference.c: SGD (momentum, Nesterov, weight decay, clipping),
 * Adam and AdamW replayed against trajectories PyTorch computed on a tiny
 * model, step for step. test_optim.c checks one hand-worked step of each
 * rule; this checks that 25 steps of the whole update, as the trainer drives
 * it, stay within 1e-5 of torch.optim, for MLPs and for a small CNN with
 * batch norm (whose running statistics are compared too). The trajectories are text in
 * tests/data/optim_reference.txt, written once by scripts/torch_reference.py
 * (its header says the format), so this test needs no PyTorch. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/model.h"
#include "shardfit/optim.h"
#include "testutil.h"

#define TOLERANCE 1e-5
#define WORD 256

/* One case of the reference file: a model, its data, an optimizer, and what
 * PyTorch computed. Parameters are in shardfit's flat order (per dense layer
 * the weight (out, in), then the bias), which is model.parameters() order. */
typedef struct RefCase {
    char name[WORD];
    char layers[SF_CONFIG_STR];
    SfConfig cfg;           /* defaults plus the case's `set` assignments */
    int64_t inputs, steps, rows, nparams, nstats;
    SfShape shape;          /* (inputs, 1, 1) unless the case gives an image */
    float *x;               /* (rows, inputs) */
    int32_t *labels;        /* (rows,) class ids */
    float *init;            /* (nparams,) before the first step */
    float *loss;            /* (steps,) mean loss of each step, before its update */
    float *params;          /* (nparams,) after the last step */
    float *stats;           /* (nstats,) batchnorm buffers after it, or NULL */
} RefCase;

static void ref_case_free(RefCase *rc)
{
    free(rc->x);
    free(rc->labels);
    free(rc->init);
    free(rc->loss);
    free(rc->params);
    free(rc->stats);
    memset(rc, 0, sizeof *rc);
}

/* Reads the next word into word (WORD bytes), skipping '#' comment lines.
 * 0, or -1 at the end of the file. */
static int next_word(FILE *f, char *word)
{
    for (;;) {
        if (fscanf(f, "%255s", word) != 1)
            return -1;
        if (word[0] != '#')
            return 0;
        if (fscanf(f, "%*[^\n]") == EOF)
            return -1;
    }
}

/* Reads "KEY COUNT": COUNT, or -1 when the key differs or COUNT is missing. */
static int64_t read_count(FILE *f, const char *key)
{
    char word[WORD];
    long long n;
    if (next_word(f, word) < 0 || strcmp(word, key) || fscanf(f, "%lld", &n) != 1)
        return -1;
    return n;
}

/* Reads count floats into a new array; NULL when one does not parse. */
static float *read_floats(FILE *f, int64_t count)
{
    float *v = count > 0 ? malloc((size_t)count * sizeof *v) : NULL;
    for (int64_t i = 0; v && i < count; i++) {
        if (fscanf(f, "%f", &v[i]) != 1) {
            free(v);
            return NULL;
        }
    }
    return v;
}

/* Reads the next case. 1 when one was read, 0 at the end of the file, -1
 * with err naming the case and the field that did not parse. */
static int read_case(FILE *f, RefCase *rc, SfError *err)
{
    char word[WORD];
    const char *want = "case NAME";
    int64_t n;
    memset(rc, 0, sizeof *rc);
    sf_config_defaults(&rc->cfg);
    if (next_word(f, word) < 0)
        return 0;
    if (strcmp(word, "case") || next_word(f, rc->name) < 0)
        goto fail;
    want = "layers COUNT TOKEN...";
    if ((n = read_count(f, "layers")) < 1)
        goto fail;
    for (int64_t i = 0; i < n; i++) {
        if (next_word(f, word) < 0)
            goto fail;
        size_t len = strlen(rc->layers);
        snprintf(rc->layers + len, sizeof rc->layers - len, "%s%s",
                 i ? " " : "", word);
    }
    want = "inputs D";
    if ((rc->inputs = read_count(f, "inputs")) < 1)
        goto fail;
    rc->shape = (SfShape){rc->inputs, 1, 1};
    want = "[shape C H W] set COUNT KEY=VALUE...";
    long long c, h, w;
    if (next_word(f, word) < 0)
        goto fail;
    if (!strcmp(word, "shape")) {
        if (fscanf(f, "%lld %lld %lld", &c, &h, &w) != 3 || c * h * w != rc->inputs ||
            next_word(f, word) < 0)
            goto fail;
        rc->shape = (SfShape){c, h, w};
    }
    if (strcmp(word, "set") || fscanf(f, "%lld", &c) != 1)
        goto fail;
    n = c;
    for (int64_t i = 0; i < n; i++) {
        if (next_word(f, word) < 0)
            goto fail;
        if (sf_config_set(&rc->cfg, word, err) < 0) {
            want = NULL; /* err already says what is wrong */
            goto fail;
        }
    }
    want = "steps T";
    if ((rc->steps = read_count(f, "steps")) < 1)
        goto fail;
    want = "x N, then N*D floats";
    if ((rc->rows = read_count(f, "x")) < 1 ||
        !(rc->x = read_floats(f, rc->rows * rc->inputs)))
        goto fail;
    want = "labels N, then N class ids";
    if (read_count(f, "labels") != rc->rows ||
        !(rc->labels = malloc((size_t)rc->rows * sizeof *rc->labels)))
        goto fail;
    for (int64_t i = 0; i < rc->rows; i++)
        if (fscanf(f, "%d", &rc->labels[i]) != 1)
            goto fail;
    want = "init P, then P floats";
    if ((rc->nparams = read_count(f, "init")) < 1 ||
        !(rc->init = read_floats(f, rc->nparams)))
        goto fail;
    want = "loss T, then T floats";
    if (read_count(f, "loss") != rc->steps || !(rc->loss = read_floats(f, rc->steps)))
        goto fail;
    want = "params P, then P floats";
    if (read_count(f, "params") != rc->nparams ||
        !(rc->params = read_floats(f, rc->nparams)))
        goto fail;
    want = "[stats S, then S floats] end";
    if (next_word(f, word) < 0)
        goto fail;
    if (!strcmp(word, "stats")) {
        if (fscanf(f, "%lld", &c) != 1 || c < 1 ||
            !(rc->stats = read_floats(f, rc->nstats = c)) || next_word(f, word) < 0)
            goto fail;
    }
    if (strcmp(word, "end"))
        goto fail;
    return 1;
fail:
    if (want)
        sf_error_set(err, SF_EXIT_INPUT, "expected '%s'", want);
    sf_error_prefix(err, "case '%s': ", rc->name);
    ref_case_free(rc);
    return -1;
}

/* How far shardfit strayed from PyTorch on one case. */
typedef struct Deviation {
    double loss;     /* worst |a - b| / |b| over the steps' losses */
    int64_t step;    /* where it was worst */
    double params;   /* max |a - b| / max |b| over the final parameters */
} Deviation;

/* Trains the case's model full-batch as src/trainer.c's train_step does on
 * one rank: zero, forward and backward over the whole set, scale the summed
 * gradient by 1/n (and the clipping coefficient), step. */
static Deviation replay(const RefCase *rc)
{
    SfError err = {0};
    SfModel *m = sf_model_create(rc->layers, rc->shape, rc->cfg.model.loss,
                                 rc->rows, &err);
    ck_assert_msg(m != NULL, "case '%s': %s", rc->name, err.msg);
    const int64_t np = sf_model_nparams(m);
    ck_assert_msg(np == rc->nparams, "case '%s': '%s' has %lld parameters, "
                  "the reference %lld", rc->name, rc->layers, (long long)np,
                  (long long)rc->nparams);
    SfOptim *o = sf_optim_create(&rc->cfg, np, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    int64_t *ids = malloc((size_t)rc->rows * sizeof *ids);
    ck_assert(ids != NULL);
    for (int64_t i = 0; i < rc->rows; i++)
        ids[i] = i;
    ck_assert_msg(sf_model_nstate(m) - np == rc->nstats, "case '%s': %lld "
                  "statistics, the reference %lld", rc->name,
                  (long long)(sf_model_nstate(m) - np), (long long)rc->nstats);
    float *p = sf_model_params(m), *g = sf_model_grads(m);
    sf_model_init_params(m, SF_INIT_AUTO, 1); /* batchnorm's running stats */
    memcpy(p, rc->init, (size_t)np * sizeof *p);
    const SfTargets t = {rc->labels, NULL};
    const double clip = rc->cfg.optimizer.clip_norm;

    Deviation d = {0.0, 0, 0.0};
    for (int64_t s = 0; s < rc->steps; s++) {
        SfPass pass = {1, 1, s, ids, NULL, NULL, NULL, 0};
        sf_model_zero_grads(m);
        SfLossSums sums = sf_model_train_batch(m, rc->x, rc->rows, t, &pass);
        float scale = 1.0f / (float)rc->rows;
        if (clip > 0.0)
            scale = sf_optim_clip_scale(scale, sf_optim_grad_norm(g, np, scale), clip);
        sf_optim_step(o, p, g, scale, rc->cfg.optimizer.lr);
        double loss = sums.loss / (double)rc->rows;
        double rel = fabs(loss - rc->loss[s]) / fabs(rc->loss[s]);
        if (rel > d.loss || (isnan(rel) && !isnan(d.loss))) { /* the first NaN */
            d.loss = rel;
            d.step = s;
        }
    }
    double diff = 0.0, size = 0.0;
    for (int64_t i = 0; i < np; i++) {
        double e = fabs((double)p[i] - rc->params[i]);
        diff = e > diff || isnan(e) ? e : diff;
        size = fmax(size, fabs(rc->params[i]));
    }
    for (int64_t i = 0; i < rc->nstats; i++) { /* running stats, by the same rule */
        double e = fabs((double)p[np + i] - rc->stats[i]);
        diff = e > diff || isnan(e) ? e : diff;
    }
    d.params = diff / size;
    free(ids);
    sf_optim_free(o);
    sf_model_free(m);
    return d;
}

/* The reference file: SF_TEST_DATA_DIR, else tests/data from the repo root
 * (where tests/run-all.sh runs every test). */
static void reference_path(char *path, size_t size)
{
    const char *dir = getenv("SF_TEST_DATA_DIR");
    snprintf(path, size, "%s/optim_reference.txt", dir && *dir ? dir : "tests/data");
}

START_TEST(test_optimizers_match_pytorch)
{
    char path[SF_CONFIG_STR], report[8192] = "";
    reference_path(path, sizeof path);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: cannot open: %s (run from the repo root or set "
                  "SF_TEST_DATA_DIR; scripts/torch_reference.py writes it)",
                  path, strerror(errno));

    RefCase rc;
    SfError err = {0};
    int n = 0, failed = 0, got;
    size_t len = 0;
    while ((got = read_case(f, &rc, &err)) == 1) {
        Deviation d = replay(&rc);
        int bad = !(d.loss <= TOLERANCE && d.params <= TOLERANCE);
        failed += bad;
        n++;
        len += (size_t)snprintf(report + len, sizeof report - len,
                                "\n  %s%s: loss %.2g (step %lld), params %.2g",
                                bad ? "FAIL " : "", rc.name, d.loss,
                                (long long)d.step, d.params);
        if (len >= sizeof report)
            len = sizeof report - 1;
        ref_case_free(&rc);
    }
    fclose(f);
    ck_assert_msg(got == 0, "%s: %s", path, err.msg);
    ck_assert_msg(n > 0, "%s: no cases", path);
    if (getenv("SF_TEST_VERBOSE")) /* to see the margins when a case changes */
        printf("optim reference, worst relative error per case:%s\n", report);
    ck_assert_msg(!failed, "%d of %d cases differ from PyTorch by more than %g "
                  "(worst relative error per case):%s", failed, n, TOLERANCE, report);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_reference");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_optimizers_match_pytorch);
    suite_add_tcase(s, tc);
    return sf_test_run(s);
}
