#!/bin/sh
# cli_failures.sh: how a job ends when something goes wrong mid-run. Real
# mpirun jobs; each check looks at the exit status, the message, and how long
# the job took to end (bounds generous enough for a loaded machine).
# Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh

# A run long enough to interrupt: 20000 rows, 200 epochs.
add_group "$tmp/d.h5" /train 5 20000
cat > "$tmp/c.ini" <<INI
[data]
path = $tmp/d.h5
features = /train/features
labels = /train/labels
[model]
layers = dense:256 relu dense:256 relu dense:3
[train]
epochs = 200
batch_size = 32
[checkpoint]
dir = $tmp/run/ckpt
resume = never
[log]
dir = $tmp/run
progress = none
INI

# start_job NP ARGS...: runs the job in the background; sets job (mpirun's
# pid) and waits until it has written its first epoch checkpoint (up to 60 s:
# a loaded machine can take long), so that `intact` has one to check.
start_job() {
    np=$1; shift
    rm -rf "$tmp/run"
    "$RUN" "$np" "$SF" train "$tmp/c.ini" "$@" > "$tmp/out" 2>&1 &
    job=$!
    t0=$(now)
    while ! ls "$tmp/run/ckpt" 2>/dev/null | grep -q '^epoch-' && kill -0 "$job" 2>/dev/null &&
          within "$(elapsed "$t0" "$(now)")" 60; do sleep 0.1; done
}


# stop_rank: SIGSTOPs one rank of the job (the second of its processes),
# sets vrank to that rank's number, and waits up to 60 s for the job to end.
stop_rank() {
    victim=$(pgrep -P "$job" shardfit | sed -n 2p)
    vrank=$(tr '\0' '\n' < "/proc/$victim/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    kill -STOP "$victim"
    wait_job 60
}

# intact: the newest checkpoint the interrupted job wrote still evaluates.
intact() {
    newest=$(ls "$tmp/run/ckpt" | grep '^epoch-' | tail -n 1)
    [ -n "$newest" ] && "$SF" eval --checkpoint "$tmp/run/ckpt/$newest" \
        --data "$tmp/d.h5" > /dev/null 2>&1
}

# A rank killed mid-epoch: the job ends within 15 s, non-zero, naming it.
start_job 3
victim=$(pgrep -P "$job" shardfit | sed -n 2p)
kill -9 "$victim"
wait_job 30
echo "     (kill -9 of a rank: the job ended after ${took}s, status $status)"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   grep -q "rank 1 .*exited on signal 9" "$tmp/out" && intact
then ok "a killed rank ends the job; earlier checkpoints intact"; else bad "a killed rank ends the job"; fi

# A stopped rank: the other ranks' collective deadline ends the job, and
# their roll call names the rank that did not answer. (The third rank may be
# waiting in the same collective, or already in the next one: the stopped
# rank gave it its part before it stopped.)
start_job 3 --set comm.timeout=3
stop_rank
others=$(for r in 0 1 2; do [ "$r" != "$vrank" ] && printf '%s ' "$r"; done)
set -- $others
echo "     (SIGSTOP of rank $vrank of 3, comm.timeout 3: the job ended after ${took}s, status $status)"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   grep -q "rank $1 ([^)]*): [a-z ]* at step [0-9]* (epoch [0-9]*) has waited .* comm.timeout = 3 s; .*rank $vrank ([^)]*) did not answer (stopped, hung or dead" "$tmp/out" &&
   [ "$(grep -c 'error:' "$tmp/out")" -eq 1 ] && intact
then ok "a stopped rank ends the job after comm.timeout, named; earlier checkpoints intact"; else bad "a stopped rank ends the job after comm.timeout, named"; fi

# The same with gradient buckets (comm.bucket_mb): the deadline covers the
# non-blocking sums the helper thread progresses, and the roll call still
# names the stopped rank.
start_job 2 --set comm.timeout=3 --set comm.bucket_mb=0.1
stop_rank
echo "     (SIGSTOP of rank $vrank of 2, comm.bucket_mb 0.1: the job ended after ${took}s, status $status)"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   grep -q "rank $((1 - vrank))[^:]*: [a-z ]* at step [0-9]* (epoch [0-9]*) has waited .* comm.timeout = 3 s; .*rank $vrank[^;]* did not answer (stopped, hung or dead" "$tmp/out" &&
   [ "$(grep -c 'error:' "$tmp/out")" -eq 1 ]
then ok "a stopped rank ends a job with gradient buckets after comm.timeout, named"; else bad "a stopped rank ends a job with gradient buckets after comm.timeout, named"; cat "$tmp/out"; fi

# The same with the sum in node-shared memory (comm.node_shared): the
# syncs are under the deadline too; and a rank killed there ends the job.
start_job 3 --set comm.timeout=3 --set comm.node_shared=true --set log.progress=epoch
stop_rank
echo "     (SIGSTOP of rank $vrank of 3, comm.node_shared: the job ended after ${took}s, status $status)"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   grep -q "gradient summed in node-shared memory" "$tmp/out" &&
   grep -q "): [a-z ]* at step [0-9]* (epoch [0-9]*) has waited .* comm.timeout = 3 s; .*rank $vrank ([^)]*) did not answer (stopped, hung or dead" "$tmp/out" &&
   [ "$(grep -c 'error:' "$tmp/out")" -eq 1 ] && intact
then ok "a stopped rank ends a node-shared job after comm.timeout, named"; else bad "a stopped rank ends a node-shared job after comm.timeout, named"; cat "$tmp/out"; fi
start_job 2 --set comm.node_shared=true
victim=$(pgrep -P "$job" shardfit | sed -n 2p)
kill -9 "$victim"
wait_job 30
echo "     (kill -9 of a rank, comm.node_shared: the job ended after ${took}s, status $status)"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   grep -q "exited on signal 9" "$tmp/out" && intact
then ok "a killed rank ends a node-shared job; earlier checkpoints intact"; else bad "a killed rank ends a node-shared job"; cat "$tmp/out"; fi

# The data file is truncated while the stream loader reads it: every rank
# stops at the same step, the failing rank's message once, no hang.
cp "$tmp/d.h5" "$tmp/s.h5"
start_job 2 --set data.loader=stream --set "data.path=$tmp/s.h5"
truncate -s 4096 "$tmp/s.h5"
wait_job 60
echo "     (data file truncated under the stream loader: the job ended after ${took}s, status $status)"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   [ "$(grep -c 'error:' "$tmp/out")" -eq 1 ] && grep -q "error: rank [01]: .*s.h5" "$tmp/out"
then ok "a data file cut short while streaming ends the job on all ranks"; else bad "a data file cut short while streaming ends the job"; fi

# Divergence: every rank stops at the same step, one message, status 1.
for np in 1 3; do
    t0=$(now)
    timeout 60 "$RUN" "$np" "$SF" train "$tmp/c.ini" --set optimizer.lr=1e30 > "$tmp/out" 2>&1
    status=$?
    took=$(elapsed "$t0" "$(now)")
    if [ "$status" -eq 1 ] && [ "$(grep -c 'error:' "$tmp/out")" -eq 1 ] &&
       grep -q "training diverged in epoch 1 at optimizer step 2: the loss is not finite" "$tmp/out"
    then ok "divergence stops every rank (np=$np, ${took}s)"; else bad "divergence stops every rank (np=$np): status $status"; fi
done

summary
