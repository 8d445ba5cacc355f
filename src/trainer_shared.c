/* trainer_shared.c: the step's gradient sum and update when every rank runs
 * on one host (comm.node_shared). The weights, the optimizer's state and
 * every rank's gradient live in one node-shared window (comm.h's SfShared):
 * backward writes each rank's gradient into its own slot; after a sync,
 * each rank adds all the slots over its slice of the parameters and
 * updates that slice in place; a second sync, carrying the non-finite
 * flag, and every rank reads the new weights. Against an allreduce of the
 * gradient followed by the same update on every rank, this moves each
 * gradient float once instead of through MPI's copies, and each rank
 * updates 1/P of the weights instead of all of them (docs/BENCHMARKS.md
 * has what it saves).
 *
 * Who writes what, between the syncs, so no two ranks touch a float at
 * once: in the step, rank r writes only its gradient slot (backward) and,
 * on rank 0 alone, batchnorm's running statistics (SfPass.shared_stats on
 * the others: every rank computes the same ones); after the first sync,
 * rank r writes its slot and the weights and state over its slice, reading
 * the other slots there; after the second, nothing is written until the
 * next step's backward. Everything else that writes the weights (restore,
 * restore_best) does so on rank 0 and then syncs.
 *
 * Sums run in rank order (shared_sum.c): with two ranks bitwise MPI's sum;
 * with more, deterministic but grouped unlike Open MPI's allreduce, so the
 * weights agree with comm.node_shared = false to float rounding, as they
 * do with clip_norm, whose norm is summed by slices. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardfit/model.h"
#include "shardfit/optim.h"
#include "shared_sum.h"
#include "trainer_internal.h"

/* Blocks in the window start on 4 KiB boundaries. */
static int64_t padded(int64_t floats) { return (floats + 1023) / 1024 * 1024; }

/* Rank r's gradient slot: its segment, after the weights and the state on
 * rank 0. */
static float *slot(const SfTrainer *t, int r)
{
    float *base = sf_shared_segment(t->shared, r);
    return r == 0 ? base + t->shared_slot0 : base;
}

int sf_trainer_share_node(SfTrainer *t)
{
    if (!sf_trainer_node_shared_asked(t->cfg) || t->size == 1)
        return 0;
    const int64_t np = sf_model_nparams(t->model), ns = sf_model_nstate(t->model);
    const int k = sf_optim_nblocks(t->optim);
    t->shared_slot0 = padded(ns) + k * padded(np);
    int64_t floats = padded(np + SF_MODEL_GRAD_TAIL) + (t->rank == 0 ? t->shared_slot0 : 0);
    if (!(t->shared = sf_comm_shared_create(t->comm, (size_t)floats * sizeof(float))))
        return 0; /* ranks on several hosts: the allreduce */
    float *root = sf_shared_segment(t->shared, 0);
    float *blocks[2] = {root + padded(ns), root + padded(ns) + padded(np)};
    /* Every rank initialized the same weights; rank 0's go in. The
     * optimizer's state starts at zero, as the window does. */
    if (t->rank == 0)
        memcpy(root, sf_model_params(t->model), (size_t)ns * sizeof(float));
    sf_model_place(t->model, root, slot(t, t->rank));
    sf_optim_place(t->optim, blocks);
    if (!(t->shared_slots = malloc((size_t)t->size * sizeof *t->shared_slots))) {
        fprintf(stderr, "shardfit: error: rank %d: out of memory for %d pointers\n",
                t->rank, t->size);
        sf_comm_abort(t->comm, SF_EXIT_FAILURE); /* as a failed window does */
    }
    for (int r = 0; r < t->size; r++)
        t->shared_slots[r] = slot(t, r);
    sf_shared_slice(np, t->size, t->rank, &t->shared_lo, &t->shared_hi);
    sf_shared_sync(t->shared, 0);
    return 0;
}

const float *sf_trainer_node_sum(SfTrainer *t)
{
    const int64_t np = sf_model_nparams(t->model);
    const float *w = sf_model_params(t->model);
    sf_shared_drop(w, t->shared_lo); /* the other ranks update these next */
    sf_shared_drop(w + t->shared_hi, np - t->shared_hi);
    sf_shared_sync(t->shared, 0);
    sf_shared_sum_slice(t->shared_slots, t->size, t->rank, t->shared_lo, t->shared_hi);
    for (int k = 0; k < SF_MODEL_GRAD_TAIL; k++) {
        float s = slot(t, 0)[np + k];
        for (int q = 1; q < t->size; q++)
            s += slot(t, q)[np + k];
        t->shared_tail[k] = s;
    }
    return t->shared_tail;
}

int sf_trainer_node_update(SfTrainer *t, float scale, double clip, double lr)
{
    float *g = slot(t, t->rank);
    const int64_t lo = t->shared_lo, hi = t->shared_hi;
    if (clip > 0.0) {
        double sq = sf_optim_grad_sumsq(g + lo, hi - lo);
        sf_comm_allreduce_sum_f64(t->comm, &sq, 1);
        scale = sf_optim_clip_scale(scale, sqrt(sq) * scale, clip);
    }
    int bad = sf_optim_step_range(t->optim, sf_model_params(t->model), g, lo, hi,
                                  scale, lr) != 0;
    return sf_shared_sync(t->shared, bad) ? -1 : 0;
}

void sf_trainer_share_sync(SfTrainer *t)
{
    if (t->shared)
        sf_shared_sync(t->shared, 0);
}
