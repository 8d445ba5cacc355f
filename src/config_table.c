/* config_table.c: every config key of SPEC §4 in one table, and how a key's
 * text becomes a checked value in SfConfig and back.
 *
 * Adding a key is one row here plus a field in SfConfig: defaults, parsing,
 * range checks, error messages and sf_config_format() all follow from the
 * row. Values are checked as they are set, so a bad value is reported with
 * the file line or --set text that carried it (config.c adds that prefix). */
#include "config_table.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Enums are stored through an int pointer. */
_Static_assert(sizeof(SfLoaderKind) == sizeof(int), "enum is not int-sized");
_Static_assert(sizeof(SfProgress) == sizeof(int), "enum is not int-sized");

static const char *const loader_names[] = { "shard", "replicate", "stream", NULL };
static const char *const loss_names[] = { "cross_entropy", "mse", NULL };
static const char *const init_names[] = { "auto", "he", "glorot", NULL };
static const char *const optim_names[] = { "sgd", "adam", "adamw", NULL };
static const char *const lr_scaling_names[] = { "none", "linear", NULL };
static const char *const schedule_names[] = {
    "constant", "step", "multistep", "exponential", "cosine", NULL
};
static const char *const monitor_names[] = {
    "val_loss", "val_accuracy", "loss", "accuracy", NULL
};
static const char *const progress_names[] = { "auto", "bar", "epoch", "none", NULL };

#define AT(field) offsetof(SfConfig, field)
#define ANY 0, 0, 0
#define GE(x) BOUND_LO, (x), 0
#define GT(x) BOUND_LO | BOUND_LO_OPEN, (x), 0
#define IN(lo, hi) BOUND_LO | BOUND_HI, (lo), (hi)
#define IN_HALF_OPEN(lo, hi) BOUND_LO | BOUND_HI | BOUND_HI_OPEN, (lo), (hi)

const ConfigKey config_keys[CONFIG_NKEYS] = {
    { "data", "path", KEY_STRING, AT(data.path), "", ANY, NULL,
      "HDF5 file with the training set (required)" },
    { "data", "features", KEY_STRING, AT(data.features), "/train/images", ANY, NULL,
      "dataset (N, d1, d2, ...) of any integer or float type" },
    { "data", "labels", KEY_STRING, AT(data.labels), "/train/labels", ANY, NULL,
      "(N,) integer class ids, or (N, k) float targets" },
    { "data", "scale", KEY_DOUBLE, AT(data.scale), "1.0", ANY, NULL,
      "features are read as float32 and multiplied by scale" },
    { "data", "offset", KEY_DOUBLE, AT(data.offset), "0.0", ANY, NULL,
      "... then offset added" },
    { "data", "val_path", KEY_STRING, AT(data.val_path), "", ANY, NULL,
      "HDF5 file with the validation set; empty: data.path" },
    { "data", "val_features", KEY_STRING, AT(data.val_features), "", ANY, NULL,
      "validation features; empty: no validation set unless validation_split > 0" },
    { "data", "val_labels", KEY_STRING, AT(data.val_labels), "", ANY, NULL,
      "validation labels" },
    { "data", "validation_split", KEY_DOUBLE, AT(data.validation_split), "0.0",
      IN_HALF_OPEN(0, 1), NULL, "hold out the last fraction of the rows" },
    { "data", "loader", KEY_ENUM, AT(data.loader), "shard", ANY, loader_names,
      "shard | replicate | stream" },

    { "model", "layers", KEY_STRING, AT(model.layers), "dense:128 relu dense:10",
      ANY, NULL, "space-separated layers, e.g. 'dense:128 relu dense:10'" },
    { "model", "loss", KEY_ENUM, AT(model.loss), "cross_entropy", ANY, loss_names,
      "cross_entropy (softmax over logits) | mse" },
    { "model", "init", KEY_ENUM, AT(model.init), "auto", ANY, init_names,
      "auto (He for relu, Glorot otherwise) | he | glorot" },
    { "model", "init_checkpoint", KEY_STRING, AT(model.init_checkpoint), "", ANY,
      NULL, "start from the weights in this checkpoint file" },

    { "train", "epochs", KEY_INT, AT(train.epochs), "10", GE(1), NULL,
      "passes over the training set" },
    { "train", "batch_size", KEY_BATCH, AT(train.batch_size), "128", ANY, NULL,
      "global samples per optimizer step, or 'all'" },
    { "train", "micro_batch", KEY_INT, AT(train.micro_batch), "0", GE(0), NULL,
      "samples a rank computes at once; 0: its whole share" },
    { "train", "drop_last", KEY_BOOL, AT(train.drop_last), "false", ANY, NULL,
      "skip the partial last batch of an epoch" },
    { "train", "shuffle", KEY_BOOL, AT(train.shuffle), "true", ANY, NULL,
      "draw a new permutation every epoch" },
    { "train", "seed", KEY_UINT64, AT(train.seed), "1", ANY, NULL,
      "seeds the permutation, initialization and dropout" },
    { "train", "max_steps", KEY_INT, AT(train.max_steps), "0", GE(0), NULL,
      "stop after this many optimizer steps; 0: no cap" },
    { "train", "threads", KEY_INT, AT(train.threads), "1", IN(1, 256), NULL,
      "BLAS threads per rank" },

    { "optimizer", "name", KEY_ENUM, AT(optimizer.name), "sgd", ANY, optim_names,
      "sgd | adam | adamw" },
    { "optimizer", "lr", KEY_DOUBLE, AT(optimizer.lr), "0.01", GE(0), NULL,
      "learning rate" },
    { "optimizer", "momentum", KEY_DOUBLE, AT(optimizer.momentum), "0.0",
      IN_HALF_OPEN(0, 1), NULL, "sgd: v = m*v + g; w -= lr*v" },
    { "optimizer", "nesterov", KEY_BOOL, AT(optimizer.nesterov), "false", ANY, NULL,
      "sgd: Nesterov momentum" },
    { "optimizer", "weight_decay", KEY_DOUBLE, AT(optimizer.weight_decay), "0.0",
      GE(0), NULL, "sgd/adam: L2 added to the gradient; adamw: decoupled" },
    { "optimizer", "beta1", KEY_DOUBLE, AT(optimizer.beta1), "0.9",
      IN_HALF_OPEN(0, 1), NULL, "adam: decay of the first moment" },
    { "optimizer", "beta2", KEY_DOUBLE, AT(optimizer.beta2), "0.999",
      IN_HALF_OPEN(0, 1), NULL, "adam: decay of the second moment" },
    { "optimizer", "eps", KEY_DOUBLE, AT(optimizer.eps), "1e-8", GT(0), NULL,
      "adam: added to the denominator" },
    { "optimizer", "clip_norm", KEY_DOUBLE, AT(optimizer.clip_norm), "0.0", GE(0),
      NULL, "clip the global gradient norm to this; 0: off" },
    { "optimizer", "lr_scaling", KEY_ENUM, AT(optimizer.lr_scaling), "none", ANY,
      lr_scaling_names, "none | linear (lr * batch_size / 256)" },

    { "schedule", "name", KEY_ENUM, AT(schedule.name), "constant", ANY,
      schedule_names, "constant | step | multistep | exponential | cosine" },
    { "schedule", "warmup_steps", KEY_INT, AT(schedule.warmup_steps), "0", GE(0),
      NULL, "linear warmup from 0 to lr over this many steps" },
    { "schedule", "warmup_epochs", KEY_DOUBLE, AT(schedule.warmup_epochs), "0",
      GE(0), NULL, "warmup in epochs instead of steps; 0: unused" },
    { "schedule", "step_size", KEY_INT, AT(schedule.step_size), "0", GE(0), NULL,
      "step: multiply lr by gamma every this many steps" },
    { "schedule", "step_epochs", KEY_DOUBLE, AT(schedule.step_epochs), "0", GE(0),
      NULL, "step: the period in epochs instead of steps; 0: unused" },
    { "schedule", "milestones", KEY_MILESTONES, AT(schedule.milestones), "", ANY,
      NULL, "multistep: comma-separated epochs, e.g. '30,60,90'" },
    { "schedule", "gamma", KEY_DOUBLE, AT(schedule.gamma), "0.1", GT(0), NULL,
      "step, multistep, exponential: lr factor" },
    { "schedule", "min_lr", KEY_DOUBLE, AT(schedule.min_lr), "0.0", GE(0), NULL,
      "cosine floor" },

    { "stop", "early_stopping", KEY_BOOL, AT(stop.early_stopping), "false", ANY,
      NULL, "stop when the monitored metric stops improving" },
    { "stop", "monitor", KEY_ENUM, AT(stop.monitor), "val_loss", ANY, monitor_names,
      "val_loss | val_accuracy | loss | accuracy" },
    { "stop", "min_delta", KEY_DOUBLE, AT(stop.min_delta), "0.0", GE(0), NULL,
      "smallest change that counts as an improvement" },
    { "stop", "patience", KEY_INT, AT(stop.patience), "0", GE(0), NULL,
      "epochs without improvement before stopping" },
    { "stop", "restore_best", KEY_BOOL, AT(stop.restore_best), "false", ANY, NULL,
      "end with the weights of the best epoch" },
    { "stop", "target", KEY_DOUBLE, AT(stop.target), "0.0", ANY, NULL,
      "stop once the monitored metric reaches this; 0: off" },

    { "checkpoint", "dir", KEY_STRING, AT(checkpoint.dir), "runs/default/ckpt", ANY,
      NULL, "where checkpoints are written" },
    { "checkpoint", "every_epochs", KEY_INT, AT(checkpoint.every_epochs), "1", GE(0),
      NULL, "checkpoint every this many epochs; 0: off" },
    { "checkpoint", "every_steps", KEY_INT, AT(checkpoint.every_steps), "0", GE(0),
      NULL, "mid-epoch checkpoint every this many steps; 0: off" },
    { "checkpoint", "keep_last", KEY_INT, AT(checkpoint.keep_last), "3", GE(0), NULL,
      "older checkpoints are deleted (best is kept too)" },
    { "checkpoint", "resume", KEY_STRING, AT(checkpoint.resume), "auto", ANY, NULL,
      "auto (latest valid in dir) | never | PATH" },

    { "comm", "timeout", KEY_DOUBLE, AT(comm.timeout), "600", GT(0), NULL,
      "seconds a collective may wait before the job is aborted" },
    { "comm", "bucket_mb", KEY_DOUBLE, AT(comm.bucket_mb), "0", GE(0), NULL,
      "MiB per gradient bucket, summed while backward goes on; 0: one "
      "allreduce after backward" },
    { "comm", "node_shared", KEY_BOOL, AT(comm.node_shared), "true", ANY, NULL,
      "the ranks of a host sum the gradient and update the weights in "
      "memory they share instead of an allreduce (on several hosts, then "
      "an allreduce of each slice between them; not with bucket_mb > 0)" },

    { "log", "dir", KEY_STRING, AT(log.dir), "runs/default", ANY, NULL,
      "where metrics and traces are written" },
    { "log", "progress", KEY_ENUM, AT(log.progress), "auto", ANY, progress_names,
      "auto | bar | epoch | none" },
    { "log", "metrics", KEY_STRING, AT(log.metrics), "metrics.jsonl", ANY, NULL,
      "one JSON object per epoch, in log.dir" },
    { "log", "trace", KEY_STRING, AT(log.trace), "", ANY, NULL,
      "optional Chrome-trace JSON of per-step phases, one track per rank" },
    { "log", "trace_steps", KEY_STEPS, AT(log.trace_first), "1:200", ANY, NULL,
      "which optimizer steps the trace records (FIRST:LAST, 1-based)" },
};

/* Sets err to "section.key = 'value': WHY" and returns -1. */
/* names[v]; an out-of-range value is a bug and gets "?" rather than a crash. */
static const char *name_of(const char *const *names, int v)
{
    for (int i = 0; names[i]; i++)
        if (i == v)
            return names[i];
    return "?";
}

static int fail(const ConfigKey *k, const char *value, SfError *err,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(const ConfigKey *k, const char *value, SfError *err,
                const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    sf_error_set(err, SF_EXIT_INPUT, "%s.%s = '%.200s': %s", k->section, k->key,
                 value, why);
    return -1;
}

/* The row's range as " >= 0", " in [0, 1)", ... or "" when unbounded. */
static const char *bounds_text(const ConfigKey *k, char *buf, size_t size)
{
    unsigned b = k->bounds;
    if ((b & BOUND_LO) && (b & BOUND_HI))
        snprintf(buf, size, " in %c%g, %g%c", b & BOUND_LO_OPEN ? '(' : '[', k->lo,
                 k->hi, b & BOUND_HI_OPEN ? ')' : ']');
    else if (b & BOUND_LO)
        snprintf(buf, size, " %s %g", b & BOUND_LO_OPEN ? ">" : ">=", k->lo);
    else if (b & BOUND_HI)
        snprintf(buf, size, " %s %g", b & BOUND_HI_OPEN ? "<" : "<=", k->hi);
    else
        buf[0] = '\0';
    return buf;
}

static int in_bounds(const ConfigKey *k, double v)
{
    unsigned b = k->bounds;
    if ((b & BOUND_LO) && ((b & BOUND_LO_OPEN) ? v <= k->lo : v < k->lo))
        return 0;
    if ((b & BOUND_HI) && ((b & BOUND_HI_OPEN) ? v >= k->hi : v > k->hi))
        return 0;
    return 1;
}

enum { NUM_OK, NUM_JUNK, NUM_OVERFLOW };

/* Base-10 integer, optional sign, nothing else around it. */
static int parse_int64(const char *s, int64_t *out)
{
    const char *digits = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*digits))
        return NUM_JUNK;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return NUM_JUNK;
    if (errno == ERANGE)
        return NUM_OVERFLOW;
    *out = v;
    return NUM_OK;
}

static int parse_int(const ConfigKey *k, const char *value, int64_t *field,
                     SfError *err)
{
    char range[64];
    bounds_text(k, range, sizeof range);
    int64_t v = 0;
    int rc = parse_int64(value, &v);
    if (rc == NUM_JUNK)
        return fail(k, value, err, "expected an integer%s", range);
    if (rc == NUM_OVERFLOW)
        return fail(k, value, err, "does not fit in 64 bits; expected an integer%s",
                    range);
    if (!in_bounds(k, (double)v))
        return fail(k, value, err, "must be an integer%s", range);
    *field = v;
    return 0;
}

static int parse_uint64(const ConfigKey *k, const char *value, uint64_t *field,
                        SfError *err)
{
    const char *expected = "an integer in [0, 18446744073709551615]";
    if (!isdigit((unsigned char)value[0]))  /* strtoull would wrap "-1" */
        return fail(k, value, err, "expected %s", expected);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (*end)
        return fail(k, value, err, "expected %s", expected);
    if (errno == ERANGE)
        return fail(k, value, err, "does not fit in 64 bits; expected %s", expected);
    *field = v;
    return 0;
}

static int parse_double(const ConfigKey *k, const char *value, double *field,
                        SfError *err)
{
    char range[64];
    bounds_text(k, range, sizeof range);
    char *end;
    double v = strtod(value, &end);
    /* Underflow to 0 or a denormal is fine; overflow shows up as inf. */
    if (end == value || *end || isspace((unsigned char)value[0]) || !isfinite(v))
        return fail(k, value, err, "expected a finite number%s", range);
    if (!in_bounds(k, v))
        return fail(k, value, err, "must be a number%s", range);
    *field = v;
    return 0;
}

static int parse_bool(const ConfigKey *k, const char *value, int *field,
                      SfError *err)
{
    static const char *const words[] = { "false", "true", "no", "yes",
                                         "off", "on", "0", "1" };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcasecmp(value, words[i]) == 0) {
            *field = (int)(i % 2);
            return 0;
        }
    }
    return fail(k, value, err, "expected true or false (or yes/no, on/off, 1/0)");
}

static int parse_enum(const ConfigKey *k, const char *value, int *field,
                      SfError *err)
{
    const char *closest = NULL;
    size_t best = SIZE_MAX;
    char list[256] = "";
    for (int i = 0; k->names[i]; i++) {
        if (strcasecmp(value, k->names[i]) == 0) {
            *field = i;
            return 0;
        }
        size_t d = config_distance(value, k->names[i]);
        if (d < best) {
            best = d;
            closest = k->names[i];
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", k->names[i]);
    }
    /* Only a near miss is worth a guess: 'verbose' is not a typo of 'none'. */
    if (closest && 2 * best <= strlen(closest))
        return fail(k, value, err, "expected one of %s; did you mean '%s'?", list,
                    closest);
    return fail(k, value, err, "expected one of %s", list);
}

static int parse_batch(const ConfigKey *k, const char *value, int64_t *field,
                       SfError *err)
{
    if (strcasecmp(value, "all") == 0) {
        *field = 0;
        return 0;
    }
    int64_t v = 0;
    int rc = parse_int64(value, &v);
    if (rc == NUM_JUNK)
        return fail(k, value, err, "expected a positive integer or 'all'");
    if (rc == NUM_OVERFLOW)
        return fail(k, value, err,
                    "does not fit in 64 bits; expected a positive integer or 'all'");
    if (v < 1)
        return fail(k, value, err, "must be a positive integer or 'all'");
    *field = v;
    return 0;
}

/* The longest value that still fits on a `key = value` line. */
static size_t value_room(const ConfigKey *k)
{
    return CONFIG_MAX_LINE - strlen(k->key) - strlen(" = ");
}

/* Comma-joined, as sf_config_format() writes them; truncated to size. */
static void milestones_text(const int64_t *ms, int n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += snprintf(buf + used, size - used, "%s%" PRId64, i ? "," : "", ms[i]);
}

/* One comma-separated item of milestones, spaces around it allowed. */
static int parse_milestone(const char *item, size_t len, int64_t *out)
{
    while (len && isspace((unsigned char)*item)) {
        item++;
        len--;
    }
    while (len && isspace((unsigned char)item[len - 1]))
        len--;
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, item, len);
    buf[len] = '\0';
    return parse_int64(buf, out) == NUM_OK && *out >= 1 ? 0 : -1;
}

/* The one key that sets two fields: schedule.milestones and n_milestones. */
static int parse_milestones(const ConfigKey *k, const char *value, SfConfig *cfg,
                            SfError *err)
{
    int64_t ms[SF_MAX_MILESTONES] = { 0 };
    int n = 0;
    const char *p = value + strspn(value, " \t");
    while (*p) {
        size_t len = strcspn(p, ",");
        if (n == SF_MAX_MILESTONES)
            return fail(k, value, err, "more than %d milestones", SF_MAX_MILESTONES);
        if (parse_milestone(p, len, &ms[n]) != 0)
            return fail(k, value, err,
                        "item %d ('%.*s') is not a positive integer; expected "
                        "comma-separated epochs such as '30,60,90'", n + 1, (int)len, p);
        if (n > 0 && ms[n] <= ms[n - 1])
            return fail(k, value, err,
                        "milestone %d (%" PRId64 ") is not greater than milestone %d "
                        "(%" PRId64 "); milestones must be strictly increasing",
                        n + 1, ms[n], n, ms[n - 1]);
        n++;
        p += len + (p[len] == ',');
        if (p[-1] == ',' && !*p)
            return fail(k, value, err, "ends with a comma");
    }
    char text[CONFIG_MAX_LINE + 1 + 32];
    milestones_text(ms, n, text, sizeof text);
    if (strlen(text) > value_room(k))
        return fail(k, value, err, "too long: at most %zu characters fit on one line",
                    value_room(k));
    memcpy(cfg->schedule.milestones, ms, sizeof ms);
    cfg->schedule.n_milestones = n;
    return 0;
}

/* FIRST:LAST into two consecutive int64_t fields. */
static int parse_steps(const ConfigKey *k, const char *value, int64_t *field,
                       SfError *err)
{
    const char *colon = strchr(value, ':');
    char first[32];
    int64_t a = 0, b = 0;
    size_t len = colon ? (size_t)(colon - value) : 0;
    if (!colon || len == 0 || len >= sizeof first)
        return fail(k, value, err, "expected FIRST:LAST, two steps such as '1:200'");
    memcpy(first, value, len);
    first[len] = '\0';
    if (parse_int64(first, &a) != NUM_OK || parse_int64(colon + 1, &b) != NUM_OK)
        return fail(k, value, err, "expected FIRST:LAST, two integers such as '1:200'");
    if (a < 1 || b < a)
        return fail(k, value, err, "needs 1 <= FIRST <= LAST (steps are 1-based)");
    field[0] = a;
    field[1] = b;
    return 0;
}

/* Strings must survive sf_config_format() and a reload: one INI line, no
 * comment starts, no whitespace the reader would trim. */
static int parse_string(const ConfigKey *k, const char *value, char *field,
                        SfError *err)
{
    size_t len = strlen(value);
    if (len > value_room(k))
        return fail(k, value, err,
                    "is %zu characters long; at most %zu fit on one config line",
                    len, value_room(k));
    if (len && (isspace((unsigned char)value[0]) ||
                isspace((unsigned char)value[len - 1])))
        return fail(k, value, err, "has leading or trailing whitespace");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (iscntrl(c))
            return fail(k, value, err, "contains a control character");
        if ((c == ';' || c == '#') && (i == 0 || isspace((unsigned char)value[i - 1])))
            return fail(k, value, err,
                        "'%c' at the start or after a space starts a comment in an "
                        "INI file", c);
    }
    memset(field, 0, SF_CONFIG_STR);  /* so equal configs compare equal bytewise */
    memcpy(field, value, len);
    return 0;
}

int config_key_parse(const ConfigKey *k, SfConfig *cfg, const char *value,
                     SfError *err)
{
    void *field = (char *)cfg + k->offset;
    switch (k->kind) {
    case KEY_STRING: return parse_string(k, value, field, err);
    case KEY_INT: return parse_int(k, value, field, err);
    case KEY_UINT64: return parse_uint64(k, value, field, err);
    case KEY_DOUBLE: return parse_double(k, value, field, err);
    case KEY_BOOL: return parse_bool(k, value, field, err);
    case KEY_ENUM: return parse_enum(k, value, field, err);
    case KEY_BATCH: return parse_batch(k, value, field, err);
    case KEY_MILESTONES: return parse_milestones(k, value, cfg, err);
    case KEY_STEPS: return parse_steps(k, value, field, err);
    }
    return fail(k, value, err, "bug: key kind %d has no parser", (int)k->kind);
}

/* The shortest of %.15g, %.16g, %.17g that reads back to the same double:
 * exact like %.17g, but 0.1 prints as 0.1. */
static void double_text(double v, char *buf, size_t size)
{
    for (int digits = 15; digits < 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
    snprintf(buf, size, "%.17g", v);
}

void config_key_text(const ConfigKey *k, const SfConfig *cfg, char *buf,
                     size_t size)
{
    const void *field = (const char *)cfg + k->offset;
    switch (k->kind) {
    case KEY_STRING: snprintf(buf, size, "%s", (const char *)field); return;
    case KEY_INT: snprintf(buf, size, "%" PRId64, *(const int64_t *)field); return;
    case KEY_UINT64: snprintf(buf, size, "%" PRIu64, *(const uint64_t *)field); return;
    case KEY_DOUBLE: double_text(*(const double *)field, buf, size); return;
    case KEY_BOOL: snprintf(buf, size, "%s", *(const int *)field ? "true" : "false");
        return;
    case KEY_ENUM: snprintf(buf, size, "%s", name_of(k->names, *(const int *)field));
        return;
    case KEY_BATCH: {
        int64_t v = *(const int64_t *)field;
        if (v == 0)
            snprintf(buf, size, "all");
        else
            snprintf(buf, size, "%" PRId64, v);
        return;
    }
    case KEY_MILESTONES:
        milestones_text(cfg->schedule.milestones, cfg->schedule.n_milestones, buf,
                        size);
        return;
    case KEY_STEPS:
        snprintf(buf, size, "%" PRId64 ":%" PRId64, ((const int64_t *)field)[0],
                 ((const int64_t *)field)[1]);
        return;
    }
    snprintf(buf, size, "?");
}

size_t config_distance(const char *a, const char *b)
{
    size_t nb = strlen(b), row[128];
    if (nb >= sizeof row / sizeof row[0])
        return SIZE_MAX;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; *a; a++, i++) {
        size_t diag = row[0];  /* row[j-1] of the previous row */
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)*a) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

const char *sf_config_loader_name(SfLoaderKind k)
{
    return name_of(loader_names, (int)k);
}

const char *sf_config_optim_name(SfOptimKind k)
{
    return name_of(optim_names, (int)k);
}

const char *sf_config_schedule_name(SfScheduleKind k)
{
    return name_of(schedule_names, (int)k);
}

const char *sf_config_monitor_name(SfMonitor m)
{
    return name_of(monitor_names, (int)m);
}
