#!/bin/sh
# Checkpoint write and load times (part of `make bench`), for the
# Fashion-MNIST MLP (0.5M parameters) and a ~100M-parameter MLP, next to what
# dd writes on the same disk with fsync. Appends to $BUILD/bench.txt.
# shardfit reports each checkpoint's write ("wrote ... in") and a resume's
# read ("read in") itself; SGD with momentum, so a file holds the weights
# and one momentum block.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out="$BUILD/bench.txt"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shardfit-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
[ -f data/fashion-mnist.h5 ] || BUILD=$BUILD NP=1 scripts/run-fashion.sh \
    --set train.max_steps=1 --set log.progress=none --set "log.dir=$tmp/prep" \
    --set "checkpoint.dir=$tmp/prep/ckpt"

# run NAME LAYERS: one step, one checkpoint, then a resume that reads it.
run() {
    set -- "$1" "$2" --set train.epochs=2 --set train.max_steps=1 \
        --set "model.layers=$2" --set log.progress=epoch \
        --set "log.dir=$tmp/$1" --set "checkpoint.dir=$tmp/$1/ckpt"
    name=$1 layers=$2; shift 2
    "$BUILD/shardfit" train configs/fashion-mlp.ini "$@" > "$tmp/w.log"
    "$BUILD/shardfit" train configs/fashion-mlp.ini "$@" --set train.max_steps=2 \
        --set checkpoint.resume=auto > "$tmp/r.log"
    w=$(sed -n 's/^shardfit: wrote .* (\([0-9.]*\) MB) in \([0-9.]*\)s, \([0-9]*\) MB\/s$/\1 \2 \3/p' "$tmp/w.log" | head -n 1)
    r=$(sed -n 's/.*read in \([0-9.]*\)s).*/\1/p' "$tmp/r.log")
    echo "$w $r" | awk -v n="$name" '{ printf "%-18s %7.1f MB  write %6.3fs (%4.0f MB/s)  read %6.3fs (%4.0f MB/s)\n", n, $1, $2, $1 / $2, $4, $1 / ($4 > 0 ? $4 : 1e-3) }'
}

mb=512
dd if=/dev/zero of="$tmp/dd" bs=1M count=$mb conv=fsync 2> "$tmp/dd.log"
dd_rate=$(sed -n 's/.*, \([0-9.]*\) \([MG]B\)\/s$/\1 \2/p' "$tmp/dd.log" | awk '{ print ($2 == "GB") ? $1 * 1000 : $1 }')
{
    echo "# checkpoint write/read (rank 0, one file; dd of ${mb} MB with fsync: ${dd_rate} MB/s)"
    run "fashion-mlp 0.5M" "dense:512 relu dense:256 relu dense:10"
    run "mlp 101M params" "dense:12000 relu dense:7700 relu dense:10"
} | tee -a "$out"
