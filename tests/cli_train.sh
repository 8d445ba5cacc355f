#!/bin/sh
# cli_train.sh: `shardfit train` as a user runs it, under mpirun with 1, 2
# and 3 ranks: an end-to-end run on generated data, and every start-up error
# of SPEC §3 / issue 2 item 8 with its exit status, its message printed
# once, and no hang (each job has a 60 s limit; a hang shows as status 124).
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

# expect_fail NAME STATUS PATTERN ARGS...: on 1, 2 and 3 ranks, the job
# exits with STATUS, prints PATTERN, and prints exactly one error line.
expect_fail() {
    name=$1 want=$2 pattern=$3; shift 3
    for np in 1 2 3; do
        timeout 60 "$RUN" "$np" "$SF" train "$@" > "$tmp/out" 2>&1
        st=$?
        n=$(grep -c 'error:' "$tmp/out")
        if [ "$st" -eq "$want" ] && grep -q -- "$pattern" "$tmp/out" && [ "$n" -eq 1 ]; then
            ok "$name (np=$np)"
        else
            bad "$name (np=$np): status $st (want $want), $n error lines, pattern '$pattern'"
        fi
    done
}

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

expect_fail "missing config file" 2 "nope.ini" "$tmp/nope.ini"
expect_fail "missing data file" 2 "$tmp/missing.h5" "$tmp/c.ini" --set "data.path=$tmp/missing.h5"
expect_fail "missing dataset in the file" 2 "/train/nope" "$tmp/c.ini" --set data.features=/train/nope
expect_fail "feature and label rows differ" 2 "299" "$tmp/c.ini" --set data.features=/short/features
expect_fail "label outside [0, classes)" 2 "label 5 at row 250 is outside \[0, 3)" "$tmp/c.ini" --set data.labels=/bad/labels
expect_fail "unknown key suggests the nearest" 2 "did you mean 'train.batch_size'" "$tmp/c.ini" --set train.batchsize=3
expect_fail "value of the wrong type" 2 "train.epochs" "$tmp/c.ini" --set train.epochs=abc
expect_fail "value out of range" 2 "optimizer.momentum" "$tmp/c.ini" --set optimizer.momentum=1.5
expect_fail "batch_size larger than N" 2 "larger than the 300 training samples" "$tmp/c.ini" --set train.batch_size=301
expect_fail "layer list that does not parse" 2 "dense:x" "$tmp/c.ini" --set "model.layers=dense:16 relu dense:x"

expect_fail "unknown optimizer" 2 "optimizer.name = 'adamm'" "$tmp/c.ini" --set optimizer.name=adamm
expect_fail "unknown schedule" 2 "schedule.name = 'cosin'" "$tmp/c.ini" --set schedule.name=cosin
expect_fail "negative lr" 2 "optimizer.lr" "$tmp/c.ini" --set optimizer.lr=-0.1
expect_fail "non-finite lr" 2 "optimizer.lr" "$tmp/c.ini" --set optimizer.lr=inf
expect_fail "beta outside [0, 1)" 2 "optimizer.beta2" "$tmp/c.ini" --set optimizer.beta2=1
expect_fail "negative patience" 2 "stop.patience" "$tmp/c.ini" --set stop.patience=-1
expect_fail "milestones not increasing" 2 "schedule.milestones" "$tmp/c.ini" --set schedule.name=multistep --set schedule.milestones=5,3
expect_fail "accuracy monitor needs class labels" 2 "stop.monitor = accuracy needs integer class labels" "$tmp/c.ini" --set data.labels=/train/features --set data.val_labels=/val/features --set model.loss=mse --set "model.layers=dense:8 relu dense:4" --set stop.target=0.9 --set stop.monitor=accuracy

printf '[train]\nepochs = 2\nbatchsize = 4\n' > "$tmp/typo.ini"
expect_fail "unknown key in the file names the line" 2 "typo.ini:3" "$tmp/typo.ini"

"$SF" train > "$tmp/out" 2>&1; st=$?
if [ "$st" -eq 2 ] && grep -q "expected a config file" "$tmp/out"; then ok "train without a config is a usage error"; else bad "train without a config is a usage error"; fi
"$SF" bogus > "$tmp/out" 2>&1; st=$?
if [ "$st" -eq 2 ] && grep -q "unknown command 'bogus'" "$tmp/out"; then ok "unknown command"; else bad "unknown command"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
