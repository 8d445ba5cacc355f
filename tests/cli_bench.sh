#!/bin/sh
# cli_bench.sh: `make bench`'s step benchmark still runs and still says what
# it claims (no timings are judged: speed is for the benchmark, not tests).
#  - bench_limit builds the limit of dense and conv models: the parameter
#    count of the model it timed, the layers with parameters but no sgemm
#    (batchnorm) counted apart, batchnorm's passes timed (none for an MLP),
#    a sum on 2 ranks; INPUT that is neither F nor CxHxW is refused (exit 2,
#    naming it);
#  - scripts/bench_step.py, a round of a few steps, writes build/bench.md's
#    tables with a row for each MLP and each CNN (fashion-cnn.ini's, and
#    without batchnorm), every cell a number.
# Ends "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
LIM="$(pwd)/$BUILD/bench_limit"
CNN="conv:4:3 batchnorm relu maxpool:2 dense:10"
# conv 4*1*3*3 + 4, batchnorm 4 + 4, dense (4*3*3)*10 + 10
CNN_PARAMS=418

"$LIM" "$CNN" 1x8x8 16 3 > "$tmp/out" 2>&1 &&
    grep -q "ranks=1 rows=16 params=$CNN_PARAMS .*other_param_layers=1" "$tmp/out" &&
    grep -Eq "gemm_ms=[0-9.]*[1-9]" "$tmp/out" &&
    grep -Eq "batchnorm_ms=[0-9.]*[1-9]" "$tmp/out" &&
    ok "bench_limit: a conv model on 1 rank" || bad "bench_limit: a conv model on 1 rank"

"$RUN" 2 "$LIM" "$CNN" 1x8x8 16 3 > "$tmp/out" 2>&1 &&
    grep -q "ranks=2 rows=8 params=$CNN_PARAMS " "$tmp/out" &&
    grep -Eq "allreduce_ms=[0-9.]*[1-9]" "$tmp/out" &&
    ok "bench_limit: a conv model on 2 ranks, with its sum" || bad "bench_limit: a conv model on 2 ranks, with its sum"

"$LIM" "dense:8 relu dense:2" 12 4 3 > "$tmp/out" 2>&1 &&
    grep -q "params=122 .*batchnorm_ms=0.0000 other_param_layers=0" "$tmp/out" &&
    ok "bench_limit: an MLP" || bad "bench_limit: an MLP"

"$LIM" "$CNN" 1x8 16 3 > "$tmp/out" 2>&1
[ $? -eq 2 ] && grep -q "INPUT '1x8' is neither F nor CxHxW" "$tmp/out" &&
    ok "bench_limit: a malformed INPUT is refused" || bad "bench_limit: a malformed INPUT is refused"

# The step benchmark itself, one round of a few steps (about a minute; the
# PyTorch side warms up for 20 steps whatever the count).
BENCH_ROUNDS=1 BENCH_STEPS=20 BENCH_CNN_STEPS=2 BENCH_BUCKETS=0 \
    /usr/bin/python3 scripts/bench_step.py --out "$tmp/bench.md" > "$tmp/out" 2>&1
st=$?
rows=$(grep -cE '^\| (MLP 784-512-256-10|MLP 784-1024-1024-10|CNN \(fashion-cnn.ini\)|CNN without batchnorm) \| [0-9.-]+ \| [0-9.-]+ \| [0-9.-]+ \(0\) \|' "$tmp/bench.md" 2>/dev/null)
[ $st -eq 0 ] && [ "$rows" = 4 ] &&
    grep -qE '^\| CNN \(fashion-cnn.ini\) \| 2 \|( [0-9.-]+%? \|){10}$' "$tmp/bench.md" &&
    grep -qE '^\| CNN \(fashion-cnn.ini\) \| 2 \|.* \| [0-9]+\.[0-9]{3} \| [1-9][0-9]*\.[0-9]{2} \|$' "$tmp/bench.md" &&
    grep -qE '^\| CNN \(fashion-cnn.ini\) \| 1 \|.* \| - \| - \|$' "$tmp/bench.md" &&
    ok "bench_step.py: a row for each MLP and each CNN, with the breakdown" ||
    { cp "$tmp/bench.md" "$tmp/out" 2>/dev/null; bad "bench_step.py: a row for each MLP and each CNN, with the breakdown"; }
summary
