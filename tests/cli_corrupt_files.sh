#!/bin/sh
# cli_corrupt_files.sh: every file in fuzz/known-hdf5/ (corrupt HDF5 files
# that crash, hang or exhaust memory inside libhdf5 1.10.8) through the
# commands that read it, built as users run them. Each must end the command
# with exit 2 and one "error:" line naming the file, not a signal or a
# hang: src/h5guard.c reads such files first in a child process. A resume
# scan must skip a corrupt newest checkpoint and continue from the one
# before. Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
T=$tmp
# Healthy reads of these tiny files take milliseconds; the files that make
# HDF5 loop cost this long each.
export SHARDFIT_FILE_CHECK_TIMEOUT=3

# 5 features and 3 classes, the model of fuzz/fuzz_checkpoint.c (so a
# checkpoint's reads get as far as they did under the fuzzer).
awk 'BEGIN { srand(7); print "a,b,c,d,e,label";
    for (i = 0; i < 96; i++) printf "%.3f,%.3f,%.3f,%.3f,%.3f,%d\n",
        rand(), rand(), rand(), rand(), rand(), i % 3 }' > "$T/d.csv"
"$SF" convert csv "$T/d.csv" --label-column label --out "$T/d.h5" --group /train > /dev/null ||
    { echo "cannot make test data"; echo "0 passed, 1 failed"; exit 1; }
cat > "$T/c.ini" <<INI
[data]
path = $T/d.h5
features = /train/features
labels = /train/labels
[model]
layers = dense:6 relu dense:3
[optimizer]
name = adam
[train]
epochs = 1
batch_size = 16
[checkpoint]
dir = $T/ckpt
resume = never
[log]
dir = $T/run
progress = none
INI

# expect NAME FILE command...: exit 2, one error line naming FILE, in time.
expect() {
    name=$1 file=$2; shift 2
    timeout -s KILL 60 "$@" < /dev/null > "$T/out" 2>&1
    st=$?
    lines=$(grep -c 'error:' "$T/out")
    if [ "$st" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "error:.*$(basename "$file")" "$T/out"
    then ok "$name"
    else bad "$name: status $st (want 2), $lines error lines"
    fi
}

# clean NAME FILE command...: a command that may succeed (not every file
# is corrupt where this command reads) must end by itself, with exit 0, 1
# (a read failing) or 2, and if it fails, with one error line naming FILE.
clean() {
    name=$1 file=$2; shift 2
    timeout -s KILL 60 "$@" < /dev/null > "$T/out" 2>&1
    st=$?
    lines=$(grep -c 'error:' "$T/out")
    if [ "$st" -eq 0 ] || { [ "$st" -le 2 ] && [ "$lines" -eq 1 ] &&
                            grep -q "error:.*$(basename "$file")" "$T/out"; }
    then ok "$name"
    else bad "$name: status $st (want 0, 1 or 2), $lines error lines"
    fi
}

# The dataset files have 4 rows and labels up to 9.
for f in fuzz/known-hdf5/dataset/*.h5; do
    n=$(basename "$f")
    clean "train on $n" "$f" "$SF" train "$T/c.ini" --set "data.path=$f" \
        --set data.features=/train/images --set data.labels=/train/labels \
        --set train.batch_size=all --set "model.layers=dense:4 relu dense:10"
    clean "inspect $n" "$f" "$SF" inspect "$f"
done
# Every rank reads the data file: the message still comes once.
f=fuzz/known-hdf5/dataset/segv-h5f-accum-read-from-sf-h5-path-exists.h5
expect "train on 2 ranks on $(basename $f)" "$f" "$RUN" 2 "$SF" train "$T/c.ini" \
    --set "data.path=$f" --set data.features=/train/images --set data.labels=/train/labels

for f in fuzz/known-hdf5/checkpoint/*.h5; do
    n=$(basename "$f")
    expect "resume from $n" "$f" "$SF" train "$T/c.ini" --set "checkpoint.resume=$f"
    expect "init_checkpoint $n" "$f" "$SF" train "$T/c.ini" --set "model.init_checkpoint=$f"
    expect "eval $n" "$f" "$SF" eval --checkpoint "$f" --data "$T/d.h5" \
        --features /train/features --labels /train/labels
    clean "inspect $n" "$f" "$SF" inspect "$f"
done

# resume = auto: a crashing file as the newest checkpoint is skipped with a
# warning, and the run continues from the epoch before it.
"$SF" train "$T/c.ini" --set train.epochs=1 > /dev/null 2>&1 &&
cp fuzz/known-hdf5/checkpoint/segv-h5hg-read-from-get-string.h5 "$T/ckpt/epoch-0002.h5" &&
cp "$T/ckpt/epoch-0001.h5" "$T/epoch-0001.before" ||
    { bad "resume = auto: cannot set up"; summary; exit 1; }
"$RUN" 2 "$SF" train "$T/c.ini" --set checkpoint.resume=auto --set train.epochs=3 \
    < /dev/null > "$T/out" 2>&1
st=$?
if [ "$st" -eq 0 ] && grep -q "skipping checkpoint.*epoch-0002.h5.*HDF5 library" "$T/out" &&
   grep -q "epoch-0001.h5" "$T/out" && cmp -s "$T/ckpt/epoch-0001.h5" "$T/epoch-0001.before" &&
   [ -f "$T/ckpt/epoch-0003.h5" ]
then ok "resume = auto skips a crashing newest checkpoint"
else bad "resume = auto skips a crashing newest checkpoint: status $st"
fi

summary
