#!/bin/sh
# slurm-local.sh: a one-node Slurm cluster on this machine, from Debian's
# slurm-wlm and munge, to try scripts/slurm/train.sbatch and to test it.
#
#   scripts/slurm-local.sh up      start munged, slurmctld and slurmd
#   scripts/slurm-local.sh down    stop them and remove config and state
#   scripts/slurm-local.sh status  the node and the queue
#   scripts/slurm-local.sh env     prints the export line for the clients
#
# Config, state, spool, logs and pid files live in one directory,
# $SLURM_LOCAL_DIR (default /tmp/shardfit-slurm); the node is this machine
# (its short host name) with as many CPUs as it has, at 127.0.0.1. Slurm's
# clients (sbatch, squeue, scontrol, ...) find it through SLURM_CONF: run
#   eval "$(scripts/slurm-local.sh env)"
# first. Runs as root (SlurmUser=root: slurmd must start jobs as any user).
# Idempotent: up on a running cluster and down on a stopped one do nothing.
set -eu

dir=${SLURM_LOCAL_DIR:-/tmp/shardfit-slurm}
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

die() { echo "slurm-local: $*" >&2; exit 2; }

running() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

stop_daemon() { # name: TERM, then KILL after 5 s
    running "$1" || return 0
    pid=$(cat "$dir/$1.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    [ -d "$dir" ] || return 0
    # Jobs first, so nothing they started outlives the cluster.
    if running slurmctld; then scancel --full --quiet --user=root 2>/dev/null || true; fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    # Steps slurmd started (slurmstepd) and their children.
    pkill -9 -f "slurmstepd.*" 2>/dev/null || true
    rm -rf "$dir"
}

up() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    for t in munged slurmctld slurmd sbatch; do
        command -v "$t" > /dev/null || die "'$t' is missing: apt-get install slurm-wlm munge"
    done
    if running slurmctld && running slurmd && running munged; then
        echo "slurm-local: already up ($conf)"
        return 0
    fi
    down
    trap 'echo "slurm-local: up failed; see $dir/*.log" >&2; cp "$dir"/*.log /tmp/ 2>/dev/null; down' EXIT
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    host=$(hostname -s)
    cat > "$conf" <<CONF
# Written by scripts/slurm-local.sh: a one-node cluster for testing.
ClusterName=shardfit
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
# Time limits are checked, and --signal delivered, with 1-minute resolution;
# a job past its limit gets SIGTERM, then SIGKILL after KillWait.
KillWait=10
MinJobAge=600
InactiveLimit=0
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    # munged with its own socket and pid under $dir; Debian's package key.
    munged --force --socket="$dir/munge/munge.socket.2" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    echo "AuthInfo=socket=$dir/munge/munge.socket.2" >> "$conf"
    slurmctld
    slurmd
    # Ready when the node takes jobs.
    for _ in $(seq 100); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1)
        case "$state" in idle*) break ;; esac
        sleep 0.2
    done
    case "$state" in idle*) ;; *) echo "slurm-local: the node is '$state', not idle" >&2; exit 1 ;; esac
    trap - EXIT
    echo "slurm-local: up: node $host, $(nproc) CPUs, partition 'local'; $conf"
    echo "slurm-local: for sbatch/squeue/scontrol: eval \"\$(scripts/slurm-local.sh env)\""
}

case "${1:-}" in
up) up ;;
down) down; echo "slurm-local: down" ;;
status)
    if running slurmctld; then sinfo; squeue; else echo "slurm-local: down"; fi ;;
env) echo "export SLURM_CONF=$conf" ;;
-h|--help|help) sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//; /^set -eu/d' ;;
*) die "usage: slurm-local.sh up | down | status | env" ;;
esac
