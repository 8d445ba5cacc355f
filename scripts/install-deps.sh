#!/bin/sh
# Installs what shardfit needs to build, test and run, from Debian's archive.
# Idempotent: when every package is already there it only runs dpkg-query and
# returns in well under a second, so `make run` and `make test` can call it
# every time. Pass extra package names as arguments (e.g. dataset-fashion-mnist).
set -eu

pkgs="gcc make pkg-config zlib1g-dev openmpi-bin libopenmpi-dev \
libhdf5-openmpi-dev libopenblas-dev check libsubunit-dev libinih-dev $*"

missing=""
for p in $pkgs; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
