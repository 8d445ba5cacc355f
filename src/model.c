/* model.c: builds the layer stack, owns the flat buffers and the activation
 * scratch, and runs forward/backward passes (model.h). */
#include "shardfit/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/rng.h"

#define MAX_LAYERS 64

struct SfModel {
    SfLossKind loss;
    int nlayers;
    SfLayer layers[MAX_LAYERS];
    SfShape input;
    int64_t nparams, max_rows;
    float *params, *grads;
    float *acts[MAX_LAYERS];   /* acts[i]: output of layer i, (max_rows, out) */
    float *dbuf[2];            /* ping-pong gradients w.r.t. activations */
};

/* Splits the list and sets up each layer; 0 or -1 with err. */
static int build_layers(SfModel *m, const char *spec, SfError *err)
{
    char copy[SF_CONFIG_STR], msg[256];
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
            sf_error_set(err, SF_EXIT_INPUT, "model.layers = '%s': %s", spec, msg);
            return -1;
        }
        l->index = m->nlayers++;
        m->nparams += l->nweight + l->nbias;
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

/* Points each layer's parameters into the flat blocks and allocates the
 * activation scratch; 0 or -1 on ENOMEM. */
static int allocate(SfModel *m)
{
    size_t tail = SF_MODEL_GRAD_TAIL;
    m->params = calloc((size_t)m->nparams, sizeof(float));
    m->grads = calloc((size_t)m->nparams + tail, sizeof(float));
    if (!m->params || !m->grads)
        return -1;
    int64_t off = 0, widest = sf_shape_size(m->input);
    for (int i = 0; i < m->nlayers; i++) {
        SfLayer *l = &m->layers[i];
        l->w = m->params + off;
        l->dw = m->grads + off;
        l->b = m->params + off + l->nweight;
        l->db = m->grads + off + l->nweight;
        off += l->nweight + l->nbias;
        int64_t width = sf_shape_size(l->out);
        if (width > widest)
            widest = width;
        m->acts[i] = malloc((size_t)(m->max_rows * width) * sizeof(float));
        if (!m->acts[i])
            return -1;
    }
    for (int k = 0; k < 2; k++)
        if (!(m->dbuf[k] = malloc((size_t)(m->max_rows * widest) * sizeof(float))))
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
    for (int i = 0; i < m->nlayers; i++)
        free(m->acts[i]);
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    free(m->params);
    free(m->grads);
    free(m);
}

void sf_model_init_params(SfModel *m, SfInitKind init, uint64_t seed)
{
    for (int i = 0; i < m->nlayers; i++) {
        SfLayer *l = &m->layers[i];
        if (l->nweight == 0)
            continue;
        double fan_in = (double)sf_shape_size(l->in);
        double fan_out = (double)l->units;
        int next_relu = i + 1 < m->nlayers && m->layers[i + 1].ops == &sf_layer_relu;
        int he = init == SF_INIT_HE || (init == SF_INIT_AUTO && next_relu);
        uint64_t key = sf_rng_key(seed, SF_RNG_INIT, (uint64_t)i);
        double std = sqrt(2.0 / fan_in), limit = sqrt(6.0 / (fan_in + fan_out));
        for (int64_t j = 0; j < l->nweight; j++)
            l->w[j] = he ? (float)(std * sf_rng_normal(key, (uint64_t)j))
                         : (float)(limit * (2.0 * sf_rng_uniform(key, (uint64_t)j) - 1.0));
        memset(l->b, 0, (size_t)l->nbias * sizeof(float));
    }
}

int64_t sf_model_nparams(const SfModel *m) { return m->nparams; }
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

/* Runs every layer forward; returns the logits (n, output_width). */
static const float *forward(SfModel *m, const float *x, int64_t n,
                            const SfPass *pass)
{
    const float *in = x;
    for (int i = 0; i < m->nlayers; i++) {
        m->layers[i].ops->forward(&m->layers[i], in, m->acts[i], n, pass);
        in = m->acts[i];
    }
    return in;
}

SfLossSums sf_model_train_batch(SfModel *m, const float *x, int64_t n,
                                SfTargets t, const SfPass *pass)
{
    SfLossSums sums = sf_model_train_forward(m, x, n, t, pass);
    sf_model_train_backward(m, x, n, pass);
    return sums;
}

SfLossSums sf_model_train_forward(SfModel *m, const float *x, int64_t n,
                                  SfTargets t, const SfPass *pass)
{
    const float *logits = forward(m, x, n, pass);
    return sf_loss_compute(m->loss, logits, n, sf_model_output_width(m), t,
                           m->dbuf[0]);
}

void sf_model_train_backward(SfModel *m, const float *x, int64_t n,
                             const SfPass *pass)
{
    float *dout = m->dbuf[0], *din = m->dbuf[1];
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const float *in = i > 0 ? m->acts[i - 1] : x;
        m->layers[i].ops->backward(&m->layers[i], in, m->acts[i], dout,
                                   i > 0 ? din : NULL, n, pass);
        float *tmp = dout;
        dout = din;
        din = tmp;
    }
}

SfLossSums sf_model_eval_batch(SfModel *m, const float *x, int64_t n,
                               SfTargets t)
{
    SfPass pass = {0};
    const float *logits = forward(m, x, n, &pass);
    return sf_loss_compute(m->loss, logits, n, sf_model_output_width(m), t, NULL);
}

const float *sf_model_predict(SfModel *m, const float *x, int64_t n)
{
    SfPass pass = {0};
    return forward(m, x, n, &pass);
}

SfLossKind sf_model_loss(const SfModel *m) { return m->loss; }

void sf_model_describe(const SfModel *m, char *buf, int size)
{
    int used = snprintf(buf, (size_t)size, "%lld",
                        (long long)sf_shape_size(m->input));
    for (int i = 0; i < m->nlayers && used < size; i++) {
        const SfLayer *l = &m->layers[i];
        if (l->ops == &sf_layer_dense)
            used += snprintf(buf + used, (size_t)(size - used), " -> dense:%lld",
                             (long long)l->units);
        else if (l->ops == &sf_layer_dropout)
            used += snprintf(buf + used, (size_t)(size - used), " dropout:%g", l->rate);
        else
            used += snprintf(buf + used, (size_t)(size - used), " %s", l->ops->kind);
    }
}
