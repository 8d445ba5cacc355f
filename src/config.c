/* config.c: where a run's settings come from (built-in defaults, the INI
 * file, --set overrides) and the checks that involve several keys.
 *
 * What each key is (type, default, range, text form) lives in one table in
 * config_table.c; this file only finds keys by name, reports where a bad
 * value came from (file:line or the --set text), and suggests the name the
 * user probably meant. */
#include "shardfit/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_table.h"

_Static_assert(sizeof config_keys / sizeof config_keys[0] == CONFIG_NKEYS,
               "CONFIG_NKEYS does not match the table");

enum { CONFIG_MAX_FILE = 1 << 20 };  /* a bigger "config" is the wrong file */

void sf_config_defaults(SfConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);  /* padding too, so equal configs memcmp equal */
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        SfError err = { 0 };
        if (config_key_parse(&config_keys[i], cfg, config_keys[i].def, &err) != 0) {
            fprintf(stderr, "%s:%d: bug: bad default: %s\n", __FILE__, __LINE__,
                    err.msg);
            abort();
        }
    }
}

/* ---- names and suggestions ---------------------------------------------- */

static int section_known(const char *section)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0)
            return 1;
    return 0;
}

static const char *closest_section(const char *name)
{
    const char *best = config_keys[0].section;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        size_t d = config_distance(name, config_keys[i].section);
        if (d < best_d) {
            best_d = d;
            best = config_keys[i].section;
        }
    }
    return best;
}

/* Writes a hint for an unknown section.key: the same key name in other
 * sections ("'optimizer.name' or 'schedule.name'"), else the closest
 * section.key by edit distance. */
static void suggest_key(const char *section, const char *key, char *hint,
                        size_t size)
{
    size_t used = 0;
    hint[0] = '\0';
    for (size_t i = 0; i < CONFIG_NKEYS && used < size; i++) {
        const ConfigKey *k = &config_keys[i];
        if (strcasecmp(k->key, key) == 0 && strcmp(k->section, section) != 0)
            used += snprintf(hint + used, size - used, "%s'%s.%s'", used ? " or " : "",
                             k->section, k->key);
    }
    if (used)
        return;
    char typed[256], name[128];
    snprintf(typed, sizeof typed, "%s.%s", section, key);
    const ConfigKey *best = &config_keys[0];
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        snprintf(name, sizeof name, "%s.%s", config_keys[i].section, config_keys[i].key);
        size_t d = config_distance(typed, name);
        if (d < best_d) {
            best_d = d;
            best = &config_keys[i];
        }
    }
    snprintf(hint, size, "'%s.%s'", best->section, best->key);
}

/* The row of section.key; NULL with err naming the closest valid name. */
static const ConfigKey *find_key(const char *section, const char *key,
                                 SfError *err)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 &&
            strcmp(config_keys[i].key, key) == 0)
            return &config_keys[i];
    char hint[256];
    if (!section[0]) {
        suggest_key(section, key, hint, sizeof hint);
        sf_error_set(err, SF_EXIT_INPUT,
                     "key '%s' is outside any section; did you mean %s?", key, hint);
    } else if (!section_known(section)) {
        sf_error_set(err, SF_EXIT_INPUT, "unknown section '[%s]'; did you mean '[%s]'?",
                     section, closest_section(section));
    } else {
        suggest_key(section, key, hint, sizeof hint);
        sf_error_set(err, SF_EXIT_INPUT, "unknown key '%s.%s'; did you mean %s?",
                     section, key, hint);
    }
    return NULL;
}

int sf_config_set_key(SfConfig *cfg, const char *section, const char *key,
                      const char *value, SfError *err)
{
    const ConfigKey *k = find_key(section, key, err);
    return k ? config_key_parse(k, cfg, value, err) : -1;
}

/* ---- the INI file --------------------------------------------------------
 *
 * inih does the splitting into sections and key = value, but Debian's
 * libinih (r55) is built with INI_MAX_LINE 200, ';' as the only inline
 * comment prefix and multi-line continuation on, and its handler gets no
 * line number. So sf_config_load() feeds inih through read_line(), which
 *  - rejects a line longer than CONFIG_MAX_LINE (199) characters instead of
 *    letting inih split it silently;
 *  - strips comments itself: ';' or '#' at the start of a line or after
 *    whitespace (SPEC §4 allows both; inih alone would keep "# ..." inline);
 *  - strips leading whitespace, so an indented line is a key of its own
 *    rather than a continuation of the previous value;
 *  - checks section headers and syntax, and counts lines, so every message
 *    can say file:line. */

typedef struct IniReader {
    const char *path;
    const char *next;          /* unread text */
    int line;                  /* number of the line last handed to inih */
    int set_at[CONFIG_NKEYS];  /* line that set each key; 0: not in this file */
    SfConfig cfg;              /* the file applies here; copied out on success */
    SfError err;               /* with "path:line: " in front */
} IniReader;

static int reader_fail(IniReader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int reader_fail(IniReader *r, const char *fmt, ...)
{
    char why[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    sf_error_set(&r->err, SF_EXIT_INPUT, "%s:%d: %s", r->path, r->line, why);
    return -1;
}

/* Drops leading whitespace, a comment, and trailing whitespace, in place. */
static void clean_line(char *line)
{
    size_t skip = strspn(line, " \t\f\v");
    memmove(line, line + skip, strlen(line + skip) + 1);
    for (char *p = line; *p; p++) {
        if ((*p == ';' || *p == '#') && (p == line || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            break;
        }
    }
    size_t len = strlen(line);
    while (len && isspace((unsigned char)line[len - 1]))
        line[--len] = '\0';
}

/* A cleaned line must be empty, a known [section], or key = value. */
static int check_line(IniReader *r, char *line)
{
    if (!line[0])
        return 0;
    if (line[0] != '[')
        return strpbrk(line, "=:") ? 0
               : reader_fail(r, "expected 'key = value' or '[section]', got '%s'", line);
    char *close = strchr(line, ']');
    if (!close)
        return reader_fail(r, "'%s' lacks the closing ']'", line);
    if (close[1])
        return reader_fail(r, "unexpected text '%s' after the section name", close + 1);
    *close = '\0';
    int known = section_known(line + 1);
    if (!known)
        reader_fail(r, "unknown section '[%s]'; did you mean '[%s]'?", line + 1,
                    closest_section(line + 1));
    *close = ']';
    return known ? 0 : -1;
}

/* inih's fgets: hands over one cleaned line, NULL at the end or an error. */
static char *read_line(char *buf, int size, void *stream)
{
    IniReader *r = stream;
    if (r->err.code || !*r->next)
        return NULL;
    const char *start = r->next;
    size_t len = strcspn(start, "\n");
    r->next += len + (start[len] == '\n');
    r->line++;
    if (len && start[len - 1] == '\r')
        len--;
    if (len > CONFIG_MAX_LINE || len >= (size_t)size) {
        reader_fail(r, "line is %zu characters long; at most %d are allowed", len,
                    CONFIG_MAX_LINE);
        return NULL;
    }
    memcpy(buf, start, len);
    buf[len] = '\0';
    clean_line(buf);
    return check_line(r, buf) == 0 ? buf : NULL;
}

/* inih's handler: one key = value of the current line. */
static int on_key(void *user, const char *section, const char *key,
                  const char *value)
{
    IniReader *r = user;
    SfError e = { 0 };
    const ConfigKey *k = find_key(section, key, &e);
    if (k) {
        size_t i = (size_t)(k - config_keys);
        if (r->set_at[i])
            sf_error_set(&e, SF_EXIT_INPUT, "'%s.%s' is set twice, on lines %d and %d; "
                         "keep one", k->section, k->key, r->set_at[i], r->line);
        else if (config_key_parse(k, &r->cfg, value, &e) == 0)
            r->set_at[i] = r->line;
    }
    if (e.code)
        reader_fail(r, "%s", e.msg);
    return !e.code;
}

/* The whole file as a string; the caller frees. NULL with err set. */
static char *read_text(const char *path, SfError *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sf_error_set(err, SF_EXIT_INPUT, "cannot open config file '%s': %s", path,
                     strerror(errno));
        return NULL;
    }
    char *text = malloc(CONFIG_MAX_FILE + 1);
    size_t len = text ? fread(text, 1, CONFIG_MAX_FILE + 1, f) : 0;
    int ok = 0;
    if (!text || ferror(f))
        sf_error_set(err, SF_EXIT_INPUT, "cannot read config file '%s': %s", path,
                     strerror(errno));
    else if (len > CONFIG_MAX_FILE)
        sf_error_set(err, SF_EXIT_INPUT, "config file '%s' is larger than %d bytes; "
                     "is it the right file?", path, CONFIG_MAX_FILE);
    else if (memchr(text, '\0', len))
        sf_error_set(err, SF_EXIT_INPUT, "config file '%s' contains a NUL byte; "
                     "is it a text file?", path);
    else
        ok = 1;
    fclose(f);
    if (!ok) {
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/* Reads the file over cfg. cfg changes only when the whole file is good. */
int sf_config_load(SfConfig *cfg, const char *path, SfError *err)
{
    char *text = read_text(path, err);
    if (!text)
        return -1;
    int rc = sf_config_load_text(cfg, text, path, err);
    free(text);
    return rc;
}

int sf_config_load_text(SfConfig *cfg, const char *text, const char *path,
                        SfError *err)
{
    int rc = -1;
    IniReader *r = calloc(1, sizeof *r);
    if (!r) {
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory reading '%s'", path);
        goto cleanup;
    }
    r->path = path;
    r->next = strncmp(text, "\xEF\xBB\xBF", 3) == 0 ? text + 3 : text;  /* UTF-8 BOM */
    memcpy(&r->cfg, cfg, sizeof *cfg);
    int bad_line = ini_parse_stream(read_line, r, on_key, r);
    if (r->err.code) {
        sf_error_set(err, r->err.code, "%s", r->err.msg);
        goto cleanup;
    }
    if (bad_line) {
        sf_error_set(err, SF_EXIT_INPUT, "%s:%d: cannot parse this line", path, bad_line);
        goto cleanup;
    }
    memcpy(cfg, &r->cfg, sizeof *cfg);
    rc = 0;
cleanup:
    free(r);
    return rc;
}

/* ---- --set overrides ---------------------------------------------------- */

/* Copies [begin, end) without surrounding whitespace; 0 if empty or too long. */
static int copy_trimmed(char *dst, size_t size, const char *begin, const char *end)
{
    while (begin < end && isspace((unsigned char)*begin))
        begin++;
    while (end > begin && isspace((unsigned char)end[-1]))
        end--;
    size_t len = (size_t)(end - begin);
    if (len == 0 || len >= size)
        return 0;
    memcpy(dst, begin, len);
    dst[len] = '\0';
    return 1;
}

int sf_config_set(SfConfig *cfg, const char *assignment, SfError *err)
{
    const char *eq = strchr(assignment, '=');
    const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
    char section[128], key[128];
    if (!dot || !copy_trimmed(section, sizeof section, assignment, dot) ||
        !copy_trimmed(key, sizeof key, dot + 1, eq)) {
        sf_error_set(err, SF_EXIT_INPUT, "--set '%s': expected section.key=value, "
                     "e.g. --set optimizer.lr=0.1", assignment);
        return -1;
    }
    const char *v = eq + 1 + strspn(eq + 1, " \t");
    size_t len = strlen(v);
    while (len && isspace((unsigned char)v[len - 1]))
        len--;
    char *value = strndup(v, len);
    if (!value) {
        sf_error_set(err, SF_EXIT_FAILURE, "--set '%s': out of memory", assignment);
        return -1;
    }
    SfError e = { 0 };
    int rc = sf_config_set_key(cfg, section, key, value, &e);
    free(value);
    if (rc != 0)
        sf_error_set(err, e.code, "--set '%.200s': %s", assignment, e.msg);
    return rc;
}

/* ---- checks across keys ------------------------------------------------- */

static int input_error(SfError *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int input_error(SfError *err, const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sf_error_set(err, SF_EXIT_INPUT, "%s", msg);
    return -1;
}

static int check_data(const SfConfig *cfg, SfError *err)
{
    const char *vf = cfg->data.val_features, *vl = cfg->data.val_labels;
    if (!cfg->data.path[0])
        return input_error(err, "data.path is required: the HDF5 file with the "
                           "training set (set it under [data] or with --set "
                           "data.path=FILE)");
    if (!vf[0] != !vl[0])
        return input_error(err, "data.%s is set but data.%s is empty: a validation "
                           "set needs both", vf[0] ? "val_features" : "val_labels",
                           vf[0] ? "val_labels" : "val_features");
    if (vf[0] && cfg->data.validation_split > 0)
        return input_error(err, "data.val_features and data.validation_split = %g "
                           "both define a validation set; use one",
                           cfg->data.validation_split);
    if (cfg->data.val_path[0] && !vf[0])
        return input_error(err, "data.val_path is set but data.val_features is empty: "
                           "name the validation datasets in val_features and val_labels");
    if (!cfg->model.layers[0])
        return input_error(err, "model.layers is empty: list the layers, e.g. "
                           "'dense:128 relu dense:10'");
    return 0;
}

static int check_train(const SfConfig *cfg, SfError *err)
{
    if (cfg->train.batch_size == 0 && cfg->train.drop_last)
        return input_error(err, "train.batch_size = all with train.drop_last = true: "
                           "full-batch gradient descent has no partial batch to drop; "
                           "set drop_last = false");
    if (cfg->optimizer.nesterov &&
        (cfg->optimizer.name != SF_OPTIM_SGD || cfg->optimizer.momentum <= 0))
        return input_error(err, "optimizer.nesterov = true needs optimizer.name = sgd "
                           "and optimizer.momentum > 0 (as in PyTorch)");
    return 0;
}

static int check_schedule(const SfConfig *cfg, SfError *err)
{
    if (cfg->schedule.warmup_steps > 0 && cfg->schedule.warmup_epochs > 0)
        return input_error(err, "schedule.warmup_steps and schedule.warmup_epochs are "
                           "both set; use one");
    if (cfg->schedule.step_size > 0 && cfg->schedule.step_epochs > 0)
        return input_error(err, "schedule.step_size and schedule.step_epochs are both "
                           "set; use one");
    if (cfg->schedule.name == SF_SCHED_MULTISTEP && cfg->schedule.n_milestones == 0)
        return input_error(err, "schedule.name = multistep needs schedule.milestones, "
                           "e.g. milestones = 30,60,90");
    if (cfg->schedule.name == SF_SCHED_STEP && cfg->schedule.step_size == 0 &&
        cfg->schedule.step_epochs == 0)
        return input_error(err, "schedule.name = step needs schedule.step_size (in "
                           "steps) or schedule.step_epochs > 0");
    return 0;
}

static int check_stop(const SfConfig *cfg, SfError *err)
{
    SfMonitor m = cfg->stop.monitor;
    int val_metric = m == SF_MONITOR_VAL_LOSS || m == SF_MONITOR_VAL_ACCURACY;
    int val_set = cfg->data.val_features[0] || cfg->data.validation_split > 0;
    int monitoring = cfg->stop.early_stopping || cfg->stop.target != 0;
    if (monitoring && val_metric && !val_set)
        return input_error(err, "stop.monitor = %s needs a validation set: set "
                           "data.val_features and data.val_labels, or "
                           "data.validation_split > 0, or monitor a training metric",
                           sf_config_monitor_name(m));
    if (cfg->stop.restore_best && !cfg->stop.early_stopping)
        return input_error(err, "stop.restore_best = true needs "
                           "stop.early_stopping = true");
    return 0;
}

int sf_config_check(const SfConfig *cfg, SfError *err)
{
    if (check_data(cfg, err) || check_train(cfg, err) ||
        check_schedule(cfg, err) || check_stop(cfg, err))
        return -1;
    return 0;
}

/* ---- the effective config as text --------------------------------------- */

char *sf_config_format(const SfConfig *cfg)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    const char *section = NULL;
    char value[CONFIG_MAX_LINE + 1];
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const ConfigKey *k = &config_keys[i];
        if (!section || strcmp(section, k->section) != 0)
            fprintf(out, "%s[%s]\n", section ? "\n" : "", k->section);
        section = k->section;
        config_key_text(k, cfg, value, sizeof value);
        fprintf(out, "%s =%s%s\n", k->key, value[0] ? " " : "", value);
    }
    int failed = ferror(out);
    if (fclose(out) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}
