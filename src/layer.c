/* layer.c: turns one token of the `layers` list into a configured layer.
 * Each kind owns its parsing, shapes and parameters through its ops
 * (layer.h); adding a kind means one file with its ops and one line in
 * kinds[] below. */
#include "shardfit/layer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const SfLayerOps *const kinds[] = {
    &sf_layer_dense,   &sf_layer_relu,    &sf_layer_tanh,
    &sf_layer_sigmoid, &sf_layer_dropout, &sf_layer_flatten,
    &sf_layer_conv,    &sf_layer_maxpool, &sf_layer_avgpool,
    &sf_layer_batchnorm,
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

int sf_layer_parse_ints(const char *arg, int64_t *v, int max, unsigned zero_ok)
{
    int n = 0;
    const char *p = arg;
    if (!arg)
        return 0;
    for (;;) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        long long lo = (zero_ok >> n) & 1u ? 0 : 1;
        if (n == max || errno || end == p || x < lo || x > (1LL << 30) ||
            (*end && *end != ':'))
            return -1;
        v[n++] = x;
        if (!*end)
            return n;
        p = end + 1;
    }
}

void sf_layer_add_part(SfLayer *l, const char *name, int stat, int ndims,
                       const int64_t *dims)
{
    SfLayerPart *p = &l->parts[l->nparts++];
    p->name = name;
    p->stat = stat;
    p->ndims = ndims;
    for (int d = 0; d < ndims; d++)
        p->dims[d] = dims[d];
    if (!stat && l->nparts == 1)
        l->nweight = sf_layer_part_size(p);
    if (!stat && l->nparts == 2)
        l->nbias = sf_layer_part_size(p);
}

const char *sf_shape_str(SfShape s, char *buf, int size)
{
    if (s.h == 1 && s.w == 1)
        snprintf(buf, (size_t)size, "(%lld)", (long long)s.c);
    else
        snprintf(buf, (size_t)size, "(%lld, %lld, %lld)", (long long)s.c,
                 (long long)s.h, (long long)s.w);
    return buf;
}

int sf_layer_setup(SfLayer *l, const char *token, SfShape in,
                   char *msg, int msgsize)
{
    const char *colon = strchr(token, ':');
    size_t kind_len = colon ? (size_t)(colon - token) : strlen(token);
    const char *arg = colon ? colon + 1 : NULL;
    memset(l, 0, sizeof *l);
    snprintf(l->token, sizeof l->token, "%s", token);
    l->in = in;
    l->out = in;
    for (size_t i = 0; i < NKINDS; i++) {
        const SfLayerOps *ops = kinds[i];
        if (kind_len != strlen(ops->kind) || strncmp(token, ops->kind, kind_len))
            continue;
        l->ops = ops;
        if (!ops->setup && arg) {
            snprintf(msg, (size_t)msgsize, "'%s': %s takes no argument", token,
                     ops->kind);
            return -1;
        }
        if (!ops->setup)
            return 0;
        char why[200] = "";
        if (ops->setup(l, arg, why, sizeof why) == 0)
            return 0;
        snprintf(msg, (size_t)msgsize, "'%s': %s", token, why);
        return -1;
    }
    snprintf(msg, (size_t)msgsize,
             "'%s': unknown layer; known: dense:UNITS relu tanh sigmoid "
             "dropout:RATE conv:FILTERS:K[:STRIDE[:PAD]] maxpool:K[:STRIDE] "
             "avgpool:K[:STRIDE] batchnorm flatten", token);
    return -1;
}
