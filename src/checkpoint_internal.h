/* checkpoint_internal.h: what the checkpoint files share (private to src/).
 *
 * checkpoint.c writes, checkpoint_info.c reads the attributes and history,
 * checkpoint_read.c the weights and checks them against a model,
 * checkpoint_dir.c looks after the directory. They must agree on the
 * per-layer names and shapes, the root attributes and the /history fields,
 * kept here in one place. Both tables are constant data, not state. */
#ifndef SHARDFIT_CHECKPOINT_INTERNAL_H
#define SHARDFIT_CHECKPOINT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "shardfit/checkpoint.h"
#include "shardfit/dataset.h"
#include "h5util.h"

/* Longest path the module builds ("dir/.epoch-0001.h5.tmp.PID"). */
#define SF_CKPT_PATH 4096

/* Optimizer state blocks by their optim.h names: momentum (SGD), m and v
 * (Adam, AdamW). */
#define SF_CKPT_NSTATES 3
extern const char *const sf_ckpt_states[SF_CKPT_NSTATES];

/* 1 if layer l has parameters or statistics (and so a group LL_kind). */
int sf_ckpt_has_params(const SfLayer *l);

/* "02_dense": the layer's index and kind. */
void sf_ckpt_layer_name(const SfLayer *l, char *buf, size_t n);

/* The stored shape of part p of l (l->parts[p], named by the layer kind:
 * weight, bias, running_mean, ...): dense weight (units, in), conv weight
 * (out_c, in_c, k, k). float32, or int64 for an integer part. */
void sf_ckpt_part_shape(const SfLayer *l, int part, SfArrayInfo *out);

/* Where part of l starts in the model's flat blocks (the state block, and
 * for trained parts the gradients and optimizer state alike). */
int64_t sf_ckpt_part_offset(const SfModel *m, const SfLayer *l, int part);

typedef enum { SF_CKPT_I64, SF_CKPT_U64, SF_CKPT_INT, SF_CKPT_F64,
               SF_CKPT_STR } SfCkptType;

/* One member of a struct stored by name: an attribute of SfCheckpointInfo,
 * or a /history dataset of SfEpochMetrics. */
typedef struct SfCkptField {
    const char *name;
    size_t offset;
    SfCkptType type;
} SfCkptField;

/* Root attributes besides format and version (which are checked first and
 * apart) and has_best, nhistory, history (which come from /best and
 * /history). Every one is written; a resume needs every one. */
extern const SfCkptField sf_ckpt_info_fields[];
extern const int sf_ckpt_ninfo_fields;

/* Every numeric field of SfEpochMetrics, stored as float64 (E,). */
extern const SfCkptField sf_ckpt_history_fields[];
extern const int sf_ckpt_nhistory_fields;

double sf_ckpt_history_get(const SfEpochMetrics *e, const SfCkptField *f);
void sf_ckpt_history_set(SfEpochMetrics *e, const SfCkptField *f, double v);

/* ---- checkpoint_info.c: reading what a file says about itself ---------- */

/* 1 if path names an object in file (a missing parent is a plain 0). */
int sf_ckpt_exists(hid_t file, const char *path);

/* Like sf_h5_open_read, but the messages (exit 2) leave the path out. */
hid_t sf_ckpt_open(const char *path, SfError *err);

/* format and version: is this a checkpoint this shardfit can read? */
int sf_ckpt_check_format(hid_t file, SfError *err);

/* An integer attribute of loc as int64 or uint64 (t SF_CKPT_I64,
 * SF_CKPT_U64), or an integer or float one as double (SF_CKPT_F64); where
 * ("", "/optimizer ") starts the messages. */
int sf_ckpt_get_number(hid_t loc, const char *where, const char *name,
                       SfCkptType t, void *out, SfError *err);

/* The root attributes of SfCheckpointInfo (strings malloc'd into info);
 * with optional, those the file lacks stay 0 or NULL. */
int sf_ckpt_read_info(hid_t file, int optional, SfCheckpointInfo *info,
                      SfError *err);

/* /history into info->history (malloc'd); a file without it has none. */
int sf_ckpt_read_history(hid_t file, SfCheckpointInfo *info, SfError *err);

/* ---- checkpoint_read.c -------------------------------------------------- */

/* Opens path and checks it without loading any weights: format and
 * version, the step attribute into *step, and with full also every other
 * attribute, /history, and the layers of /params, /best and /optimizer
 * against m (which full requires). What sf_checkpoint_read would refuse,
 * this refuses too. Errors (exit 2) do not name the path: the caller does.
 * Holds the HDF5 lock. */
int sf_ckpt_check(const char *path, const SfModel *m, int full, int64_t *step,
                  SfError *err);

#endif
