#!/bin/sh
# cli_slurm.sh: scripts/slurm/train.sbatch on a real one-node Slurm cluster
# (scripts/slurm-local.sh: slurmctld, slurmd and munged, as root). A job runs
# to completion under mpirun and under srun --mpi=pmix; a job whose time
# limit nears gets SIGUSR1, checkpoints and requeues itself; a job
# signalled, then submitted again with fewer tasks, resumes on them (elastic) and ends
# with the weights of a run that never stopped. The cluster is stopped at the
# end, on failure too. Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
PY=/usr/bin/python3
SL="$(pwd)/scripts/slurm-local.sh"
export SLURM_LOCAL_DIR="$tmp/slurm"
trap '"$SL" down > /dev/null 2>&1; kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL Slurm tests need root"; echo "0 passed, 1 failed"; exit 1
fi
if "$SL" up > "$tmp/out" 2>&1; then ok "slurm-local.sh up starts a one-node cluster"
else bad "slurm-local.sh up"; summary; exit 1; fi
eval "$("$SL" env)"

add_group "$tmp/d.h5" /train 5 2000
add_group "$tmp/d.h5" /val 6 300
# cfg NAME [LINES...]: a config whose runs write under $tmp/NAME.
cfg() {
    name=$1; shift
    cat > "$tmp/$name.ini" <<INI
[data]
path = $tmp/d.h5
features = /train/features
labels = /train/labels
val_features = /val/features
val_labels = /val/labels
[model]
layers = dense:256 relu dense:256 relu dense:3
[train]
epochs = 2
batch_size = 32
[checkpoint]
dir = $tmp/$name/ckpt
every_steps = 50
[log]
dir = $tmp/$name
progress = none
INI
}
# submit NAME [sbatch options]: submits the recipe for NAME's config; sets jid.
submit() {
    name=$1; shift
    jid=$(sbatch --parsable "$@" --chdir="$(pwd)" --output="$tmp/$name.out" \
          --export=ALL,SHARDFIT="$SF" scripts/slurm/train.sbatch "$tmp/$name.ini")
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# wait_state JOB STATE LIMIT: until the job is in STATE (or LIMIT seconds).
wait_state() {
    t0=$(now)
    while [ "$(state "$1")" != "$2" ]; do
        within "$(elapsed "$t0" "$(now)")" "$3" || return 1
        sleep 0.2
    done
}
epochs_done() { wc -l < "$tmp/$1/metrics.jsonl" 2>/dev/null || echo 0; }
last_ckpt() { ls "$tmp/$1/ckpt" 2>/dev/null | grep -E '^(epoch|step)-' | sort | tail -n 1; }

# ---- runs to completion: mpirun, then srun --mpi=pmix ----------------------
for launch in mpirun srun; do
    cfg "$launch"
    submit "$launch" -n 2 --export=ALL,SHARDFIT="$SF",SHARDFIT_LAUNCH=$launch
    cp "$tmp/$launch.out" "$tmp/out" 2>/dev/null
    if wait_state "$jid" COMPLETED 90 && [ "$(epochs_done "$launch")" -eq 2 ] &&
       grep -q '"world_size": 2' "$tmp/$launch/metrics.jsonl" &&
       grep -q '"val_accuracy"' "$tmp/$launch/metrics.jsonl"
    then ok "$launch: a 2-task job runs to completion, 2 epochs on 2 ranks"
    else cp "$tmp/$launch.out" "$tmp/out" 2>/dev/null; bad "$launch: a 2-task job runs to completion (state $(state "$jid"))"; fi
done

# ---- signal, requeue with fewer tasks, resume -------------------------------
# The time-limit signal (#SBATCH --signal=B:USR1@T) given by hand, as soon
# as the job has written its first checkpoint; the job requeues itself; the
# same recipe submitted on 1 task instead of 2 resumes on 1 rank.
cfg elastic
sed -i 's/^epochs = 2/epochs = 4/' "$tmp/elastic.ini"
submit elastic -n 2
t0=$(now)
while [ -z "$(last_ckpt elastic)" ] && within "$(elapsed "$t0" "$(now)")" 60; do sleep 0.05; done
scancel --signal=USR1 --batch "$jid"
wait_state "$jid" PENDING 60; pending=$?
# Slurm holds a requeued job about 2 minutes, and lifting that hold
# (StartTime=now) did not always take: the requeued job is cancelled and the
# same recipe submitted again on 1 task, as a user whose allocation shrank
# would; resume = auto continues from the checkpoint the signal wrote.
scancel "$jid"
first=$jid
submit elastic -n 1
wait_state "$jid" COMPLETED 90; done=$?
"$SF" train "$tmp/elastic.ini" --set "checkpoint.dir=$tmp/straight/ckpt" \
    --set "log.dir=$tmp/straight" > /dev/null 2>&1
cp "$tmp/elastic.out" "$tmp/out"
if [ "$pending" -eq 0 ] && [ "$done" -eq 0 ] &&
   grep -q "SIGUSR1 (time limit near)" "$tmp/elastic.out" &&
   grep -q "stopped by a signal after step" "$tmp/elastic.out" &&
   grep -q "requeueing job $first" "$tmp/elastic.out" &&
   grep -q "resuming from .*written by 2 ranks, continuing on 1" "$tmp/elastic.out" &&
   $PY tests/weights_close.py "$tmp/elastic/ckpt/$(last_ckpt elastic)" \
       "$tmp/straight/ckpt/$(last_ckpt straight)" 1e-5 > "$tmp/cmp" 2>&1
then ok "signalled, checkpointed, requeued, resumed on 1 task instead of 2: the weights of a run that never stopped ($(cat "$tmp/cmp"))"
else bad "signal, requeue with fewer tasks, resume ($(cat "$tmp/cmp" 2>/dev/null))"; fi

# ---- a real time limit --------------------------------------------------------
# One minute, the signal 58 s before it: Slurm sends it within its periodic
# check (up to ~30 s late), the job checkpoints, requeues itself and is
# pending again. (That a requeued job resumes is the elastic case above;
# when Slurm starts it again is its scheduler's business: 2 minutes' hold.)
cfg limit
sed -i 's/^epochs = 2/epochs = 100000/' "$tmp/limit.ini"
submit limit -n 2 --time=1 --signal=B:USR1@58
t0=$(now)
while ! grep -q "requeueing job" "$tmp/limit.out" 2>/dev/null && within "$(elapsed "$t0" "$(now)")" 90; do
    sleep 0.5
done
took=$(elapsed "$t0" "$(now)")
wait_state "$jid" PENDING 30; pending=$?
scancel "$jid"
cp "$tmp/limit.out" "$tmp/out"
echo "     (time limit 1 min: signalled and requeued after ${took}s)"
if [ "$pending" -eq 0 ] && grep -q "SIGUSR1 (time limit near)" "$tmp/limit.out" &&
   grep -q "stopped by a signal after step" "$tmp/limit.out" &&
   grep -q "requeueing job $jid" "$tmp/limit.out" && [ -n "$(last_ckpt limit)" ]
then ok "a job near its time limit checkpoints and requeues itself"
else bad "a job near its time limit checkpoints and requeues itself"; fi

"$SL" down > /dev/null 2>&1
if ! pgrep -x slurmctld > /dev/null && ! pgrep -x slurmd > /dev/null && [ ! -d "$SLURM_LOCAL_DIR" ]
then ok "slurm-local.sh down stops every daemon"; else bad "slurm-local.sh down stops every daemon"; fi
summary
