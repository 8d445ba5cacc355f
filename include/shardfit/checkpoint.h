/* checkpoint.h: everything a run needs to continue bit for bit, in one HDF5
 * file any h5py user can read (SPEC §7).
 *
 * Layout: root attributes format = "shardfit-checkpoint", version, epoch
 * (completed epochs), step (optimizer steps done), step_in_epoch, seed,
 * world_size (when written), config (the effective config text), layers
 * (model.layers), and the state of the epoch in progress and of the stopping
 * rule (below); group /params/LL_kind/ (LL = two-digit layer index, kind =
 * "dense", ...) with datasets weight and bias for every layer with
 * parameters; /optimizer/LL_kind/ with the optimizer's blocks under their
 * names (momentum, or m and v) and attribute t; /best/LL_kind/ with the best
 * epoch's weights when restore_best keeps them; /history with one float64
 * dataset (E,) per metrics field.
 *
 * Files are written by rank 0 to a temporary name in the same directory,
 * flushed and fsynced, renamed, and the directory fsynced: a crash leaves the
 * old file or the new one, never half of one. Readers accept string
 * attributes stored fixed-length or variable-length (h5py writes
 * variable-length), and a file holding only format, version and /params is a
 * valid init_checkpoint. Every reader below first does its reads in a forked
 * child (src/h5guard.h): a file that crashes or hangs HDF5 is an error
 * (exit 2), and find_latest skips it. */
#ifndef SHARDFIT_CHECKPOINT_H
#define SHARDFIT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shardfit/error.h"
#include "shardfit/metrics.h"
#include "shardfit/model.h"
#include "shardfit/optim.h"

#define SF_CHECKPOINT_FORMAT "shardfit-checkpoint"
#define SF_CHECKPOINT_VERSION 1

/* Where a run stands, besides the weights and optimizer state. */
typedef struct SfCheckpointInfo {
    int64_t epoch;          /* completed epochs */
    int64_t step;           /* optimizer steps done */
    int64_t step_in_epoch;  /* steps done in epoch `epoch` (0 at its start) */
    uint64_t seed;
    int64_t world_size;     /* ranks that wrote it (resume may use others) */
    /* The epoch in progress (mid-epoch checkpoints): its allreduced sums so
     * far, so its metrics line comes out as if the run never stopped. */
    double sum_loss, sum_correct, sum_count;
    /* The stopping rule's state (stopping.h). */
    double stop_best;
    int64_t stop_best_epoch, stop_wait;
    int has_best;           /* /best holds the best epoch's weights */
    char *config;           /* effective config text (owned; malloc'd) */
    char *layers;           /* model.layers (owned; malloc'd) */
    int64_t nhistory;
    SfEpochMetrics *history; /* completed epochs' metrics (owned; malloc'd) */
} SfCheckpointInfo;

/* Frees the owned strings and history; info itself is the caller's. */
void sf_checkpoint_info_free(SfCheckpointInfo *info);

/* mkdir -p dir, then proves it writable by creating and removing a probe
 * file. Errors (exit 2) name checkpoint.dir and the reason. */
int sf_checkpoint_prepare_dir(const char *dir, SfError *err);

/* Writes dir/name atomically (see above). o may be NULL (no /optimizer);
 * best may be NULL (no /best). On failure (exit 1, the message names the
 * file and the reason, e.g. "No space left on device") the temporary file
 * is removed and any earlier checkpoint is untouched. */
int sf_checkpoint_write(const char *dir, const char *name, const SfModel *m,
                        SfOptim *o, const float *best, const SfCheckpointInfo *info,
                        SfError *err);

/* Reads a checkpoint into m (parameters), o (optimizer blocks and t; may be
 * NULL) and best (nparams floats; may be NULL, or left alone when the file
 * has no /best), and fills info. Checks format, version and that every layer
 * of m has the same kind and shapes in the file; a mismatch (exit 2) names
 * the layer and both shapes: "layer 02_dense: checkpoint weight (10, 256),
 * model (10, 128)". Nothing in m or o changes unless it all succeeds.
 * info may be NULL; it is filled only on success. With o, the file must hold
 * exactly the state blocks o keeps (another optimizer's state is an error). */
int sf_checkpoint_read(const char *path, SfModel *m, SfOptim *o, float *best,
                       SfCheckpointInfo *info, SfError *err);

/* Only the attributes and /history of a checkpoint (no model needed): what
 * eval, predict and inspect read first to build the model it describes.
 * Checks format and version. Attributes the file lacks stay 0 or NULL (a
 * params-only init file has no config or layers). info is filled only on
 * success. */
int sf_checkpoint_read_info(const char *path, SfCheckpointInfo *info, SfError *err);

/* For model.init_checkpoint: only format, version and /params are needed
 * (weights made elsewhere, e.g. written with h5py). Same shape checks. */
int sf_checkpoint_load_params(const char *path, SfModel *m, SfError *err);

/* The newest checkpoint in dir (highest step; an epoch file wins a tie)
 * that opens and validates against m. Files that do not (truncated,
 * corrupt, another model) are skipped with a warning line on warn naming
 * the file and why; nothing is deleted. Returns 1 with the path in out,
 * 0 when there is none (or dir does not exist), -1 on error. */
int sf_checkpoint_find_latest(const char *dir, const SfModel *m, FILE *warn,
                              char *out, size_t outsize, SfError *err);

/* Deletes all but the keep_last newest checkpoints in dir (epoch and step
 * files alike, by step), never the file named keep (the best epoch's; may be
 * NULL). keep_last 0 keeps everything. Only names shardfit writes
 * (epoch-EEEE.h5, step-SSSSSSSS.h5) are touched. */
int sf_checkpoint_prune(const char *dir, int64_t keep_last, const char *keep,
                        SfError *err);

/* Checkpoint file names: epoch-EEEE.h5 (epoch = completed epochs) and
 * step-SSSSSSSS.h5 (step = steps done). */
void sf_checkpoint_epoch_name(int64_t epoch, char *buf, size_t n);
void sf_checkpoint_step_name(int64_t step, char *buf, size_t n);

#endif
