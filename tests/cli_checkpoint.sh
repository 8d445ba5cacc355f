#!/bin/sh
# cli_checkpoint.sh: checkpoints as users meet them: preemption by SIGUSR1
# to mpirun and by SIGTERM to every rank (exit 0, a step checkpoint, and a
# resume that ends with the uninterrupted run's weights), keep_last,
# init_checkpoint, and the errors: another model's checkpoint, an unusable
# checkpoint.dir, a missing resume path, a write failing on a full disk.
# Final weights are compared through `shardfit eval`, whose 9 significant
# digits tell apart any two different weight sets. Ends "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh

add_group "$tmp/d.h5" /train 7 40000
cat > "$tmp/c.ini" <<INI
[data]
path = $tmp/d.h5
features = /train/features
labels = /train/labels
[model]
layers = dense:256 relu dense:256 relu dense:3
[train]
epochs = 12
batch_size = 32
[optimizer]
lr = 0.05
momentum = 0.9
[checkpoint]
keep_last = 0
[log]
progress = none
INI
# cfg NAME: the config's checkpoint and log dirs for run NAME.
cfg() { printf -- '--set checkpoint.dir=%s/%s/ckpt --set log.dir=%s/%s' "$tmp" "$1" "$tmp" "$1"; }
eval_of() { "$SF" eval --checkpoint "$1" --data "$tmp/d.h5" 2>&1; }

# The reference: 12 epochs without a stop.
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg straight) > "$tmp/out" 2>&1 || bad "reference run"
want=$(eval_of "$tmp/straight/ckpt/epoch-0012.h5")

# preempt NAME HOW: starts the run, interrupts it after its first epoch,
# resumes it.
preempt() {
    name=$1 how=$2
    "$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg "$name") > "$tmp/out" 2>&1 &
    job=$!
    # Signal once the first epoch is saved: mid-run however fast the machine.
    i=0
    while [ ! -f "$tmp/$name/ckpt/epoch-0001.h5" ] && [ $i -lt 600 ]; do
        sleep 0.05; i=$((i + 1))
    done
    if [ "$how" = usr1 ]; then kill -USR1 "$job"; else kill -TERM $(pgrep -P "$job" shardfit); fi
    wait "$job"; status=$?
    steps=$(ls "$tmp/$name/ckpt" | grep -c '^step-')
    if [ "$status" -eq 0 ] && grep -q "stopped by a signal after step [0-9]*; run the same command again to continue" "$tmp/out" &&
       [ "$steps" -ge 1 ] && [ ! -f "$tmp/$name/ckpt/epoch-0012.h5" ]
    then ok "$how: exit 0 with a step checkpoint"; else bad "$how: exit 0 with a step checkpoint (status $status, $steps step files)"; fi
    "$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg "$name") > "$tmp/out" 2>&1
    got=$(eval_of "$tmp/$name/ckpt/epoch-0012.h5")
    if grep -q "resuming from .*step-" "$tmp/out" && [ "$got" = "$want" ]
    then ok "$how: resumed, ends with the uninterrupted run's weights"; else bad "$how: resumed run ends as the uninterrupted run ($got vs $want)"; fi
}
preempt usr1 usr1
preempt term term

# keep_last: only the newest files stay.
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg keep) --set train.epochs=4 --set checkpoint.keep_last=2 > "$tmp/out" 2>&1
if [ "$(ls "$tmp/keep/ckpt" | tr '\n' ' ')" = "epoch-0003.h5 epoch-0004.h5 " ]
then ok "keep_last = 2 keeps the two newest"; else bad "keep_last = 2 keeps the two newest: $(ls "$tmp/keep/ckpt")"; fi

# resume = PATH continues that file; init_checkpoint starts from its weights.
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg path) --set "checkpoint.resume=$tmp/straight/ckpt/epoch-0011.h5" > "$tmp/out" 2>&1
if [ "$(eval_of "$tmp/path/ckpt/epoch-0012.h5")" = "$want" ]
then ok "resume = PATH continues that checkpoint"; else bad "resume = PATH continues that checkpoint"; fi
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg init) --set train.epochs=1 --set "model.init_checkpoint=$tmp/straight/ckpt/epoch-0012.h5" --set log.progress=epoch > "$tmp/out" 2>&1
first=$(sed -n 's/^epoch 1\/1 .* loss \([0-9.]*\) .*/\1/p' "$tmp/out")
if grep -q "starting from the weights in" "$tmp/out" && [ -n "$first" ] &&
   awk -v l="$first" 'BEGIN { exit !(l < 0.3) }'
then ok "init_checkpoint starts from trained weights (first epoch loss $first)"; else bad "init_checkpoint starts from trained weights"; fi

# expect_fail NAME STATUS PATTERN ARGS...
expect_fail() {
    name=$1 want_status=$2 pattern=$3; shift 3
    timeout 60 "$RUN" 2 "$SF" train "$tmp/c.ini" "$@" > "$tmp/out" 2>&1; st=$?
    if [ "$st" -eq "$want_status" ] && grep -q -- "$pattern" "$tmp/out" && [ "$(grep -c 'error:' "$tmp/out")" -eq 1 ]
    then ok "$name"; else bad "$name (status $st)"; fi
}
expect_fail "another model's checkpoint names the layer and shapes" 2 \
    "layer 00_dense: checkpoint weight (256, 4), model (128, 4)" \
    $(cfg other) --set "model.layers=dense:128 relu dense:256 relu dense:3" \
    --set "checkpoint.resume=$tmp/straight/ckpt/epoch-0012.h5"
expect_fail "resume = PATH that does not exist" 2 "checkpoint.resume = '$tmp/nope.h5'" \
    $(cfg other) --set "checkpoint.resume=$tmp/nope.h5"
expect_fail "checkpoint.dir that cannot be created" 2 "checkpoint.dir" \
    --set checkpoint.dir=/etc/passwd/ckpt --set "log.dir=$tmp/other"

# A full disk: the ranks may not write files over 12 MB (ulimit -f on the
# ranks only: Open MPI's own shared-memory files need the room), and this
# model's checkpoint is 17 MB. The write fails, the job ends with a message
# naming the file, no temporary file stays, and the earlier checkpoint
# still resumes.
big_layers="model.layers=dense:2048 relu dense:1024 relu dense:3"
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg full) --set "$big_layers" --set train.epochs=1 > "$tmp/out" 2>&1
timeout 120 "$RUN" 2 sh -c 'ulimit -f 12288; exec "$@"' sh "$SF" train "$tmp/c.ini" \
    $(cfg full) --set "$big_layers" --set train.epochs=2 > "$tmp/out" 2>&1; st=$?
if [ "$st" -eq 1 ] && grep -q "error: .*epoch-0002.h5.*File too large" "$tmp/out" &&
   [ ! -f "$tmp/full/ckpt/epoch-0002.h5" ] && [ -z "$(ls -A "$tmp/full/ckpt" | grep tmp)" ]
then ok "a failed write ends the job, names the file, leaves nothing behind"; else bad "a failed write ends the job (status $st)"; fi
"$RUN" 2 "$SF" train "$tmp/c.ini" $(cfg full) --set "$big_layers" --set train.epochs=2 > "$tmp/out" 2>&1
if grep -q "resuming from .*epoch-0001.h5" "$tmp/out" && [ -f "$tmp/full/ckpt/epoch-0002.h5" ]
then ok "the checkpoint before the failure still resumes"; else bad "the checkpoint before the failure still resumes"; fi

summary
