/* layer.h: one layer of a model, and the contract every layer kind keeps.
 *
 * Tensors are float32, batch-major and contiguous: (n, c, h, w) with the
 * per-sample shape in SfShape (NCHW). A dense layer sees (n, c*h*w); conv and
 * pooling layers see the four axes. A kind owns everything about itself
 * through its SfLayerOps: parsing its argument, its output shape, its
 * parameters (their names and shapes in checkpoints, their init fans), and
 * the workspace it needs; layer.c only maps a token's kind to its ops.
 *
 * Parameters, their gradients and the layer's statistics (batchnorm's
 * running mean) are views into the model's flat blocks (model.h), so a layer
 * never allocates them. A layer's workspace (l->work) is allocated once by
 * the model; forward may leave in it what the matching backward needs
 * (max pooling's indices), and nothing else survives a pass. Anything random
 * (dropout) is recomputed from SfPass. */
#ifndef SHARDFIT_LAYER_H
#define SHARDFIT_LAYER_H

#include <stdint.h>

typedef struct SfShape {
    int64_t c, h, w; /* a flat vector of d features is (d, 1, 1) */
} SfShape;

static inline int64_t sf_shape_size(SfShape s) { return s.c * s.h * s.w; }

/* Sums per-rank values into the same values on every rank (the trainer
 * passes its communicator's allreduce; NULL means one rank alone). */
typedef void (*SfReduceFn)(void *ctx, double *buf, int64_t n);

struct SfPhases;

/* What a pass needs beyond the tensors: whether it trains, the coordinates
 * random layers key their masks on, and for batch statistics (batchnorm)
 * the reduction that makes them those of the whole global batch. */
typedef struct SfPass {
    int training;
    uint64_t seed;
    int64_t step;              /* optimizer step being computed */
    const int64_t *sample_ids; /* global sample index of each of the n rows */
    SfReduceFn allreduce;      /* NULL: this process holds the whole batch */
    void *allreduce_ctx;
    struct SfPhases *phases;   /* times forward and backward (phases.h); NULL: not */
    int shared_stats;          /* another rank updates the running statistics
                                  (batchnorm's), in memory both map: leave them */
} SfPass;

/* One named array of a layer's state, as checkpoints store it. */
#define SF_LAYER_MAX_PARTS 5
typedef struct SfLayerPart {
    const char *name;  /* "weight", "bias", "running_mean", ... */
    int ndims;
    int64_t dims[4];   /* its natural shape: dense weight (out, in) */
    int stat;          /* 0: a trained parameter (gradient, optimizer state);
                          1: a statistic the layer updates itself */
    int integer;       /* stored as int64 (num_batches_tracked) */
} SfLayerPart;

static inline int64_t sf_layer_part_size(const SfLayerPart *p)
{
    int64_t n = 1;
    for (int d = 0; d < p->ndims; d++)
        n *= p->dims[d];
    return n;
}

typedef struct SfLayer SfLayer;

/* How a layer with batch statistics (batchnorm) takes this pass, set by the
 * model for each pass. WHOLE: the rows are this rank's whole share of the
 * global batch; forward computes the global statistics (one allreduce) and
 * uses them, backward likewise its global sums. GATHER: only add this
 * micro-batch's sums to the layer's accumulator (the output is not used);
 * FIXED: use what the gathering produced (sf_layer_gathered). */
typedef enum { SF_BATCH_WHOLE, SF_BATCH_GATHER, SF_BATCH_FIXED } SfBatchMode;

/* The elementwise activations a layer before may apply in its own output
 * pass (dense: bias and activation in one pass after its GEMM). */
typedef enum { SF_ACT_NONE, SF_ACT_RELU, SF_ACT_TANH, SF_ACT_SIGMOID } SfAct;

typedef struct SfLayerOps {
    const char *kind; /* "dense", "relu", ...: checkpoint group names use it */
    /* Sets l->out, parts, fans and workspace sizes from l->in and the token's
     * argument (NULL when the token has none). Returns 0, or -1 with msg
     * saying what is wrong (the argument, or an input shape that does not
     * fit). NULL: an argument-free kind that keeps its input shape. */
    int (*setup)(SfLayer *l, const char *arg, char *msg, int msgsize);
    /* out (n, out) = f(in (n, in)). */
    void (*forward)(const SfLayer *l, const float *in, float *out, int64_t n,
                    const SfPass *pass);
    /* Activation kinds: which activation the kind is (else SF_ACT_NONE). */
    SfAct act;
    /* Optional: out (n, out) = act(f(in)), this layer's forward and then the
     * next layer's activation in one pass, with the bits of the two forwards
     * run one after the other. The model calls it when the next layer's act
     * is not SF_ACT_NONE, and leaves this layer's own output unwritten, so
     * the activation's backward must not read its input (none does).
     * next is NULL, or (kinds with takes_planes only) the layer after the
     * activation, which has forward_plane: then out is next's output
     * (n, next->out), each plane of act(f(in)) handed to next's
     * forward_plane while in cache, and the activation's output is left
     * unwritten too (the model then also fuses the backward, below). */
    void (*forward_act)(const SfLayer *l, SfAct act, const SfLayer *next,
                        const float *in, float *out, int64_t n, const SfPass *pass);
    /* Given dout (n, out), ADDS parameter gradients into dw/db (so micro-
     * batches accumulate) and, unless din is NULL (the first layer), writes
     * din (n, in). in and out are what forward saw and produced. */
    void (*backward)(const SfLayer *l, const float *in, const float *out,
                     const float *dout, float *din, int64_t n,
                     const SfPass *pass);
    /* Optional: the backward of the next layer, a relu (act is
     * SF_ACT_RELU: the model calls it for no other), and then this layer's
     * own, in one pass. dout (n, out) is the gradient w.r.t. the relu's
     * output y (n, out), which the relu's backward would mask where y <= 0
     * (a layer may recompute that mask from in, as batchnorm does); in and
     * din as in backward. Bitwise the two backwards run one after
     * the other, without the masked gradient ever being stored. With next
     * (as in forward_act; y is then NULL), dout is next's output gradient
     * (n, next->out) and the relu's output gradient is fetched plane by
     * plane from next's backward_plane: three backwards, one pass. */
    void (*backward_act)(const SfLayer *l, SfAct act, const SfLayer *next,
                         const float *in, const float *y, const float *dout,
                         float *din, int64_t n, const SfPass *pass);
    /* 1 when forward_act and backward_act take a next layer (above). */
    int takes_planes;
    /* Optional, for kinds that work plane by plane (max pooling), so the
     * layer two before can run them on each plane of its output while that
     * plane is in cache (forward_act's next), bit for bit what forward and
     * backward give. forward_plane: plane p (of the n*C planes of a pass,
     * in order) of this layer's input, in_plane (in.h, in.w), into out's
     * plane p (out is the whole (n, out) output), keeping what backward
     * needs as forward would. backward_plane: din_plane (in.h, in.w) = the
     * gradient w.r.t. input plane p, from dout (the whole (n, out)
     * gradient) and what forward_plane kept. Neither stores other planes. */
    void (*forward_plane)(const SfLayer *l, const float *in_plane, int64_t p,
                          float *out);
    void (*backward_plane)(const SfLayer *l, const float *dout, int64_t p,
                           float *din_plane);
    /* Optional: this layer run on relu(in), for a relu just before it that
     * the layer before the relu does not take (model.c's relu_into), in one
     * pass: out = f(relu(in)), the relu's output never stored. Bit for bit
     * the two forwards. backward_relu: din (NULL: none wanted) = the
     * gradient w.r.t. the relu's input, from dout and out, bit for bit the
     * two backwards; for a max pool, out at each window's kept element is
     * the relu's output there, whose sign is the relu's mask. */
    void (*forward_relu)(const SfLayer *l, const float *in, float *out, int64_t n,
                         const SfPass *pass);
    void (*backward_relu)(const SfLayer *l, const float *out, const float *dout,
                          float *din, int64_t n, const SfPass *pass);
    /* Optional, for kinds whose forward first reduces its whole input
     * (batchnorm's statistics): takes rows [b, b + count) of a pass's input
     * of n rows as the layer before writes them, in order, so it reads them
     * while they are in cache, and its forward then skips that reduction
     * (l->fed). Bit for bit what forward does itself. Called by kinds with
     * feeds_rows, through their l->feed. */
    void (*take_rows)(const SfLayer *l, const float *rows, int64_t b, int64_t count,
                      int64_t n, const SfPass *pass);
    /* 1 when forward hands its output, sample by sample as it is written,
     * to l->feed's take_rows (conv). */
    int feeds_rows;
    /* Sets the initial parameters and statistics itself (batchnorm's ones
     * and zeros). NULL: weights from the He/Glorot draw, zero biases. */
    void (*init)(SfLayer *l);
    /* Kinds with batch statistics only (else NULL): starts a gathering
     * (backward 0: of forward statistics, 1: of backward sums), and ends
     * one by reducing the sums over the ranks (pass->allreduce) and fixing
     * them for the FIXED passes that follow. */
    void (*gather_begin)(SfLayer *l, int backward);
    void (*gather_end)(SfLayer *l, int backward, const SfPass *pass);
} SfLayerOps;

struct SfLayer {
    const SfLayerOps *ops;
    char token[32];      /* as written in model.layers, for messages */
    SfShape in, out;
    int index;           /* position in the model, for per-layer keys */
    int64_t units;       /* dense: output width; conv: filters */
    int64_t k, stride, pad; /* conv and pooling */
    double rate;         /* dropout rate */
    double fan_in, fan_out; /* for the weight init */
    int nparts;          /* parts[0], parts[1]: weight and bias, if any */
    SfLayerPart parts[SF_LAYER_MAX_PARTS];
    float *data[SF_LAYER_MAX_PARTS]; /* views into the model's state block */
    float *grad[SF_LAYER_MAX_PARTS]; /* ... and its gradient block (params) */
    int64_t nweight, nbias; /* sizes of parts 0 and 1 when trained (else 0) */
    float *w, *b;        /* data[0], data[1] */
    float *dw, *db;      /* grad[0], grad[1] */
    int64_t work_per_row; /* floats of workspace per row of a pass */
    int64_t work_fixed;   /* ... and floats of it whatever the rows */
    float *work;          /* max_rows * work_per_row + work_fixed floats, or NULL */
    int64_t nsums;        /* doubles of per-step sums (batch statistics) */
    double *sums;         /* nsums doubles, or NULL */
    SfBatchMode fmode, bmode; /* forward's and backward's, set by the model */
    const SfLayer *feed;  /* the next layer when it takes this one's rows
                             (take_rows, feeds_rows), set by the model; or NULL */
    int fed;              /* 1: the layer before hands this one its rows */
};

/* Parses one token of the `layers` list ("dense:128", "conv:32:3:1:1",
 * "maxpool:2", ...) and sets up the layer for input shape in: l->ops,
 * shapes, parts and workspace size. Returns 0, or -1 with msg (msgsize
 * bytes) saying what is wrong with the token. Pointers are set later. */
int sf_layer_setup(SfLayer *l, const char *token, SfShape in,
                   char *msg, int msgsize);

/* Adds a trained part (weight, bias) or a statistic to l; helpers for the
 * kinds' setup. */
void sf_layer_add_part(SfLayer *l, const char *name, int stat, int ndims,
                       const int64_t *dims);

/* Parses "A[:B...]" (arg may be NULL) into at most max positive integers;
 * returns how many, or -1 if one is not an integer in [1, 2^30] (an
 * integer in [0, 2^30] where zero_ok has bit i set for position i). */
int sf_layer_parse_ints(const char *arg, int64_t *v, int max, unsigned zero_ok);

/* "(32, 28, 28)": a shape for messages. */
const char *sf_shape_str(SfShape s, char *buf, int size);

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

/* Kinds, one file each (activations share one), listed in layer.c. */
extern const SfLayerOps sf_layer_dense, sf_layer_relu, sf_layer_tanh,
    sf_layer_sigmoid, sf_layer_dropout, sf_layer_flatten, sf_layer_conv,
    sf_layer_maxpool, sf_layer_avgpool, sf_layer_batchnorm;

#endif
