#!/bin/sh
# `make bench`: throughput of the Fashion-MNIST MLP (configs/fashion-mlp.ini)
# for each loader on 1 and 2 local ranks, 3 epochs each, written to
# $BUILD/bench.txt. Numbers on a shared machine drift 5-10% between runs:
# compare rows of one file, not files of different days.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out="$BUILD/bench.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Makes data/fashion-mnist.h5 if needed, without training.
[ -f data/fashion-mnist.h5 ] || BUILD=$BUILD NP=1 scripts/run-fashion.sh \
    --set train.max_steps=1 --set log.progress=none --set "log.dir=$tmp/prep"

{
    echo "# shardfit bench $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"
    echo "# Fashion-MNIST MLP 784-512-256-10, batch 128, 3 epochs; samples/s of the last epoch"
    printf '%-10s %3s %12s %10s %10s %10s\n' loader np samples/s compute_s allreduce_s data_s
} > "$out"
for loader in shard replicate; do
    for np in 1 2; do
        dir="$tmp/$loader-$np"
        scripts/mpirun-local.sh "$np" "$BUILD/shardfit" train configs/fashion-mlp.ini \
            --set train.epochs=3 --set "data.loader=$loader" \
            --set log.progress=none --set "log.dir=$dir" > /dev/null
        tail -n 1 "$dir/metrics.jsonl" | awk -v l="$loader" -v np="$np" '
            function get(k,   r) { r = $0; sub(".*\"" k "\": ", "", r); sub(",.*", "", r); return r }
            { printf "%-10s %3d %12.0f %10.3f %10.3f %10.3f\n", l, np,
                     get("samples_per_sec"), get("compute_seconds"),
                     get("allreduce_seconds"), get("data_seconds") }' >> "$out"
    done
done
cat "$out"
