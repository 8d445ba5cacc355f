/* checkpoint_dir.c: the checkpoint directory (checkpoint.h): making it,
 * finding the checkpoint to resume from, and deleting old ones.
 *
 * Checkpoints are ordered by the step stored in each file, not by name or
 * time: epoch and step files interleave, and an epoch file and a step file
 * written at the same step hold the same state, the epoch file winning the
 * tie. Only names shardfit writes are ever considered, so temporary files
 * (.NAME.tmp.PID) and the user's own files are never read or touched. */
#include "shardfit/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_internal.h"
#include "dirs.h"

int sf_checkpoint_prepare_dir(const char *dir, SfError *err)
{
    char path[SF_CKPT_PATH], probe[SF_CKPT_PATH];
    struct stat st;
    if (!dir[0] || (size_t)snprintf(path, sizeof path, "%s", dir) >= sizeof path) {
        sf_error_set(err, SF_EXIT_INPUT, "checkpoint.dir '%.64s' is empty or "
                     "too long", dir);
        return -1;
    }
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        sf_error_set(err, SF_EXIT_INPUT, "checkpoint.dir '%s' is not a "
                     "directory", dir);
        return -1;
    }
    if (sf_make_dirs(dir, path, sizeof path) != 0) {
        sf_error_set(err, SF_EXIT_INPUT, "checkpoint.dir '%s': cannot "
                     "create '%s': %s", dir, path, strerror(errno));
        return -1;
    }
    snprintf(probe, sizeof probe, "%s/.shardfit-probe.%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "checkpoint.dir '%s' is not "
                     "writable: %s", dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

/* ---- listing ------------------------------------------------------------ */

typedef struct {
    char name[32];
    int is_epoch;
    int64_t step;
} Candidate;

/* 1 if name is exactly one shardfit writes (epoch-EEEE.h5, step-SSSSSSSS.h5:
 * what sf_checkpoint_*_name gives for the number in it). */
static int own_name(const char *name, int *is_epoch)
{
    char again[32];
    const char *digits = strchr(name, '-');
    if (!digits || digits[1] < '0' || digits[1] > '9' || strlen(name) >= 32)
        return 0;
    long long n = strtoll(digits + 1, NULL, 10);
    *is_epoch = strncmp(name, "epoch-", 6) == 0;
    if (*is_epoch)
        sf_checkpoint_epoch_name(n, again, sizeof again);
    else
        sf_checkpoint_step_name(n, again, sizeof again);
    return strcmp(name, again) == 0;
}

/* Newest first: higher step, then the epoch file, then the name. */
static int newest_first(const void *pa, const void *pb)
{
    const Candidate *a = pa, *b = pb;
    if (a->step != b->step)
        return a->step > b->step ? -1 : 1;
    if (a->is_epoch != b->is_epoch)
        return a->is_epoch ? -1 : 1;
    return -strcmp(a->name, b->name);
}

/* The shardfit checkpoints in dir whose step can be read, newest first;
 * files that cannot be read are reported on warn (if not NULL) and left
 * out. *n = 0 when dir does not exist. 0, or -1 with err (code). */
static int list(const char *dir, FILE *warn, Candidate **out, int *n,
                int code, SfError *err)
{
    char path[SF_CKPT_PATH];
    Candidate *c = NULL;
    int cap = 0, rc = -1;
    struct dirent *e;
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        sf_error_set(err, code, "checkpoint.dir '%s': cannot list: %s", dir,
                     strerror(errno));
        return -1;
    }
    while ((errno = 0, e = readdir(d))) {
        Candidate k = {"", 0, 0};
        SfError why = {0};
        if (!own_name(e->d_name, &k.is_epoch))
            continue;
        /* own_name accepts only names shorter than k.name; the precision
         * says so to the compiler too */
        snprintf(k.name, sizeof k.name, "%.*s", (int)sizeof k.name - 1,
                 e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, k.name);
        if (sf_ckpt_check(path, NULL, 0, &k.step, &why) < 0) {
            if (warn)
                fprintf(warn, "shardfit: warning: skipping checkpoint '%s': "
                        "%s\n", path, why.msg);
            continue;
        }
        if (*n == cap) {
            Candidate *more = realloc(c, (size_t)(cap = cap ? 2 * cap : 16) *
                                             sizeof *c);
            if (!more) {
                sf_error_set(err, SF_EXIT_FAILURE, "out of memory");
                goto cleanup;
            }
            c = more;
        }
        c[(*n)++] = k;
    }
    if (errno) {
        sf_error_set(err, code, "checkpoint.dir '%s': cannot list: %s", dir,
                     strerror(errno));
        goto cleanup;
    }
    if (*n > 1)
        qsort(c, (size_t)*n, sizeof *c, newest_first);
    rc = 0;
cleanup:
    closedir(d);
    if (rc < 0) {
        free(c);
        c = NULL;
        *n = 0;
    }
    *out = c;
    return rc;
}

/* ---- choosing and pruning ----------------------------------------------- */

int sf_checkpoint_find_latest(const char *dir, const SfModel *m, FILE *warn,
                              char *out, size_t outsize, SfError *err)
{
    char path[SF_CKPT_PATH];
    Candidate *c;
    int n, found = 0;
    if (list(dir, warn, &c, &n, SF_EXIT_INPUT, err) < 0)
        return -1;
    for (int i = 0; i < n && !found; i++) {
        SfError why = {0};
        int64_t step;
        snprintf(path, sizeof path, "%s/%s", dir, c[i].name);
        if (sf_ckpt_check(path, m, 1, &step, &why) < 0) {
            if (warn)
                fprintf(warn, "shardfit: warning: skipping checkpoint '%s': "
                        "%s\n", path, why.msg);
            continue;
        }
        found = 1;
    }
    free(c);
    if (found && strlen(path) >= outsize) {
        sf_error_set(err, SF_EXIT_FAILURE, "checkpoint path '%s' is too long",
                     path);
        return -1;
    }
    if (found)
        snprintf(out, outsize, "%s", path);
    return found;
}

int sf_checkpoint_prune(const char *dir, int64_t keep_last, const char *keep,
                        SfError *err)
{
    char path[SF_CKPT_PATH];
    const char *keep_name = NULL;
    Candidate *c;
    int n, rc = 0;
    if (keep_last <= 0)
        return 0;
    if (keep)
        keep_name = strrchr(keep, '/') ? strrchr(keep, '/') + 1 : keep;
    if (list(dir, NULL, &c, &n, SF_EXIT_FAILURE, err) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (i < keep_last || (keep_name && !strcmp(c[i].name, keep_name)))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, c[i].name);
        if (unlink(path) != 0 && errno != ENOENT) {
            sf_error_set(err, SF_EXIT_FAILURE, "cannot delete old checkpoint "
                         "'%s': %s", path, strerror(errno));
            rc = -1;
        }
    }
    free(c);
    return rc;
}
