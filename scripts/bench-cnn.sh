#!/bin/bash
# bench-cnn.sh: the Fashion-MNIST CNN (configs/fashion-cnn.ini), shardfit on
# 1 and 2 ranks against PyTorch in one process (1 thread) and DDP on 2
# processes (gloo, 1 thread each), in one run, written to $BUILD/bench-cnn.md.
#
#   scripts/bench-cnn.sh [ROUNDS]        (default 3; BN=0 drops the batchnorms)
#
# Every side gets the same OPENBLAS_CORETYPE (SkylakeX, or CORETYPE) and the
# same global batch of 128. The four runs alternate ROUNDS times and the
# table gives each side's median samples/s, so a machine shared with other
# work slows every side alike; ratios in one file are what to quote.
# shardfit: STEPS optimizer steps after 5 warm-up steps, timed in-process
# like PyTorch's: the difference of the step times (metrics.jsonl's
# step_seconds) of a run of STEPS + 5 steps and one of 5. (The difference of
# the two runs' wall-clock times had start-up noise in it: 0.1 s of mpirun
# is 13% of 60 steps on 2 ranks, and one round came out above the bound.)
# PyTorch: the same STEPS after 5 warm-up steps, timed in-process.
# TARGET=1 also times 2 ranks of each to 0.91 validation accuracy (TARGET_ACC
# overrides 0.91, TARGET_EPOCHS the limit of 12 epochs: for a smoke run).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${1:-3}
STEPS=${STEPS:-100}
BN=${BN:-1}
# Not ${OPENBLAS_CORETYPE:-...}: this machine's environment presets Haswell.
export OPENBLAS_CORETYPE=${CORETYPE:-SkylakeX}
out="$BUILD/bench-cnn.md"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=data/fashion-mnist.h5
[ -f $data ] || BUILD=$BUILD NP=1 scripts/run-fashion.sh --set train.max_steps=1 \
    --set log.progress=none --set "log.dir=$tmp/prep" --set "checkpoint.dir=$tmp/prep/ckpt"

layers=$(sed -n 's/^layers = //p' configs/fashion-cnn.ini)
if [ "$BN" = 0 ]; then
    layers=$(echo "$layers" | sed 's/ batchnorm//g')
fi

# shardfit_time NP STEPS: seconds rank 0 spent in the steps of a run of
# STEPS steps (no validation, no checkpoints), from its metrics.jsonl.
shardfit_time() {
    rm -rf "$tmp/log"
    scripts/mpirun-local.sh "$1" "$BUILD/shardfit" train configs/fashion-cnn.ini \
        --set "model.layers=$layers" --set train.max_steps="$2" \
        --set data.val_features= --set data.val_labels= --set log.progress=none \
        --set checkpoint.every_epochs=0 --set checkpoint.resume=never \
        --set "log.dir=$tmp/log" > "$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
    /usr/bin/python3 -c 'import json, sys
print(sum(json.loads(l)["step_seconds"] for l in open(sys.argv[1])))' "$tmp/log/metrics.jsonl"
}

# shardfit_rate NP: samples/s of STEPS steps beyond 5 warm-up steps.
shardfit_rate() {
    a=$(shardfit_time "$1" 5)
    b=$(shardfit_time "$1" $((STEPS + 5)))
    echo "$a $b" | awk -v s="$STEPS" '{printf "%.0f", s * 128 / ($2 - $1)}'
}

# torch_rate NP: PyTorch's samples/s (scripts/bench_torch.py, the same layers).
torch_rate() {
    /usr/bin/python3 scripts/bench_torch.py --layers "$layers" --data $data --procs "$1" \
        --steps "$STEPS" --warmup 5 | sed -n 's/.*samples_per_sec=\([0-9]*\).*/\1/p'
}

: > "$tmp/rates"
for r in $(seq "$ROUNDS"); do
    echo "shardfit_1 $(shardfit_rate 1)" >> "$tmp/rates"
    echo "torch_1 $(torch_rate 1)" >> "$tmp/rates"
    echo "shardfit_2 $(shardfit_rate 2)" >> "$tmp/rates"
    echo "torch_ddp_2 $(torch_rate 2)" >> "$tmp/rates"
    echo "round $r: $(tail -n 4 "$tmp/rates" | tr '\n' ' ')"
done

median() {
    grep "^$1 " "$tmp/rates" | awk '{print $2}' | sort -n |
        awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
s1=$(median shardfit_1); t1=$(median torch_1)
s2=$(median shardfit_2); t2=$(median torch_ddp_2)
# The ratio within each round (its four runs close in time), then the median:
# steadier than a ratio of medians when the machine's load drifts.
ratio_median() {
    paste -d' ' <(grep "^$1 " "$tmp/rates" | awk '{print $2}') \
                <(grep "^$2 " "$tmp/rates" | awk '{print $2}') |
        awk '{print $1 / $2}' | sort -n |
        awk '{v[NR] = $1} END {printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
{
    echo "# CNN throughput: shardfit against PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
         "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, global batch 128, $STEPS steps after 5 warm-up," \
         "median of $ROUNDS alternated rounds."
    echo
    echo "Model: \`$layers\`"
    echo
    echo "| run | samples/s | vs PyTorch 1 process | vs PyTorch DDP 2 |"
    echo "|---|---:|---:|---:|"
    echo "| shardfit 1 rank | $s1 | $(echo "$s1 $t1" | awk '{printf "%.2f", $1 / $2}') | |"
    echo "| shardfit 2 ranks | $s2 | $(echo "$s2 $t1" | awk '{printf "%.2f", $1 / $2}') | $(echo "$s2 $t2" | awk '{printf "%.2f", $1 / $2}') |"
    echo "| PyTorch 1 process, 1 thread | $t1 | 1.00 | |"
    echo "| PyTorch DDP gloo, 2 processes | $t2 | | 1.00 |"
    echo
    echo "Median over rounds of the ratio within a round: shardfit 1 rank / PyTorch 1 process" \
         "$(ratio_median shardfit_1 torch_1), shardfit 2 ranks / PyTorch DDP 2" \
         "$(ratio_median shardfit_2 torch_ddp_2). The CNN's limit (its sgemm calls alone," \
         "measured) and step breakdown are its row in bench.md (scripts/bench_step.py)."
    echo
    echo "Every round (samples/s):"
    echo
    sed 's/^/    /' "$tmp/rates"
} > "$out"
if [ "${TARGET:-0}" = 1 ]; then
    start=$(date +%s.%N)
    acc=${TARGET_ACC:-0.91}
    epochs=${TARGET_EPOCHS:-12}
    scripts/mpirun-local.sh 2 "$BUILD/shardfit" train configs/fashion-cnn.ini \
        --set "model.layers=$layers" --set stop.target="$acc" --set stop.monitor=val_accuracy \
        --set train.epochs="$epochs" \
        --set schedule.name=constant --set optimizer.weight_decay=0 \
        --set checkpoint.every_epochs=0 --set checkpoint.resume=never \
        --set log.progress=epoch --set "log.dir=$tmp/log" > "$tmp/target" 2>&1
    sf_end=$(date +%s.%N)
    tt=$(/usr/bin/python3 scripts/bench_torch.py --layers "$layers" --data $data --procs 2 \
        --epochs "$epochs" --target "$acc")
    {
        echo
        echo "Time to $acc validation accuracy on 2 ranks (SGD momentum 0.9, lr 0.05, constant):"
        echo
        echo "    shardfit: $(grep 'target' "$tmp/target" | tail -n 1) (whole job $(echo "$start $sf_end" | awk '{printf "%.0f", $2 - $1}') s)"
        echo "    PyTorch DDP: $tt"
    } >> "$out"
fi
cat "$out"
