/* trainer_shared.c: the step's gradient sum and update with the ranks of
 * each host in memory they share (comm.node_shared). On each host the
 * weights, the optimizer's state and every rank's gradient live in one
 * node-shared window (comm.h's SfShared): backward writes each rank's
 * gradient into its own slot; after a sync, each rank adds its host's
 * slots over its slice of the parameters (node rank r of L: the r-th of L
 * slices) and updates that slice in place; a second sync, carrying the
 * non-finite flag, and every rank reads the new weights. Against an
 * allreduce of the gradient followed by the same update on every rank,
 * this moves each gradient float once instead of through MPI's copies,
 * and each rank updates 1/L of the weights instead of all of them
 * (docs/BENCHMARKS.md has what it saves).
 *
 * On several hosts (the same number of ranks on each) it is hierarchical:
 * after adding its host's slots over its slice, node rank r allreduces
 * that slice with node rank r of every other host, so between hosts each
 * rank moves 1/L of the gradient among H ranks instead of all of it among
 * H L; node rank L - 1 also carries the step's tail (loss, counts, flags),
 * which its host reads after a third sync. Every host then holds the same
 * summed gradient and makes the same update of its own copy of the
 * weights; the non-finite flag, the same on every host, needs no more.
 *
 * Who writes what, between the syncs, so no two ranks touch a float at
 * once: in the step, rank r writes only its gradient slot (backward) and,
 * on node rank 0 alone, batchnorm's running statistics (SfPass.shared_stats
 * on the others: every rank computes the same ones); after the first sync,
 * rank r writes its slot and the weights and state over its slice, reading
 * the other slots there; after the last, nothing is written until the next
 * step's backward. Everything else that writes the weights (restore_best)
 * does so on node rank 0 and then syncs; a restore, slice by slice from
 * rank 0's host.
 *
 * Sums run in rank order (shared_sum.c): with two ranks on one host bitwise
 * MPI's sum; otherwise deterministic but grouped unlike Open MPI's
 * allreduce, so the weights agree with comm.node_shared = false to float
 * rounding, as they do with clip_norm, whose norm is summed by slices. */
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

/* Node rank r's gradient slot: its segment, after the weights and the
 * state on node rank 0. */
static float *slot(const SfTrainer *t, int r)
{
    float *base = sf_shared_segment(t->shared, r);
    return r == 0 ? base + t->shared_slot0 : base;
}

/* The optimizer's state block i, after the weights in node rank 0's
 * segment. */
static float *state_block(const SfTrainer *t, int i)
{
    const int64_t np = sf_model_nparams(t->model), ns = sf_model_nstate(t->model);
    return (float *)sf_shared_segment(t->shared, 0) + padded(ns) + i * padded(np);
}

static int local_rank(const SfTrainer *t) { return sf_shared_rank(t->shared); }
static int local_size(const SfTrainer *t) { return sf_shared_size(t->shared); }

int sf_trainer_share_node(SfTrainer *t)
{
    if (!sf_trainer_node_shared_asked(t->cfg) || t->size == 1)
        return 0;
    const int64_t np = sf_model_nparams(t->model), ns = sf_model_nstate(t->model);
    const int k = sf_optim_nblocks(t->optim);
    t->shared_slot0 = padded(ns) + k * padded(np);
    const size_t floats = (size_t)padded(np + SF_MODEL_GRAD_TAIL);
    if (!(t->shared = sf_comm_shared_create(t->comm,
                                            (floats + (size_t)t->shared_slot0) * sizeof(float),
                                            floats * sizeof(float))))
        return 0; /* hosts of 1 rank, or unlike ones, or no room: the allreduce */
    float *root = sf_shared_segment(t->shared, 0);
    float *blocks[2] = {state_block(t, 0), state_block(t, 1)};
    /* Every rank initialized the same weights; node rank 0's go in. The
     * optimizer's state starts at zero, as the window does. */
    const int L = local_size(t);
    if (local_rank(t) == 0)
        memcpy(root, sf_model_params(t->model), (size_t)ns * sizeof(float));
    sf_model_place(t->model, root, slot(t, local_rank(t)));
    sf_optim_place(t->optim, blocks);
    if (!(t->shared_slots = malloc((size_t)L * sizeof *t->shared_slots))) {
        fprintf(stderr, "shardfit: error: rank %d: out of memory for %d pointers\n",
                t->rank, L);
        sf_comm_abort(t->comm, SF_EXIT_FAILURE); /* as a failed window does */
    }
    for (int r = 0; r < L; r++)
        t->shared_slots[r] = slot(t, r);
    sf_shared_slice(np, L, local_rank(t), &t->shared_lo, &t->shared_hi);
    sf_shared_sync(t->shared, 0);
    return 0;
}

const float *sf_trainer_node_sum(SfTrainer *t)
{
    const int64_t np = sf_model_nparams(t->model);
    const float *w = sf_model_params(t->model);
    const int L = local_size(t), r = local_rank(t);
    float **slots = t->shared_slots;
    sf_shared_drop(w, t->shared_lo); /* the other ranks update these next */
    sf_shared_drop(w + t->shared_hi, np - t->shared_hi);
    sf_shared_sync(t->shared, 0);
    /* Several hosts: the tail crosses them with node rank L-1's slice. */
    const int hosts = sf_shared_hosts(t->shared);
    const int64_t hi = hosts > 1 && r + 1 == L ? np + SF_MODEL_GRAD_TAIL : t->shared_hi;
    sf_shared_sum(t->shared, slots, t->shared_lo, hi);
    if (hosts == 1) {
        for (int k = 0; k < SF_MODEL_GRAD_TAIL; k++) {
            float s = slots[0][np + k];
            for (int q = 1; q < L; q++)
                s += slots[q][np + k];
            t->shared_tail[k] = s;
        }
        return t->shared_tail;
    }
    sf_shared_sync(t->shared, 0); /* the tail is in */
    memcpy(t->shared_tail, slots[L - 1] + np, sizeof t->shared_tail);
    return t->shared_tail;
}

int sf_trainer_node_update(SfTrainer *t, float scale, double clip, double lr)
{
    float *g = t->shared_slots[local_rank(t)];
    const int64_t lo = t->shared_lo, hi = t->shared_hi;
    if (clip > 0.0) { /* the host's slices hold all of the summed gradient */
        double sq = sf_optim_grad_sumsq(g + lo, hi - lo);
        sf_shared_host_sum_f64(t->shared, &sq, 1);
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

int sf_trainer_shared_writer(const SfTrainer *t)
{
    return !t->shared || local_rank(t) == 0;
}

void sf_trainer_share_restore(SfTrainer *t, int with_state)
{
    if (!t->shared)
        return;
    if (sf_shared_hosts(t->shared) > 1) {
        /* Rank 0 read the checkpoint into its host's window; each rank
         * brings its slice of it to its own host (on rank 0's host, after
         * a sync, it reads rank 0's stores). */
        sf_shared_sync(t->shared, 0);
        const int L = local_size(t), r = local_rank(t);
        const int64_t np = sf_model_nparams(t->model), ns = sf_model_nstate(t->model);
        int64_t lo, hi;
        sf_shared_slice(ns, L, r, &lo, &hi);
        sf_shared_across_bcast_f32(t->shared, sf_model_params(t->model) + lo, hi - lo);
        sf_shared_slice(np, L, r, &lo, &hi);
        for (int i = 0; i < sf_optim_nblocks(t->optim) && with_state; i++)
            sf_shared_across_bcast_f32(t->shared, state_block(t, i) + lo, hi - lo);
    }
    sf_shared_sync(t->shared, 0);
}
