/* cmd_convert.c: `shardfit convert`, getting data into HDF5.
 *
 * Inputs are read whole and checked before the output file is opened, and
 * every output name is checked free before any is written, so bad input or
 * an existing group leaves the output untouched. A file this run created is
 * removed if writing fails: no half files. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "convert.h"

static const char usage[] =
    "usage: shardfit convert idx IMAGES[.gz] LABELS[.gz] --out FILE.h5 --group /train\n"
    "       shardfit convert csv FILE.csv --label-column K --out FILE.h5 --group /train\n"
    "idx writes GROUP/images and GROUP/labels; csv writes GROUP/features\n"
    "(float32) and GROUP/labels (int64 if all are integers, else float32).\n"
    "K is a 0-based column index or a header name. Data is gzip-compressed;\n"
    "existing datasets are never overwritten.\n";

typedef struct {
    const char *format;     /* "idx" or "csv" */
    const char *inputs[2];
    int ninputs;
    const char *out, *group, *label_column;
} Args;

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]: 1 and *value set,
 * 0 if argv[*i] is another argument, -1 if the value is missing. */
static int take_option(int argc, char **argv, int *i, const char *name,
                       const char **value)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len))
        return 0;
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return 1;
    }
    if (argv[*i][len] || *i + 1 >= argc)
        return argv[*i][len] ? 0 : -1;
    *value = argv[++*i];
    return 1;
}

/* 1 to go on; else 0 with *status the exit status (usage printed). */
static int parse_args(int argc, char **argv, Args *a, int *status)
{
    static const char *const names[] = {"--out", "--group", "--label-column"};
    *status = SF_EXIT_INPUT;
    for (int i = 1; i < argc; i++) {
        const char **slots[] = {&a->out, &a->group, &a->label_column};
        int taken = 0;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            *status = SF_EXIT_OK;
            return 0;
        }
        for (int k = 0; k < 3 && !taken; k++) {
            const char *value = "";
            taken = take_option(argc, argv, &i, names[k], &value);
            if (taken && !*value) {
                sf_cli_usage_error("convert", "%s needs a value", names[k]);
                return 0;
            }
            if (taken)
                *slots[k] = value;
        }
        if (taken)
            continue;
        if (argv[i][0] == '-' && argv[i][1]) {
            sf_cli_usage_error("convert", "unknown option '%s'", argv[i]);
            return 0;
        }
        if (!a->format)
            a->format = argv[i];
        else if (a->ninputs < 2)
            a->inputs[a->ninputs++] = argv[i];
        else {
            sf_cli_usage_error("convert", "unexpected argument '%s'", argv[i]);
            return 0;
        }
    }
    return 1;
}

/* The checks that involve several arguments. 0, or a usage error's status. */
static int check_args(const Args *a)
{
    int idx = a->format && !strcmp(a->format, "idx");
    if (!a->format)
        return sf_cli_usage_error("convert", "missing the input format: idx "
                                  "or csv");
    if (!idx && strcmp(a->format, "csv"))
        return sf_cli_usage_error("convert", "unknown input format '%s': use "
                                  "idx or csv", a->format);
    if (a->ninputs != (idx ? 2 : 1))
        return sf_cli_usage_error("convert", idx ? "idx needs two files, "
                                  "IMAGES and LABELS" : "csv needs one file");
    if (idx && a->label_column)
        return sf_cli_usage_error("convert", "--label-column is for csv input");
    if (!idx && !a->label_column)
        return sf_cli_usage_error("convert", "csv needs --label-column K "
                                  "(a 0-based index or a header name)");
    if (!a->out)
        return sf_cli_usage_error("convert", "missing --out FILE.h5");
    if (!a->group)
        return sf_cli_usage_error("convert", "missing --group (e.g. /train)");
    return 0;
}

/* "GROUP/leaf", with exactly one slash between and a leading one. */
static void dataset_name(const char *group, const char *leaf, char *buf,
                         size_t n)
{
    size_t len = strlen(group);
    while (len > 0 && group[len - 1] == '/')
        len--;
    snprintf(buf, n, "%s%.*s/%s", group[0] == '/' ? "" : "/", (int)len, group,
             leaf);
}

static int read_idx_pair(const Args *a, SfArray *x, SfArray *y, SfError *err)
{
    char shape[256];
    if (sf_idx_read(a->inputs[0], x, err) < 0 ||
        sf_idx_read(a->inputs[1], y, err) < 0)
        return -1;
    if (y->info.ndims != 1) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' has shape %s; labels need one "
                     "dimension", a->inputs[1],
                     sf_array_shape_str(&y->info, shape, sizeof shape));
        return -1;
    }
    if (x->info.dims[0] != y->info.dims[0]) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' holds %lld images but '%s' "
                     "holds %lld labels", a->inputs[0],
                     (long long)x->info.dims[0], a->inputs[1],
                     (long long)y->info.dims[0]);
        return -1;
    }
    return 0;
}

/* Both arrays into out, or neither (as far as checks can tell). */
static int write_pair(const char *out, char names[2][512], const SfArray *arr,
                      SfError *err)
{
    int created = access(out, F_OK) != 0;
    SfH5Writer *w = sf_h5writer_open(out, err);
    if (!w)
        return -1;
    int rc = sf_h5writer_check_free(w, names[0], err) < 0 ||
             sf_h5writer_check_free(w, names[1], err) < 0 ? -1 : 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = sf_h5writer_write(w, names[i], arr[i].info.dtype,
                               arr[i].info.ndims, arr[i].info.dims,
                               arr[i].data, 1, err);
    if (sf_h5writer_close(w, err) < 0)
        rc = -1;
    if (rc < 0 && created)
        unlink(out);
    return rc;
}

int sf_cmd_convert(int argc, char **argv)
{
    Args a = {0};
    SfError err = {0};
    SfArray arr[2];
    memset(arr, 0, sizeof arr);
    char names[2][512], shapes[2][256];
    int status;
    if (!parse_args(argc, argv, &a, &status))
        return status;
    if ((status = check_args(&a)) != 0)
        return status;
    int idx = !strcmp(a.format, "idx");
    dataset_name(a.group, idx ? "images" : "features", names[0],
                 sizeof names[0]);
    dataset_name(a.group, "labels", names[1], sizeof names[1]);
    int rc = idx ? read_idx_pair(&a, &arr[0], &arr[1], &err)
                 : sf_csv_read(a.inputs[0], a.label_column, &arr[0], &arr[1],
                               &err);
    if (rc == 0)
        rc = write_pair(a.out, names, arr, &err);
    if (rc == 0)
        printf("wrote %s %s %s and %s %s %s to %s\n", names[0],
               sf_array_shape_str(&arr[0].info, shapes[0], sizeof shapes[0]),
               sf_dtype_name(arr[0].info.dtype), names[1],
               sf_array_shape_str(&arr[1].info, shapes[1], sizeof shapes[1]),
               sf_dtype_name(arr[1].info.dtype), a.out);
    sf_array_free(&arr[0]);
    sf_array_free(&arr[1]);
    return rc == 0 ? SF_EXIT_OK : sf_cli_report("convert", &err);
}
