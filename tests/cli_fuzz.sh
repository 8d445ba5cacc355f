#!/bin/sh
# cli_fuzz.sh: every fuzz target once over its committed seeds and every
# regression input (fuzz/corpus/T, fuzz/regressions/T), under ASan and UBSan,
# plus the regressions whose inputs are too large for git, made here.
#
# A crash the fuzzer once found must stay fixed, and the seeds must keep
# running clean. scripts/fuzz.sh builds the targets with clang into
# build-fuzz/ (installing clang and libFuzzer if missing; if it cannot, that
# is a failure, not a skip) and prints "ok fuzz_T" / "FAIL fuzz_T" lines.
# Ends with "N passed, N failed", which run-all.sh reads.
set -u
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

scripts/fuzz.sh check >"$T/check" 2>&1
sed '$d' "$T/check"
last=$(tail -n 1 "$T/check")
passed=$(echo "$last" | sed -nE 's/^([0-9]+) passed, [0-9]+ failed$/\1/p')
failed=$(echo "$last" | sed -nE 's/^[0-9]+ passed, ([0-9]+) failed$/\1/p')
if [ -z "$passed" ]; then
    echo "$last"
    echo "FAIL scripts/fuzz.sh check did not end with its count"
    passed=0; failed=1
fi

# 20 000 nested groups (2.9 MB): HDF5's H5Lvisit, which inspect used,
# recursed once per level and overflowed the stack. Made with h5py when
# /usr/bin/python3 has it.
PY=/usr/bin/python3
name="fuzz_dataset on 20000 nested groups"
if [ ! -x build-fuzz/fuzz_dataset ]; then
    echo "FAIL $name: build-fuzz/fuzz_dataset was not built"; failed=$((failed + 1))
elif ! "$PY" -c 'import h5py' 2>/dev/null; then
    echo "ok $name # skip: no h5py"; passed=$((passed + 1))
elif ! "$PY" -c "
import h5py
with h5py.File('$T/deep.h5', 'w', libver='latest') as f:
    g = f
    for i in range(20000):
        g = g.create_group('g')
" >"$T/out" 2>&1; then
    echo "FAIL $name: h5py could not write it"; sed 's/^/    /' "$T/out"
    failed=$((failed + 1))
elif ASAN_OPTIONS=allocator_may_return_null=1 \
     LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp" \
     build-fuzz/fuzz_dataset -timeout=120 "$T/deep.h5" >"$T/out" 2>&1; then
    echo "ok $name"; passed=$((passed + 1))
else
    echo "FAIL $name"; grep -E 'ERROR|SUMMARY' "$T/out" | sed 's/^/    /'
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
