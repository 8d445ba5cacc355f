"""scale_model.py: the performance model behind `scripts/scale --project`.

A data-parallel step on P ranks with global batch B and a gradient of n bytes
is modelled as

    step(P) = compute(P, ceil(B / P)) + allreduce(P, n) + exchange(P)
              + delay(P)
    allreduce(P, n) = 2 (P - 1) alpha + 2 (P - 1) / P * n * beta   (a ring)

compute(P, b) is what a rank spends on data, forward, backward and the
optimizer for its share b, with no communication, measured: P independent
1-rank trainings of batch b at once on the sweep's machine (local, and the
namespace hosts, which all run on this machine), so shared cores, caches
and memory count; one alone for a hostfile, whose nodes have their own
cores. c(P) is that time against one such run alone (the formula
max(1, ranks x threads / cores) said 1 for 2 ranks on 2 cores, where they
computed 10-20% slower). Scaling the 1-rank point down instead,
o + s b with o the per-step cost that does not shrink with P (the optimizer
updates every weight on every rank) and s the time per sample, missed the
2-rank compute by 10-30%: smaller GEMMs run slower per sample. The projection
still uses o and s, from the sweep's 1-rank points. exchange(P) is the
shard loader's alltoallv of the step's samples, in which a rank receives
the (P - 1) / P of its share that other ranks hold, and delay(P) what the
step's meetings cost beyond the collectives themselves when the ranks
compute between them. Both come from one run of `bench-comm --compute-us
U1,U2 --exchange-bytes E --allreduce-bytes n`, which lays an iteration
out as a step: U1 of work (forward and backward's part of the point's
compute alone), the exchange of E bytes, U2 (the optimizer and the
gather), the gradient's allreduce; it prints the exchange alone and the
delay per iteration (synced less the work alone and less both
collectives alone). bench-comm's curve has every rank inside MPI at once;
in training, with more ranks than cores, a rank still in a collective
shares its core with one already back at work and waits for the
scheduler (1-2 ms per exchange at 3 and 4 hosts on 2 cores, against
0.04-0.2 ms of latency), and the large sum itself ran slower than on the
curve (3 hosts: 8.7-9.4 ms in the steps against 5.7-7.4 ms). Before, the
exchange was a latency per peer, min(P - 1, B / P) alpha, and the delay
that of an 8-byte allreduce after U, counted twice; the traces of 4-host
points showed the exchange alone taking 0.1-0.9 ms after the last rank
arrived, against the 0.06-0.08 ms so modelled. Without the
dataset file (to size a sample) the model falls back to that. With
--repeat R every calibration runs R times and its median is used, as the
points' medians are what it predicts.

alpha and beta come from `shardfit bench-comm` run at every P of the sweep
over the same hosts, because the same link costs more per byte at 3 ranks
than at 2 (more hops, and on one machine more processes per core). Each
run gives t(n) = A + B n by fit_line; a ring gives alpha = A / (2 (P - 1)),
beta = B P / (2 (P - 1)). Measured points are predicted with their own P's
fit; the projection uses the largest P's alpha, and beta either from that
fit ("measured") or from a link's nominal rate. With overlap the allreduce
runs while backward goes on, so up to the backward time of the step hides:
step = o + s b + max(0, AR - backward(b)).

A point whose ranks summed the gradient in node-shared memory
(comm.node_shared, the default; its summary.json says "gradient_sum":
"node_shared") ran no allreduce of the whole gradient: its sum is priced
by `bench-comm --shared` over its hosts and P (the same sum: on several
hosts each rank's slice summed on its host, then across hosts), t = A + B
n as measured (no ring), and its ranks each updated 1/L of the weights (L
ranks a host), so its compute is the co-located runs' less (1 - 1/L) of
the 1-rank optimizer.

The projection to many nodes sums by allreduce, whatever the sweep did. It
keeps each node's share b of the batch (a fixed global batch runs out of
samples per node long before 1024 nodes), gives each node its own cores
(c = 1), and compares P nodes with one node computing the same share.
"""
import csv
import math
import os
import re

import numpy as np

LINKS_GBPS = [10, 25, 100]
NODES = [8, 16, 32, 64, 128, 256, 512, 1024]
# bench-comm sizes that fix each parameter: latency from the small ones,
# bandwidth from the large ones.
SMALL_BYTES = 16 << 10
LARGE_BYTES = 256 << 10


def fit_line(x, t):
    """t = A + B x from a bench-comm curve; returns (A, B), both >= 0.

    A least-squares line through the whole curve is not what a link does: on
    TCP links small messages ride in a burst the rate limiter lets through, so
    the curve bends, and a line fitted to all of it came out with a negative
    A and half the real B (it under-predicted a 2 MiB allreduce by 60%).
    Instead B is the median of (t - t_small) / x over the sizes of at least
    256 KiB (the bandwidth regime; the median ignores one slow size), and A
    the smallest t - B x over the sizes up to 16 KiB (the latency, with the
    bytes' own time taken out), but never less than t / 2 for a size: on a
    rate-limited link small messages pass in the limiter's burst and do not
    pay B x (there "smallest positive" picked a 7 us latency out of 170 us)."""
    x = np.asarray(x, float)
    t = np.asarray(t, float)
    order = np.argsort(x)
    x, t = x[order], t[order]
    small = x <= max(SMALL_BYTES, x[0])
    large = x >= LARGE_BYTES
    if large.sum() < 2:
        large = x >= x[len(x) // 2]
    floor = float(t[small].min())
    b = max(0.0, float(np.median((t[large] - floor) / x[large])))
    a = float(np.maximum(t[small] - b * x[small], t[small] / 2).min())
    return a, b


def ring_params(a, b, p):
    """alpha per ring step and beta per byte on a link, from t = a + b n
    measured at p ranks."""
    return a / (2.0 * (p - 1)), b * p / (2.0 * (p - 1))


def allreduce_s(p, nbytes, alpha, beta):
    if p <= 1:
        return 0.0
    return max(0.0, 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * nbytes * beta)


def calibrate(points):
    """From the 1-rank points (median over repeats, keyed (B, 1)): o and s in
    seconds, and backward seconds per sample. None without a 1-rank point."""
    ones = [p for (b, r), p in points.items() if r == 1]
    if not ones:
        return None
    bs = np.array([p["batch_size"] for p in ones], float)
    # The 1-rank step less its (trivial) allreduce; data, forward, backward
    # per sample, the optimizer per step.
    t = np.array([(p["step_ms"] - p["allreduce_ms"]) * 1e-3 for p in ones])
    opt = np.mean([p["optimizer_ms"] * 1e-3 for p in ones])
    if len(set(bs)) >= 2:
        o, s = np.polyfit(bs, t, 1)[::-1]
        if o < 0:
            o, s = 0.0, float(np.sum(t * bs) / np.sum(bs * bs))
    else:
        o = opt
        s = float(np.mean((t - o) / bs))
    bwd = float(np.mean([p["backward_ms"] * 1e-3 / p["batch_size"] for p in ones]))
    # The part of a step's compute between the shard loader's exchange and
    # the allreduce: all but the optimizer and the gather (data), which come
    # after the allreduce.
    fb = float(np.mean([1.0 - (p.get("optimizer_ms", 0.0) + p.get("data_ms", 0.0)) /
                        max(1e-9, p["step_ms"] - p["allreduce_ms"]) for p in ones]))
    return {"o": float(o), "s": float(s), "backward_per_sample": bwd,
            "fb_share": min(1.0, max(0.0, fb)), "optimizer": float(opt)}


def node_shared(point):
    """Whether a point summed its gradient in node-shared memory."""
    return point.get("gradient_sum") == "node_shared"


def shared_update_saving(cal, point):
    """Seconds of optimizer a rank of a node-shared point does not spend:
    it updates 1/L of the weights (L ranks on its host), the 1-rank runs all
    of them."""
    local = point["ranks"] / max(1, point.get("hosts") or 1)
    return cal["optimizer"] * (1.0 - 1.0 / max(1.0, local))


def on_this_machine(hosts):
    """Whether the sweep's ranks all share this machine's cores: local, and
    the namespace hosts (netns, netns:L), which all run here."""
    return re.fullmatch(r"local|netns(:[1-9][0-9]*)?", hosts) is not None


def contention(hosts, p, threads, cores=None):
    """c(P): how much slower a rank computes because the sweep's ranks share
    one machine's cores. Only local and netns ranks are known to share."""
    if not on_this_machine(hosts):
        return 1.0
    cores = cores or len(os.sched_getaffinity(0))
    return max(1.0, p * threads / cores)


def measure_compute(a, points, colocate, threads):
    """Compute seconds per step of every multi-rank point (b, P), without
    communication: P independent 1-rank trainings at once, each of the
    point's per-rank batch, on the sweep's machine (local, netns), or one
    alone for a hostfile's nodes, which have their own cores. The median of
    --repeat runs of each. Measured at the point's own share, not scaled
    from the 1-rank point: a rank's 64 samples cost more than half of 128
    (smaller GEMMs), which the linear fit missed by 10-30% at 2 ranks.
    Returns ({(b, P): seconds}, {(b, P): c(P)}, how); c(P) is that time
    against one such run alone, and the formula contention() where a run
    failed (then the time is c(P) (o + s share) from the caller)."""
    shared = on_this_machine(a.hosts)
    if colocate is None:
        return {}, {k: contention(a.hosts, k[1], threads) for k in points}, "formula"
    print("[model] compute alone at each point's per-rank batch (%s, no "
          "communication) ..." % ("co-located 1-rank runs" if shared else "1-rank runs"),
          end=" ", flush=True)

    def median_of(copies, share):
        ts = [colocate(a, copies, share, rep) for rep in range(a.repeat)]
        ts = [t for t in ts if t]
        return float(np.median(ts)) * 1e-3 if ts else None

    solo, comp, cont, how = {}, {}, {}, "measured"
    for (b, p), pt in sorted(points.items()):
        if p < 2:
            continue
        share = pt.get("per_rank_batch") or math.ceil(b / p)
        if share not in solo:
            solo[share] = median_of(1, share)
        t = median_of(p, share) if shared else solo[share]
        if t and solo[share]:
            comp[(b, p)], cont[(b, p)] = t, t / solo[share]
        else:
            cont[(b, p)], how = contention(a.hosts, p, threads), "formula (a run failed)"
    print(", ".join("c(%d) = %.2f at %d a rank" % (p, c, points[(b, p)].get(
        "per_rank_batch") or math.ceil(b / p)) for (b, p), c in sorted(cont.items())),
        flush=True)
    return comp, cont, how


def step_s(cal, p, batch, nbytes, alpha, beta, overlap=False, contend=1.0,
           exchange=0.0):
    share = math.ceil(batch / p)
    ar = allreduce_s(p, nbytes, alpha, beta)
    compute = contend * (cal["o"] + cal["s"] * share)
    if overlap:
        return compute + exchange + max(0.0, ar - contend * cal["backward_per_sample"] * share)
    return compute + exchange + ar


def shared_max(nbytes):
    """bench-comm --shared's largest size: the gradient's, rounded up to a
    power of two, times 4 (at least 1 MiB): every rank maps a slot of it."""
    return str(max(1 << 20, 4 << max(0, int(nbytes - 1).bit_length())))


def run_bench_comm(a, p, launcher, shardfit, run, shared_bytes=None):
    """bench-comm over p ranks of the sweep's hosts, --repeat times, each
    size's time the median over the runs (one run's curve jumped 30% between
    neighbouring sizes on the 2-core machine); ((A, B), None) or (None,
    message). With shared_bytes (the gradient's), the node-shared sum's
    curve (--shared) up to a few times that."""
    curves = []
    what = "bench-comm --shared" if shared_bytes else "bench-comm"
    print("[model] shardfit %s on %d ranks%s ..." %
          (what, p, " x %d" % a.repeat if a.repeat > 1 else ""), end=" ", flush=True)
    for r in range(a.repeat):
        name = "bench-comm%s-p%d%s" % ("-shared" if shared_bytes else "", p,
                                       "-r%d" % r if a.repeat > 1 else "")
        out = os.path.abspath(os.path.join(a.out, name + ".csv"))
        cmd = launcher(a.hosts, p) + [shardfit(), "bench-comm", "--csv", out, "--max",
                                        shared_max(shared_bytes) if shared_bytes else
                                        a.comm_max] + (["--shared"] if shared_bytes else [])
        status, text = run(cmd, os.path.join(a.out, name + ".txt"), a.timeout)
        if status != 0:
            print("FAILED")
            return None, "%s on %d ranks failed (exit %d), see %s.txt" % (
                what, p, status, name)
        with open(out) as f:
            curves.append({float(r["bytes"]): float(r["median_s"]) for r in csv.DictReader(f)})
    sizes = sorted(set.intersection(*(set(c) for c in curves)))
    A, B = fit_line(sizes, [float(np.median([c[n] for c in curves])) for n in sizes])
    print("A %.1f us, B %.3g ns/byte" % (A * 1e6, B * 1e9), flush=True)
    return (A, B), None


def run_step_comm(a, p, work, exchange, nbytes, ar_s, launcher, shardfit, run,
                  shared=False):
    """What a step's collectives cost when the ranks compute between them:
    `bench-comm --compute-us U1,U2 --exchange-bytes E --allreduce-bytes N`
    lays an iteration out as a step, work = (U1, U2) seconds before and
    after the shard loader's exchange of `exchange` bytes (0: none), then
    the gradient's allreduce of nbytes (about ar_s seconds by the curve,
    which sets how many iterations fit in about half a second), and the
    step's communication is synced - free, that iteration less the same
    work without collectives. Returns (that, the exchange alone back to
    back), in seconds, each the median of --repeat runs; None if every run
    failed. shared: the node-shared sum (--shared) instead of the
    allreduce. On this machine it differs from the curve's allreduce plus the
    exchange both ways: with more ranks than cores a rank still in a
    collective waits for a core that another rank, back to computing,
    holds; over a rate-limited link the work between steps lets the
    limiter's burst refill, so a step's collectives ride in it, faster than
    back to back."""
    cs, xs = [], []
    u1, u2 = work
    iters = int(min(100, max(10, 0.5 / max(1e-6, u1 + u2 + ar_s))))
    for r in range(a.repeat):
        name = "sync%s-p%d-%.0fus%s" % ("-shared" if shared else "", p, (u1 + u2) * 1e6,
                                        "-r%d" % r if a.repeat > 1 else "")
        cmd = launcher(a.hosts, p) + [shardfit(), "bench-comm", "--compute-us",
                                        "%.1f,%.1f" % (u1 * 1e6, u2 * 1e6), "--repeat",
                                        str(iters), "--allreduce-bytes", str(nbytes)]
        if shared:
            cmd.append("--shared")
        if exchange:
            cmd += ["--exchange-bytes", str(exchange)]
        status, text = run(cmd, os.path.join(a.out, name + ".txt"), a.timeout)
        v = dict(re.findall(r"(\w+)=(-?[0-9.]+)", text or ""))
        if status == 0 and {"free_us", "synced_us", "exchange_us"} <= set(v):
            cs.append((float(v["synced_us"]) - float(v["free_us"])) * 1e-6)
            xs.append(float(v["exchange_us"]) * 1e-6)
    if not cs:
        return None
    return float(np.median(cs)), float(np.median(xs))


def point_config(point):
    """(loader, BLAS threads, {data key: value}) of a point, from the
    config.ini of its run."""
    loader, threads, section, data = "shard", 1, "", {}
    try:
        with open(os.path.join(point["dir"], "config.ini")) as f:
            for line in f:
                line = line.split(";", 1)[0].strip()
                if line.startswith("["):
                    section = line.strip("[]")
                elif "=" in line:
                    k, v = (s.strip() for s in line.split("=", 1))
                    if section == "data":
                        data[k] = v
                    if (section, k) == ("data", "loader") and v:
                        loader = v
                    elif (section, k) == ("train", "threads") and v.isdigit():
                        threads = max(1, int(v))
    except (OSError, KeyError):
        pass
    return loader, threads, data


def sample_bytes(data):
    """Stored bytes of one sample (its features row and its label), which the
    shard loader's exchange moves; None if the file cannot be read here."""
    try:
        import h5py
        with h5py.File(data["path"], "r") as f:
            x, y = f[data["features"]], f[data["labels"]]
            return (int(np.prod(x.shape[1:])) * x.dtype.itemsize +
                    int(np.prod(y.shape[1:])) * y.dtype.itemsize)
    except Exception:  # no h5py, no file, a key missing: the formula instead
        return None


def exchange_bytes(p, share, row):
    """Bytes a rank receives in the shard loader's exchange: the rows of its
    share that other ranks hold, (P - 1) / P of them on average."""
    return int(math.ceil(share * (p - 1) / p)) * row


def exchange_s(loader, p, share, alpha):
    """The shard loader's alltoallv when bench-comm did not measure it: a
    message latency (alpha) from each of min(P - 1, share) other ranks."""
    if loader != "shard" or p <= 1:
        return 0.0
    return min(p - 1, share) * alpha


def project(a, rows, points, launcher, shardfit, run, colocate=None):
    """Calibrates, predicts the measured points, projects; writes
    model_fit.csv, projection.csv and projection.png; returns the markdown
    for report.md."""
    cal = calibrate(points)
    ranks = sorted({p for (_, p) in points if p >= 2})
    nparams = a.project_params or next((r.get("nparams") for r in rows
                                        if r.get("nparams")), None)
    if cal is None or not ranks or not nparams:
        msg = ("--project needs a successful 1-rank point, a point on 2 or more "
               "ranks, and the model size")
        print("scripts/scale: --project skipped: " + msg)
        return "\n## Model\n\nNot fitted: %s.\n" % msg
    lines, errs = {}, []
    for p in ranks:
        line, err = run_bench_comm(a, p, launcher, shardfit, run)
        if err:
            errs.append(err)
        else:
            lines[p] = line
    if not lines:
        print("scripts/scale: --project skipped: " + "; ".join(errs))
        return "\n## Model\n\nNot fitted: %s.\n" % "; ".join(errs)
    nbytes = 4 * (nparams + 8)
    # The node-shared sum's own curve, at every P a point used it.
    shared_lines = {}
    for p in sorted({p for (_, p), pt in points.items() if p >= 2 and node_shared(pt)}):
        line, err = run_bench_comm(a, p, launcher, shardfit, run, shared_bytes=nbytes)
        if err:
            errs.append(err)
        else:
            shared_lines[p] = line
    loader, threads, data = point_config(next(iter(points.values())))
    row = sample_bytes(data) if loader == "shard" else None
    measured, cont, how = measure_compute(a, points, colocate, threads)
    comms, exchanged = {}, {}
    for (b, p), pt in sorted(points.items()):
        shared = node_shared(pt)
        if p < 2 or p not in (shared_lines if shared else lines):
            continue
        share = pt.get("per_rank_batch") or math.ceil(b / p)
        alone = (measured[(b, p)] / cont[(b, p)] if (b, p) in measured
                 else cal["o"] + cal["s"] * share)
        # The work before the exchange is forward and backward; after the
        # allreduce come the optimizer and the next gather (node-shared:
        # 1/P of the optimizer).
        after = alone * (1.0 - cal["fb_share"])
        if shared:
            after = max(0.0, after - shared_update_saving(cal, pt))
        work = (alone * cal["fb_share"], after)
        ex_bytes = exchange_bytes(p, share, row) if row else 0
        print("[model] bench-comm --compute-us on %d ranks (%.0f us of work%s) ..." %
              (p, alone * 1e6, ", a %d-byte exchange" % ex_bytes if ex_bytes else ""),
              end=" ", flush=True)
        A, B = (shared_lines if shared else lines)[p]
        d = run_step_comm(a, p, work, ex_bytes, nbytes, A + B * nbytes, launcher,
                          shardfit, run, shared)
        if d is None:
            print("FAILED", flush=True)
            continue
        comms[(b, p)] = d[0]
        if ex_bytes:
            exchanged[(b, p)] = d[1]
        print("%.0f us of communication a step%s" % (
            d[0] * 1e6, " (exchange alone %.0f us)" % (d[1] * 1e6) if ex_bytes else ""),
            flush=True)
    md = ["\n## Model\n",
          "Fitted from the 1-rank points: o = %.3f ms per step, s = %.2f us per "
          "sample; gradient %d bytes; loader %s. Compute of a P-rank point: %s.\n\n" %
          (cal["o"] * 1e3, cal["s"] * 1e6, nbytes, loader,
           ("measured by P co-located 1-rank runs of its per-rank batch "
            "(median of %d); c(P) is that against one such run alone" % a.repeat
            if on_this_machine(a.hosts) else
            "measured by a 1-rank run of its per-rank batch (median of %d); "
            "the nodes have their own cores" % a.repeat)
           if how == "measured" else
           "c(P) (o + s share), c(P) = max(1, P x %d thread%s / cores), %s" %
           (threads, "" if threads == 1 else "s", how)),
          "Allreduce over these hosts (`shardfit bench-comm`, t = A + B n; as a ring "
          "alpha = A / 2(P-1), beta = B P / 2(P-1)):\n\n"
          "| ranks | A us | B ns/byte | alpha us | link Gb/s |\n|---|---|---|---|---|\n"]
    for p, (A, B) in sorted(lines.items()):
        al, be = ring_params(A, B, p)
        md.append("| %d | %.1f | %.4g | %.2f | %.2f |\n" %
                  (p, A * 1e6, B * 1e9, al * 1e6, 8e-9 / be if be > 0 else float("inf")))
    if shared_lines:
        md.append("\nThe node-shared sum (`shardfit bench-comm --shared`, t = A + B n as "
                  "measured), for the points whose ranks summed the gradient in "
                  "memory they share (comm.node_shared, marked *shared* below; their "
                  "compute is less (1 - 1/L) of the 1-rank optimizer, %.3f ms, as each "
                  "rank updates 1/L of the weights, L ranks a host):\n\n"
                  "| ranks | A us | B ns/byte |\n|---|---|---|\n" % (cal["optimizer"] * 1e3))
        for p, (A, B) in sorted(shared_lines.items()):
            md.append("| %d | %.1f | %.4g |\n" % (p, A * 1e6, B * 1e9))
    for e in errs:
        md.append("\n%s.\n" % e)
    md.append("\nA step's communication comes from `bench-comm --compute-us U1,U2 "
              "--exchange-bytes E --allreduce-bytes n`, which lays an iteration out as "
              "a step: the point's compute alone split as a step splits it (forward "
              "and backward %.0f%%, then the rest), the shard loader's exchange "
              "between (%s), the gradient's allreduce after; its time less the same "
              "work alone is the step's communication. The table splits it into the "
              "curve's allreduce, the exchange alone, and what meeting among the work "
              "adds (waiting for a core when ranks outnumber cores) or saves (a rate "
              "limiter's burst refilling while the ranks compute).\n" %
              (100 * cal["fb_share"], "%d bytes a sample, (P-1)/P of a rank's share "
               "from the others" % row if exchanged else "not measured: a latency per "
               "peer instead"))
    md.append("\n| ranks | batch | c(P) | compute ms | allreduce (or shared sum) ms | "
              "exchange ms | meeting among the work ms | predicted ms | measured ms | "
              "error |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n")
    fits = []
    print("[model] predicted step time of every measured point:")
    for (b, p), pt in points.items():
        shared = p > 1 and node_shared(pt)
        if p > 1 and p not in (shared_lines if shared else lines):
            continue
        A, B = lines.get(p, (0.0, 0.0))
        al, be = ring_params(A, B, p) if p > 1 else (0.0, 0.0)
        c = cont.get((b, p), 1.0)
        share = pt.get("per_rank_batch") or math.ceil(b / p)
        comp = measured.get((b, p)) or c * (cal["o"] + cal["s"] * share)
        ar = allreduce_s(p, nbytes, al, be)
        if shared:
            comp -= c * shared_update_saving(cal, pt)
            As, Bs = shared_lines[p]
            ar = As + Bs * nbytes
        ex = exchanged.get((b, p))
        if ex is None:
            ex = exchange_s(loader, p, share, al)
        # The step's communication as bench-comm laid it out, less the
        # curve's allreduce and the exchange alone: what the ranks' meeting
        # among the work adds (or, over a rate limiter, saves). Without that
        # run, nothing; without the exchange in it, the formula's exchange
        # comes on top.
        sync = 0.0
        if (b, p) in comms:
            sync = comms[(b, p)] - ar - (ex if (b, p) in exchanged else 0.0)
        pred = (comp + ar + ex + sync) * 1e3
        e = (pred - pt["step_ms"]) / pt["step_ms"]
        fits.append({"ranks": p, "batch_size": b, "gradient_sum": pt.get("gradient_sum")
                     or ("none" if p == 1 else "allreduce"), "contention": c,
                     "compute_ms": comp * 1e3, "allreduce_ms": ar * 1e3,
                     "exchange_ms": ex * 1e3, "sync_ms": sync * 1e3,
                     "measured_ms": pt["step_ms"], "predicted_ms": pred, "error": e})
        md.append("| %d%s | %d | %.2f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %+.1f%% |\n" %
                  (p, " *shared*" if shared else "", b, c, comp * 1e3, ar * 1e3, ex * 1e3,
                   sync * 1e3, pred, pt["step_ms"], 100 * e))
        print("  %d rank%s%s, batch %d: measured %.3f ms, predicted %.3f ms (%+.1f%%)" %
              (p, "" if p == 1 else "s", " (node-shared sum)" if shared else "", b,
               pt["step_ms"], pred, 100 * e))
    with open(os.path.join(a.out, "model_fit.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, list(fits[0].keys()))
        w.writeheader()
        for r in fits:
            w.writerow({k: ("%.6g" % v if isinstance(v, float) else v) for k, v in r.items()})
    worst = max(abs(r["error"]) for r in fits)
    md.append("\nLargest error: %.1f%%.\n" % (100 * worst))
    # Past the measured ranks a fixed global batch runs out of samples per
    # node, so the projection keeps each node's share (global batch = share
    # x nodes, with the lr scaled as in weak scaling) against one node
    # computing that share alone; each node has its own cores (c = 1).
    pmax = max(lines)
    alpha, beta = ring_params(*lines[pmax], pmax)
    share = a.project_batch or min(b for b, _ in points)
    proj = []
    links = [("measured", beta)] + [("%d Gb/s" % g, 8.0 / (g * 1e9)) for g in LINKS_GBPS]
    for name, bl in links:
        t1 = step_s(cal, 1, share, nbytes, alpha, bl)
        for p in NODES:
            ex = exchange_s(loader, p, share, alpha)
            for ov in (False, True):
                tp = step_s(cal, p, share * p, nbytes, alpha, bl, ov, exchange=ex)
                sp = p * t1 / tp
                proj.append({"link": name, "nodes": p, "batch_size": share * p,
                             "per_node_batch": share, "overlap": int(ov),
                             "step_ms": tp * 1e3, "samples_per_sec": share * p / tp,
                             "speedup": sp, "efficiency": sp / p})
    with open(os.path.join(a.out, "projection.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, list(proj[0].keys()))
        w.writeheader()
        for r in proj:
            w.writerow({k: ("%.6g" % v if isinstance(v, float) else v) for k, v in r.items()})
    plot_projection(os.path.join(a.out, "projection.png"), proj, nparams, share)
    md.append("\nProjection: %d parameters, %d samples per node per step, ring "
              "allreduce with the %d-rank alpha (%.1f us per ring step); parallel "
              "efficiency at 64 nodes:\n\n" % (nparams, share, pmax, alpha * 1e6))
    md.append("| link | no overlap | overlap with backward |\n|---|---|---|\n")
    print("[model] projected efficiency at 64 nodes, %d samples per node:" % share)
    for name, _ in links:
        e = {r["overlap"]: r["efficiency"] for r in proj if r["link"] == name and r["nodes"] == 64}
        md.append("| %s | %.2f | %.2f |\n" % (name, e[0], e[1]))
        print("  %-9s %.2f without overlap, %.2f with" % (name, e[0], e[1]))
    md.append("\n![projection](projection.png)\n")
    return "".join(md)


def plot_projection(path, proj, nparams, share):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in enumerate(dict.fromkeys(r["link"] for r in proj)):
        for ov, style in ((0, "-"), (1, "--")):
            pts = [r for r in proj if r["link"] == name and r["overlap"] == ov]
            ax.plot([r["nodes"] for r in pts], [r["efficiency"] for r in pts], style,
                    color="C%d" % i, marker="o", ms=3,
                    label="%s%s" % (name, ", overlap" if ov else ""))
    ax.set_xscale("log", base=2)
    ax.set(xlabel="nodes", ylabel="parallel efficiency", ylim=(0, 1.05),
           title="projected efficiency, %d parameters, %d samples per node" %
           (nparams, share))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
