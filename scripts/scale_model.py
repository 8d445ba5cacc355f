"""scale_model.py: the performance model behind `scripts/scale --project`.

A data-parallel step on P ranks with global batch B and a gradient of n bytes
is modelled as

    step(P) = o + s * ceil(B / P) + allreduce(P, n)
    allreduce(P, n) = 2 (P - 1) alpha + 2 (P - 1) / P * n * beta   (a ring)

o is the per-step cost that does not shrink with P (the optimizer updates
every weight on every rank), s the time per sample of data, forward and
backward on one rank; both come from the sweep's 1-rank points. alpha (the
latency of one ring step) and beta (seconds per byte on a link) come from
`shardfit bench-comm` over the same hosts: it measures t(n) = A + B n at P
ranks, and the ring gives alpha = A / (2 (P - 1)), beta = B P / (2 (P - 1)).
With overlap the allreduce runs while backward goes on, so up to the
backward time of the step hides: step = o + s b + max(0, AR - backward(b)).
The projection keeps each node's share b of the batch (a fixed global batch
runs out of samples per node long before 1024 nodes) and compares P nodes
with one node computing the same share.
"""
import csv
import math
import os

import numpy as np

LINKS_GBPS = [10, 25, 100]
NODES = [8, 16, 32, 64, 128, 256, 512, 1024]


def fit_line(x, t):
    """Least squares of t = A + B x on relative error (weights 1/t^2), so
    small sizes fix A and large ones B. Returns (A, B)."""
    x = np.asarray(x, float)
    t = np.asarray(t, float)
    w = 1.0 / t ** 2
    m = np.vstack([np.ones_like(x), x]).T * np.sqrt(w)[:, None]
    (a, b), *_ = np.linalg.lstsq(m, t * np.sqrt(w), rcond=None)
    return float(a), float(b)


def ring_params(a, b, p):
    """alpha per ring step and beta per byte on a link, from t = a + b n
    measured at p ranks."""
    return a / (2.0 * (p - 1)), b * p / (2.0 * (p - 1))


def allreduce_s(p, nbytes, alpha, beta):
    if p <= 1:
        return 0.0
    return 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * nbytes * beta


def calibrate(points):
    """From the 1-rank points (mean over repeats, keyed (B, 1)): o and s in
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
    return {"o": float(o), "s": float(s), "backward_per_sample": bwd}


def step_s(cal, p, batch, nbytes, alpha, beta, overlap=False):
    share = math.ceil(batch / p)
    ar = allreduce_s(p, nbytes, alpha, beta)
    compute = cal["o"] + cal["s"] * share
    if overlap:
        return compute + max(0.0, ar - cal["backward_per_sample"] * share)
    return compute + ar


def run_bench_comm(a, p, launcher, shardfit, run):
    """bench-comm over p ranks of the sweep's hosts; (A, B, csv path) or a
    message."""
    out = os.path.abspath(os.path.join(a.out, "bench-comm.csv"))
    cmd = launcher(a.hosts, p) + [shardfit(), "bench-comm", "--csv", out, "--max",
                                    a.comm_max]
    print("[model] shardfit bench-comm on %d ranks ..." % p, end=" ", flush=True)
    status, text = run(cmd, os.path.join(a.out, "bench-comm.txt"), a.timeout)
    if status != 0:
        print("FAILED")
        return None, "bench-comm failed (exit %d), see bench-comm.txt" % status
    with open(out) as f:
        rows = list(csv.DictReader(f))
    A, B = fit_line([float(r["bytes"]) for r in rows], [float(r["median_s"]) for r in rows])
    print("alpha %.1f us, beta %.3g ns/byte" % (A * 1e6, B * 1e9), flush=True)
    return (A, B), None


def project(a, rows, points, launcher, shardfit, run):
    """Calibrates, predicts the measured points, projects; writes
    model_fit.csv, projection.csv and projection.png; returns the markdown
    for report.md."""
    cal = calibrate(points)
    pmax = max(a.rank_list)
    nparams = a.project_params or next((r.get("nparams") for r in rows
                                        if r.get("nparams")), None)
    if cal is None or pmax < 2 or not nparams:
        msg = ("--project needs a successful 1-rank point, a point on 2 or more "
               "ranks, and the model size")
        print("scripts/scale: --project skipped: " + msg)
        return "\n## Model\n\nNot fitted: %s.\n" % msg
    line, err = run_bench_comm(a, pmax, launcher, shardfit, run)
    if err:
        print("scripts/scale: --project skipped: " + err)
        return "\n## Model\n\nNot fitted: %s.\n" % err
    alpha, beta = ring_params(line[0], line[1], pmax)
    nbytes = 4 * (nparams + 8)
    md = ["\n## Model\n",
          "Fitted: o = %.3f ms per step, s = %.2f us per sample (1 rank); "
          "allreduce over these hosts (bench-comm, %d ranks): alpha = %.2f us per "
          "ring step, beta = %.4g ns/byte (%.2f Gb/s); gradient %d bytes.\n" %
          (cal["o"] * 1e3, cal["s"] * 1e6, pmax, alpha * 1e6, beta * 1e9,
           8e-9 / beta if beta > 0 else float("inf"), nbytes),
          "\n| ranks | batch | measured ms | predicted ms | error |\n|---|---|---|---|---|\n"]
    fits = []
    print("[model] predicted step time of every measured point:")
    for (b, p), pt in points.items():
        pred = step_s(cal, p, b, nbytes, alpha, beta) * 1e3
        e = (pred - pt["step_ms"]) / pt["step_ms"]
        fits.append({"ranks": p, "batch_size": b, "measured_ms": pt["step_ms"],
                     "predicted_ms": pred, "error": e})
        md.append("| %d | %d | %.3f | %.3f | %+.1f%% |\n" % (p, b, pt["step_ms"], pred, 100 * e))
        print("  %d rank%s, batch %d: measured %.3f ms, predicted %.3f ms (%+.1f%%)" %
              (p, "" if p == 1 else "s", b, pt["step_ms"], pred, 100 * e))
    with open(os.path.join(a.out, "model_fit.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["ranks", "batch_size", "measured_ms", "predicted_ms", "error"])
        w.writeheader()
        w.writerows(fits)
    # Past the measured ranks a fixed global batch runs out of samples per
    # node, so the projection keeps each node's share (global batch = share
    # x nodes, with the lr scaled as in weak scaling) against one node
    # computing that share alone.
    share = a.project_batch or min(b for b, _ in points)
    proj = []
    links = [("measured", beta)] + [("%d Gb/s" % g, 8.0 / (g * 1e9)) for g in LINKS_GBPS]
    for name, bl in links:
        t1 = step_s(cal, 1, share, nbytes, alpha, bl)
        for p in NODES:
            for ov in (False, True):
                tp = step_s(cal, p, share * p, nbytes, alpha, bl, ov)
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
              "allreduce with the measured alpha; parallel efficiency at 64 nodes:\n\n" %
              (nparams, share))
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
