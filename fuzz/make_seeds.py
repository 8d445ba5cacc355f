#!/usr/bin/python3
"""make_seeds.py: writes the HDF5 seed inputs of fuzz/corpus/dataset/ and
fuzz/corpus/checkpoint/.

Run from the repository root with Debian's /usr/bin/python3 (it has h5py):
    /usr/bin/python3 fuzz/make_seeds.py
The seeds are committed, so this only needs to run again to change them. A
few files come from shardfit's own writers (src/h5writer.c and
src/checkpoint.c, compiled here with gcc into throwaway programs), the rest
from h5py: every layout, group
style and type the fuzzer should start from, each file a few KB. All data is
made up here; nothing is copied from a real data set.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

OUT = "fuzz/corpus/dataset"
CKPT = "fuzz/corpus/checkpoint"

WRITER_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shardfit/dataset.h"
/* usage: writer OUT COMPRESS: (4,3,2) uint8 images, (4,) int16 labels, and
 * /val/x (3,5) float32 with /val/y (3,2) float32 targets. */
int main(int argc, char **argv)
{
    uint8_t x[24]; int16_t y[4] = {0, 1, -2, 300};
    float vx[15], vy[6];
    for (int i = 0; i < 24; i++) x[i] = (uint8_t)(i * 11);
    for (int i = 0; i < 15; i++) vx[i] = (float)i / 4;
    for (int i = 0; i < 6; i++) vy[i] = (float)-i;
    SfError err = {0};
    int c = atoi(argv[2]);
    SfH5Writer *w = sf_h5writer_open(argv[1], &err);
    if (!w || sf_h5writer_write(w, "/train/images", SF_DTYPE_U8, 3,
                                (int64_t[]){4, 3, 2}, x, c, &err) ||
        sf_h5writer_write(w, "/train/labels", SF_DTYPE_I16, 1, (int64_t[]){4},
                          y, c, &err) ||
        sf_h5writer_write(w, "/val/x", SF_DTYPE_F32, 2, (int64_t[]){3, 5}, vx,
                          c, &err) ||
        sf_h5writer_write(w, "/val/y", SF_DTYPE_F32, 2, (int64_t[]){3, 2}, vy,
                          c, &err) ||
        sf_h5writer_close(w, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    (void)argc;
    return 0;
}
"""

CKPT_C = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shardfit/checkpoint.h"
/* usage: ckpt DIR NAME LAYERS OPTIM BEST EPOCHS: a checkpoint of LAYERS on 5
 * features (fuzz_checkpoint.c's model is dense:6 relu dense:3), optimizer
 * sgd (with momentum), adam or none, with a /best copy if BEST is 1. */
int main(int argc, char **argv)
{
    SfError err = {0};
    SfConfig c;
    sf_config_defaults(&c);
    SfModel *m = sf_model_create(argv[3], (SfShape){5, 1, 1},
                                 SF_LOSS_CROSS_ENTROPY, 4, &err);
    if (!m) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int64_t n = sf_model_nparams(m);
    float *p = sf_model_params(m), *best = calloc((size_t)n, sizeof *best);
    for (int64_t i = 0; i < n; i++) { p[i] = sinf((float)i); best[i] = -p[i]; }
    SfOptim *o = NULL;
    if (strcmp(argv[4], "none") != 0) {
        c.optimizer.name = strcmp(argv[4], "adam") ? SF_OPTIM_SGD : SF_OPTIM_ADAM;
        c.optimizer.momentum = 0.9;
        o = sf_optim_create(&c, n, &err);
        sf_optim_set_steps(o, 12);
    }
    char *cfg = sf_config_format(&c);
    int epochs = atoi(argv[6]);
    SfCheckpointInfo info = {
        .epoch = epochs, .step = 12, .step_in_epoch = 0, .seed = 7,
        .world_size = 2, .sum_loss = 1.5, .sum_count = 4, .stop_best = 0.25,
        .stop_best_epoch = 1, .has_best = atoi(argv[5]), .config = cfg,
        .layers = argv[3], .nhistory = epochs,
    };
    info.history = calloc((size_t)epochs + 1, sizeof *info.history);
    for (int e = 0; e < epochs; e++) {
        info.history[e].epoch = e + 1;
        info.history[e].loss = 1.0 / (e + 1);
        info.history[e].has_val = 1;
        info.history[e].val_loss = e ? NAN : 0.5;
    }
    if (sf_checkpoint_write(argv[1], argv[2], m, o, info.has_best ? best : NULL,
                            &info, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    (void)argc;
    return 0;
}
"""


def project_program(tmp, name, text):
    """Compiles text with every library source; returns the program."""
    src, exe = os.path.join(tmp, name + ".c"), os.path.join(tmp, name)
    with open(src, "w") as f:
        f.write(text)
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "ompi-c", "hdf5-openmpi", "openblas",
         "inih"], capture_output=True, text=True, check=True).stdout.split()
    srcs = sorted(os.path.join("src", n) for n in os.listdir("src")
                  if n.endswith(".c") and n != "main.c")
    subprocess.run(["gcc", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Iinclude",
                    "-Isrc", src] + srcs + flags + ["-lz", "-lm", "-o", exe],
                   check=True)
    return exe


def images(n, *shape, dtype="u1"):
    return (np.arange(n * int(np.prod(shape))) * 7 % 251).astype(dtype).reshape(n, *shape)


def checkpoint_attrs(f):
    """Root attributes as a checkpoint has them: strings both ways, numbers."""
    f.attrs["format"] = "shardfit-checkpoint"  # h5py: variable-length
    f.attrs.create("layers", np.bytes_("dense:4 relu dense:2"))  # fixed-length
    f.attrs["version"] = np.int64(1)
    f.attrs["betas"] = np.array([0.9, 0.999])
    f.attrs["seed"] = np.uint64(2**64 - 1)
    f.attrs["many"] = np.arange(20, dtype="i4")
    f.attrs["empty"] = h5py.Empty("f4")
    f.attrs["strings"] = np.array([b"a", b"bc"])


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        exe = project_program(tmp, "writer", WRITER_C)
        for name, c in (("w-contiguous.h5", 0), ("w-gzip.h5", 1)):
            path = os.path.join(OUT, name)
            if os.path.exists(path):
                os.unlink(path)
            subprocess.run([exe, path, str(c)], check=True)

    def new(name, **kw):
        return h5py.File(os.path.join(OUT, name), "w", **kw)

    with new("py-checkpoint-attrs.h5") as f:
        f["train/images"] = images(4, 2, 2)
        f["train/labels"] = np.array([3, 1, 0, 2], dtype="i8")
        checkpoint_attrs(f)

    with new("py-latest-chunked.h5", libver="latest") as f:
        f.create_dataset("train/images", data=images(6, 5, dtype="f8"),
                         chunks=(4, 2), compression="gzip", shuffle=True,
                         fletcher32=True)
        f.create_dataset("train/labels", data=np.linspace(0, 1, 6).reshape(6, 1),
                         chunks=(3, 1), maxshape=(None, 1))
        f["train"].attrs["note"] = "new-style groups, v2 B-trees, chunk indexes"

    with new("py-compact-be.h5") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        g = f.create_group("train")
        x = images(3, 4, dtype=">f4")
        sid = h5py.h5s.create_simple(x.shape)
        d = h5py.h5d.create(g.id, b"images", h5py.h5t.IEEE_F32BE, sid, dcpl=dcpl)
        d.write(h5py.h5s.ALL, h5py.h5s.ALL, x)
        g["labels"] = np.array([1, 2, 2**40], dtype="u8")

    with new("py-links.h5", track_order=True) as f:
        f["data/x"] = images(2, 3, dtype="i2")
        f["data/y"] = np.array([0, 1], dtype="u1")
        f["train/images"] = h5py.SoftLink("/data/x")
        f["train/labels"] = h5py.ExternalLink("other.h5", "/y")
        f["train/loop"] = f["train"]  # a hard-link cycle
        g = f["data"]
        for i in range(12):  # deep nesting
            g = g.create_group("g%d" % i)
        g["leaf"] = np.zeros((1,), "i1")

    with new("py-bad-types.h5") as f:
        f["train/images"] = np.array([b"abc", b"de"])
        f["train/labels"] = np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f4")])
        f["other/half"] = np.ones((2, 2), "f2")
        f["other/enum"] = np.array([0, 1], dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))
        f["other/vlen"] = np.array([np.arange(2), np.arange(3)], dtype=h5py.vlen_dtype("i4"))
        f["other/null"] = h5py.Empty("i4")

    with new("py-shapes.h5") as f:
        f["train/images"] = np.float32(1.5)  # scalar
        f["train/labels"] = np.zeros((0,), "i4")
        f["train/nine"] = np.zeros((1,) * 9, "u1")
        f["train/rows3"] = np.zeros((3, 2), "i4")

    with new("py-huge-declared.h5") as f:
        # Declared huge, never written: the file stays tiny.
        f.create_dataset("train/images", shape=(2**31, 1000), dtype="u1",
                         chunks=(1, 1000))
        f.create_dataset("train/labels", shape=(2**31,), dtype="i4",
                         chunks=(1024,), fillvalue=7)
        f.create_dataset("big/wide", shape=(2, 2**40), dtype="f8", chunks=(1, 1024))
        f.create_dataset("big/overflow", shape=(2**40, 2**40), dtype="f8",
                         chunks=(1, 1))

    with new("py-group-instead.h5") as f:
        f.create_group("train/images")
        f["train/labels"] = np.arange(3)
        f["train/images"].attrs["x"] = 1

    with new("py-filters.h5") as f:
        f.create_dataset("train/images", data=images(5, 3, dtype="i4"),
                         chunks=(2, 3), scaleoffset=0)
        f.create_dataset("train/labels", data=np.arange(5, dtype="u2"),
                         chunks=(2,), compression="lzf")

    checkpoints()
    for d in (OUT, CKPT):
        for name in sorted(os.listdir(d)):
            size = os.path.getsize(os.path.join(d, name))
            print("%6d %s/%s" % (size, d, name))
            # A checkpoint has some 30 objects (/params, /optimizer, /best,
            # /history): the writer's output is about 35 KB.
            if size > (40000 if d == CKPT else 20000):
                sys.exit("%s is too large for a seed" % name)


def checkpoints():
    """Seeds for fuzz_checkpoint.c, whose model is dense:6 relu dense:3."""
    os.makedirs(CKPT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        exe = project_program(tmp, "ckpt", CKPT_C)
        for name, layers, optim, best, epochs in (
                ("adam-best.h5", "dense:6 relu dense:3", "adam", 1, 2),
                ("sgd.h5", "dense:6 relu dense:3", "sgd", 0, 1),
                ("no-optimizer.h5", "dense:6 relu dense:3", "none", 0, 0),
                ("other-model.h5", "dense:4 tanh dense:2 dense:3", "adam", 0, 1)):
            path = os.path.join(CKPT, name)
            if os.path.exists(path):
                os.unlink(path)
            subprocess.run([exe, CKPT, name, layers, optim, str(best), str(epochs)],
                           check=True)
    # An init_checkpoint as a PyTorch user would write it with h5py.
    with h5py.File(os.path.join(CKPT, "py-init.h5"), "w") as f:
        f.attrs["format"] = "shardfit-checkpoint"
        f.attrs["version"] = np.int64(1)
        f["params/00_dense/weight"] = np.ones((6, 5), "f4")
        f["params/00_dense/bias"] = np.zeros((6,), "f4")
        f["params/02_dense/weight"] = np.ones((3, 6), "f4")
        f["params/02_dense/bias"] = np.zeros((3,), "f4")
        # Declared long, never written: the file stays small.
        f.create_dataset("history/epoch", shape=(2**20,), dtype="f8", chunks=(4096,))
        f.attrs.create("layers", np.bytes_("dense:6 relu dense:3"))


if __name__ == "__main__":
    main()
