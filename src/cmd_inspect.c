/* cmd_inspect.c: `shardfit inspect FILE.h5`, what a file holds.
 *
 * Lists every dataset with its shape and type in aligned columns, so a user
 * can fill in data.features and data.labels without reaching for h5py, then
 * the root attributes (a checkpoint's epoch, step, config...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "shardfit/checkpoint.h"
#include "shardfit/dataset.h"

typedef struct {
    char *name;
    char shape[256];
    char type[64];
} Row;

typedef struct {
    Row *rows;
    size_t n, cap;
    int failed; /* out of memory */
} Listing;

static void add_dataset(const char *name, const SfArrayInfo *info,
                        const char *type_name, void *user)
{
    Listing *l = user;
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        Row *rows = realloc(l->rows, cap * sizeof *rows);
        if (!rows) {
            l->failed = 1;
            return;
        }
        l->rows = rows;
        l->cap = cap;
    }
    Row *r = &l->rows[l->n];
    if (!(r->name = strdup(name))) {
        l->failed = 1;
        return;
    }
    if (info)
        sf_array_shape_str(info, r->shape, sizeof r->shape);
    else
        snprintf(r->shape, sizeof r->shape, "-");
    snprintf(r->type, sizeof r->type, "%s", type_name);
    l->n++;
}

static void print_listing(const char *path, const Listing *l)
{
    int wname = 0, wshape = 0;
    if (l->n == 0)
        printf("'%s' holds no datasets\n", path);
    for (size_t i = 0; i < l->n; i++) {
        int a = (int)strlen(l->rows[i].name), b = (int)strlen(l->rows[i].shape);
        wname = a > wname ? a : wname;
        wshape = b > wshape ? b : wshape;
    }
    for (size_t i = 0; i < l->n; i++)
        printf("%-*s  %-*s  %s\n", wname, l->rows[i].name, wshape,
               l->rows[i].shape, l->rows[i].type);
}

typedef struct {
    char **names, **values;
    size_t n, cap;
    int failed; /* out of memory */
    int checkpoint; /* format = SF_CHECKPOINT_FORMAT */
} Attrs;

static void add_attr(const char *name, const char *value, void *user)
{
    Attrs *a = user;
    if (a->failed)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        char **names = realloc(a->names, cap * sizeof *names);
        if (names)
            a->names = names;
        char **values = names ? realloc(a->values, cap * sizeof *values) : NULL;
        if (!values) {
            a->failed = 1;
            return;
        }
        a->values = values;
        a->cap = cap;
    }
    a->names[a->n] = strdup(name);
    a->values[a->n] = strdup(value);
    if (!a->names[a->n] || !a->values[a->n]) {
        free(a->names[a->n]);
        free(a->values[a->n]);
        a->failed = 1;
        return;
    }
    a->n++;
    if (!strcmp(name, "format") && !strcmp(value, SF_CHECKPOINT_FORMAT))
        a->checkpoint = 1;
}

static void attrs_free(Attrs *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->names[i]);
        free(a->values[i]);
    }
    free(a->names);
    free(a->values);
}

/* "  name = value", a multi-line value cut to its first line. */
static void print_attrs(const Attrs *a)
{
    if (a->n > 0)
        printf("attributes of /:\n");
    for (size_t i = 0; i < a->n; i++) {
        const char *name = a->names[i], *value = a->values[i];
        size_t len = strcspn(value, "\n"), lines = 1;
        for (const char *p = value; (p = strchr(p, '\n')) && p[1]; p++)
            lines++;
        if (len > 100)
            printf("  %s = %.100s...", name, value);
        else
            printf("  %s = %.*s", name, (int)len, value);
        if (lines > 1)
            printf(" (%zu lines)", lines);
        printf("\n");
    }
}

/* A checkpoint opens with where its run stood and what it reached. Called
 * only for files whose format attribute says checkpoint; one that then
 * fails to read gets a warning, and the listing still follows. */
static void print_checkpoint_summary(const char *path)
{
    SfCheckpointInfo info = {0};
    SfError err = {0};
    if (sf_checkpoint_read_info(path, &info, &err)) {
        fprintf(stderr, "shardfit inspect: warning: not a readable checkpoint: "
                "%s\n", err.msg);
        return;
    }
    if (!info.layers) { /* a params-only init file */
        sf_checkpoint_info_free(&info);
        return;
    }
    printf("shardfit checkpoint: %lld epochs and %lld steps done (%lld into the "
           "next epoch), written by %lld rank%s, seed %llu\n",
           (long long)info.epoch, (long long)info.step, (long long)info.step_in_epoch,
           (long long)info.world_size, info.world_size == 1 ? "" : "s",
           (unsigned long long)info.seed);
    printf("model: %s\n", info.layers);
    if (info.nhistory > 0) {
        const SfEpochMetrics *m = &info.history[info.nhistory - 1];
        char line[512];
        sf_metrics_format(m, m->epoch, m->steps_in_epoch, line, sizeof line);
        printf("last: %s\n", line);
    }
    if (info.stop_best_epoch > 0)
        printf("best epoch by stop.monitor: %lld (%.6g)\n",
               (long long)info.stop_best_epoch, info.stop_best);
    printf("\n");
    sf_checkpoint_info_free(&info);
}

int sf_cmd_inspect(int argc, char **argv)
{
    SfError err = {0};
    Listing l = {0};
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: shardfit inspect FILE.h5\n"
               "lists every dataset in the file with its shape and type, then\n"
               "the attributes of its root group\n");
        return SF_EXIT_OK;
    }
    if (argc != 2)
        return sf_cli_usage_error("inspect", argc < 2 ? "missing FILE.h5"
                                  : "inspect takes one file, got %d arguments",
                                  argc - 1);
    Attrs attrs = {0};
    int rc = sf_dataset_visit(argv[1], add_dataset, &l, &err);
    if (rc == 0)
        rc = sf_dataset_visit_attrs(argv[1], add_attr, &attrs, &err);
    if (rc == 0 && (l.failed || attrs.failed)) {
        sf_error_set(&err, SF_EXIT_FAILURE, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        if (attrs.checkpoint)
            print_checkpoint_summary(argv[1]);
        print_listing(argv[1], &l);
        print_attrs(&attrs);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.rows[i].name);
    free(l.rows);
    attrs_free(&attrs);
    return rc == 0 ? SF_EXIT_OK : sf_cli_report("inspect", &err);
}
