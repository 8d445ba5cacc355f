#!/bin/sh
# cli_readme.sh: README.md's commands, run as written, so the guide cannot
# drift from the program. Every fenced block whose info string is `sh` runs,
# in order, in one scratch directory that looks like a checkout (build/,
# scripts/, configs/, ... linked to this one) whose data/fashion-mnist.h5 is
# a generated stand-in with Fashion-MNIST's layout and sizes (so a run prints
# the lines a real one does). A block fenced `sh no-test: WHY` is not run. Each block is one check:
# it must exit 0 within 5 minutes. Also: the quick-start transcript has the
# lines `make run` prints (numbers aside), and README's usage lines are each
# command's --help. Ends with "N passed, N failed".
cd "$(dirname "$0")/.." && . tests/lib.sh
root=$(pwd)
PY=/usr/bin/python3
trap '"$root/scripts/netns-cluster.sh" down > /dev/null 2>&1; "$root/scripts/slurm-local.sh" down > /dev/null 2>&1;
      kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT

# The blocks, one file each: $tmp/blocks/NNN.sh, first line the README line.
mkdir -p "$tmp/blocks"
awk -v dir="$tmp/blocks" '
    /^```/ && inblock { inblock = 0; close(f); next }
    /^```sh *$/ { inblock = 1; n++; f = sprintf("%s/%03d.sh", dir, n);
                  printf "# README.md line %d\n", NR > f; next }
    inblock { print > f }' README.md
nblocks=$(ls "$tmp/blocks" | wc -l)

# The scratch checkout.
w="$tmp/w"
mkdir -p "$w/data"
for f in "$BUILD" scripts configs hostfiles tests src include Makefile docs fuzz; do
    [ -e "$f" ] && ln -s "$root/$f" "$w/$f"
done
[ "$BUILD" = build ] || ln -s "$root/$BUILD" "$w/build"
$PY - "$w/data/fashion-mnist.h5" <<'EOF' || { echo "cannot make the stand-in data"; echo "0 passed, 1 failed"; exit 1; }
import sys
import h5py
import numpy as np
# Ten classes of 28x28 uint8 images, each a noisy copy of its class's
# pattern: learnable in a few epochs, as Fashion-MNIST is.
rng = np.random.default_rng(3)
protos = rng.integers(0, 256, size=(10, 28, 28))
def split(n):
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    x = np.clip(protos[y] + rng.normal(0, 60, size=(n, 28, 28)), 0, 255).astype(np.uint8)
    return x, y
with h5py.File(sys.argv[1], "w") as f:
    for g, n in (("train", 60000), ("test", 10000)):
        x, y = split(n)
        f[f"/{g}/images"] = x
        f[f"/{g}/labels"] = y
EOF

i=0
for b in "$tmp"/blocks/*.sh; do
    i=$((i + 1))
    where=$(head -n 1 "$b" | sed 's/^# //')
    first=$(sed -n '2p' "$b")
    (cd "$w" && timeout 300 sh -e "$b") > "$tmp/out" 2>&1
    st=$?
    cp "$tmp/out" "$tmp/block$i.out"
    if [ $st -eq 0 ]; then ok "block $i/$nblocks ($where): $first"
    else bad "block $i/$nblocks ($where) exited $st: $first"; fi
done

# The quick-start transcript (the first `console` block) against what the
# quick start's `make run` (the first block containing it) printed here: each
# line, numbers masked, must be one of its lines. "..." lines stand for more.
# The transcript writes … for the times and speeds a run prints.
mask() {
    sed -E 's/  [0-9.]+s  [0-9]+ samples\/s$/  …/; s/ in [0-9.]+s, [0-9]+ MB\/s$/ in …/;
            s/ steps in [0-9.]+s, [0-9]+ samples\/s;/ steps in …;/' |
        sed -E 's/[0-9]+([.][0-9]+)?(e[-+]?[0-9]+)?/#/g; s/ +/ /g; s/ $//'
}
awk '/^```console/ { inblock = 1; next } /^```/ && inblock { exit } inblock' README.md |
    grep -v '^\.\.\.$' | mask > "$tmp/transcript"
run=$(grep -l '^make run' "$tmp"/blocks/*.sh | head -n 1)
k=$(ls "$tmp"/blocks/*.sh | grep -n "^$run\$" | cut -d: -f1)
mask < "$tmp/block$k.out" > "$tmp/printed"
missing=$(grep -vxF -f "$tmp/printed" "$tmp/transcript")
if [ -s "$tmp/transcript" ] && [ -n "$k" ] && [ -z "$missing" ]
then ok "the quick-start transcript is what make run prints ($(wc -l < "$tmp/transcript") lines)"
else echo "     transcript lines make run did not print:"; echo "$missing" | sed 's/^/     | /'
     bad "the quick-start transcript is what make run prints"; fi

# Usage lines: what each --help prints first is in README.md.
for c in train eval predict convert inspect; do
    "$SF" "$c" --help > "$tmp/out" 2>&1
    usage=$(grep -m 1 '^usage:' "$tmp/out" | sed 's/^usage: //')
    if [ -n "$usage" ] && grep -qF -- "$usage" README.md
    then ok "README has '$c --help''s usage: $usage"; else bad "README lacks '$c --help''s usage line: '$usage'"; fi
done
summary
