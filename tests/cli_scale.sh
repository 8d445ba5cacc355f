#!/bin/sh
# cli_scale.sh: the per-rank trace ([log] trace), `shardfit bench-comm`, and
# scripts/scale with its model (SPEC section 9). Tiny runs on generated data,
# so the whole takes well under a minute. Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
T=$tmp
PY=/usr/bin/python3

add_group "$T/d.h5" /train 3 1200
add_group "$T/d.h5" /val 4 200
cat > "$T/c.ini" <<INI
[data]
path = $T/d.h5
features = /train/features
labels = /train/labels
val_features = /val/features
val_labels = /val/labels
[model]
layers = dense:16 relu dense:3
[train]
epochs = 2
batch_size = 48
[checkpoint]
dir = $T/run/ckpt
resume = never
[log]
dir = $T/run
progress = epoch
INI

# A 3-rank trace of steps 3..30 (25 steps per epoch: the window spans the
# epoch boundary, its evaluation and checkpoint).
if "$RUN" 3 "$SF" train "$T/c.ini" --set log.trace=trace.json \
       --set log.trace_steps=3:30 > "$T/out" 2>&1 &&
   grep -q "others waited for it" "$T/out" &&
   $PY - "$T/run/trace.json" 3 30 3 >> "$T/out" 2>&1 <<'PY'
import json, sys
path, first, last, nranks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path))
ev = d["traceEvents"]
names = {e["tid"]: e["args"]["name"] for e in ev if e["name"] == "thread_name"}
assert sorted(names) == list(range(nranks)), names
for r, n in names.items():
    assert n.startswith("rank %d (" % r) and n.endswith(")"), n
spans = [e for e in ev if e["ph"] == "X"]
assert {e["tid"] for e in spans} == set(range(nranks))
for r in range(nranks):
    mine = sorted((e for e in spans if e["tid"] == r), key=lambda e: (e["ts"], -e["dur"]))
    stack = []
    for e in mine:   # every span inside the one open, or after it: they nest
        while stack and e["ts"] >= stack[-1]["ts"] + stack[-1]["dur"] - 0.002:
            stack.pop()
        if stack:
            top = stack[-1]
            assert e["ts"] + e["dur"] <= top["ts"] + top["dur"] + 0.002, (top, e)
        stack.append(e)
    steps = {e["args"]["step"] for e in mine if e["name"] == "step"}
    assert steps == set(range(first, last + 1)), sorted(steps)
    for s in steps:   # each step's span holds its phases
        (step,) = [e for e in mine if e["name"] == "step" and e["args"]["step"] == s]
        inside = {e["name"] for e in mine if e["args"]["step"] == s and
                  step["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 0.002}
        # the gradient's sum: node-shared on one host (the default)
        need = {"step", "data", "forward", "backward", "allreduce", "optimizer",
                "MPI shared gradient sync"}
        assert need <= inside, (s, inside)
    assert any(e["name"] == "eval" for e in mine) and any(e["name"] == "checkpoint" for e in mine)
coll = [e for e in spans if e["cat"] == "collective"]
assert coll and all(0 <= e["args"]["last_rank"] < nranks and e["args"]["waited_ms"] >= 0 for e in coll)
by_seq = {}
for e in coll:
    by_seq.setdefault(e["args"]["seq"], set()).add(e["tid"])
assert all(t == set(range(nranks)) for t in by_seq.values())
other = d["otherData"]
assert other["trace_steps"] == "%d:%d" % (first, last)
assert len(other["ranks"]) == nranks and "clock_offset_us" in other["ranks"][1]
PY
then ok "3-rank trace: one track per rank, spans nest and cover steps 3-30, collectives matched"
else bad "3-rank trace"; fi

# The trace is written on an error path too (divergence ends every rank).
rm -f "$T/run/trace.json"
"$RUN" 2 "$SF" train "$T/c.ini" --set log.trace=trace.json --set optimizer.lr=1e30 \
    > "$T/out" 2>&1
st=$?
if [ "$st" -eq 1 ] && grep -q "diverged" "$T/out" &&
   $PY -c "import json,sys; json.load(open(sys.argv[1]))" "$T/run/trace.json" 2>> "$T/out"
then ok "a run that diverges still writes its trace"
else bad "trace on the divergence path (status $st)"; fi

# bench-comm: a table, a CSV from 4 KiB up, and the fit.
if "$RUN" 2 "$SF" bench-comm --max 64K --repeat 5 --csv "$T/bc.csv" > "$T/out" 2>&1 &&
   grep -q "^fit: alpha = " "$T/out" &&
   $PY - "$T/bc.csv" >> "$T/out" 2>&1 <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["bytes"]) for r in rows] == [4096 << i for i in range(5)], rows
assert all(float(r["median_s"]) > 0 and r["ranks"] == "2" for r in rows)
PY
then ok "bench-comm: 4 KiB to 64 KiB, CSV and alpha/beta"
else bad "bench-comm"; fi
if "$SF" bench-comm --max 1X > "$T/out" 2>&1; then bad "bench-comm --max 1X accepted"
else ok "bench-comm rejects a bad size"; fi
# --shared: the node-shared sum's curve, and the same in the sync mode; not
# on one rank (nobody to share with).
if "$RUN" 2 "$SF" bench-comm --max 256K --repeat 5 --shared --csv "$T/bcs.csv" > "$T/out" 2>&1 &&
   grep -q "the node-shared sum" "$T/out" && grep -q "^fit: alpha = " "$T/out" &&
   [ "$(wc -l < "$T/bcs.csv")" -eq 8 ] &&
   "$RUN" 2 "$SF" bench-comm --compute-us 300,100 --allreduce-bytes 256K --repeat 20 \
       --shared >> "$T/out" 2>&1 &&
   grep -q "a node-shared sum of 262144 bytes" "$T/out" && grep -q "^sync: .*allreduce_us=" "$T/out"
then ok "bench-comm --shared: the node-shared sum's curve and its cost among work"
else bad "bench-comm --shared"; fi
if "$RUN" 1 "$SF" bench-comm --shared > "$T/out" 2>&1; then bad "bench-comm --shared on 1 rank"
elif grep -q "needs 2 or more ranks on every host" "$T/out"
then ok "bench-comm --shared on 1 rank: refused, said why"
else bad "bench-comm --shared on 1 rank: no reason given"; fi

# bench-comm --compute-us: the work it calibrates from CPU time takes about
# that long per iteration, and meeting the other rank costs >= 0 on average
# (the delay itself may come out slightly negative from noise). "About": on
# this shared virtual machine the calibration has come out 13% off under the
# sanitizer pass (free_us=435 for 500), so the bound is 0.7, which still
# catches a unit or sizing error; the delay is synced - free, measured, and
# does not depend on the calibration being exact.
if "$RUN" 2 "$SF" bench-comm --compute-us 500 --repeat 20 > "$T/out" 2>&1 &&
   $PY - "$T/out" >> "$T/out" 2>&1 <<'PY'
import re, sys
line = [l for l in open(sys.argv[1]) if l.startswith("sync: ")][0]
v = {k: float(x) for k, x in re.findall(r"(\w+)=(-?[0-9.]+)", line)}
assert v["compute_us"] == 500 and v["free_us"] >= 0.7 * 500, v
assert v["synced_us"] > 0 and v["allreduce_us"] >= 0 and "delay_us" in v, v
PY
then ok "bench-comm --compute-us: calibrated work, the delay of a meeting"
else bad "bench-comm --compute-us"; fi
# With the shard loader's exchange between two pieces of work. synced (the
# work and both meetings) and free (the work alone) are medians of separate
# runs, so under noise synced may come out below free: the same 0.7.
if "$RUN" 2 "$SF" bench-comm --compute-us 400,100 --exchange-bytes 64K \
       --allreduce-bytes 256K --repeat 20 \
       > "$T/out" 2>&1 &&
   $PY - "$T/out" >> "$T/out" 2>&1 <<'PY'
import re, sys
line = [l for l in open(sys.argv[1]) if l.startswith("sync: ")][0]
v = {k: float(x) for k, x in re.findall(r"(\w+)=(-?[0-9.]+)", line)}
assert v["compute_us"] == 500 and v["free_us"] >= 0.7 * 500, v
assert v["exchange_us"] > 0 and v["synced_us"] >= v["free_us"] * 0.7, v
assert "allreduce of 262144 bytes" in open(sys.argv[1]).read()
PY
then ok "bench-comm --compute-us U1,U2 --exchange-bytes --allreduce-bytes: a step's meetings"
else bad "bench-comm --exchange-bytes"; fi
if "$SF" bench-comm --exchange-bytes 4K > "$T/out" 2>&1; then
    bad "bench-comm --exchange-bytes without --compute-us accepted"
else ok "bench-comm rejects --exchange-bytes without --compute-us"; fi
if "$SF" bench-comm --compute-us 0 > "$T/out" 2>&1; then bad "bench-comm --compute-us 0 accepted"
else ok "bench-comm rejects --compute-us 0"; fi

# The fit recovers alpha and beta from synthetic points; the step model
# reproduces points made with it.
if $PY - > "$T/out" 2>&1 <<'PY'
import sys, random
sys.path.insert(0, "scripts")
import scale_model as m
random.seed(1)
alpha, beta, p = 4e-6, 1.6e-9, 3
sizes = [4096 << i for i in range(15)]
A = 2 * (p - 1) * alpha
B = 2 * (p - 1) / p * beta
t = [(A + B * n) * (1 + random.uniform(-0.02, 0.02)) for n in sizes]
a, b = m.fit_line(sizes, t)
fa, fb = m.ring_params(a, b, p)
assert abs(fa - alpha) / alpha < 0.1 and abs(fb - beta) / beta < 0.05, (fa, fb)
# A rate-limited TCP link: up to 256 KiB the messages ride in the limiter's
# burst at 8x the rate, so the curve bends; one repeat is slow. beta must
# still be the large sizes' rate and alpha the small ones' latency (a single line
# through all of it gave a negative alpha and half of beta).
bent = [A + B * (n if n > 262144 else n / 8) for n in sizes]
bent[9] *= 1.6
a, b = m.fit_line(sizes, bent)
assert min(bent[:3]) / 2 <= a <= min(bent[:3]) and abs(b - B) / B < 0.05, (a, b, B)
assert m.contention("netns", 3, 1, cores=2) == 1.5 and m.contention("local", 2, 1, cores=2) == 1
assert m.contention("hosts.txt", 8, 1, cores=2) == 1
assert m.contention("netns:2", 4, 1, cores=2) == 2
# --hosts netns:L: L ranks a host of the namespace cluster
import importlib.machinery, importlib.util
ld = importlib.machinery.SourceFileLoader("scale", "scripts/scale")
sc = importlib.util.module_from_spec(importlib.util.spec_from_loader("scale", ld))
ld.exec_module(sc)
assert [sc.per_host(h) for h in ("netns", "netns:2", "local", "h.txt")] == [1, 2, 0, 0]
assert sc.host_count("netns:2", 3) == 2 and sc.host_count("netns", 3) == 3
cmd = sc.launcher("netns:2", 4)
assert cmd[cmd.index("--npernode") + 1] == "2" and cmd[cmd.index("-np") + 1] == "4", cmd
assert m.exchange_s("shard", 3, 43, 1e-5) == 2e-5 and m.exchange_s("replicate", 3, 43, 1e-5) == 0
cal = {"o": 2e-4, "s": 1e-5, "backward_per_sample": 6e-6}
pts = {}
for bsz in (64, 256):
    step = cal["o"] + cal["s"] * bsz
    pts[(bsz, 1)] = {"batch_size": bsz, "step_ms": step * 1e3, "allreduce_ms": 0.0,
                     "optimizer_ms": 0.2, "backward_ms": 6e-3 * bsz}
c = m.calibrate(pts)
assert abs(c["o"] - cal["o"]) < 1e-9 and abs(c["s"] - cal["s"]) < 1e-12, c
assert 0 < c["fb_share"] < 1, c
assert m.exchange_bytes(4, 32, 785) == 24 * 785 and m.exchange_bytes(3, 43, 10) == 290
# node-shared points: each rank updates 1/P of the weights
assert abs(c["optimizer"] - 2e-4) < 1e-12, c
assert abs(m.shared_update_saving(c, {"ranks": 4, "hosts": 1}) - 1.5e-4) < 1e-12
assert abs(m.shared_update_saving(c, {"ranks": 4, "hosts": 2}) - 1e-4) < 1e-12
assert m.node_shared({"gradient_sum": "node_shared"}) and not m.node_shared({"gradient_sum": "allreduce"})
assert m.shared_max(2140000) == str(16 << 20) and m.shared_max(1000) == str(1 << 20)
full = m.step_s(cal, 4, 256, 1e6, alpha, beta)
hidden = m.step_s(cal, 4, 256, 1e6, alpha, beta, overlap=True)
assert abs(full - (cal["o"] + cal["s"] * 64 + m.allreduce_s(4, 1e6, alpha, beta))) < 1e-12
assert hidden < full
print("ok")
PY
then ok "the fit recovers alpha and beta from synthetic points"
else bad "model fit"; fi

# A sweep on 1 and 2 ranks; batch 100000 > 1200 samples fails, and the
# sweep goes on.
if scripts/scale "$T/c.ini" --ranks 1,2 --batch-sizes 24,100000 --steps 200 --project \
       --comm-max 64K --out "$T/sweep" > "$T/out" 2>&1; then
    st=0; else st=$?; fi
if [ "$st" -eq 0 ] && grep -q "FAILED" "$T/out" && grep -q -- "-byte exchange" "$T/out" &&
   $PY - "$T/sweep" >> "$T/out" 2>&1 <<'PY'
import csv, os, sys
d = sys.argv[1]
spec = ("ranks hosts batch_size per_rank_batch mode samples_per_sec speedup efficiency "
        "step_ms compute_ms allreduce_ms data_ms wait_ms val_accuracy val_loss "
        "time_to_target_s peak_rss_mb").split()
rows = list(csv.DictReader(open(os.path.join(d, "scaling.csv"))))
assert list(rows[0].keys())[:len(spec)] == spec, list(rows[0].keys())
good = [r for r in rows if r["status"] == "ok"]
fail = [r for r in rows if r["status"] == "failed"]
assert len(good) == 2 and len(fail) == 2, rows
assert all("batch_size" in r["message"] for r in fail), fail
for r in good:
    for c in spec:
        if c != "time_to_target_s":
            assert r[c] != "", (c, r)
    assert float(r["samples_per_sec"]) > 0
    assert 0 < float(r["efficiency"]) <= 1.2, r
    assert float(r["step_ms"]) >= float(r["compute_ms"]) > 0
    assert 0 < float(r["val_accuracy"]) <= 1 and float(r["peak_rss_mb"]) > 0
    assert float(r["wait_ms"]) >= 0
assert [float(r["speedup"]) for r in good if r["ranks"] == "1"] == [1.0]
for png in ("scaling.png", "breakdown.png", "curves.png", "projection.png"):
    assert open(os.path.join(d, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n", png
proj = list(csv.DictReader(open(os.path.join(d, "projection.csv"))))
assert {int(r["nodes"]) for r in proj} == {8, 16, 32, 64, 128, 256, 512, 1024}
assert {r["link"] for r in proj} >= {"10 Gb/s", "25 Gb/s", "100 Gb/s"}
assert all(0 < float(r["efficiency"]) <= 1.0001 for r in proj)
fit = list(csv.DictReader(open(os.path.join(d, "model_fit.csv"))))
# "meeting among the work" may be negative (a rate limiter's burst); the
# prediction is the sum of the terms.
assert len(fit) == 2, fit
# one host: the 2-rank point summed in node-shared memory, priced by its own
# curve (bench-comm --shared)
assert [r["gradient_sum"] for r in fit] == ["none", "node_shared"], fit
assert os.path.exists(os.path.join(d, "bench-comm-shared-p2.csv"))
for r in fit:
    terms = sum(float(r[k]) for k in ("compute_ms", "allreduce_ms", "exchange_ms", "sync_ms"))
    assert abs(terms - float(r["predicted_ms"])) <= 1e-3 * max(1e-3, abs(terms)), r
report = open(os.path.join(d, "report.md")).read()
assert "Where the time went" in report and "ms per step" in report and "failed" in report
assert "2 *shared*" in report and "node-shared sum" in report, report
assert "--exchange-bytes" in report and all(float(r["exchange_ms"]) >= 0 for r in fit), report
PY
then ok "sweep on 1 and 2 ranks: every column, PNGs, a failed point recorded, projection"
else bad "sweep (status $st)"; fi

summary
