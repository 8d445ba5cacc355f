#!/usr/bin/python3
"""PyTorch on shardfit's workload, for `make bench` (scripts/bench-step.sh).

    scripts/bench_torch.py --layers "dense:512 relu dense:256 relu dense:10" \
        --data data/fashion-mnist.h5 [--batch 128] [--steps 300] [--procs 1|2]

Builds the model of a shardfit `layers` string (dense:N, relu, tanh, sigmoid,
dropout:R, conv:F:K[:S[:P]], maxpool:K[:S], avgpool:K[:S], flatten, batchnorm;
a dense layer flattens an image input, as shardfit's does), reads the same
features and labels into memory as uint8, and trains as shardfit's config
does: SGD momentum 0.9, lr 0.05, cross-entropy, global batch --batch drawn
from a per-epoch permutation, features scaled by 1/255 as each batch is
gathered. --procs 1 is one process; --procs 2 is DistributedDataParallel
over gloo with each process taking its half of every global batch (as
shardfit's ranks do). One intra-op thread per process (torch.set_num_threads).
Prints one line: procs=P samples_per_sec=X step_ms=Y median_step_ms=Z
cpu_step_ms=C (rank 0's process CPU time per step: on a machine other jobs
load, the figure that still compares). Timing starts after a warm-up of 20
steps.
"""
import argparse
import os
import socket
import sys
import time

# One BLAS/OpenMP thread, as shardfit's ranks, before torch loads them.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shardfit_torch import LayersError, fresh_sequential, parse_layers  # noqa: E402


def worker(rank, args, feats, labels):
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    procs = args.procs
    if procs > 1:
        dist.init_process_group("gloo", rank=rank, world_size=procs)
    shape = feats.shape[1:]
    if len(shape) == 2:
        shape = (1,) + shape
    elif len(shape) == 1:
        shape = (shape[0], 1, 1)
    conv = any(t.split(":")[0] in ("conv", "maxpool", "avgpool") for t in args.layers.split())
    model = fresh_sequential(args.layers, shape)
    if procs > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x_all = torch.from_numpy(feats)
    y_all = torch.from_numpy(labels.astype(np.int64))
    n, b = len(x_all), args.batch
    steps_per_epoch = n // b
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(n, generator=gen)
    lo, hi = rank * b // procs, (rank + 1) * b // procs
    total = 20 + args.steps
    times = []
    for s in range(total):
        if s == 20:
            if procs > 1:
                dist.barrier()
            t0 = time.perf_counter()
            c0 = time.process_time()
        ts = time.perf_counter()
        e, i = divmod(s, steps_per_epoch)
        if i == 0 and s:
            perm = torch.randperm(n, generator=gen)
        idx = perm[i * b + lo:i * b + hi]
        x = x_all[idx].float().mul_(1.0 / 255.0)
        x = x.reshape((len(idx),) + tuple(shape)) if conv else x.reshape(len(idx), -1)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y_all[idx])
        loss.backward()
        opt.step()
        if s >= 20:
            times.append(time.perf_counter() - ts)
    if procs > 1:
        dist.barrier()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    times.sort()
    if rank == 0:
        print(f"procs={procs} samples_per_sec={args.steps * b / dt:.0f} "
              f"step_ms={1e3 * dt / args.steps:.4f} "
              f"median_step_ms={1e3 * times[len(times) // 2]:.4f} "
              f"cpu_step_ms={1e3 * cpu / args.steps:.4f}", flush=True)
    if procs > 1:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--features", default="/train/images")
    p.add_argument("--labels", default="/train/labels")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    try:
        parse_layers(args.layers)
    except LayersError as e:
        sys.exit(f"bench_torch: {e}")
    with h5py.File(args.data, "r") as f:
        feats = f[args.features][:]
        labels = f[args.labels][:]
    if args.procs == 1:
        worker(0, args, feats, labels)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    mp.spawn(worker, args=(args, feats, labels), nprocs=args.procs)


if __name__ == "__main__":
    main()
