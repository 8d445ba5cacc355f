#!/bin/sh
# Runs a command on NP local MPI ranks with the settings this project needs
# on one machine, so nobody has to remember them:
#  - as root, Open MPI refuses to start without --allow-run-as-root;
#  - more ranks than cores needs --oversubscribe (tests use 3 ranks on 2 cores);
#  - one BLAS thread per rank, or 2 ranks x 2 OpenBLAS threads fight for 2 cores;
#  - in containers the shared-memory CMA copy is often not permitted
#    (ptrace scope), so vader falls back to plain copies.
# Usage: scripts/mpirun-local.sh NP COMMAND [ARGS...]
set -eu
np=$1; shift
extra=""
[ "$(id -u)" -eq 0 ] && extra="--allow-run-as-root"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
# Forward the variables tests and sanitizers use, when they are set.
for v in CK_FORK ASAN_OPTIONS UBSAN_OPTIONS OPENBLAS_CORETYPE; do
    eval "[ -n \"\${$v+x}\" ]" && extra="$extra -x $v"
done
exec mpirun $extra --oversubscribe -np "$np" \
    --mca btl_vader_single_copy_mechanism none \
    -x OPENBLAS_NUM_THREADS ${MPIRUN_EXTRA:-} "$@"
