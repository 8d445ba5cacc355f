#!/usr/bin/python3
"""bench_cnn_torch.py: PyTorch's side of scripts/bench-cnn.sh.

Trains the Fashion-MNIST CNN of configs/fashion-cnn.ini (conv32-bn-relu-pool,
conv64-bn-relu-pool, fc128-relu-fc10; --no-bn drops the batchnorms) with SGD
momentum 0.9, lr 0.05, global batch 128, as shardfit does, and prints one line:

    torch procs=P steps=S samples_per_sec=R [val_acc=A seconds_to_target=T]

    bench_cnn_torch.py DATA.h5 --procs 1|2 --steps S [--epochs E --target ACC]

--procs 2 is DDP over gloo on this host (per-rank batch norm statistics: what
DDP users get). Each process uses one thread (torch.set_num_threads(1)), as
each shardfit rank uses one BLAS thread. With --steps, samples/s is measured
over S steps after 5 warm-up steps. With --epochs, it trains up to E epochs,
evaluating on /test after each, and reports the wall time from the first
step until the validation accuracy first reaches --target.
"""
import argparse
import os
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


def model(bn):
    def block(cin, cout):
        layers = [nn.Conv2d(cin, cout, 3, 1, 1)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        return layers + [nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def load(path, group):
    with h5py.File(path, "r") as f:
        x = f[group + "/images"][()].astype(np.float32) / 255.0
        y = f[group + "/labels"][()].astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def evaluate(net, x, y):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (net(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    net.train()
    return correct / len(x)


def worker(rank, args, out):
    torch.set_num_threads(1)
    procs = args.procs
    if procs > 1:
        dist.init_process_group("gloo", rank=rank, world_size=procs)
    torch.manual_seed(1)
    x, y = load(args.data, "/train")
    net = model(not args.no_bn)
    if procs > 1:
        net = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    per = 128 // procs
    g = torch.Generator().manual_seed(1)

    def step(idx):
        part = idx[rank * per:(rank + 1) * per]
        opt.zero_grad()
        loss_fn(net(x[part]), y[part]).backward()
        opt.step()

    if args.steps:
        perm = torch.randperm(len(x), generator=g)
        for s in range(5):
            step(perm[s * 128:(s + 1) * 128])
        if procs > 1:
            dist.barrier()
        t0 = time.perf_counter()
        for s in range(5, 5 + args.steps):
            step(perm[s * 128:(s + 1) * 128])
        if procs > 1:
            dist.barrier()
        rate = args.steps * 128 / (time.perf_counter() - t0)
        if rank == 0:
            out.put("torch procs=%d steps=%d samples_per_sec=%.0f" % (procs, args.steps, rate))
        return
    xv, yv = load(args.data, "/test")
    t0, reached, acc = time.perf_counter(), None, 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(len(x) // 128):
            step(perm[s * 128:(s + 1) * 128])
        acc = evaluate(net.module if procs > 1 else net, xv, yv)
        if reached is None and acc >= args.target:
            reached = time.perf_counter() - t0
            break
    if rank == 0:
        out.put("torch procs=%d epochs=%d val_acc=%.4f seconds_to_target=%s" %
                (procs, epoch + 1, acc, "%.1f" % reached if reached else "never"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--epochs", type=int, default=0)
    p.add_argument("--target", type=float, default=0.91)
    p.add_argument("--no-bn", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # one port for all ranks
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    if args.procs == 1:
        worker(0, args, out)
    else:
        mp.spawn(worker, args=(args, out), nprocs=args.procs)
    print(out.get())


if __name__ == "__main__":
    main()
