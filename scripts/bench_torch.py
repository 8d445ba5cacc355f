#!/usr/bin/python3
"""PyTorch on shardfit's workload, for `make bench` (scripts/bench_step.py
and scripts/bench-cnn.sh).

    scripts/bench_torch.py --layers "dense:512 relu dense:256 relu dense:10" \
        --data data/fashion-mnist.h5 [--batch 128] [--steps 300] [--procs N]
        [--warmup 20] [--epochs E --target ACC]

Builds the model of a shardfit `layers` string (dense:N, relu, tanh, sigmoid,
dropout:R, conv:F:K[:S[:P]], maxpool:K[:S], avgpool:K[:S], flatten, batchnorm;
a dense layer flattens an image input, as shardfit's does), reads the same
features and labels into memory as uint8, and trains as shardfit's config
does: SGD momentum 0.9, lr 0.05, cross-entropy, global batch --batch drawn
from a per-epoch permutation, features scaled by 1/255 as each batch is
gathered. --procs 1 is one process; --procs N > 1 is DistributedDataParallel
over gloo with each process taking its slice of every global batch (as
shardfit's ranks do; batch norm then uses per-process statistics, which is
what DDP users get on CPUs). One intra-op thread per process
(torch.set_num_threads).

Throughput (the default): prints one line: procs=P samples_per_sec=X
step_ms=Y median_step_ms=Z cpu_step_ms=C (rank 0's process CPU time per
step: on a machine other jobs load, the figure that still compares). Timing
starts after --warmup steps (default 20).

Time to target (--epochs E --target ACC): trains up to E epochs, evaluating
on --val-features/--val-labels (default the test set) after each, and prints
procs=P epochs=E val_acc=A seconds_to_target=T (wall time from the first
step until the validation accuracy first reached ACC, evaluations included;
"never" if it did not).
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


def throughput(rank, args, step):
    procs, b, w = args.procs, args.batch, args.warmup
    times = []
    for s in range(w + args.steps):
        if s == w:
            if procs > 1:
                dist.barrier()
            t0 = time.perf_counter()
            c0 = time.process_time()
        ts = time.perf_counter()
        step(s)
        if s >= w:
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


def accuracy(net, feats, labels, shape, conv):
    """Fraction of (feats, labels) net classifies right, in eval mode."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(feats), 1000):
            x = torch.from_numpy(feats[i:i + 1000]).float().mul_(1.0 / 255.0)
            x = x.reshape((len(x),) + tuple(shape)) if conv else x.reshape(len(x), -1)
            y = torch.from_numpy(labels[i:i + 1000].astype(np.int64))
            correct += (net(x).argmax(1) == y).sum().item()
    net.train()
    return correct / len(feats)


def to_target(rank, args, model, step, steps_per_epoch, shape, conv, val):
    """Up to args.epochs epochs, validating after each on rank 0 (which
    tells the others whether to go on), until args.target is reached."""
    procs = args.procs
    net = model.module if procs > 1 else model
    if procs > 1:
        dist.barrier()
    t0 = time.perf_counter()
    reached, acc, epoch = None, 0.0, 0
    for epoch in range(1, args.epochs + 1):
        for s in range((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch):
            step(s)
        flag = torch.zeros(1, dtype=torch.float64)
        if rank == 0:
            flag[0] = accuracy(net, val[0], val[1], shape, conv)
        if procs > 1:
            dist.broadcast(flag, 0)
        acc = float(flag[0])
        if acc >= args.target:
            reached = time.perf_counter() - t0
            break
    if rank == 0:
        print(f"procs={procs} epochs={epoch} val_acc={acc:.4f} seconds_to_target="
              + (f"{reached:.1f}" if reached is not None else "never"), flush=True)


def worker(rank, args, feats, labels, val):
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

    def step(s):
        nonlocal perm
        i = s % steps_per_epoch
        if i == 0 and s:
            perm = torch.randperm(n, generator=gen)
        idx = perm[i * b + lo:i * b + hi]
        x = x_all[idx].float().mul_(1.0 / 255.0)
        x = x.reshape((len(idx),) + tuple(shape)) if conv else x.reshape(len(idx), -1)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y_all[idx])
        loss.backward()
        opt.step()

    if args.epochs:
        to_target(rank, args, model, step, steps_per_epoch, shape, conv, val)
    else:
        throughput(rank, args, step)
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
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--epochs", type=int, default=0,
                   help="time to --target instead of throughput, up to this many epochs")
    p.add_argument("--target", type=float, default=0.91)
    p.add_argument("--val-features", default="/test/images")
    p.add_argument("--val-labels", default="/test/labels")
    args = p.parse_args()
    try:
        parse_layers(args.layers)
    except LayersError as e:
        sys.exit(f"bench_torch: {e}")
    with h5py.File(args.data, "r") as f:
        feats = f[args.features][:]
        labels = f[args.labels][:]
        val = (f[args.val_features][:], f[args.val_labels][:]) if args.epochs else None
    if args.procs == 1:
        worker(0, args, feats, labels, val)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    mp.spawn(worker, args=(args, feats, labels, val), nprocs=args.procs)


if __name__ == "__main__":
    main()
