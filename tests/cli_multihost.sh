#!/bin/sh
# cli_multihost.sh: shardfit across hosts, on the test cluster of
# scripts/netns-cluster.sh (network namespaces over TCP; needs root). The
# same weights on 1 local rank, 3 hosts x 1 rank and 2 hosts x 2 ranks with
# every loader (2 x 2: the node-shared sum on each host, then across), and
# over 1gbit links; resume on another number of hosts; a
# host that dies and a host cut off mid-run end the job, named, and the run
# goes on from its last checkpoint on the hosts that remain. The cluster is
# removed at the end, on failure too. Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
NC="$(pwd)/scripts/netns-cluster.sh"
PY=/usr/bin/python3
trap '"$NC" down > /dev/null 2>&1; kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL multi-host tests need root (network namespaces)"; echo "0 passed, 1 failed"; exit 1
fi

add_group "$tmp/d.h5" /train 5 3000
add_group "$tmp/d.h5" /val 6 500
add_group "$tmp/long.h5" /train 7 20000
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
epochs = 2
batch_size = 64
[optimizer]
lr = 0.1
momentum = 0.9
[checkpoint]
resume = never
[log]
progress = none
INI
# A job long enough to fail in the middle of: 200 epochs of 20000 rows,
# a step checkpoint every 20 steps.
cat > "$tmp/long.ini" <<INI
[data]
path = $tmp/long.h5
features = /train/features
labels = /train/labels
[model]
layers = dense:64 relu dense:3
[train]
epochs = 200
batch_size = 32
[checkpoint]
every_steps = 20
resume = never
[log]
progress = none
INI

# train WHERE NAME CONFIG [ARGS...]: one run, its output in $tmp/NAME.out;
# WHERE is local (1 rank, no mpirun), or the mpirun placement options.
train() {
    where=$1 name=$2 cfg=$3; shift 3
    set -- train "$cfg" --set "checkpoint.dir=$tmp/$name/ckpt" --set "log.dir=$tmp/$name" "$@"
    if [ "$where" = local ]; then
        timeout 120 "$SF" "$@" > "$tmp/$name.out" 2>&1
    else
        # shellcheck disable=SC2086
        timeout 120 "$NC" mpirun $where "$SF" "$@" > "$tmp/$name.out" 2>&1
    fi
}
last_ckpt() { ls "$tmp/$1/ckpt" 2>/dev/null | grep -E '^(epoch|step)-' | sort | tail -n 1; }
# same_weights A B: the newest checkpoints of runs A and B agree to 1e-5.
same_weights() {
    $PY tests/weights_close.py "$tmp/$1/ckpt/$(last_ckpt "$1")" \
        "$tmp/$2/ckpt/$(last_ckpt "$2")" 1e-5 > "$tmp/cmp" 2>&1
}
# same_losses A B: every epoch's training and validation loss agree to 1e-5.
same_losses() {
    paste -d ' ' "$tmp/$1/metrics.jsonl" "$tmp/$2/metrics.jsonl" | awk '
        function get(s, k,   r) { r = s; if (!sub(".*\"" k "\": ", "", r)) return "none";
                                  sub("[,}].*", "", r); return r }
        { n = split($0, h, "} {"); a = h[1]; b = h[2]
          for (i = 1; i <= 2; i++) { k = i == 1 ? "loss" : "val_loss"
              x = get(a, k); y = get(b, k)
              if (x == "none" || y == "none") bad = 1
              else if ((x - y) ^ 2 > (1e-5 * x) ^ 2) bad = 1 }
          rows++ }
        END { exit bad || rows < 1 }'
}

# ---- the cluster ----------------------------------------------------------
if "$NC" up 3 > "$tmp/out" 2>&1 && "$NC" up 3 > "$tmp/out2" 2>&1 &&
   grep -q "already up" "$tmp/out2" && [ "$("$NC" status | grep -c '^  sfh')" -eq 3 ] &&
   [ -f build/netns/hostfile ] && [ "$(ip netns pids sfh1 | wc -l)" -eq 0 ]
then ok "up 3 makes 3 hosts; up again is a no-op"; else bad "up 3 makes 3 hosts"; fi
"$NC" mpirun -np 3 --npernode 1 hostname > "$tmp/out" 2>&1
if [ "$(sort "$tmp/out" | tr '\n' ' ')" = "sfh1 sfh2 sfh3 " ]
then ok "mpirun places one rank on each host, each under its host name"; else bad "mpirun across hosts"; fi
if "$NC" up 0 > "$tmp/out" 2>&1; [ $? -eq 2 ] && grep -q "N = 0" "$tmp/out" &&
   [ "$("$NC" status | grep -c '^  sfh')" -eq 3 ]
then ok "a bad 'up' is refused and leaves the cluster as it was"; else bad "a bad 'up' is refused"; fi

# ---- the same weights on 1 rank, 3 hosts x 1 and 2 hosts x 2 ---------------
train local ref1 "$tmp/c.ini"
for loader in shard replicate stream; do
    train "-np 3 --npernode 1" "h3-$loader" "$tmp/c.ini" --set "data.loader=$loader" &&
    train "-np 4 --npernode 2" "h22-$loader" "$tmp/c.ini" --set "data.loader=$loader"
    st=$?
    if [ $st -eq 0 ] && same_losses ref1 "h3-$loader" && same_losses ref1 "h22-$loader" &&
       same_weights ref1 "h3-$loader" && same_weights ref1 "h22-$loader"
    then ok "loader $loader: 3 hosts x 1 and 2 hosts x 2 give 1 rank's losses and weights ($(cat "$tmp/cmp"))"
    else cp "$tmp/h22-$loader.out" "$tmp/out"; bad "loader $loader: the same results across hosts ($(cat "$tmp/cmp" 2>/dev/null))"; fi
done
if grep -q "3 ranks on 3 hosts: sfh1 (rank 0), sfh2 (rank 1), sfh3 (rank 2)" "$tmp/h3-shard.out" &&
   grep -q "4 ranks on 2 hosts: sfh1 (ranks 0-1), sfh2 (ranks 2-3)" "$tmp/h22-shard.out"
then ok "the start says which ranks run on which host"; else cp "$tmp/h22-shard.out" "$tmp/out"; bad "the rank-to-host map"; fi

# comm.node_shared (the default) on 2 hosts x 2 ranks: each host sums in
# its shared memory, then the hosts allreduce; said on the start line and
# in summary.json, with 1 rank's results. With clip_norm (its norm summed
# by the host's slices) and Adam, too. One rank a host: the allreduce, said.
train "-np 4 --npernode 2" h22-shared "$tmp/c.ini" --set log.progress=epoch
if [ $? -eq 0 ] && grep -q "node-shared memory on each of 2 hosts, then allreduced between them" "$tmp/h22-shared.out" &&
   grep -q '"gradient_sum": "node_shared"' "$tmp/h22-shared/summary.json" &&
   same_losses ref1 h22-shared && same_weights ref1 h22-shared
then ok "comm.node_shared on 2 hosts x 2 ranks: hierarchical, with 1 rank's weights"
else cp "$tmp/h22-shared.out" "$tmp/out"; bad "comm.node_shared on 2 hosts x 2 ranks ($(cat "$tmp/cmp" 2>/dev/null))"; fi
adam="--set optimizer.name=adam --set optimizer.lr=0.01 --set optimizer.clip_norm=0.5"
# shellcheck disable=SC2086
train local ref1-adam "$tmp/c.ini" $adam &&
train "-np 4 --npernode 2" h22-adam "$tmp/c.ini" $adam
if [ $? -eq 0 ] && same_losses ref1-adam h22-adam && same_weights ref1-adam h22-adam
then ok "hierarchical with Adam and clip_norm: 1 rank's weights ($(cat "$tmp/cmp"))"
else cp "$tmp/h22-adam.out" "$tmp/out"; bad "hierarchical with Adam and clip_norm ($(cat "$tmp/cmp" 2>/dev/null))"; fi
# Ranks dealt round the hosts (0 and 2 on sfh1, 1 and 3 on sfh2): node
# ranks are not world ranks; Adam stopped after 1 epoch resumes there.
# shellcheck disable=SC2086
train "-np 4 --host sfh1:2,sfh2:2 --map-by node" rr-adam "$tmp/c.ini" --set train.epochs=1 --set log.progress=epoch $adam &&
train "-np 4 --host sfh1:2,sfh2:2 --map-by node" rr-adam "$tmp/c.ini" --set checkpoint.resume=auto \
    --set log.progress=epoch $adam
if [ $? -eq 0 ] && grep -q "sfh1 (ranks 0, 2), sfh2 (ranks 1, 3)" "$tmp/rr-adam.out" &&
   grep -q "on each of 2 hosts, then allreduced between them" "$tmp/rr-adam.out" &&
   grep -q "resuming from .*epoch-0001.h5" "$tmp/rr-adam.out" &&
   same_losses ref1-adam rr-adam && same_weights ref1-adam rr-adam
then ok "hierarchical with ranks dealt round the hosts, resumed: 1 rank's weights"
else cp "$tmp/rr-adam.out" "$tmp/out"; bad "hierarchical, ranks round the hosts ($(cat "$tmp/cmp" 2>/dev/null))"; fi
for where in "-np 3 --npernode 1" "-np 3 --npernode 2"; do # 1 a host; 2 + 1
    train "$where" h3-shared "$tmp/c.ini" --set log.progress=epoch
    if [ $? -eq 0 ] && grep -q "allreduce after backward (comm.node_shared needs 2 or more ranks on every host" "$tmp/h3-shared.out" &&
       grep -q '"gradient_sum": "allreduce"' "$tmp/h3-shared/summary.json"
    then ok "comm.node_shared, $where: the allreduce, said"
    else cp "$tmp/h3-shared.out" "$tmp/out"; bad "comm.node_shared, $where"; fi
done

# Resume on another number of hosts: 1 epoch on 3 hosts, the second on 2x2.
train "-np 3 --npernode 1" grow "$tmp/c.ini" --set train.epochs=1 &&
train "-np 4 --npernode 2" grow "$tmp/c.ini" --set checkpoint.resume=auto
if [ $? -eq 0 ] && grep -q "resuming from .*epoch-0001.h5" "$tmp/grow.out" &&
   same_weights ref1 grow && same_losses ref1 grow
then ok "a run stopped on 3 hosts resumes on 2 hosts x 2 ranks, with 1 rank's weights"
else cp "$tmp/grow.out" "$tmp/out"; bad "resume on another number of hosts ($(cat "$tmp/cmp" 2>/dev/null))"; fi
# The same with Adam (two state blocks, each host's window filled slice by
# slice from rank 0's host).
# shellcheck disable=SC2086
train "-np 3 --npernode 1" grow-adam "$tmp/c.ini" --set train.epochs=1 $adam &&
train "-np 4 --npernode 2" grow-adam "$tmp/c.ini" --set checkpoint.resume=auto $adam
if [ $? -eq 0 ] && grep -q "resuming from .*epoch-0001.h5" "$tmp/grow-adam.out" &&
   same_weights ref1-adam grow-adam && same_losses ref1-adam grow-adam
then ok "Adam stopped on 3 hosts resumes on 2 hosts x 2 ranks, with 1 rank's weights"
else cp "$tmp/grow-adam.out" "$tmp/out"; bad "Adam resume on 2 hosts x 2 ($(cat "$tmp/cmp" 2>/dev/null))"; fi

# ---- failures ---------------------------------------------------------------
# start_long NAME PLACEMENT [ARGS...]: the long job in the background (job:
# its pid), returned once its first step checkpoint is written.
start_long() {
    name=$1 where=$2; shift 2
    # shellcheck disable=SC2086
    "$NC" mpirun $where "$SF" train "$tmp/long.ini" --set "checkpoint.dir=$tmp/$name/ckpt" \
        --set "log.dir=$tmp/$name" "$@" > "$tmp/$name.out" 2>&1 &
    job=$!
    t0=$(now)
    while [ -z "$(last_ckpt "$name")" ] && kill -0 "$job" 2>/dev/null &&
          within "$(elapsed "$t0" "$(now)")" 60; do sleep 0.1; done
}
# restart NAME HOSTS STEPS: resume=auto on the hosts that remain, up to STEPS,
# and the same run from the start on 1 local rank, uninterrupted.
restart() {
    ckpt=$(last_ckpt "$1")
    timeout 120 "$NC" mpirun --host "$2" -np 2 "$SF" train "$tmp/long.ini" \
        --set "checkpoint.dir=$tmp/$1/ckpt" --set "log.dir=$tmp/$1" \
        --set checkpoint.resume=auto --set "train.max_steps=$3" > "$tmp/$1-again.out" 2>&1 &&
    train local "$1-ref" "$tmp/long.ini" --set "train.max_steps=$3" &&
    grep -q "resuming from .*$ckpt" "$tmp/$1-again.out" && same_weights "$1" "$1-ref"
}
# The step a checkpoint file name holds (step-00000040.h5 -> 40), and
# epoch-E files hold E * 625 steps here.
ckpt_step() {
    case "$1" in step-*) echo "$1" | sed 's/step-0*\([0-9]*\)\.h5/\1/' ;;
                 epoch-*) echo $(( $(echo "$1" | sed 's/epoch-0*\([0-9]*\)\.h5/\1/') * 625 )) ;; esac
}

# A host dies (every process on it killed, its daemon too): Open MPI names
# the host it lost, the start line its ranks; within 15 s, non-zero.
start_long dead "-np 3 --npernode 1"
kill -9 $(ip netns pids sfh2) 2>/dev/null
wait_job 60
echo "     (host sfh2 killed: the job ended after ${took}s, status $status)"
cp "$tmp/dead.out" "$tmp/out"
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 15 &&
   grep -q "on node sfh2" "$tmp/dead.out" && grep -q "sfh2 (rank 1)" "$tmp/dead.out"
then ok "a dead host ends the job within 15 s, naming the host and its ranks"
else bad "a dead host ends the job within 15 s, named"; fi
steps=$(( $(ckpt_step "$(last_ckpt dead)") + 30 ))
if restart dead sfh1,sfh3 "$steps"
then ok "resume = auto on the 2 hosts left continues from the last checkpoint ($(cat "$tmp/cmp"))"
else cp "$tmp/dead-again.out" "$tmp/out"; bad "elastic restart after a dead host ($(cat "$tmp/cmp" 2>/dev/null))"; fi

# cut_job NAME PLACEMENT LINK HOST: the long job (comm.timeout 5) with
# HOST's link (LINK on the bridge) down until the job ends; then HOST's
# processes killed, what a reboot would do.
cut_job() {
    start_long "$1" "$2" --set comm.timeout=5
    ip -n sfsw link set "$3" down
    wait_job 90
    ip -n sfsw link set "$3" up
    kill -9 $(ip netns pids "$4") 2>/dev/null
    echo "     (host $4 cut off, $2, comm.timeout 5: the job ended after ${took}s, status $status)"
    cp "$tmp/$1.out" "$tmp/out"
}

# A host cut off mid-run (its link down): the others' deadline ends the job
# at comm.timeout, naming the rank that did not answer and its host.
cut_job cut "-np 3 --npernode 1" p3 sfh3
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 45 &&
   grep -q "has waited [0-9.]* s, longer than comm.timeout = 5 s; .*rank 2 (sfh3) did not answer" "$tmp/cut.out"
then ok "a host cut off ends the job after comm.timeout, naming its rank and host"
else bad "a host cut off ends the job after comm.timeout, named"; fi
steps=$(( $(ckpt_step "$(last_ckpt cut)") + 30 ))
if restart cut sfh1,sfh2 "$steps"
then ok "resume = auto on the 2 hosts left continues from the last checkpoint ($(cat "$tmp/cmp"))"
else cp "$tmp/cut-again.out" "$tmp/out"; bad "elastic restart after a cut host ($(cat "$tmp/cmp" 2>/dev/null))"; fi

# The same on 2 hosts x 2 ranks (the node-shared sum, then its slices across
# hosts: communicators of their own, under the same deadline; whichever
# collective the cut catches first, the job ends and names sfh2's ranks).
cut_job cut22 "-np 4 --npernode 2" p2 sfh2
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && within "$took" 45 &&
   grep -q "has waited [0-9.]* s, longer than comm.timeout = 5 s; .*ranks 2 (sfh2), 3 (sfh2) did not answer" "$tmp/cut22.out"
then ok "2 hosts x 2 ranks: a host cut off ends the job after comm.timeout, named"
else bad "2 hosts x 2 ranks: a host cut off ends the job after comm.timeout, named"; fi

# ---- 1gbit links ------------------------------------------------------------
"$NC" up 3 --rate 1gbit > "$tmp/out" 2>&1
if "$NC" status | grep -q "sfh2 .*rate 1Gbit" && train "-np 3 --npernode 1" slow "$tmp/c.ini" &&
   same_losses ref1 slow && same_weights ref1 slow
then ok "over 1gbit links, the same weights ($(cat "$tmp/cmp"))"; else cp "$tmp/slow.out" "$tmp/out" 2>/dev/null; bad "training over 1gbit links"; fi

# ---- down leaves nothing behind ------------------------------------------
"$NC" down > /dev/null 2>&1
if [ -z "$(ip netns list | grep -E '^(sfh[0-9]+|sfsw)( |$)')" ] && ! ls /etc/netns/sfh* > /dev/null 2>&1 &&
   [ ! -d build/netns ] && ! pgrep -f build/netns/agent > /dev/null
then ok "down removes every host, the bridge, names and processes"; else bad "down leaves nothing behind"; fi

summary
