#!/usr/bin/python3
"""`make bench`, part 1: one training step of shardfit against PyTorch and
against the step's floor, written to $BUILD/bench.md.

For each model row (MLP 784-512-256-10, MLP 784-1024-1024-10, the CNN of
configs/fashion-cnn.ini and the same CNN without its two batchnorms, the
convolution issue's network, at global batch 128 on Fashion-MNIST, all with
configs/fashion-mlp.ini's optimizer, SGD momentum 0.9; more with --model)
and each round, back to back:
  - shardfit on 1 rank and on 2 ranks (one run per comm.bucket_mb value in
    BENCH_BUCKETS on 2 ranks, with comm.node_shared off, the allreduce; and
    one with comm.node_shared, the default, for "shared"),
    no validation, no checkpoints: samples/s and
    phase seconds of the steps after WARMUP, taken as the difference of a
    run of WARMUP + steps steps and one of WARMUP (the first steps touch
    fresh memory);
  - PyTorch 1 process 1 thread, and DDP (gloo) on 2 processes
    (scripts/bench_torch.py, same model, data and batch);
  - the limit (build/bench_limit): the step's sgemm calls alone (dense and
    conv layers) on 1 rank x 128 rows and on 2 ranks x 64, SGD-momentum's
    pass over the parameters, MPI_Allreduce of the gradient's bytes on
    2 ranks, and batchnorm's passes over its input as plain vector loops
    (batchnorm_ms).
Every side runs with the same OPENBLAS_CORETYPE (BENCH_CORETYPE) and one
BLAS thread per process. Ratios are taken within a round, then the median
over rounds is reported (the machine is shared: absolute figures drift).

Environment: BUILD (build), BENCH_CORETYPE (the OPENBLAS_CORETYPE for every
side, default SkylakeX), BENCH_ROUNDS (3),
BENCH_STEPS (timed steps per run of the MLPs, default 400; PyTorch's after
20 warm-up steps), BENCH_CNN_STEPS (the CNN's, default 40: a PyTorch step of
it takes about 0.3 s),
BENCH_BUCKETS (space-separated comm.bucket_mb values for 2 ranks, or
"shared" for comm.node_shared; default "0 0.25 1 shared"; "default" leaves
the keys unset), MPIRUN (a launcher taking mpirun options, e.g.
"scripts/netns-cluster.sh mpirun"; default scripts/mpirun-local.sh),
MPIRUN_EXTRA (extra options for scripts/mpirun-local.sh, e.g.
"--mca btl self,tcp"). With MPIRUN set, PyTorch still runs locally.
"""
import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
DATA = "data/fashion-mnist.h5"
CONFIG = "configs/fashion-mlp.ini"
STEPS = int(os.environ.get("BENCH_STEPS", "400"))
CNN_STEPS = int(os.environ.get("BENCH_CNN_STEPS", "40"))
WARMUP = 5  # shardfit steps not timed


def config_layers(path):
    with open(os.path.join(ROOT, path)) as f:
        return next(line.split("=", 1)[1].split(";")[0].strip()
                    for line in f if line.startswith("layers"))


class Model:
    """A row: its layers, and from them the sample shape bench_limit builds
    it for, how many steps each side times and the limit's repetitions
    (about 0.5 s of sgemm on one rank)."""

    def __init__(self, name, layers):
        self.name, self.layers = name, layers
        conv = "conv:" in layers
        self.input = "1x28x28" if conv else "784"
        self.steps = CNN_STEPS if conv else STEPS
        self.reps = 30 if conv else 300


MODELS = [Model("MLP 784-512-256-10", "dense:512 relu dense:256 relu dense:10"),
          Model("MLP 784-1024-1024-10", "dense:1024 relu dense:1024 relu dense:10"),
          Model("CNN (fashion-cnn.ini)", config_layers("configs/fashion-cnn.ini")),
          Model("CNN without batchnorm",
                config_layers("configs/fashion-cnn.ini").replace("batchnorm ", ""))]


def launch(np_, cmd):
    """Command line running cmd on np_ ranks."""
    wrapper = os.environ.get("MPIRUN")
    if wrapper:
        return shlex.split(wrapper) + ["-np", str(np_), "-x", "OPENBLAS_CORETYPE",
                                       "-x", "OPENBLAS_NUM_THREADS"] + cmd
    return ["scripts/mpirun-local.sh", str(np_)] + cmd


def run(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"bench_step: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def kv(line):
    return {k: float(v) for k, v in (w.split("=") for w in line.split())}


def limit(model, np_):
    out = run(launch(np_, [f"{BUILD}/bench_limit", model.layers, model.input, "128",
                           str(model.reps)]))
    return kv(out.strip().splitlines()[-1])


def cpu_of(cmd):
    """Children's CPU seconds (user + system) spent running cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def train_cmd(layers, steps, d, more=None):
    """shardfit train of steps steps of layers, logging into d: no
    validation, no checkpoints; more: further keys and their values."""
    sets = {"model.layers": layers, "log.progress": "none", "log.dir": d,
            "checkpoint.every_epochs": "0", "checkpoint.resume": "never",
            "checkpoint.dir": d + "/ckpt", "data.val_features": "",
            "data.val_labels": "", "train.epochs": "1", "data.path": DATA,
            "train.max_steps": str(steps)}
    sets.update(more or {})
    cmd = [f"{BUILD}/shardfit", "train", CONFIG]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def shardfit_cpu(model):
    """CPU ms per step of one rank (a singleton, no mpirun): the CPU time of
    WARMUP + steps steps minus that of WARMUP, so start-up and loading
    cancel."""
    t = []
    for steps in (WARMUP + model.steps, WARMUP):
        with tempfile.TemporaryDirectory() as d:
            t.append(cpu_of(train_cmd(model.layers, steps, d)))
    return 1e3 * (t[0] - t[1]) / model.steps


PHASES = ("step", "forward", "backward", "optimizer", "allreduce", "data")


def shardfit_run(layers, np_, steps, bucket_mb, trace=False):
    """The first epoch's metrics of a run of steps steps; with trace, also
    the trace's per-rank summary (its otherData "ranks") of the steps after
    WARMUP."""
    with tempfile.TemporaryDirectory() as d:
        more = {}
        if bucket_mb == "shared":  # comm.node_shared, whose bucket_mb is 0
            more["comm.node_shared"] = "true"
        elif bucket_mb not in (None, "default"):
            # the allreduce: node_shared (the default) would take bucket_mb 0
            more["comm.bucket_mb"] = str(bucket_mb)
            more["comm.node_shared"] = "false"
        if trace:
            more["log.trace"] = "trace.json"
            more["log.trace_steps"] = f"{WARMUP + 1}:{steps}"
        run(launch(np_, train_cmd(layers, steps, d, more)))
        with open(os.path.join(d, "metrics.jsonl")) as f:
            metrics = [json.loads(line) for line in f][-1]
        if not trace:
            return metrics, None
        with open(os.path.join(d, "trace.json")) as f:
            return metrics, json.load(f)["otherData"]["ranks"]


def shardfit(model, np_, bucket_mb=None):
    """Rank 0's ms per step in each phase over the steps after WARMUP, and
    samples/s from the step time (128 samples a step). On more ranks, from
    the long run's trace: the longest wait per step of any rank in
    collectives for the last rank to arrive (wait_ms: the faster rank's,
    whichever it is), and the slowest rank's compute per step over the
    fastest one's (spread)."""
    long, ranks = shardfit_run(model.layers, np_, WARMUP + model.steps, bucket_mb,
                               trace=np_ > 1)
    short, _ = shardfit_run(model.layers, np_, WARMUP, bucket_mb)
    per = {k: 1e3 * (long[k + "_seconds"] - short[k + "_seconds"]) / model.steps
           for k in PHASES}
    r = {k + "_ms": v for k, v in per.items()}
    r["sps"] = 128e3 / per["step"]
    r["wait_ms"], r["spread"] = None, None  # no trace: "-" in the table
    if ranks:
        compute = [x["compute_ms_per_step"] for x in ranks]
        r["wait_ms"] = max(x["wait_ms_per_step"] for x in ranks)
        r["spread"] = max(compute) / min(compute) if min(compute) > 0 else 1.0
    return r


def torch(model, procs):
    out = run(["/usr/bin/python3", "scripts/bench_torch.py", "--layers", model.layers,
               "--data", DATA, "--steps", str(model.steps), "--procs", str(procs)])
    return kv(out.strip().splitlines()[-1])


def med(xs):
    return statistics.median(xs)


def traced(xs, digits):
    """The median of a trace's figure over rounds, or "-" where the run
    was not traced (1 rank)."""
    return "-" if None in xs else f"{med(xs):.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[],
                    help="extra row: 'NAME=LAYERS'")
    ap.add_argument("--out", default=os.path.join(BUILD, "bench.md"))
    args = ap.parse_args()
    # The machine's environment may preset another (this one sets Haswell).
    os.environ["OPENBLAS_CORETYPE"] = os.environ.get("BENCH_CORETYPE", "SkylakeX")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    # 2-rank candidates: comm.bucket_mb values, and "shared" for
    # comm.node_shared; the best of them makes the "ours 2" column.
    buckets = os.environ.get("BENCH_BUCKETS", "0 0.25 1 shared").split()
    models = MODELS + [Model(*m.split("=", 1)) for m in args.model]
    if not os.path.exists(os.path.join(ROOT, DATA)):
        with tempfile.TemporaryDirectory() as d:
            run(["env", f"BUILD={BUILD}", "NP=1", "scripts/run-fashion.sh",
                 "--set", "train.max_steps=1", "--set", "log.progress=none",
                 "--set", f"log.dir={d}", "--set", f"checkpoint.dir={d}/ckpt"])
    rows = []
    for model in models:
        res = []
        for r in range(rounds):
            x = {"lim1": limit(model, 1), "lim2": limit(model, 2),
                 "ours1": shardfit(model, 1)}
            x["ours1"]["cpu_step_ms"] = shardfit_cpu(model)
            for b in buckets:
                x["ours2_" + b] = shardfit(model, 2, b)
            x["torch1"] = torch(model, 1)
            x["ddp"] = torch(model, 2)
            res.append(x)
            print(f"bench_step: {model.name} round {r + 1}: " + ", ".join(
                f"{k} {v.get('sps', v.get('samples_per_sec', 0)):.0f}"
                for k, v in x.items() if "lim" not in k), file=sys.stderr)
        rows.append((model.name, model.layers, res))
    write(args.out, rows, buckets, rounds)
    print(open(args.out).read())


def write(path, rows, buckets, rounds):
    core = os.environ["OPENBLAS_CORETYPE"]
    launcher = os.environ.get("MPIRUN") or "scripts/mpirun-local.sh " + os.environ.get("MPIRUN_EXTRA", "")
    L = [f"# shardfit step benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC",
         "",
         f"{os.cpu_count()} cores, OPENBLAS_CORETYPE={core}, 1 BLAS thread per process, "
         f"global batch 128, Fashion-MNIST; launcher `{launcher.strip()}`; medians of "
         f"{rounds} rounds, ratios taken within each round. samples/s.",
         "Limits: 1 rank = 128 / (the step's sgemm calls alone); 2 ranks = 128 / "
         "(sgemm at 64 rows + MPI_Allreduce of the gradient), and with the allreduce "
         "fully hidden = 128 / sgemm at 64 rows; each the mean wall time over "
         "its repetitions, as shardfit's samples/s is the mean over its steps. "
         "limit1+BN adds to the 1-rank limit batchnorm's passes over its input as "
         "shardfit makes them, each after a sum over the global batch (forward: x; "
         "backward: x and dy, then x and dy into din), timed as plain vector loops "
         "on tensors of the same size (bench_limit's batchnorm_ms): how near a CNN "
         "with batchnorm is to GEMM plus what its statistics cost at memory speed.", ""]
    best = lambda x: max(buckets, key=lambda b: x["ours2_" + b]["sps"])
    L.append("| model | ours 1 | PyTorch 1 | ours 2 (bucket_mb or shared) | DDP 2 | limit 1 | limit 2 | "
             "limit 2, hidden | ours1/PyTorch1 | ours2/DDP | ours1/limit1 | ours2/limit2 | "
             "ours1/(limit1+BN) |")
    L.append("|---" * 13 + "|")
    for name, layers, res in rows:
        lim1 = [128e3 / x["lim1"]["gemm_ms"] for x in res]
        lim2 = [128e3 / (x["lim2"]["gemm_ms"] + x["lim2"]["allreduce_ms"]) for x in res]
        lim2h = [128e3 / x["lim2"]["gemm_ms"] for x in res]
        lim1bn = [128e3 / (x["lim1"]["gemm_ms"] + x["lim1"].get("batchnorm_ms", 0.0))
                  for x in res]
        o1 = [x["ours1"]["sps"] for x in res]
        o2 = [x["ours2_" + best(x)]["sps"] for x in res]
        t1 = [x["torch1"]["samples_per_sec"] for x in res]
        d2 = [x["ddp"]["samples_per_sec"] for x in res]
        bs = statistics.mode([best(x) for x in res])
        L.append(f"| {name} | {med(o1):.0f} | {med(t1):.0f} | {med(o2):.0f} ({bs}) | "
                 f"{med(d2):.0f} | {med(lim1):.0f} | {med(lim2):.0f} | {med(lim2h):.0f} | "
                 f"{med([a / b for a, b in zip(o1, t1)]):.2f} | "
                 f"{med([a / b for a, b in zip(o2, d2)]):.2f} | "
                 f"{med([a / b for a, b in zip(o1, lim1)]):.2f} | "
                 f"{med([a / b for a, b in zip(o2, lim2)]):.2f} | "
                 f"{med([a / b for a, b in zip(o1, lim1bn)]):.2f} |")
    L += ["", "## One rank by CPU time per step (robust when other jobs load the machine)", "",
          "shardfit: CPU time of a singleton run of WARMUP + the row's steps minus one of WARMUP; "
          "PyTorch: its process CPU time over the timed steps; GEMM: the limit "
          "program's median thread CPU time (gemm_cpu_ms).", "",
          "| model | ours ms | PyTorch ms | GEMM ms | ours/PyTorch (speed) | "
          "ours/limit (speed) | non-GEMM share of ours |",
          "|---" * 7 + "|"]
    for name, layers, res in rows:
        oc = [x["ours1"]["cpu_step_ms"] for x in res]
        tc = [x["torch1"]["cpu_step_ms"] for x in res]
        gm = [x["lim1"].get("gemm_cpu_ms", x["lim1"]["gemm_ms"]) for x in res]
        L.append(f"| {name} | {med(oc):.3f} | {med(tc):.3f} | {med(gm):.3f} | "
                 f"{med([t / o for o, t in zip(oc, tc)]):.2f} | "
                 f"{med([g / o for o, g in zip(oc, gm)]):.2f} | "
                 f"{100 * med([1 - g / o for o, g in zip(oc, gm)]):.0f}% |")
    L += ["", "## shardfit on 2 ranks by comm.bucket_mb, and comm.node_shared "
          "(samples/s, median)", "",
          "| model | " + " | ".join("node_shared" if b == "shared" else f"bucket_mb {b}"
                                   for b in buckets) + " |",
          "|---" * (len(buckets) + 1) + "|"]
    for name, layers, res in rows:
        L.append(f"| {name} | " + " | ".join(
            f"{med([x['ours2_' + b]['sps'] for x in res]):.0f}" for b in buckets) + " |")
    L += ["", "## Step breakdown (ms per step, medians)", "",
          "GEMM and the unhidden allreduce (mean wall time after a barrier) are the "
          "limit program's figures for the same shapes; the rest is shardfit's own "
          "(rank 0's phase timers, metrics.jsonl): elementwise is forward + "
          "backward - GEMM (activations, loss, bias, im2col and col2im, batchnorm "
          "and pooling, batchnorm's statistics sum across ranks, and GEMM slower "
          "in situ than alone); optimizer is its pass as it runs "
          "in the step; allreduce exposed is the wait after backward (ranks "
          "arriving apart included), hidden = allreduce alone - exposed; the "
          "step's remainder after these columns is the gradient's zeroing before "
          "forward and bookkeeping. From the "
          "2-rank run's trace (log.trace over the timed steps): waiting is the "
          "most any rank spent per step in collectives (the allreduce, "
          "batchnorm's sums, the loader's exchange) until the last rank "
          "arrived (in rank 0's columns before it when rank 0 is the one "
          "waiting, else in its compute); spread is the slowest rank's compute per step "
          "(data, forward, backward, optimizer) over the fastest one's, "
          "which on identical work says how unequal the cores are (\"-\" on 1 "
          "rank: not traced).", "",
          "| model | ranks | step | GEMM | elementwise | optimizer | allreduce exposed | "
          "allreduce hidden | data | non-GEMM share | waiting | spread |",
          "|---" * 12 + "|"]
    for name, layers, res in rows:
        for ranks in (1, 2):
            key = "ours1" if ranks == 1 else None
            step, gemm, opt, exp, hid, data, elem = [], [], [], [], [], [], []
            wait, spread = [], []
            for x in res:
                o = x[key] if key else x["ours2_" + best(x)]
                lim = x["lim1" if ranks == 1 else "lim2"]
                step.append(o["step_ms"])
                gemm.append(lim["gemm_ms"])
                opt.append(o["optimizer_ms"])
                exp.append(o["allreduce_ms"])
                hid.append(max(0.0, lim["allreduce_ms"] - o["allreduce_ms"]))
                data.append(o["data_ms"])
                elem.append(o["forward_ms"] + o["backward_ms"] - lim["gemm_ms"])
                wait.append(o.get("wait_ms"))
                spread.append(o.get("spread"))
            share = [1 - g / s for g, s in zip(gemm, step)]
            L.append(f"| {name} | {ranks} | {med(step):.3f} | {med(gemm):.3f} | "
                     f"{med(elem):.3f} | {med(opt):.3f} | {med(exp):.3f} | "
                     f"{med(hid):.3f} | {med(data):.3f} | {100 * med(share):.0f}% | "
                     f"{traced(wait, 3)} | {traced(spread, 2)} |")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
