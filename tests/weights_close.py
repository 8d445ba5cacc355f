#!/usr/bin/python3
"""weights_close.py A.h5 B.h5 [TOL]: whether two checkpoints hold the same
weights up to TOL (default 1e-5): for every dataset under /params, the largest
difference relative to the tensor's largest magnitude. Prints the worst
tensor; exit 0 when within TOL, 1 when not, 2 when the files do not compare
(a tensor missing or of another shape)."""
import sys

import h5py
import numpy as np


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["/params"].visititems(
            lambda name, obj: out.__setitem__(name, obj[()])
            if isinstance(obj, h5py.Dataset) else None)
    return out


def main():
    a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    if a.keys() != b.keys():
        print(f"different tensors: {sorted(a)} vs {sorted(b)}")
        return 2
    worst, where = 0.0, ""
    for k in sorted(a):
        if a[k].shape != b[k].shape:
            print(f"{k}: shape {a[k].shape} vs {b[k].shape}")
            return 2
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        scale = max(np.abs(x).max(initial=0.0), 1e-30)
        d = np.abs(x - y).max(initial=0.0) / scale
        if d >= worst:
            worst, where = d, k
    print(f"largest relative difference {worst:.3g} in {where}")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
