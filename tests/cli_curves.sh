#!/bin/sh
# cli_curves.sh: scripts/plot-curves on real run directories: a run with
# validation and early stopping, one without validation, a float-target
# (mse) run (no accuracy panel: the image is one panel wide), several runs
# overlaid against wall time, and bad directories (exit 2, a message naming
# them). Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
PLOT="$(pwd)/scripts/plot-curves"

add_group "$tmp/d.h5" /train 3 300
cat > "$tmp/c.ini" <<INI
[data]
path = $tmp/d.h5
features = /train/features
labels = /train/labels
validation_split = 0.2
[model]
layers = dense:16 relu dense:3
[train]
epochs = 6
batch_size = 16
[optimizer]
lr = 0.1
momentum = 0.9
[stop]
early_stopping = true
patience = 1
[checkpoint]
every_epochs = 0
[log]
progress = none
INI
train() { name=$1; shift; "$SF" train "$tmp/c.ini" --set "log.dir=$tmp/$name" "$@" > "$tmp/out" 2>&1 || bad "training run $name"; }
train val
train noval --set data.validation_split=0 --set stop.monitor=loss
train mse --set data.labels=/train/features --set model.loss=mse \
    --set "model.layers=dense:8 relu dense:4" --set stop.early_stopping=false

# png FILE: prints the width of a valid PNG (signature, then IHDR), else nothing.
png() {
    [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
        od -An -tu1 -j16 -N4 "$1" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }'
}

"$PLOT" "$tmp/val" > "$tmp/out" 2>&1
if [ -n "$(png "$tmp/val/curves.png")" ] && grep -q "wrote $tmp/val/curves.png" "$tmp/out"
then ok "a run with validation: a valid PNG in RUN_DIR/curves.png"; else bad "a run with validation plots"; fi
two=$(png "$tmp/val/curves.png")
"$PLOT" "$tmp/noval" -o "$tmp/noval.png" > "$tmp/out" 2>&1
[ -n "$(png "$tmp/noval.png")" ] && ok "a run without validation plots" || bad "a run without validation plots"
"$PLOT" "$tmp/mse" -o "$tmp/mse.png" > "$tmp/out" 2>&1
one=$(png "$tmp/mse.png")
if [ -n "$one" ] && [ -n "$two" ] && [ "$one" -lt "$two" ]
then ok "an mse run has no accuracy panel ($one vs $two px wide)"; else bad "an mse run has no accuracy panel ($one vs $two)"; fi
"$PLOT" "$tmp/val" "$tmp/noval" "$tmp/mse" --time -o "$tmp/all.png" > "$tmp/out" 2>&1
[ -n "$(png "$tmp/all.png")" ] && ok "three runs overlaid, against wall time" || bad "three runs overlaid, against wall time"

# Bad directories: exit 2 and a message naming them.
expect2() {
    what=$1 pattern=$2; shift 2
    "$PLOT" "$@" -o "$tmp/bad.png" > "$tmp/out" 2>&1; st=$?
    if [ "$st" -eq 2 ] && grep -q -- "$pattern" "$tmp/out" && [ ! -f "$tmp/bad.png" ]
    then ok "$what: exit 2"; else bad "$what: exit 2 (status $st)"; fi
}
expect2 "a directory that does not exist" "error: '$tmp/nope' is not a directory" "$tmp/val" "$tmp/nope"
mkdir "$tmp/empty"
expect2 "a directory without metrics" "error: run directory '$tmp/empty' has no metrics.jsonl" "$tmp/empty"
mkdir "$tmp/junk" && echo "not json" > "$tmp/junk/metrics.jsonl"
expect2 "a corrupt metrics file" "error: '$tmp/junk/metrics.jsonl' line 1: not a metrics record" "$tmp/junk"
expect2 "no run at all" "usage: plot-curves"

summary
