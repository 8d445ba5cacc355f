/* convert_csv.c: reading a CSV table of numbers for convert.
 *
 * One sample per line, one label column. This reader is deliberately plain
 * (commas only, no quoted commas) but strict: every line must have the
 * first line's field count, every value must be a finite number that fits
 * float32, and each error names the line and the column, so a user can fix
 * the file without guessing. */
#include "convert.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *path;
    long long line;     /* 1-based number of the line being read */
    long long first;    /* the line that set the column count */
    char **fields;      /* the current line, split in place */
    int nfields, cap;
    char **names;       /* header names, or NULL */
    int ncols, label;   /* columns per line, label column index */
    int64_t rows, row_cap;
    float *x;           /* rows x (ncols - 1) */
    double *y;          /* labels as read */
    int64_t *yi;        /* labels as integers, while all_int holds */
    int all_int;
} Csv;

/* Removes surrounding blanks and one pair of double quotes, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
                     e[-1] == '\n'))
        *--e = '\0';
    if (e - s >= 2 && *s == '"' && e[-1] == '"') {
        e[-1] = '\0';
        s++;
    }
    return s;
}

/* Splits line at commas into c->fields. -1 only when out of memory. */
static int split(Csv *c, char *line)
{
    c->nfields = 0;
    for (char *p = line;;) {
        if (c->nfields == c->cap) {
            int cap = c->cap ? 2 * c->cap : 64;
            char **f = realloc(c->fields, (size_t)cap * sizeof *f);
            if (!f)
                return -1;
            c->fields = f;
            c->cap = cap;
        }
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        c->fields[c->nfields++] = trim(p);
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int parse_number(const char *s, double *v)
{
    char *end;
    if (!*s)
        return -1;
    errno = 0;
    *v = strtod(s, &end);
    return *end || !isfinite(*v) || (errno == ERANGE && fabs(*v) > 1) ? -1 : 0;
}

static int parse_integer(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    *v = n;
    return *s && !*end && errno != ERANGE ? 0 : -1;
}

/* "column 3 ('petal_width')", or "column 3" without a header. */
static const char *column_name(const Csv *c, int col, char *buf, size_t n)
{
    if (c->names)
        snprintf(buf, n, "column %d ('%s')", col, c->names[col]);
    else
        snprintf(buf, n, "column %d", col);
    return buf;
}

/* The header names, comma-separated, cut short with "..." to fit buf. */
static const char *header_text(const Csv *c, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->ncols; i++) {
        const char *sep = i ? ", " : "";
        if (used + strlen(sep) + strlen(c->names[i]) + sizeof ", ..." > n) {
            snprintf(buf + used, n - used, "%s...", sep);
            break;
        }
        used += (size_t)snprintf(buf + used, n - used, "%s%s", sep,
                                 c->names[i]);
    }
    return buf;
}

/* The label column from --label-column: an index, or a header name. */
static int resolve_label(Csv *c, const char *spec, SfError *err)
{
    char *end, names[200];
    long k = strtol(spec, &end, 10);
    if (*spec >= '0' && *spec <= '9' && !*end) {
        if (k < c->ncols) {
            c->label = (int)k;
            return 0;
        }
        sf_error_set(err, SF_EXIT_INPUT, "--label-column %s: '%s' has %d "
                     "columns (0 to %d)", spec, c->path, c->ncols,
                     c->ncols - 1);
        return -1;
    }
    for (int i = 0; c->names && i < c->ncols; i++)
        if (!strcmp(c->names[i], spec)) {
            c->label = i;
            return 0;
        }
    if (!c->names)
        sf_error_set(err, SF_EXIT_INPUT, "--label-column '%s' is a name, but "
                     "'%s' has no header line; give a 0-based index", spec,
                     c->path);
    else
        sf_error_set(err, SF_EXIT_INPUT, "--label-column '%s': '%s' has no "
                     "such column; its header is: %s", spec, c->path,
                     header_text(c, names, sizeof names));
    return -1;
}

/* The first non-blank line fixes the column count, and is a header when
 * any of its fields is not a number. 1: header, 0: data, -1: error. */
static int first_line(Csv *c, const char *spec, SfError *err)
{
    double v;
    int header = 0;
    c->ncols = c->nfields;
    c->first = c->line;
    if (c->ncols < 2) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' line %lld has %d column; need "
                     "features and a label", c->path, c->line, c->ncols);
        return -1;
    }
    for (int i = 0; i < c->ncols; i++)
        header |= parse_number(c->fields[i], &v) < 0;
    if (header) {
        c->names = calloc((size_t)c->ncols, sizeof *c->names);
        for (int i = 0; c->names && i < c->ncols; i++)
            if (!(c->names[i] = strdup(c->fields[i])))
                break;
        if (!c->names || !c->names[c->ncols - 1]) {
            sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
            return -1;
        }
    }
    return resolve_label(c, spec, err) < 0 ? -1 : header;
}

/* Room for twice the rows; at first 1024 rows, or fewer when they are wide,
 * so memory follows the rows read: a 600 KB file whose one row has 300 000
 * columns made us allocate 1.2 GB (fuzz/regressions/csv/). */
#define CSV_FIRST_VALUES (1 << 20)
static int grow(Csv *c)
{
    int64_t first = CSV_FIRST_VALUES / c->ncols;
    int64_t cap = c->row_cap ? 2 * c->row_cap
                  : first < 1 ? 1 : first > 1024 ? 1024 : first;
    float *x = realloc(c->x, (size_t)cap * (size_t)(c->ncols - 1) * sizeof *x);
    if (x)
        c->x = x;
    double *y = realloc(c->y, (size_t)cap * sizeof *y);
    if (y)
        c->y = y;
    int64_t *yi = realloc(c->yi, (size_t)cap * sizeof *yi);
    if (yi)
        c->yi = yi;
    if (!x || !y || !yi)
        return -1;
    c->row_cap = cap;
    return 0;
}

/* One data line into row c->rows. */
static int add_row(Csv *c, SfError *err)
{
    char col[300];
    if (c->nfields != c->ncols) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' line %lld has %d fields; line "
                     "%lld has %d", c->path, c->line, c->nfields, c->first,
                     c->ncols);
        return -1;
    }
    if (c->rows == c->row_cap && grow(c) < 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory at line %lld of '%s'",
                     c->line, c->path);
        return -1;
    }
    float *x = c->x + c->rows * (c->ncols - 1);
    for (int i = 0; i < c->ncols; i++) {
        double v;
        int64_t iv = 0;
        const char *s = c->fields[i];
        int is_int = i == c->label && parse_integer(s, &iv) == 0;
        if (parse_number(s, &v) < 0 || (fabs(v) > FLT_MAX && !is_int)) {
            sf_error_set(err, SF_EXIT_INPUT, "'%s' line %lld, %s: '%s' is not "
                         "a finite float32 number", c->path, c->line,
                         column_name(c, i, col, sizeof col), s);
            return -1;
        }
        if (i == c->label) {
            c->y[c->rows] = v;
            c->yi[c->rows] = iv;
            c->all_int = c->all_int && is_int;
        } else {
            *x++ = (float)v;
        }
    }
    c->rows++;
    return 0;
}

static int read_lines(Csv *c, FILE *f, const char *spec, SfError *err)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, seen_first = 0;
    for (c->line = 1; rc == 0 && getline(&line, &cap, f) >= 0; c->line++) {
        if (!line[strspn(line, " \t\r\n")]) /* blank */
            continue;
        if (split(c, line) < 0) {
            sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
            rc = -1;
        } else if (!seen_first) {
            seen_first = 1;
            int header = first_line(c, spec, err);
            rc = header < 0 ? -1 : header ? 0 : add_row(c, err);
        } else {
            rc = add_row(c, err);
        }
    }
    if (rc == 0 && ferror(f)) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': read failed at line %lld: %s",
                     c->path, c->line, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && c->rows == 0) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s' has no data lines", c->path);
        rc = -1;
    }
    free(line);
    return rc;
}

/* Hands the parsed table over as two arrays; labels narrow to float32
 * unless every one was written as an integer. */
static int take_arrays(Csv *c, SfArray *features, SfArray *labels)
{
    features->info = (SfArrayInfo){2, {c->rows, c->ncols - 1}, SF_DTYPE_F32};
    features->data = c->x;
    c->x = NULL;
    labels->info = (SfArrayInfo){1, {c->rows}, c->all_int ? SF_DTYPE_I64
                                                          : SF_DTYPE_F32};
    if (c->all_int) {
        labels->data = c->yi;
        c->yi = NULL;
        return 0;
    }
    float *y = malloc((size_t)c->rows * sizeof *y);
    if (!y)
        return -1;
    for (int64_t i = 0; i < c->rows; i++)
        y[i] = (float)c->y[i];
    labels->data = y;
    return 0;
}

int sf_csv_read(const char *path, const char *label_column, SfArray *features,
                SfArray *labels, SfError *err)
{
    Csv c = {.path = path, .all_int = 1};
    memset(features, 0, sizeof *features);
    memset(labels, 0, sizeof *labels);
    FILE *f = fopen(path, "r");
    if (!f) {
        sf_error_set(err, SF_EXIT_INPUT, "'%s': cannot open: %s", path,
                     strerror(errno));
        return -1;
    }
    int rc = read_lines(&c, f, label_column, err);
    if (rc == 0 && take_arrays(&c, features, labels) < 0) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
        rc = -1;
    }
    fclose(f);
    if (rc < 0) {
        sf_array_free(features);
        sf_array_free(labels);
    }
    for (int i = 0; c.names && i < c.ncols; i++)
        free(c.names[i]);
    free(c.names);
    free(c.fields);
    free(c.x);
    free(c.y);
    free(c.yi);
    return rc;
}
