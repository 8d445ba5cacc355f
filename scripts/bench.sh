#!/bin/sh
# `make bench`: throughput and memory of the Fashion-MNIST MLP
# (configs/fashion-mlp.ini) for each loader, written to $BUILD/bench.txt:
#  - Fashion-MNIST as `shardfit convert` writes it (gzip chunks), each loader
#    on 1 and 2 local ranks, 3 epochs; stream also from a contiguous copy;
#  - a generated ~2 GB set (2.5M rows of shifted Fashion-MNIST images,
#    contiguous), each loader on 2 ranks, the first 4000 steps.
# samples/s is the last epoch's; peak_rss_mb is rank 0's VmHWM (every rank
# holds the same share). Numbers on a shared machine drift 5-10% between
# runs: compare rows of one file, not files of different days.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out="$BUILD/bench.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fashion=data/fashion-mnist.h5
contig=data/fashion-mnist-contig.h5
big=data/generated-2g.h5

# Makes data/fashion-mnist.h5 if needed, without training.
[ -f $fashion ] || BUILD=$BUILD NP=1 scripts/run-fashion.sh \
    --set train.max_steps=1 --set log.progress=none --set "log.dir=$tmp/prep" \
    --set "checkpoint.dir=$tmp/prep/ckpt"

# The contiguous copies, made once (data/ is not in git); h5py writes
# contiguous datasets unless asked for chunks.
if [ ! -f $contig ] || [ ! -f $big ]; then
    /usr/bin/python3 - "$fashion" "$contig" "$big" <<'EOF'
import os, sys
import h5py
import numpy as np

src, contig, big = sys.argv[1:]
with h5py.File(src, "r") as f:
    data = {k: f[k][:] for k in ("/train/images", "/train/labels",
                                 "/test/images", "/test/labels")}
if not os.path.exists(contig):
    with h5py.File(contig + ".tmp", "w") as f:
        for k, v in data.items():
            f[k] = v
    os.rename(contig + ".tmp", contig)
if not os.path.exists(big):
    x, y = data["/train/images"], data["/train/labels"]
    n = 2_500_000
    with h5py.File(big + ".tmp", "w") as f:
        X = f.create_dataset("/train/images", (n, 28, 28), "uint8")
        Y = f.create_dataset("/train/labels", (n,), "uint8")
        for t, i in enumerate(range(0, n, len(x))):
            m = min(len(x), n - i)
            X[i:i + m] = np.roll(x[:m], t % 5 - 2, axis=2)  # shifted copies
            Y[i:i + m] = y[:m]
    os.rename(big + ".tmp", big)
EOF
fi
cat $big > /dev/null # in the page cache, as Fashion-MNIST is after one run

# run LABEL DATA NP LOADER [--set ...]: one training run, one table row.
run() {
    label=$1 data=$2 np=$3 loader=$4
    shift 4
    dir="$tmp/$label-$np-$loader"
    scripts/mpirun-local.sh "$np" "$BUILD/shardfit" train configs/fashion-mlp.ini \
        --set "data.path=$data" --set "data.loader=$loader" \
        --set log.progress=none --set "log.dir=$dir" \
        --set checkpoint.every_epochs=0 --set checkpoint.resume=never \
        --set "checkpoint.dir=$dir/ckpt" "$@" > /dev/null
    tail -n 1 "$dir/metrics.jsonl" | awk -v d="$label" -v l="$loader" -v np="$np" '
        function get(k,   r) { r = $0; sub(".*\"" k "\": ", "", r); sub("[,}].*", "", r); return r }
        { printf "%-10s %-10s %3d %10.0f %9.3f %11.3f %8.3f %12.0f\n", d, l, np,
                 get("samples_per_sec"), get("compute_seconds"),
                 get("allreduce_seconds"), get("data_seconds"), get("peak_rss_mb") }' >> "$out"
}

{
    echo "# shardfit bench $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"
    echo "# MLP 784-512-256-10, batch 128. fashion: $fashion (gzip chunks), 3 epochs;"
    echo "# fashion-c: $contig (contiguous); 2g: $big (2.5M rows, contiguous), 4000 steps"
    printf '%-10s %-10s %3s %10s %9s %11s %8s %12s\n' data loader np samples/s \
        compute_s allreduce_s data_s peak_rss_mb
} > "$out"
for np in 1 2; do
    for loader in shard replicate stream; do
        run fashion $fashion "$np" $loader --set train.epochs=3
    done
    run fashion-c $contig "$np" stream --set train.epochs=3
done
for loader in shard replicate stream; do
    run 2g $big 2 $loader --set train.epochs=1 --set train.max_steps=4000 \
        --set data.val_features= --set data.val_labels=
done
cat "$out"
