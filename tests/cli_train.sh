#!/bin/sh
# cli_train.sh: `shardfit train` as a user runs it: an end-to-end run on
# generated data under mpirun with 1, 2 and 3 ranks. (Every bad input is in
# the catalogue, tests/bad-inputs.txt, run by tests/cli_bad_inputs.sh.)
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SF="$(pwd)/$BUILD/shardfit"
RUN="$(pwd)/scripts/mpirun-local.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0; failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; [ -f "$tmp/out" ] && sed 's/^/     | /' "$tmp/out" | tail -n 15; }

# Generated data: 4 features, 3 classes; /val from another draw; /bad has a
# label 5; /short has one row fewer than /train's labels.
gen() { awk -v seed="$1" -v n="$2" -v bad="$3" 'BEGIN { srand(seed);
    print "a,b,c,d,label";
    for (i = 0; i < n; i++) { a = rand(); b = rand(); c = rand(); d = rand();
        l = (a + b > c + d) ? 1 : 0; if (a > 0.75) l = 2; if (i == bad) l = 5;
        printf "%.4f,%.4f,%.4f,%.4f,%d\n", a, b, c, d, l } }'; }
gen 3 300 -1 > "$tmp/train.csv"
gen 4 100 -1 > "$tmp/val.csv"
gen 3 300 250 > "$tmp/bad.csv"
gen 3 299 -1 > "$tmp/short.csv"
for g in train val bad short; do
    "$SF" convert csv "$tmp/$g.csv" --label-column label --out "$tmp/d.h5" \
        --group "/$g" > /dev/null || { echo "cannot make test data"; exit 1; }
done

cat > "$tmp/c.ini" <<INI
[data]
path = $tmp/d.h5
features = /train/features
labels = /train/labels
val_features = /val/features
val_labels = /val/labels

[model]
layers = dense:32 relu dense:3

[train]
epochs = 3
batch_size = 16

[optimizer]
lr = 0.1
momentum = 0.9

[checkpoint]
dir = $tmp/run/ckpt

[log]
dir = $tmp/run
INI

# End to end: trains, learns, writes one metrics line per epoch.
for np in 1 2 3; do
    rm -rf "$tmp/run"
    if timeout 120 "$RUN" "$np" "$SF" train "$tmp/c.ini" > "$tmp/out" 2>&1 &&
       grep -q "mini-batch gradient descent: 300 samples, batch 16, 19 steps per epoch (last batch 12 samples)" "$tmp/out" &&
       grep -q "^shardfit: done (epochs done): 3 epochs, 57 steps" "$tmp/out" &&
       [ "$(wc -l < "$tmp/run/metrics.jsonl")" -eq 3 ] &&
       tail -n 1 "$tmp/run/metrics.jsonl" | grep -q "\"world_size\": $np" &&
       awk -F'"val_accuracy": ' 'END { split($2, a, ","); exit !(a[1] > 0.8) }' "$tmp/run/metrics.jsonl"
    then ok "trains end to end (np=$np)"; else bad "trains end to end (np=$np)"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
