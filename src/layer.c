/* layer.c: turns one token of the `layers` list into a configured layer.
 * Adding a layer kind means one file with its ops and one branch here. */
#include "shardfit/layer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses the integer after "kind:"; 0 or -1. */
static int parse_units(const char *arg, int64_t *units)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || end == arg || *end || v < 1 || v > (1LL << 30))
        return -1;
    *units = v;
    return 0;
}

static int parse_rate(const char *arg, double *rate)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !(v >= 0.0 && v < 1.0))
        return -1;
    *rate = v;
    return 0;
}

int sf_layer_setup(SfLayer *l, const char *token, SfShape in,
                   char *msg, int msgsize)
{
    const char *colon = strchr(token, ':');
    size_t kind_len = colon ? (size_t)(colon - token) : strlen(token);
    const char *arg = colon ? colon + 1 : NULL;
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = in;

#define IS(name) (kind_len == strlen(name) && !strncmp(token, name, kind_len))
    if (IS("dense")) {
        if (!arg || parse_units(arg, &l->units)) {
            snprintf(msg, (size_t)msgsize,
                     "'%s': dense needs a positive unit count, as in dense:128", token);
            return -1;
        }
        l->ops = &sf_layer_dense;
        l->out = (SfShape){l->units, 1, 1};
        l->nweight = l->units * sf_shape_size(in);
        l->nbias = l->units;
    } else if (IS("dropout")) {
        if (!arg || parse_rate(arg, &l->rate)) {
            snprintf(msg, (size_t)msgsize,
                     "'%s': dropout needs a rate in [0, 1), as in dropout:0.5", token);
            return -1;
        }
        l->ops = &sf_layer_dropout;
    } else if (IS("relu")) {
        l->ops = &sf_layer_relu;
    } else if (IS("tanh")) {
        l->ops = &sf_layer_tanh;
    } else if (IS("sigmoid")) {
        l->ops = &sf_layer_sigmoid;
    } else if (IS("flatten")) {
        l->ops = &sf_layer_flatten;
        l->out = (SfShape){sf_shape_size(in), 1, 1};
    } else {
        snprintf(msg, (size_t)msgsize,
                 "'%s': unknown layer; known: dense:UNITS relu tanh sigmoid "
                 "dropout:RATE flatten", token);
        return -1;
    }
    if (arg && l->ops != &sf_layer_dense && l->ops != &sf_layer_dropout) {
        snprintf(msg, (size_t)msgsize, "'%s': %s takes no argument", token,
                 l->ops->kind);
        return -1;
    }
#undef IS
    return 0;
}
