#!/bin/sh
# cli_bad_inputs.sh: runs every row of tests/bad-inputs.txt, the catalogue
# of bad inputs. Each must end with its exit status and its message, printed
# once (so no rank repeats it and none hangs: every job has 60 s). Ends with
# "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
T=$tmp

# Fixtures: 4 features, 3 classes; /val; /bad with a label 5 at row 250;
# /short one row shorter; /narrow with 2 features; two trained checkpoints.
add_group "$T/d.h5" /train 3 300
add_group "$T/d.h5" /val 4 100
add_group "$T/d.h5" /bad 3 300 250
add_group "$T/d.h5" /short 3 299
add_group "$T/d.h5" /narrow 5 100 -1 2
cat > "$T/c.ini" <<INI
[data]
path = $T/d.h5
features = /train/features
labels = /train/labels
val_features = /val/features
val_labels = /val/labels
[model]
layers = dense:32 relu dense:3
[train]
epochs = 1
batch_size = 16
[checkpoint]
dir = $T/run/ckpt
resume = never
[log]
dir = $T/run
progress = none
INI
# Float targets for a class model: (300,) from a fractional label column,
# (300, 9) from the features of a 10-column table; and a file of new data
# under names the training config never used (predict needs no labels).
awk 'BEGIN { srand(7); print "a,b,c,d,y";
    for (i = 0; i < 300; i++) printf "%.3f,%.3f,%.3f,%.3f,%.2f\n", rand(), rand(), rand(), rand(), rand() }' \
    > "$T/floaty.csv"
awk 'BEGIN { srand(8); printf "y"; for (k = 0; k < 9; k++) printf ",f%d", k; print "";
    for (i = 0; i < 300; i++) { printf "%d", i % 3; for (k = 0; k < 9; k++) printf ",%.3f", rand(); print "" } }' \
    > "$T/wide.csv"
"$SF" convert csv "$T/floaty.csv" --label-column y --out "$T/d.h5" --group /floaty > /dev/null &&
"$SF" convert csv "$T/wide.csv" --label-column y --out "$T/d.h5" --group /wide > /dev/null &&
gen_csv 9 50 > "$T/new.csv" &&
"$SF" convert csv "$T/new.csv" --label-column label --out "$T/new.h5" --group /new > /dev/null ||
    { echo "cannot make test data"; echo "0 passed, 1 failed"; exit 1; }
printf '[train]\nepochs = 2\nbatchsize = 4\n' > "$T/typo.ini"
printf '[optimiser]\nlr = 0.1\n' > "$T/section.ini"
printf 'localhost slots=abc\n' > "$T/bad-hostfile"
"$SF" train "$T/c.ini" --set "checkpoint.dir=$T/ckpt" > /dev/null &&
"$SF" train "$T/c.ini" --set "checkpoint.dir=$T/ckpt2" --set train.epochs=2 > /dev/null ||
    { echo "cannot make the checkpoints"; echo "0 passed, 1 failed"; exit 1; }

trim() { echo "$1" | sed 's/^ *//; s/ *$//'; }

check() { # name status pattern np command...
    name=$1 want=$2 pattern=$3 np=$4; shift 4
    if [ "$np" = - ] && [ "$category" = hostfile ]; then
        timeout 60 mpirun "$@" < /dev/null > "$T/out" 2>&1
    elif [ "$np" = - ]; then
        timeout 60 "$SF" "$@" < /dev/null > "$T/out" 2>&1
    else
        timeout 60 "$RUN" "$np" "$SF" "$@" < /dev/null > "$T/out" 2>&1
    fi
    st=$?
    lines=$(grep -c 'error:' "$T/out")
    if { [ "$want" = nz ] && [ "$st" -ne 0 ] && [ "$st" -ne 124 ] || [ "$st" = "$want" ]; } &&
       grep -q -- "$pattern" "$T/out" &&
       { [ "$category" = hostfile ] || [ "$lines" -eq $((want == 0 ? 0 : 1)) ]; }
    then passed=$((passed + 1)); echo "ok   $name"
    else failed=$((failed + 1)); echo "FAIL $name: status $st (want $want), $lines error lines, pattern '$pattern'"
         sed 's/^/     | /' "$T/out" | tail -n 6
    fi
}

while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    category=$(trim "$(echo "$line" | cut -d'|' -f1)")
    ranks=$(trim "$(echo "$line" | cut -d'|' -f2)")
    status=$(trim "$(echo "$line" | cut -d'|' -f3)")
    pattern=$(trim "$(echo "$line" | cut -d'|' -f4)" | sed "s|\\\$T|$T|g")
    command=$(trim "$(echo "$line" | cut -d'|' -f5-)" | sed "s|\\\$T|$T|g")
    for np in $(echo "$ranks" | tr ',' ' '); do
        label="$category: $command"; [ "$np" != - ] && label="$label (np=$np)"
        eval "set -- $command"
        check "$(echo "$label" | sed "s|$T|\$T|g")" "$status" "$pattern" "$np" "$@"
    done
done < tests/bad-inputs.txt

summary
