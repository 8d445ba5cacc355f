/* config.h: every setting of a run, in one plain struct.
 *
 * Values come from three layers, later ones winning: the built-in defaults
 * (one table in config_table.c, with help text and ranges), the INI file, and
 * `--set section.key=value` overrides. Each value is type- and range-checked
 * as it is set; sf_config_check() then checks what involves several keys.
 * The effective config is printed at start-up and stored in checkpoints, so
 * sf_config_format() must round-trip through sf_config_load(). */
#ifndef SHARDFIT_CONFIG_H
#define SHARDFIT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "shardfit/error.h"
#include "shardfit/loss.h"  /* SfLossKind: each module owns its enum */
#include "shardfit/model.h" /* SfInitKind */

#define SF_CONFIG_STR 1024  /* longest path or string value, with its NUL */
#define SF_MAX_MILESTONES 64

typedef enum { SF_LOADER_SHARD, SF_LOADER_REPLICATE, SF_LOADER_STREAM } SfLoaderKind;
typedef enum { SF_OPTIM_SGD, SF_OPTIM_ADAM, SF_OPTIM_ADAMW } SfOptimKind;
typedef enum { SF_LR_SCALING_NONE, SF_LR_SCALING_LINEAR } SfLrScaling;
typedef enum {
    SF_SCHED_CONSTANT, SF_SCHED_STEP, SF_SCHED_MULTISTEP,
    SF_SCHED_EXPONENTIAL, SF_SCHED_COSINE
} SfScheduleKind;
typedef enum {
    SF_MONITOR_VAL_LOSS, SF_MONITOR_VAL_ACCURACY, SF_MONITOR_LOSS, SF_MONITOR_ACCURACY
} SfMonitor;
typedef enum {
    SF_PROGRESS_AUTO, SF_PROGRESS_BAR, SF_PROGRESS_EPOCH, SF_PROGRESS_NONE
} SfProgress;

typedef struct SfConfig {
    struct {
        char path[SF_CONFIG_STR];
        char features[SF_CONFIG_STR];
        char labels[SF_CONFIG_STR];
        double scale, offset;
        char val_path[SF_CONFIG_STR];     /* empty: same file as path */
        char val_features[SF_CONFIG_STR]; /* empty: no separate validation set */
        char val_labels[SF_CONFIG_STR];
        double validation_split;          /* [0, 1): last fraction held out */
        SfLoaderKind loader;
    } data;
    struct {
        char layers[SF_CONFIG_STR];
        SfLossKind loss;
        SfInitKind init;
        char init_checkpoint[SF_CONFIG_STR];
    } model;
    struct {
        int64_t epochs;
        int64_t batch_size; /* 0 means 'all' (full-batch gradient descent) */
        int64_t micro_batch; /* 0: a rank's whole share at once */
        int drop_last, shuffle;
        uint64_t seed;
        int64_t max_steps;  /* 0: no cap */
        int64_t threads;
    } train;
    struct {
        SfOptimKind name;
        double lr, momentum;
        int nesterov;
        double weight_decay, beta1, beta2, eps, clip_norm;
        SfLrScaling lr_scaling;
    } optimizer;
    struct {
        SfScheduleKind name;
        int64_t warmup_steps;
        double warmup_epochs;  /* used when > 0 instead of warmup_steps */
        int64_t step_size;
        double step_epochs;    /* used when > 0 instead of step_size */
        int64_t milestones[SF_MAX_MILESTONES]; /* epochs, strictly increasing */
        int n_milestones;
        double gamma, min_lr;
    } schedule;
    struct {
        int early_stopping;
        SfMonitor monitor;
        double min_delta;
        int64_t patience;
        int restore_best;
        double target;
    } stop;
    struct {
        char dir[SF_CONFIG_STR];
        int64_t every_epochs, every_steps, keep_last;
        char resume[SF_CONFIG_STR]; /* "auto", "never" or a path */
    } checkpoint;
    struct {
        double timeout;   /* seconds */
        double bucket_mb; /* MiB per gradient bucket; 0: one allreduce */
        int node_shared;  /* one host: sum and update in shared memory */
    } comm;
    struct {
        char dir[SF_CONFIG_STR];
        SfProgress progress;
        char metrics[SF_CONFIG_STR];
        char trace[SF_CONFIG_STR];
        int64_t trace_first, trace_last; /* trace_steps = FIRST:LAST, 1-based */
    } log;
} SfConfig;

/* Fills cfg with the defaults of SPEC §4. Cannot fail. */
void sf_config_defaults(SfConfig *cfg);

/* Reads an INI file over the current values. On error returns -1 with err
 * naming the file, line, and key (an unknown key or section gets the
 * closest valid name as a hint). Exit code SF_EXIT_INPUT. */
int sf_config_load(SfConfig *cfg, const char *path, SfError *err);

/* The same for INI text held in memory (a checkpoint's stored config);
 * path names it in messages. */
int sf_config_load_text(SfConfig *cfg, const char *text, const char *path,
                        SfError *err);

/* Applies one `section.key=value` override; same checks and messages. */
int sf_config_set(SfConfig *cfg, const char *assignment, SfError *err);

/* Sets one key by section and name (used by load and set). */
int sf_config_set_key(SfConfig *cfg, const char *section, const char *key,
                      const char *value, SfError *err);

/* Checks what involves several keys (e.g. batch_size 'all' with drop_last,
 * a missing data.path). Returns 0 or -1 with err set. */
int sf_config_check(const SfConfig *cfg, SfError *err);

/* The effective config as INI text, every key written; malloc'd, the caller
 * frees. Loading that text again gives the same SfConfig. NULL on ENOMEM. */
char *sf_config_format(const SfConfig *cfg);

/* Name of an enum value as the config spells it ("sgd", "cosine", ...). */
const char *sf_config_loader_name(SfLoaderKind k);
const char *sf_config_optim_name(SfOptimKind k);
const char *sf_config_schedule_name(SfScheduleKind k);
const char *sf_config_monitor_name(SfMonitor m);

#endif
