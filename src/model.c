/* model.c: builds the layer stack, owns the flat buffers and the activation
 * scratch, and runs forward/backward passes (model.h). */
#include "shardfit/model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bigalloc.h"
#include "shardfit/config.h" /* SF_CONFIG_STR: the longest model.layers */
#include "shardfit/phases.h"
#include "shardfit/rng.h"

#define MAX_LAYERS 64

struct SfModel {
    SfLossKind loss;
    int nlayers;
    SfLayer layers[MAX_LAYERS];
    SfShape input;
    int64_t nparams, nstats, max_rows; /* params block: nparams + nstats */
    int batch_stats;           /* some layer has batch statistics */
    int placed;                /* params and grads are the caller's */
    float *params, *grads;
    float *acts[MAX_LAYERS];   /* acts[i]: output of layer i, (max_rows, out) */
    float *dbuf[2];            /* ping-pong gradients w.r.t. activations */
};

/* Splits the list and sets up each layer; 0 or -1 with err. */
static int build_layers(SfModel *m, const char *spec, SfError *err)
{
    char copy[SF_CONFIG_STR], msg[512], have[64];
    snprintf(copy, sizeof copy, "%s", spec);
    SfShape shape = m->input;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        if (m->nlayers == MAX_LAYERS) {
            sf_error_set(err, SF_EXIT_INPUT, "model.layers: more than %d layers",
                         MAX_LAYERS);
            return -1;
        }
        SfLayer *l = &m->layers[m->nlayers];
        if (sf_layer_setup(l, tok, shape, msg, sizeof msg)) {
            sf_error_set(err, SF_EXIT_INPUT, "model.layers = '%s': layer %d %s "
                         "(its input is %s)", spec, m->nlayers + 1, msg,
                         sf_shape_str(shape, have, sizeof have));
            return -1;
        }
        l->index = m->nlayers++;
        m->batch_stats |= l->ops->gather_begin != NULL;
        for (int p = 0; p < l->nparts; p++)
            *(l->parts[p].stat ? &m->nstats : &m->nparams) +=
                sf_layer_part_size(&l->parts[p]);
        shape = l->out;
    }
    if (m->nlayers == 0 || m->layers[m->nlayers - 1].ops != &sf_layer_dense) {
        sf_error_set(err, SF_EXIT_INPUT,
                     "model.layers = '%s': the last layer must be dense:K "
                     "(K = number of classes or targets)", spec);
        return -1;
    }
    return 0;
}

/* Points each layer's parts into the flat blocks (trained parts first, in
 * layer order, then the statistics), allocates the activation scratch and
 * the layers' workspaces; 0 or -1 on ENOMEM. The activations are on huge
 * pages (bigalloc.h): a CNN's elementwise passes stream several MB each,
 * and on 4 KiB pages batchnorm's, max pooling's and the conv bias fill
 * took 1.8-3x the time (perf samples, fashion-cnn at 64 rows). */
static int allocate(SfModel *m)
{
    size_t tail = SF_MODEL_GRAD_TAIL;
    m->params = sf_big_calloc((size_t)(m->nparams + m->nstats), sizeof(float));
    m->grads = sf_big_calloc((size_t)m->nparams + tail, sizeof(float));
    if (!m->params || !m->grads)
        return -1;
    int64_t off = 0, stat_off = m->nparams, widest = sf_shape_size(m->input);
    for (int i = 0; i < m->nlayers; i++) {
        SfLayer *l = &m->layers[i];
        for (int p = 0; p < l->nparts; p++) {
            int64_t size = sf_layer_part_size(&l->parts[p]);
            if (l->parts[p].stat) {
                l->data[p] = m->params + stat_off;
                stat_off += size;
            } else {
                l->data[p] = m->params + off;
                l->grad[p] = m->grads + off;
                off += size;
            }
        }
        l->w = l->data[0];
        l->dw = l->grad[0];
        l->b = l->data[1];
        l->db = l->grad[1];
        int64_t width = sf_shape_size(l->out);
        if (width > widest)
            widest = width;
        m->acts[i] = sf_big_calloc((size_t)(m->max_rows * width), sizeof(float));
        if (!m->acts[i])
            return -1;
        if (l->nsums > 0 && !(l->sums = calloc((size_t)l->nsums, sizeof *l->sums)))
            return -1;
        if (l->ops->feeds_rows && i + 1 < m->nlayers && m->layers[i + 1].ops->take_rows) {
            l->feed = &m->layers[i + 1];
            m->layers[i + 1].fed = 1;
        }
        const int64_t work = m->max_rows * l->work_per_row + l->work_fixed;
        if (work > 0 && !(l->work = malloc((size_t)work * sizeof(float))))
            return -1;
    }
    for (int k = 0; k < 2; k++)
        if (!(m->dbuf[k] = sf_big_calloc((size_t)(m->max_rows * widest), sizeof(float))))
            return -1;
    return 0;
}

SfModel *sf_model_create(const char *layers, SfShape input, SfLossKind loss,
                         int64_t max_rows, SfError *err)
{
    SfModel *m = calloc(1, sizeof *m);
    if (!m) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory creating the model");
        return NULL;
    }
    m->loss = loss;
    m->input = input;
    m->max_rows = max_rows > 0 ? max_rows : 1;
    if (build_layers(m, layers, err))
        goto fail;
    if (allocate(m)) {
        sf_error_set(err, SF_EXIT_FAILURE,
                     "out of memory: %lld parameters, %lld rows per pass",
                     (long long)m->nparams, (long long)m->max_rows);
        goto fail;
    }
    return m;
fail:
    sf_model_free(m);
    return NULL;
}

void sf_model_free(SfModel *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nlayers; i++) {
        free(m->acts[i]);
        free(m->layers[i].work);
        free(m->layers[i].sums);
    }
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    if (!m->placed) {
        free(m->params);
        free(m->grads);
    }
    free(m);
}

/* He when relu follows (a batchnorm between them does not count). */
static int relu_follows(const SfModel *m, int i)
{
    int j = i + 1;
    if (j < m->nlayers && m->layers[j].ops == &sf_layer_batchnorm)
        j++;
    return j < m->nlayers && m->layers[j].ops == &sf_layer_relu;
}

void sf_model_init_params(SfModel *m, SfInitKind init, uint64_t seed)
{
    for (int i = 0; i < m->nlayers; i++) {
        SfLayer *l = &m->layers[i];
        if (l->ops->init) {
            l->ops->init(l);
            continue;
        }
        if (l->nweight == 0)
            continue;
        int he = init == SF_INIT_HE || (init == SF_INIT_AUTO && relu_follows(m, i));
        uint64_t key = sf_rng_key(seed, SF_RNG_INIT, (uint64_t)i);
        double std = sqrt(2.0 / l->fan_in);
        double limit = sqrt(6.0 / (l->fan_in + l->fan_out));
        for (int64_t j = 0; j < l->nweight; j++)
            l->w[j] = he ? (float)(std * sf_rng_normal(key, (uint64_t)j))
                         : (float)(limit * (2.0 * sf_rng_uniform(key, (uint64_t)j) - 1.0));
        memset(l->b, 0, (size_t)l->nbias * sizeof(float));
    }
}

void sf_model_place(SfModel *m, float *params, float *grads)
{
    for (int i = 0; i < m->nlayers; i++) {
        SfLayer *l = &m->layers[i];
        for (int p = 0; p < l->nparts; p++) {
            if (l->data[p])
                l->data[p] = params + (l->data[p] - m->params);
            if (l->grad[p])
                l->grad[p] = grads + (l->grad[p] - m->grads);
        }
        l->w = l->data[0];
        l->dw = l->grad[0];
        l->b = l->data[1];
        l->db = l->grad[1];
    }
    if (!m->placed) {
        free(m->params);
        free(m->grads);
    }
    m->params = params;
    m->grads = grads;
    m->placed = 1;
}

int64_t sf_model_nparams(const SfModel *m) { return m->nparams; }
int64_t sf_model_nstate(const SfModel *m) { return m->nparams + m->nstats; }
float *sf_model_params(SfModel *m) { return m->params; }
float *sf_model_grads(SfModel *m) { return m->grads; }
int64_t sf_model_max_rows(const SfModel *m) { return m->max_rows; }
int sf_model_nlayers(const SfModel *m) { return m->nlayers; }
const SfLayer *sf_model_layer(const SfModel *m, int i) { return &m->layers[i]; }

int64_t sf_model_output_width(const SfModel *m)
{
    return sf_shape_size(m->layers[m->nlayers - 1].out);
}

void sf_model_zero_grads(SfModel *m)
{
    memset(m->grads, 0, ((size_t)m->nparams + SF_MODEL_GRAD_TAIL) * sizeof(float));
}

/* The layer after layer i's relu when layer i runs that relu and that
 * layer in its own passes, forward and backward (layer.h's takes_planes:
 * batchnorm relu maxpool); else NULL. One rule for both directions: the
 * fused forward leaves the relu's output unwritten, which only the fused
 * backward does not need. */
static const SfLayer *plane_next(const SfModel *m, int i)
{
    if (i + 2 >= m->nlayers || !m->layers[i].ops->takes_planes ||
        m->layers[i + 1].ops->act != SF_ACT_RELU)
        return NULL;
    const SfLayer *next = &m->layers[i + 2];
    return next->ops->forward_plane && next->ops->backward_plane ? next : NULL;
}

/* 1 when layer i is a relu that the layer after it runs on its input
 * itself (layer.h's forward_relu, max pooling), because the layer before
 * does not take it (forward_act); one rule for both directions, as
 * plane_next's. */
static int relu_into(const SfModel *m, int i)
{
    if (i + 1 >= m->nlayers || m->layers[i].ops->act != SF_ACT_RELU ||
        (i > 0 && m->layers[i - 1].ops->forward_act))
        return 0;
    const SfLayerOps *next = m->layers[i + 1].ops;
    return next->forward_relu && next->backward_relu;
}

/* Runs layers 0 .. last forward; returns the output of layer last. A layer
 * that can apply the next one's activation itself (forward_act) does, into
 * the activation's output: one pass over the rows fewer, and its own output
 * left unwritten (the activation's backward reads only its output); and
 * the layer after that activation too when it works plane by plane
 * (plane_next), into that layer's output. A relu that no layer before
 * takes goes into the layer after it when that one can (relu_into): its
 * output is never written either. */
static const float *forward(SfModel *m, const float *x, int64_t n, int last,
                            const SfPass *pass)
{
    const float *in = x;
    for (int i = 0; i <= last; i++) {
        const SfLayer *l = &m->layers[i];
        if (l->ops->forward_act && i < last && m->layers[i + 1].ops->act) {
            const SfLayer *next = i + 2 <= last ? plane_next(m, i) : NULL;
            const int to = next ? i + 2 : i + 1;
            l->ops->forward_act(l, m->layers[i + 1].ops->act, next, in, m->acts[to],
                                n, pass);
            in = m->acts[to];
            i = to;
            continue;
        }
        if (i < last && relu_into(m, i)) {
            const SfLayer *next = &m->layers[++i];
            next->ops->forward_relu(next, in, m->acts[i], n, pass);
            in = m->acts[i];
            continue;
        }
        l->ops->forward(l, in, m->acts[i], n, pass);
        in = m->acts[i];
    }
    return in;
}

/* Brackets a phase of the pass's timers, when it has them. */
static void phase_begin(const SfPass *pass, SfPhase ph)
{
    if (pass->phases)
        sf_phases_begin(pass->phases, ph);
}

static void phase_end(const SfPass *pass, SfPhase ph)
{
    if (pass->phases)
        sf_phases_end(pass->phases, ph);
}

/* A whole forward, the loss, and backward from the last layer down to
 * layer first (0: the whole network). A relu's backward goes into the
 * layer before it when that layer can take it (backward_act): one pass
 * over the rows fewer; or into the layer after it, as in forward
 * (relu_into). hook (NULL: none) is told as each
 * layer's parameter gradients become final, with before + this batch's
 * loss sums. */
static SfLossSums forward_backward(SfModel *m, const float *x, int64_t n,
                                   SfTargets t, int first, const SfPass *pass,
                                   const SfGradHook *hook, SfLossSums before)
{
    phase_begin(pass, SF_PHASE_FORWARD);
    const float *logits = forward(m, x, n, m->nlayers - 1, pass);
    float *dout = m->dbuf[0], *din = m->dbuf[1];
    SfLossSums sums = sf_loss_compute(m->loss, logits, n,
                                      sf_model_output_width(m), t, dout);
    phase_end(pass, SF_PHASE_FORWARD);
    SfLossSums share = {before.loss + sums.loss, before.correct + sums.correct};
    phase_begin(pass, SF_PHASE_BACKWARD);
    for (int i = m->nlayers - 1; i >= first; i--) {
        const SfLayer *l = &m->layers[i];
        if (i - 2 >= 0 && plane_next(m, i - 2) == l) { /* three layers, one pass */
            assert(i - 2 >= first); /* first is a batchnorm, never its relu or pool */
            i -= 2;
            l = &m->layers[i];
            l->ops->backward_act(l, SF_ACT_RELU, plane_next(m, i),
                                 i > 0 ? m->acts[i - 1] : x, NULL, dout,
                                 i > 0 ? din : NULL, n, pass);
        } else if (i - 1 >= first && relu_into(m, i - 1)) { /* relu and pool, one pass */
            i--;
            l->ops->backward_relu(l, m->acts[i + 1], dout, i > 0 ? din : NULL, n, pass);
        } else if (l->ops->act == SF_ACT_RELU && i - 1 >= first &&
                   m->layers[i - 1].ops->backward_act) { /* the relu's mask in its pass */
            const float *y = m->acts[i];
            l = &m->layers[--i];
            l->ops->backward_act(l, SF_ACT_RELU, NULL, i > 0 ? m->acts[i - 1] : x, y,
                                 dout, i > 0 ? din : NULL, n, pass);
        } else
            l->ops->backward(l, i > 0 ? m->acts[i - 1] : x, m->acts[i], dout,
                             i > 0 ? din : NULL, n, pass);
        if (hook && l->nweight + l->nbias > 0)
            hook->ready(hook->ctx, l->dw - m->grads, share);
        float *tmp = dout;
        dout = din;
        din = tmp;
    }
    phase_end(pass, SF_PHASE_BACKWARD);
    return sums;
}

SfLossSums sf_model_train_batch(SfModel *m, const float *x, int64_t n,
                                SfTargets t, const SfPass *pass)
{
    return forward_backward(m, x, n, t, 0, pass, NULL, (SfLossSums){0.0, 0.0});
}

/* Rows j .. j+len of x and t, and their sample ids. */
typedef struct {
    const float *x;
    SfTargets t;
    SfPass pass;
} Chunk;

static Chunk chunk_at(const SfModel *m, const float *x, SfTargets t,
                      const SfPass *pass, int64_t j)
{
    const int64_t k = sf_model_output_width(m);
    Chunk c = {x + j * sf_shape_size(m->input),
               {t.classes ? t.classes + j : NULL, t.values ? t.values + j * k : NULL},
               *pass};
    c.pass.sample_ids = pass->sample_ids ? pass->sample_ids + j : NULL;
    return c;
}

static void set_modes(SfModel *m, SfBatchMode mode)
{
    for (int i = 0; i < m->nlayers; i++)
        m->layers[i].fmode = m->layers[i].bmode = mode;
}

/* Rows [0, n) in micro-batches of at most micro rows, their gradients
 * added up; hook rides on the last one's backward. */
static SfLossSums micro_batches(SfModel *m, const float *x, int64_t n,
                                int64_t micro, SfTargets t, const SfPass *pass,
                                const SfGradHook *hook)
{
    SfLossSums sums = {0.0, 0.0};
    for (int64_t j = 0; j < n; j += micro) {
        Chunk c = chunk_at(m, x, t, pass, j);
        int64_t rows = n - j < micro ? n - j : micro;
        SfLossSums part = forward_backward(m, c.x, rows, c.t, 0, &c.pass,
                                           j + rows == n ? hook : NULL, sums);
        sums.loss += part.loss;
        sums.correct += part.correct;
    }
    return sums;
}

/* Micro-batches with batch statistics: gather each batchnorm layer's
 * forward sums over every micro-batch, in layer order (each gathering
 * forward stops at its layer), then each one's backward sums, in reverse
 * order (each a whole forward and a backward down to its layer); then the
 * real passes, with every statistic fixed. Extra work: per layer, a
 * forward to it and a forward plus part of a backward (see README). */
static SfLossSums train_gathered(SfModel *m, const float *x, int64_t n,
                                 int64_t micro, SfTargets t, const SfPass *pass,
                                 const SfGradHook *hook)
{
    set_modes(m, SF_BATCH_FIXED);
    for (int dir = 0; dir < 2; dir++)
        for (int q = 0; q < m->nlayers; q++) {
            int i = dir ? m->nlayers - 1 - q : q;
            SfLayer *l = &m->layers[i];
            if (!l->ops->gather_begin)
                continue;
            *(dir ? &l->bmode : &l->fmode) = SF_BATCH_GATHER;
            l->ops->gather_begin(l, dir);
            for (int64_t j = 0; j < n; j += micro) {
                Chunk c = chunk_at(m, x, t, pass, j);
                int64_t rows = n - j < micro ? n - j : micro;
                if (dir)
                    forward_backward(m, c.x, rows, c.t, i, &c.pass, NULL,
                                     (SfLossSums){0.0, 0.0});
                else {
                    phase_begin(pass, SF_PHASE_FORWARD);
                    forward(m, c.x, rows, i, &c.pass);
                    phase_end(pass, SF_PHASE_FORWARD);
                }
            }
            l->ops->gather_end(l, dir, pass);
            *(dir ? &l->bmode : &l->fmode) = SF_BATCH_FIXED;
        }
    /* The backward gatherings added into the gradients: start again. */
    sf_model_zero_grads(m);
    SfLossSums sums = micro_batches(m, x, n, micro, t, pass, hook);
    set_modes(m, SF_BATCH_WHOLE);
    return sums;
}

SfLossSums sf_model_train_share(SfModel *m, const float *x, int64_t n,
                                int64_t micro, int split, SfTargets t,
                                const SfPass *pass, const SfGradHook *hook)
{
    sf_model_zero_grads(m);
    if (m->batch_stats && split)
        return train_gathered(m, x, n, micro, t, pass, hook);
    if (m->batch_stats && n <= micro)
        return forward_backward(m, x, n, t, 0, pass, hook,
                                (SfLossSums){0.0, 0.0}); /* even n = 0: it reduces */
    return micro_batches(m, x, n, micro, t, pass, hook);
}

int sf_model_has_batch_stats(const SfModel *m) { return m->batch_stats; }

SfLossSums sf_model_eval_batch(SfModel *m, const float *x, int64_t n,
                               SfTargets t)
{
    SfPass pass = {0};
    const float *logits = forward(m, x, n, m->nlayers - 1, &pass);
    return sf_loss_compute(m->loss, logits, n, sf_model_output_width(m), t, NULL);
}

const float *sf_model_predict(SfModel *m, const float *x, int64_t n)
{
    SfPass pass = {0};
    return forward(m, x, n, m->nlayers - 1, &pass);
}

SfLossKind sf_model_loss(const SfModel *m) { return m->loss; }

void sf_model_describe(const SfModel *m, char *buf, int size)
{
    char shape[64];
    int used = snprintf(buf, (size_t)size, "%s", m->input.h == 1 && m->input.w == 1
                        ? (snprintf(shape, sizeof shape, "%lld",
                                    (long long)sf_shape_size(m->input)), shape)
                        : sf_shape_str(m->input, shape, sizeof shape));
    for (int i = 0; i < m->nlayers && used < size; i++) {
        const SfLayer *l = &m->layers[i];
        used += snprintf(buf + used, (size_t)(size - used), "%s%s",
                         l->ops == &sf_layer_dense ? " -> " : " ", l->token);
    }
}
