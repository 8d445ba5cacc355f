#!/bin/sh
# `make run`: converts Debian's Fashion-MNIST (package dataset-fashion-mnist)
# to data/fashion-mnist.h5 once, then trains CONFIG (default
# configs/fashion-mlp.ini; configs/fashion-cnn.ini is the CNN) on NP local
# ranks (default 2), and draws its learning curves into curves.png in the
# config's [log] dir. Extra arguments go to `shardfit train`, e.g.
#   CONFIG=configs/fashion-cnn.ini scripts/run-fashion.sh --set train.epochs=3
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
NP=${NP:-2}
CONFIG=${CONFIG:-configs/fashion-mlp.ini}
src=/usr/share/datasets/fashion-mnist
out=data/fashion-mnist.h5

if [ ! -f "$out" ]; then
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte \
             t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [ -f "$src/$f.gz" ] || {
            echo "run-fashion: $src/$f.gz is missing: apt-get install dataset-fashion-mnist" >&2
            exit 2
        }
    done
    mkdir -p data
    # Convert into a temporary file and rename, so an interrupted run never
    # leaves a half-converted data file that later runs would trust.
    tmp="$out.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    "$BUILD/shardfit" convert idx "$src/train-images-idx3-ubyte.gz" \
        "$src/train-labels-idx1-ubyte.gz" --out "$tmp" --group /train
    "$BUILD/shardfit" convert idx "$src/t10k-images-idx3-ubyte.gz" \
        "$src/t10k-labels-idx1-ubyte.gz" --out "$tmp" --group /test
    mv "$tmp" "$out"
    trap - EXIT
fi
# `make run` always trains from scratch (checkpoint.resume = never), so it
# shows a whole run each time; its epoch checkpoints still land in the
# config's checkpoint.dir. Pass --set checkpoint.resume=auto to continue one.
scripts/mpirun-local.sh "$NP" "$BUILD/shardfit" train "$CONFIG" \
    --set checkpoint.resume=never "$@"
# Then the learning curves, in the run's log.dir: the config's [log] dir,
# unless a --set log.dir=... says otherwise.
dir=$(awk '/^\[/ { sec = $1 }
           sec == "[log]" && $1 == "dir" && $2 == "=" { print $3 }' "$CONFIG")
for a in "$@"; do
    case "$a" in log.dir=*) dir=${a#log.dir=} ;; esac
done
scripts/plot-curves "$dir" -o "$dir/curves.png" > /dev/null
echo "run-fashion: learning curves in $dir/curves.png (scripts/plot-curves $dir)"
