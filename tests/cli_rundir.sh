#!/bin/sh
# cli_rundir.sh: a run directory explains itself: log.dir/config.ini is the
# effective config (--set applied) and trains the same run again;
# log.dir/summary.json says how the run ended, whether by its epochs, early
# stopping, max_steps, a signal or divergence, with its metrics, hosts and
# library versions. Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
PY=/usr/bin/python3

add_group "$tmp/d.h5" /train 3 300
cat > "$tmp/c.ini" <<INI
[data]
path = $tmp/d.h5
features = /train/features
labels = /train/labels
validation_split = 0.2
[model]
layers = dense:32 relu dense:3
[train]
epochs = 3
batch_size = 16
[optimizer]
lr = 0.1
momentum = 0.9
[log]
progress = none
INI
# cfg NAME: the run's checkpoint and log dirs.
cfg() { printf -- '--set checkpoint.dir=%s/%s/ckpt --set log.dir=%s/%s' "$tmp" "$1" "$tmp" "$1"; }
# field DIR KEY: a top-level value of DIR/summary.json as Python prints it
# ("" when the file is not valid JSON).
field() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1/summary.json" "$2" 2>/dev/null; }

# config.ini: --set applied, no temporary file left, and it trains the same run.
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg a) --set train.epochs=2 --set optimizer.lr=0.05 > "$tmp/out" 2>&1
if grep -q "^epochs = 2" "$tmp/a/config.ini" && grep -q "^lr = 0.05" "$tmp/a/config.ini" &&
   [ -z "$(ls -A "$tmp/a" | grep tmp)" ]
then ok "config.ini holds the effective config, --set applied"; else bad "config.ini holds the effective config"; fi
cp "$tmp/a/metrics.jsonl" "$tmp/a.jsonl"
"$RUN" 2 "$SF" train "$tmp/a/config.ini" --set checkpoint.resume=never > "$tmp/out" 2>&1
if [ "$(cut -d, -f1-7 "$tmp/a.jsonl")" = "$(cut -d, -f1-7 "$tmp/a/metrics.jsonl")" ] &&
   [ "$(wc -l < "$tmp/a.jsonl")" -eq 2 ]
then ok "training from config.ini repeats the run"; else bad "training from config.ini repeats the run"; fi

# summary.json of a run that did all its epochs: valid JSON, every field.
if [ "$(field "$tmp/a" ended)" = epochs_done ] && [ "$(field "$tmp/a" steps)" = 30 ] &&
   [ "$(field "$tmp/a" ranks)" = 2 ] && [ "$(field "$tmp/a" rank_hosts)" = "['$(hostname)', '$(hostname)']" ] &&
   "$PY" - "$tmp/a/summary.json" "$tmp/a/metrics.jsonl" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
last = [json.loads(l) for l in open(sys.argv[2])][-1]
assert s["final"]["epoch"] == 2 and s["final"]["val_loss"] == last["val_loss"], s["final"]
assert s["best_epoch"] in (1, 2) and s["best"]["epoch"] == s["best_epoch"]
assert s["samples_per_sec"] > 0 and s["exit_status"] == 0 and s["epochs_done"] == 2
v = s["versions"]
assert v["shardfit"] and v["mpi"].startswith("Open MPI") and v["hdf5"].startswith("HDF5 1.")
assert v["openblas"].startswith("OpenBLAS") and s["blas_kernel"], v
PY
then ok "summary.json: final and best metrics, steps, speed, hosts, versions"; else bad "summary.json of a complete run: $(cat "$tmp/a/summary.json")"; fi

# How a run ended, one row each: NAME WANT ARGS...
ended() {
    name=$1 want=$2; shift 2
    timeout 60 "$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg "$name") "$@" > "$tmp/out" 2>&1
    got=$(field "$tmp/$name" ended)
    if [ "$got" = "$want" ]; then ok "summary.json after $want"; else bad "summary.json after $want (got '$got')"; fi
}
ended early early_stopping --set train.epochs=50 --set stop.early_stopping=true --set stop.patience=0
if [ "$(field "$tmp/early" best_epoch)" -ge 1 ] 2>/dev/null && field "$tmp/early" reason | grep -q "^early stopping at epoch"
then ok "early stopping: best epoch and reason"; else bad "early stopping: best epoch and reason"; fi
ended steps max_steps --set train.max_steps=20
[ "$(field "$tmp/steps" steps)" = 20 ] && ok "max_steps: 20 steps" || bad "max_steps: 20 steps"
ended diverged diverged --set optimizer.lr=1e30
if [ "$(field "$tmp/diverged" exit_status)" = 1 ] && field "$tmp/diverged" reason | grep -q "training diverged"
then ok "a diverged run's summary holds the error"; else bad "a diverged run's summary holds the error"; fi

# A signal: no checkpoints, so the run is stopped while it trains.
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg sig) --set train.epochs=100000 \
    --set checkpoint.every_epochs=0 > "$tmp/out" 2>&1 &
job=$!
i=0
while [ ! -s "$tmp/sig/metrics.jsonl" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -USR1 "$job"; wait "$job"
if [ "$(field "$tmp/sig" ended)" = preempted ] && field "$tmp/sig" reason | grep -q "stopped by a signal"
then ok "summary.json after preempted"; else bad "summary.json after preempted"; fi

# A run that never started training (bad data) writes no summary.
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg nodata) --set data.labels=/nope > "$tmp/out" 2>&1
[ ! -f "$tmp/nodata/summary.json" ] && ok "no summary when setup fails" || bad "no summary when setup fails"

summary
