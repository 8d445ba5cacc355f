/* checkpoint_read.c: reading checkpoints back (checkpoint.h), for resume,
 * for model.init_checkpoint, and to judge candidates in find_latest.
 *
 * A file is read whole into temporaries and checked against the model
 * before anything is copied into the model, the optimizer or the best
 * copy, so a bad file leaves a run exactly as it was. The same checks,
 * without loading the weights, decide which files find_latest accepts:
 * what sf_checkpoint_read would refuse, find_latest skips. Messages here do
 * not name the file; the public functions put "'PATH': " before them. */
#include "shardfit/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "checkpoint_internal.h"
#include "h5guard.h"
#include "h5util.h"

enum {
    SCAN_INFO = 1, /* attributes, /history, /best and /optimizer too */
    SCAN_LOAD = 2, /* read the weights (and o's state blocks) */
    SCAN_BEST = 4  /* read /best as well */
};

/* What a file holds, read before any of it is committed. */
typedef struct {
    SfCheckpointInfo info;
    float *params, *best, *state[SF_CKPT_NSTATES];
    int64_t t;
} Contents;

static void contents_free(Contents *c)
{
    sf_checkpoint_info_free(&c->info);
    free(c->params);
    free(c->best);
    for (int k = 0; k < SF_CKPT_NSTATES; k++)
        free(c->state[k]);
}

/* A block of the state's size (params, best) or the parameters' (an
 * optimizer state). */
static float *alloc_block(const SfModel *m, int state, SfError *err)
{
    int64_t n = state ? sf_model_nstate(m) : sf_model_nparams(m);
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    if (!p)
        sf_error_set(err, SF_EXIT_FAILURE, "out of memory for %lld parameters",
                     (long long)n);
    return p;
}

/* ---- layers, against the model ------------------------------------------ */

/* The dataset at path against the model's shape want; with dst, read
 * there. Messages: where + "layer 02_dense: checkpoint " + what + shapes. */
static int check_array(hid_t file, const char *path, const char *where,
                       const char *lname, const char *what,
                       const SfArrayInfo *want, float *dst, SfError *err)
{
    char have_s[128], want_s[128], detail[256];
    SfArrayInfo have;
    const char *cls;
    int rc = -1;
    hid_t d = sf_ckpt_exists(file, path)
              ? H5Dopen2(file, path, H5P_DEFAULT) : -1;
    if (d < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "%slayer %s has no %s", where, lname,
                     what);
        return -1;
    }
    sf_array_shape_str(want, want_s, sizeof want_s);
    switch (sf_h5_probe(d, &have, &cls)) {
    case SF_H5_PROBE_OK:
        break;
    case SF_H5_PROBE_RANK:
        sf_error_set(err, SF_EXIT_INPUT, "%slayer %s: checkpoint %s has %d "
                     "dimensions, model %s", where, lname, what, have.ndims,
                     want_s);
        goto cleanup;
    default:
        sf_error_set(err, SF_EXIT_INPUT, "%slayer %s: checkpoint %s has type "
                     "%s; need float32", where, lname, what, cls);
        goto cleanup;
    }
    if (want->dtype == SF_DTYPE_I64 ? sf_dtype_is_float(have.dtype)
                                    : !sf_dtype_is_float(have.dtype)) {
        sf_error_set(err, SF_EXIT_INPUT, "%slayer %s: checkpoint %s has type "
                     "%s; need %s", where, lname, what,
                     sf_dtype_name(have.dtype), sf_dtype_name(want->dtype));
        goto cleanup;
    }
    int same = have.ndims == want->ndims;
    for (int k = 0; same && k < have.ndims; k++)
        same = have.dims[k] == want->dims[k];
    if (!same) {
        sf_error_set(err, SF_EXIT_INPUT, "%slayer %s: checkpoint %s %s, model "
                     "%s", where, lname, what,
                     sf_array_shape_str(&have, have_s, sizeof have_s), want_s);
        goto cleanup;
    }
    int64_t count = 1;
    for (int k = 0; k < have.ndims; k++)
        count *= have.dims[k];
    if (dst && count > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                                    H5P_DEFAULT, dst) < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "%slayer %s: cannot read %s: %s",
                     where, lname, what,
                     sf_h5_error_detail(detail, sizeof detail));
        goto cleanup;
    }
    rc = 0;
cleanup:
    H5Dclose(d);
    return rc;
}

/* For H5Literate over a group: the first member that is not the name of
 * one of m's layers with parameters (prefix NULL), or the first that starts
 * with prefix. */
typedef struct {
    const SfModel *m;
    const char *prefix;
    char found[64];
} MemberSearch;

static herr_t find_member(hid_t g, const char *name, const H5L_info_t *li,
                          void *data)
{
    (void)g;
    (void)li;
    MemberSearch *s = data;
    char lname[64];
    if (s->prefix) {
        if (strncmp(name, s->prefix, strlen(s->prefix)) != 0)
            return 0;
    } else {
        for (int i = 0; i < sf_model_nlayers(s->m); i++) {
            const SfLayer *l = sf_model_layer(s->m, i);
            sf_ckpt_layer_name(l, lname, sizeof lname);
            if (sf_ckpt_has_params(l) && strcmp(name, lname) == 0)
                return 0;
        }
    }
    snprintf(s->found, sizeof s->found, "%s", name);
    return 1;
}

/* group holds LL_kind for every layer of m with parameters, and nothing
 * else: a layer of another kind at the same index, a missing layer or an
 * extra one is named. */
static int check_members(hid_t file, const char *group, const char *where,
                         const SfModel *m, SfError *err)
{
    char lname[64], path[256], prefix[8];
    if (!sf_ckpt_exists(file, group)) {
        sf_error_set(err, SF_EXIT_INPUT, "no group '%s'", group);
        return -1;
    }
    for (int i = 0; i < sf_model_nlayers(m); i++) {
        const SfLayer *l = sf_model_layer(m, i);
        if (!sf_ckpt_has_params(l))
            continue;
        sf_ckpt_layer_name(l, lname, sizeof lname);
        snprintf(path, sizeof path, "%s/%s", group, lname);
        if (sf_ckpt_exists(file, path))
            continue;
        snprintf(prefix, sizeof prefix, "%02d_", l->index);
        MemberSearch s = {m, prefix, ""};
        H5Literate_by_name(file, group, H5_INDEX_NAME, H5_ITER_INC, NULL,
                           find_member, &s, H5P_DEFAULT);
        if (s.found[0])
            sf_error_set(err, SF_EXIT_INPUT, "%slayer %s: the checkpoint has "
                         "%s there (another kind of layer)", where, lname,
                         s.found);
        else
            sf_error_set(err, SF_EXIT_INPUT, "%slayer %s is missing from the "
                         "checkpoint", where, lname);
        return -1;
    }
    MemberSearch s = {m, NULL, ""};
    if (H5Literate_by_name(file, group, H5_INDEX_NAME, H5_ITER_INC, NULL,
                           find_member, &s, H5P_DEFAULT) < 0) {
        sf_error_set(err, SF_EXIT_INPUT, "cannot list '%s'", group);
        return -1;
    }
    if (s.found[0]) {
        sf_error_set(err, SF_EXIT_INPUT, "%sthe checkpoint has layer %s, which "
                     "the model does not have", where, s.found);
        return -1;
    }
    return 0;
}

/* Every layer's parts under group (state NULL), or the state blocks of its
 * trained parts (group/LL_kind/PART/STATE), against m; with dst (a block
 * parallel to the state block), read into it. */
static int check_layers(hid_t file, const char *group, const char *where,
                        const char *state, const SfModel *m, float *dst,
                        SfError *err)
{
    char lname[64], path[256], what[64];
    for (int i = 0; i < sf_model_nlayers(m); i++) {
        const SfLayer *l = sf_model_layer(m, i);
        if (!sf_ckpt_has_params(l))
            continue;
        sf_ckpt_layer_name(l, lname, sizeof lname);
        for (int part = 0; part < l->nparts; part++) {
            if (state && l->parts[part].stat)
                continue;
            SfArrayInfo want;
            sf_ckpt_part_shape(l, part, &want);
            snprintf(what, sizeof what, "%s%s%s", l->parts[part].name,
                     state ? "/" : "", state ? state : "");
            snprintf(path, sizeof path, "%s/%s/%s", group, lname, what);
            if (check_array(file, path, where, lname, what, &want,
                            dst ? dst + sf_ckpt_part_offset(m, l, part) : NULL,
                            err) < 0)
                return -1;
        }
    }
    return 0;
}

/* /optimizer: t, and the state blocks, which must be exactly those o keeps
 * (o NULL: whatever the file holds is checked, nothing is loaded). */
static int scan_optim(hid_t file, const SfModel *m, SfOptim *o, int load,
                      Contents *c, SfError *err)
{
    const char *where = "/optimizer: ";
    char first[64] = "", path[256];
    if (!sf_ckpt_exists(file, "/optimizer")) {
        if (o)
            sf_error_set(err, SF_EXIT_INPUT, "no optimizer state (no group "
                         "'/optimizer')");
        return o ? -1 : 0;
    }
    hid_t g = H5Gopen2(file, "/optimizer", H5P_DEFAULT);
    H5G_info_t gi = {0};
    int rc = g < 0 || H5Gget_info(g, &gi) < 0 ? -1 : 0;
    if (rc < 0)
        sf_error_set(err, SF_EXIT_INPUT, "cannot open group '/optimizer'");
    else
        rc = sf_ckpt_get_number(g, "/optimizer ", "t", SF_CKPT_I64, &c->t, err);
    if (g >= 0)
        H5Gclose(g);
    if (rc < 0)
        return -1;
    int want_any = 0;
    for (int k = 0; o && k < SF_CKPT_NSTATES; k++)
        want_any |= sf_optim_state(o, sf_ckpt_states[k]) != NULL;
    if ((gi.nlinks > 0 || want_any) &&
        check_members(file, "/optimizer", where, m, err) < 0)
        return -1;
    for (int i = 0; i < sf_model_nlayers(m) && !first[0]; i++)
        if (sf_ckpt_has_params(sf_model_layer(m, i)))
            sf_ckpt_layer_name(sf_model_layer(m, i), first, sizeof first);
    /* What the optimizer needs and lacks is the better message, so it
     * comes before what the file has in excess. */
    int want[SF_CKPT_NSTATES], in_file[SF_CKPT_NSTATES];
    for (int k = 0; k < SF_CKPT_NSTATES; k++) {
        want[k] = o && sf_optim_state(o, sf_ckpt_states[k]) != NULL;
        snprintf(path, sizeof path, "/optimizer/%s/weight/%s", first,
                 sf_ckpt_states[k]);
        in_file[k] = sf_ckpt_exists(file, path);
        if (want[k] && !in_file[k]) {
            sf_error_set(err, SF_EXIT_INPUT, "no optimizer state '%s', which "
                         "the optimizer needs (written by another optimizer?)",
                         sf_ckpt_states[k]);
            return -1;
        }
    }
    for (int k = 0; k < SF_CKPT_NSTATES; k++) {
        if (o && !want[k] && in_file[k]) {
            sf_error_set(err, SF_EXIT_INPUT, "optimizer state '%s' is not "
                         "one the optimizer keeps (written by another "
                         "optimizer?)", sf_ckpt_states[k]);
            return -1;
        }
        if (!in_file[k])
            continue;
        if (load && want[k] && !(c->state[k] = alloc_block(m, 0, err)))
            return -1;
        if (check_layers(file, "/optimizer", where, sf_ckpt_states[k], m,
                         c->state[k], err) < 0)
            return -1;
    }
    return 0;
}

/* Reads or checks an open file into c; see the SCAN_ flags. */
static int scan(hid_t file, const SfModel *m, SfOptim *o, int flags,
                Contents *c, SfError *err)
{
    int load = flags & SCAN_LOAD;
    if (sf_ckpt_check_format(file, err) < 0)
        return -1;
    if ((flags & SCAN_INFO) && (sf_ckpt_read_info(file, 0, &c->info, err) < 0 ||
                                sf_ckpt_read_history(file, &c->info, err) < 0))
        return -1;
    if (load && !(c->params = alloc_block(m, 1, err)))
        return -1;
    if (check_members(file, "/params", "", m, err) < 0 ||
        check_layers(file, "/params", "", NULL, m, c->params, err) < 0)
        return -1;
    if (!(flags & SCAN_INFO))
        return 0;
    c->info.has_best = sf_ckpt_exists(file, "/best");
    if (c->info.has_best) {
        if (load && (flags & SCAN_BEST) && !(c->best = alloc_block(m, 1, err)))
            return -1;
        if (check_members(file, "/best", "/best: ", m, err) < 0 ||
            check_layers(file, "/best", "/best: ", NULL, m, c->best, err) < 0)
            return -1;
    }
    return scan_optim(file, m, o, load, c, err);
}

/* Opens path and scans it under the HDF5 lock. */
static int scan_path_here(const char *path, const SfModel *m, SfOptim *o,
                          int flags, Contents *c, SfError *err)
{
    sf_h5_init();
    sf_h5_lock();
    hid_t file = sf_ckpt_open(path, err);
    int rc = file < 0 ? -1 : scan(file, m, o, flags, c, err);
    if (file >= 0)
        H5Fclose(file);
    sf_h5_unlock();
    return rc;
}

typedef struct {
    const char *path;
    const SfModel *m;
    SfOptim *o;
    int flags;
} ScanArgs;

/* The same scan in the guard's child, into temporaries it throws away. */
static int scan_in_child(void *arg, SfError *err)
{
    const ScanArgs *a = arg;
    Contents c;
    memset(&c, 0, sizeof c);
    int rc = scan_path_here(a->path, a->m, a->o, a->flags, &c, err);
    contents_free(&c);
    return rc;
}

/* scan_path_here, once a child has survived it (h5guard.h). */
static int scan_path(const char *path, const SfModel *m, SfOptim *o,
                     int flags, Contents *c, SfError *err)
{
    ScanArgs a = {path, m, o, flags};
    if (sf_h5_guard(path, scan_in_child, &a, err) < 0)
        return -1;
    return scan_path_here(path, m, o, flags, c, err);
}

/* ---- the public readers ------------------------------------------------- */

int sf_checkpoint_read(const char *path, SfModel *m, SfOptim *o, float *best,
                       SfCheckpointInfo *info, SfError *err)
{
    Contents c;
    memset(&c, 0, sizeof c);
    int flags = SCAN_INFO | SCAN_LOAD | (best ? SCAN_BEST : 0);
    if (scan_path(path, m, o, flags, &c, err) < 0) {
        sf_error_prefix(err, "'%s': ", path);
        contents_free(&c);
        return -1;
    }
    /* Everything is read and checked: now commit. */
    size_t bytes = (size_t)sf_model_nparams(m) * sizeof(float);
    size_t state_bytes = (size_t)sf_model_nstate(m) * sizeof(float);
    memcpy(sf_model_params(m), c.params, state_bytes);
    if (best && c.best)
        memcpy(best, c.best, state_bytes);
    if (o) {
        sf_optim_set_steps(o, c.t);
        for (int k = 0; k < SF_CKPT_NSTATES; k++)
            if (c.state[k])
                memcpy(sf_optim_state(o, sf_ckpt_states[k]), c.state[k], bytes);
    }
    if (info) {
        *info = c.info;
        memset(&c.info, 0, sizeof c.info);
    }
    contents_free(&c);
    return 0;
}

int sf_checkpoint_load_params(const char *path, SfModel *m, SfError *err)
{
    Contents c;
    memset(&c, 0, sizeof c);
    int rc = scan_path(path, m, NULL, SCAN_LOAD, &c, err);
    if (rc < 0)
        sf_error_prefix(err, "'%s': ", path);
    else
        memcpy(sf_model_params(m), c.params,
               (size_t)sf_model_nstate(m) * sizeof(float));
    contents_free(&c);
    return rc;
}

typedef struct {
    const char *path;
    const SfModel *m;
    int full;
    int64_t step;
} CheckArgs;

static int check_here(void *arg, SfError *err)
{
    CheckArgs *a = arg;
    Contents c;
    memset(&c, 0, sizeof c);
    int rc = -1;
    sf_h5_init();
    sf_h5_lock();
    hid_t file = sf_ckpt_open(a->path, err);
    if (file >= 0 && a->full)
        rc = scan(file, a->m, NULL, SCAN_INFO, &c, err);
    else if (file >= 0)
        rc = sf_ckpt_check_format(file, err) < 0 ? -1
             : sf_ckpt_get_number(file, "", "step", SF_CKPT_I64,
                                  &c.info.step, err);
    if (file >= 0)
        H5Fclose(file);
    sf_h5_unlock();
    a->step = c.info.step;
    contents_free(&c);
    return rc;
}

int sf_ckpt_check(const char *path, const SfModel *m, int full, int64_t *step,
                  SfError *err)
{
    CheckArgs a = {path, m, full, 0};
    int rc = sf_h5_guard(path, check_here, &a, err) < 0 ? -1
             : check_here(&a, err);
    *step = a.step;
    return rc;
}
