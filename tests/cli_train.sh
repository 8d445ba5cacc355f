#!/bin/sh
# cli_train.sh: `shardfit train` as a user runs it: an end-to-end run on
# generated data under mpirun with 1, 2 and 3 ranks. (Every bad input is in
# the catalogue, tests/bad-inputs.txt, run by tests/cli_bad_inputs.sh.)
# Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh

# Generated data: 4 features, 3 classes; /val from another draw.
add_group "$tmp/d.h5" /train 3 300
add_group "$tmp/d.h5" /val 4 100

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

# comm.node_shared, the default on one host: said on the start line, and
# the same metrics as the allreduce on 2 ranks (bitwise the same sums); with
# no room for the window (here: a backing directory that does not exist) it
# falls back and says why.
rm -rf "$tmp/run"
"$RUN" 2 "$SF" train "$tmp/c.ini" --set checkpoint.every_epochs=0 \
    --set comm.node_shared=false > "$tmp/out-ar" 2>&1
cp "$tmp/run/metrics.jsonl" "$tmp/m-ar"
rm -rf "$tmp/run"
if timeout 120 "$RUN" 2 "$SF" train "$tmp/c.ini" \
       --set checkpoint.every_epochs=0 > "$tmp/out" 2>&1 &&
   grep -q "^shardfit: gradient summed in node-shared memory" "$tmp/out" &&
   grep -q "^shardfit: gradient summed by one allreduce after backward\$" "$tmp/out-ar" &&
   grep -q '"gradient_sum": "node_shared"' "$tmp/run/summary.json" &&
   /usr/bin/python3 - "$tmp/m-ar" "$tmp/run/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
keys = ("loss", "accuracy", "val_loss", "val_accuracy")
assert len(a) == len(b) == 3 and all(x[k] == y[k] for x, y in zip(a, b) for k in keys), (a, b)
PY
then ok "comm.node_shared on 2 ranks: the allreduce's metrics"; else bad "comm.node_shared on 2 ranks: the allreduce's metrics"; fi
rm -rf "$tmp/run"
if OMPI_MCA_osc_sm_backing_directory=/nonexistent MPIRUN_EXTRA="-x OMPI_MCA_osc_sm_backing_directory" \
       timeout 120 "$RUN" 2 "$SF" train "$tmp/c.ini" --set comm.node_shared=true > "$tmp/out" 2>&1 &&
   grep -q "allreduce after backward (comm.node_shared: no room for its window in /dev/shm" "$tmp/out"
then ok "comm.node_shared without room: the allreduce, said"; else bad "comm.node_shared without room: the allreduce, said"; fi

# comm.bucket_mb: the buckets' sums go by Open MPI's ring unless the user
# chose another algorithm (libnbc's own choice, a binomial tree, serialises
# a link's two directions); said on the start line. 3 ranks, so the ring
# and the tree sum in different orders: the runs agree to float rounding.
for alg in "" 2; do
    rm -rf "$tmp/run"
    want=ring; [ -n "$alg" ] && want=binomial
    if env ${alg:+OMPI_MCA_coll_libnbc_iallreduce_algorithm=$alg} timeout 120 "$RUN" 3 "$SF" train "$tmp/c.ini" \
           --set checkpoint.every_epochs=0 --set comm.bucket_mb=0.0002 > "$tmp/out" 2>&1 &&
       grep -q "^shardfit: gradient summed in [2-9] buckets during backward (comm.bucket_mb = 0.0002; Open MPI's iallreduce: $want)\$" "$tmp/out" &&
       grep -q '"gradient_sum": "buckets"' "$tmp/run/summary.json"
    then ok "comm.bucket_mb on 3 ranks: Open MPI's $want, said"; else bad "comm.bucket_mb on 3 ranks: Open MPI's $want, said"; fi
    cp "$tmp/run/metrics.jsonl" "$tmp/m-$want" 2>/dev/null
done
if /usr/bin/python3 - "$tmp/m-ring" "$tmp/m-binomial" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert len(a) == len(b) == 3, (a, b)
for x, y in zip(a, b):
    for k in ("loss", "val_loss"):
        assert abs(x[k] - y[k]) <= 1e-5 * max(1.0, abs(y[k])), (k, x[k], y[k])
PY
then ok "comm.bucket_mb on 3 ranks: ring and binomial agree to 1e-5"; else bad "comm.bucket_mb on 3 ranks: ring and binomial agree to 1e-5"; fi


# One allreduce after backward on 3 or more ranks: by coll/tuned's ring
# (its fixed choice over 3 ranks moves the buffer about twice as often),
# unless the user forced another algorithm or turned its dynamic rules off;
# said on the start line. The orders of addition differ: the runs agree to
# float rounding.
for alg in ring recursive_doubling fixed; do
    rm -rf "$tmp/run"
    case $alg in
    ring) set -- ; want=ring ;;
    recursive_doubling) set -- OMPI_MCA_coll_tuned_allreduce_algorithm=3; want=$alg ;;
    fixed) set -- OMPI_MCA_coll_tuned_use_dynamic_rules=0; want="coll\/tuned's fixed choice" ;;
    esac
    if env "$@" timeout 120 "$RUN" 3 "$SF" train "$tmp/c.ini" --set checkpoint.every_epochs=0 \
           --set comm.node_shared=false > "$tmp/out" 2>&1 &&
       grep -q "^shardfit: gradient summed by one allreduce after backward (Open MPI's allreduce: $want)\$" "$tmp/out"
    then ok "one allreduce on 3 ranks: Open MPI's $alg, said"; else bad "one allreduce on 3 ranks: Open MPI's $alg, said"; fi
    cp "$tmp/run/metrics.jsonl" "$tmp/m-ar-$alg" 2>/dev/null
done
if /usr/bin/python3 - "$tmp/m-ar-ring" "$tmp/m-ar-recursive_doubling" "$tmp/m-ar-fixed" <<'PY'
import json, sys
a, b, c = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert len(a) == len(b) == len(c) == 3, (a, b, c)
for x, y, z in zip(a, b, c):
    for k in ("loss", "val_loss"):
        for w in (y, z):
            assert abs(x[k] - w[k]) <= 1e-5 * max(1.0, abs(w[k])), (k, x[k], w[k])
PY
then ok "one allreduce on 3 ranks: ring, recursive doubling and the fixed choice agree to 1e-5"; else bad "one allreduce on 3 ranks: ring, recursive doubling and the fixed choice agree to 1e-5"; fi

summary
