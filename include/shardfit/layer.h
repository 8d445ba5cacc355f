/* layer.h: one layer of a model, and the contract every layer kind keeps.
 *
 * Tensors are float32, batch-major and contiguous: (n, c, h, w) with the
 * per-sample shape in SfShape. A dense layer sees (n, c*h*w); conv and pooling
 * layers (later) see the four axes. Parameters and their gradients are views
 * into the model's two flat buffers (model.h), so a layer never allocates
 * them. Layers keep no per-batch state: backward gets the forward input and
 * output back, and anything random (dropout) is recomputed from SfPass. */
#ifndef SHARDFIT_LAYER_H
#define SHARDFIT_LAYER_H

#include <stdint.h>

typedef struct SfShape {
    int64_t c, h, w; /* a flat vector of d features is (d, 1, 1) */
} SfShape;

static inline int64_t sf_shape_size(SfShape s) { return s.c * s.h * s.w; }

/* What a pass needs beyond the tensors: whether it trains, and the
 * coordinates random layers key their masks on. */
typedef struct SfPass {
    int training;
    uint64_t seed;
    int64_t step;              /* optimizer step being computed */
    const int64_t *sample_ids; /* global sample index of each of the n rows */
} SfPass;

typedef struct SfLayer SfLayer;

typedef struct SfLayerOps {
    const char *kind; /* "dense", "relu", ...: checkpoint group names use it */
    /* out (n, out) = f(in (n, in)). */
    void (*forward)(const SfLayer *l, const float *in, float *out, int64_t n,
                    const SfPass *pass);
    /* Given dout (n, out), ADDS parameter gradients into dw/db (so micro-
     * batches accumulate) and, unless din is NULL (the first layer), writes
     * din (n, in). in and out are what forward saw and produced. */
    void (*backward)(const SfLayer *l, const float *in, const float *out,
                     const float *dout, float *din, int64_t n,
                     const SfPass *pass);
} SfLayerOps;

struct SfLayer {
    const SfLayerOps *ops;
    SfShape in, out;
    int index;           /* position in the model, for per-layer keys */
    int64_t units;       /* dense: output width; conv: filters */
    double rate;         /* dropout rate */
    int64_t nweight, nbias;
    float *w, *b;        /* views into the model's parameter block */
    float *dw, *db;      /* views into the model's gradient block */
};

/* Parses one token of the `layers` list ("dense:128", "relu", "tanh",
 * "sigmoid", "dropout:0.5", "flatten") and sets l->ops, shapes and parameter
 * counts for input shape in. Returns 0, or -1 with msg (msgsize bytes)
 * saying what is wrong with the token. Parameter pointers are set later. */
int sf_layer_setup(SfLayer *l, const char *token, SfShape in,
                   char *msg, int msgsize);

/* BLAS threads for this process (layer_dense.c is the BLAS gateway). */
void sf_layer_blas_threads(int n);

/* What a run reports about its BLAS (layer_dense.c): the library's build,
 * "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64", and the
 * kernels in use, "SkylakeX". Static strings. */
const char *sf_layer_blas_config(void);
const char *sf_layer_blas_core(void);

/* Call first in main: may re-execute the program once with faster BLAS
 * kernels selected (see layer_dense.c). Returns when nothing is to change. */
void sf_layer_blas_select_kernels(char **argv);

/* Kinds, one file each: layer_dense.c, layer_activation.c, layer_dropout.c. */
extern const SfLayerOps sf_layer_dense, sf_layer_relu, sf_layer_tanh,
    sf_layer_sigmoid, sf_layer_dropout, sf_layer_flatten;

#endif
