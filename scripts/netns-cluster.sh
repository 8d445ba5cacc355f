#!/bin/sh
# netns-cluster.sh: a test cluster of N hosts on this one machine, so that
# multi-host runs, their failures and their link speeds can be tested without
# a cluster. Each host is a network namespace sfh1..sfhN with one veth on a
# bridge that lives in a namespace of its own (sfsw): no interface, address or
# route is added to the machine's own namespace. Ranks on different hosts
# talk over TCP through that bridge; names resolve on every host through
# /etc/netns/sfhK/hosts (ip netns exec mounts it over /etc/hosts).
#
#   scripts/netns-cluster.sh up N [--rate RATE] [--slots S]
#   scripts/netns-cluster.sh mpirun [mpirun options] CMD...
#   scripts/netns-cluster.sh status
#   scripts/netns-cluster.sh down
#
# up: creates the hosts (idempotent: the same cluster again is a no-op, a
#   different one replaces it; a failed up removes what it made). --rate
#   limits every link, both directions, with tc tbf (1gbit, 10gbit, ...:
#   a 1 GbE or 10 GbE cluster); --slots sets slots per host (default 2).
#   Writes build/netns/hostfile and build/netns/agent, the launch agent
#   through which Open MPI starts its daemons inside the hosts.
# mpirun: mpirun from host sfh1 across the hosts, with what that needs:
#   the hostfile and agent; --bind-to none (each host's daemon believes it
#   owns the machine and would pin its ranks to core 0); TCP restricted to
#   the bridge's subnet for MPI and Open MPI's own traffic; mpi_yield_when_idle
#   when ranks outnumber cores (busy-polling ranks on shared cores made 3
#   hosts train at 4.9k samples/s instead of 88k); short TCP keepalives for
#   Open MPI's daemons, so mpirun notices within seconds a host whose link is
#   gone instead of waiting minutes; the root flags; one BLAS thread per rank.
#   Each host has its own host name (a UTS namespace), so ranks report
#   sfh1, sfh2, ... as their hosts. Without a placement option (--map-by,
#   --npernode, --host), ranks go round the hosts: -np 3 is one per host.
# status: hosts, addresses, link rate, processes inside.
# down: kills every process inside the hosts and removes them all.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
state_dir="$root/build/netns"
subnet_prefix=10.213.77
switch=sfsw

die() { echo "netns-cluster: $*" >&2; exit 2; }

need_tools() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
    for t in ip tc unshare mpirun; do
        command -v "$t" > /dev/null || die "'$t' is missing: run scripts/install-deps.sh"
    done
}

hosts_up() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^sfh[0-9]+$' || true; }

down() {
    for ns in $(hosts_up) $(ip netns list 2>/dev/null | awk '{print $1}' | grep -x "$switch" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$state_dir"
}

up() {
    [ $# -ge 1 ] || die "usage: netns-cluster.sh up N [--rate RATE] [--slots S]"
    n=$1; shift
    rate=none slots=2
    while [ $# -gt 0 ]; do
        case "$1" in
        --rate) [ $# -ge 2 ] || die "--rate needs a value (e.g. 1gbit)"; rate=$2; shift 2 ;;
        --slots) [ $# -ge 2 ] || die "--slots needs a value"; slots=$2; shift 2 ;;
        *) die "up: unexpected argument '$1'" ;;
        esac
    done
    case "$n" in ''|*[!0-9]*) die "up: N = '$n' is not a number of hosts" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: N = $n: between 1 and 200 hosts"
    case "$slots" in ''|*[!0-9]*|0) die "--slots '$slots': a positive number of slots per host" ;; esac
    case "$rate" in none|[0-9]*[kmgt]bit|[0-9]*bit) ;;
        *) die "--rate '$rate': a tc rate such as 1gbit or 10gbit" ;; esac
    need_tools
    want="hosts=$n rate=$rate slots=$slots"
    if [ -f "$state_dir/state" ] && [ "$(cat "$state_dir/state")" = "$want" ] &&
       [ "$(hosts_up | wc -l)" -eq "$n" ]; then
        echo "netns-cluster: already up: $want"
        return 0
    fi
    down
    trap 'echo "netns-cluster: up failed; removing what it made" >&2; down' EXIT
    ip netns add "$switch"
    ip -n "$switch" link add br0 type bridge
    ip -n "$switch" link set br0 up
    mkdir -p "$state_dir"
    : > "$state_dir/hosts"
    for k in $(seq 1 "$n"); do
        echo "$subnet_prefix.$k sfh$k" >> "$state_dir/hosts"
    done
    for k in $(seq 1 "$n"); do
        h=sfh$k
        ip netns add "$h"
        ip link add eth0 netns "$h" type veth peer name "p$k" netns "$switch"
        ip -n "$switch" link set "p$k" master br0 up
        ip -n "$h" addr add "$subnet_prefix.$k/24" dev eth0
        ip -n "$h" link set eth0 up
        ip -n "$h" link set lo up
        # A peer cut off mid-transfer fails a TCP connection after ~13 s
        # (5 retransmissions) instead of Linux's default ~15 min, as on a
        # cluster tuned for failures: mpirun then notices a lost host's daemon
        # and ends the job, rather than waiting minutes after an abort.
        ip netns exec "$h" sysctl -qw net.ipv4.tcp_retries2=5
        if [ "$rate" != none ]; then
            # Both directions: egress of the host's end and of the bridge's end.
            ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 5ms
            ip netns exec "$switch" tc qdisc add dev "p$k" root tbf rate "$rate" burst 256kb latency 5ms
        fi
        mkdir -p "/etc/netns/$h"
        { echo "127.0.0.1 localhost"; cat "$state_dir/hosts"; } > "/etc/netns/$h/hosts"
    done
    : > "$state_dir/hostfile"
    for k in $(seq 1 "$n"); do echo "sfh$k slots=$slots" >> "$state_dir/hostfile"; done
    # Open MPI calls the agent as it calls ssh: AGENT [options] HOST COMMAND.
    # Like an ssh client, the agent stays outside the host while the command
    # runs there, so a host whose processes all die looks to mpirun as a real
    # dead host does: its daemon's connection is lost ("ORTE has lost
    # communication with a remote daemon ... on node sfhK"). Were the agent
    # inside the host, it would die too, and mpirun would blame a failed start.
    cat > "$state_dir/agent" <<'AGENT'
#!/bin/sh
# Launch agent of the netns test cluster (written by netns-cluster.sh up):
# runs COMMAND inside host HOST, under the host's own host name.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1; shift
ip netns exec "$host" unshare --uts /bin/sh -c "hostname $host && exec $*" &
child=$!
trap 'kill $child 2>/dev/null; exit 1' TERM INT HUP
wait $child
st=$?
# Killed with its host: wait, as an ssh client to a dead host does, until
# mpirun ends (it notices the lost daemon by itself).
if [ $st -gt 128 ]; then
    while kill -0 $PPID 2>/dev/null; do sleep 1; done
fi
exit $st
AGENT
    chmod +x "$state_dir/agent"
    # Every host reaches every other one (a broken bridge fails here, not
    # in the middle of a run).
    for k in $(seq 1 "$n"); do
        ip netns exec sfh1 ping -c 1 -W 2 "$subnet_prefix.$k" > /dev/null ||
            { echo "netns-cluster: sfh1 cannot reach sfh$k" >&2; exit 1; }
    done
    echo "$want" > "$state_dir/state"
    trap - EXIT
    echo "netns-cluster: up: $n hosts sfh1..sfh$n ($subnet_prefix.1-$n), slots $slots, rate $rate; hostfile $state_dir/hostfile"
}

status() {
    if [ ! -f "$state_dir/state" ]; then
        echo "netns-cluster: down"
        [ -n "$(hosts_up)" ] && echo "  (stray namespaces: $(hosts_up | tr '\n' ' '); run down)"
        return 0
    fi
    echo "netns-cluster: $(cat "$state_dir/state")"
    for h in $(hosts_up | sort -V); do
        addr=$(ip -n "$h" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')
        q=$(ip netns exec "$h" tc qdisc show dev eth0 2>/dev/null | awk '/tbf/ {print "tbf", $0}' |
            sed -n 's/.*rate \([^ ]*\).*/\1/p')
        printf '  %-6s %-16s rate %-8s processes %s\n' "$h" "$addr" "${q:-none}" \
            "$(ip netns pids "$h" 2>/dev/null | wc -l)"
    done
}

run_mpirun() {
    [ -f "$state_dir/state" ] || die "the cluster is down: run 'scripts/netns-cluster.sh up N' first"
    nhosts=$(sed -n 's/^hosts=\([0-9]*\).*/\1/p' "$state_dir/state")
    slots=$(sed -n 's/.*slots=\([0-9]*\).*/\1/p' "$state_dir/state")
    # How many ranks will run: -np/-n if given, else one per slot (or per
    # host with --npernode 1 / --map-by ppr:1:node).
    np="" per="" placed=""
    prev=""
    for a in "$@"; do
        case "$a" in --map-by*|--npernode|-npernode|--host|-host|-H|--hostfile|--rankfile) placed=1 ;; esac
        case "$prev" in -np|-n|--np|-c) np=$a ;; --npernode|-npernode) per=$a ;; esac
        case "$a" in --map-by=ppr:*) per=$(echo "$a" | cut -d: -f2) ;; esac
        [ "$prev" = --map-by ] && case "$a" in ppr:*) per=$(echo "$a" | cut -d: -f2) ;; esac
        prev=$a
    done
    [ -n "$np" ] || np=$((nhosts * ${per:-$slots}))
    extra=""
    # Unless told otherwise, ranks go round the hosts (-np 3 on 3 hosts is
    # one rank per host), where Open MPI would fill each host's slots first.
    [ -n "$placed" ] || extra="--map-by node"
    [ "$(id -u)" -eq 0 ] && extra="$extra --allow-run-as-root"
    [ "$np" -gt "$(nproc)" ] && extra="$extra --mca mpi_yield_when_idle 1"
    for v in CK_FORK ASAN_OPTIONS UBSAN_OPTIONS OPENBLAS_CORETYPE SHARDFIT_FILE_CHECK_TIMEOUT; do
        eval "[ -n \"\${$v+x}\" ]" && extra="$extra -x $v"
    done
    export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
    sub="$subnet_prefix.0/24"
    # shellcheck disable=SC2086
    exec ip netns exec sfh1 unshare --uts /bin/sh -c 'hostname sfh1 && exec "$@"' sh \
        mpirun $extra --hostfile "$state_dir/hostfile" \
        --mca plm_rsh_agent "$state_dir/agent" --bind-to none \
        --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none \
        --mca btl_tcp_if_include "$sub" --mca oob_tcp_if_include "$sub" \
        --mca oob_tcp_keepalive_time 4 --mca oob_tcp_keepalive_intvl 2 \
        --mca oob_tcp_keepalive_probes 3 \
        -x OPENBLAS_NUM_THREADS ${MPIRUN_EXTRA:-} "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
up) up "$@" ;;
down) need_tools; down; echo "netns-cluster: down" ;;
status) status ;;
mpirun) need_tools; run_mpirun "$@" ;;
-h|--help|help) sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//; /^set -eu/d' ;;
*) die "usage: netns-cluster.sh up N [--rate RATE] [--slots S] | mpirun [options] CMD... | status | down" ;;
esac
