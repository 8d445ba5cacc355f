#!/bin/sh
# cli_convert.sh: `shardfit convert` and `shardfit inspect` from the outside.
#
# Builds tiny IDX and CSV inputs with printf in a temporary directory (no
# binary fixtures in git), converts them, and checks the exit status, the
# message and the output. Values are checked with h5py when /usr/bin/python3
# has it. Prints "ok NAME" / "FAIL NAME" per check, then "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SF=$BUILD/shardfit
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0
failed=0

ok() { echo "ok $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
    for f in "$T/out" "$T/err"; do [ -s "$f" ] && sed 's/^/    /' "$f"; done
    return 0
}

# run ARGS...: runs shardfit; output in $T/out and $T/err, status in $rc.
run() { "$SF" "$@" >"$T/out" 2>"$T/err"; rc=$?; }

# expect NAME STATUS [TEXT]: the last run exited STATUS, and its stdout or
# stderr contains TEXT.
expect() {
    if [ "$rc" -ne "$2" ]; then
        echo "    exit status $rc, expected $2"
        fail "$1"
    elif [ -n "${3:-}" ] && ! cat "$T/out" "$T/err" | grep -qF -- "$3"; then
        echo "    output lacks: $3"
        fail "$1"
    else
        ok "$1"
    fi
}

# upto A B: the numbers A to B, one per line.
upto() { i=$1; while [ "$i" -le "$2" ]; do echo "$i"; i=$((i + 1)); done; }

# bytes N...: writes the bytes with these decimal values to stdout.
bytes() { for b in "$@"; do printf "\\$(printf %o "$b")"; done; }

# idx_u8 FILE DIMS... : an IDX uint8 header for DIMS (each < 256).
idx_u8() {
    f=$1; shift
    { bytes 0 0 8 $#; for d in "$@"; do bytes 0 0 0 "$d"; done; } >"$f"
}

PY=/usr/bin/python3
if [ -x "$PY" ] && "$PY" -c 'import h5py' 2>/dev/null; then HAVE_H5PY=1; else HAVE_H5PY=0; fi
# values NAME PYTHON: runs PYTHON (with h5py, np and f = the file $2) as a check.
values() {
    if [ "$HAVE_H5PY" -eq 0 ]; then ok "$1 # skip: no h5py"; return; fi
    if "$PY" -c "import h5py, numpy as np; f = h5py.File('$2', 'r'); $3" \
        >"$T/out" 2>"$T/err"; then ok "$1"; else : >"$T/out"; fail "$1"; fi
}

# ---- inputs ---------------------------------------------------------------
idx_u8 "$T/img.idx" 2 3 4
bytes $(upto 0 23) >>"$T/img.idx"
idx_u8 "$T/lab.idx" 2
bytes 7 3 >>"$T/lab.idx"
gzip -c "$T/img.idx" >"$T/img.idx.gz"
gzip -c "$T/lab.idx" >"$T/lab.idx.gz"

# int16 values 1, -2, 300, -32768, 32767, 256, big-endian, shape (2, 3)
{ bytes 0 0 11 2 0 0 0 2 0 0 0 3
  bytes 0 1 255 254 1 44 128 0 127 255 1 0; } >"$T/i16.idx"

# ---- idx round trips ------------------------------------------------------
run convert idx "$T/img.idx" "$T/lab.idx" --out "$T/a.h5" --group /train
expect idx_plain 0 "wrote /train/images (2, 3, 4) uint8 and /train/labels (2,) uint8 to $T/a.h5"

run convert idx "$T/img.idx.gz" "$T/lab.idx.gz" --out="$T/a.h5" --group=test/
expect idx_gzip 0 "wrote /test/images (2, 3, 4) uint8"

run inspect "$T/a.h5"
if [ "$rc" -eq 0 ] && printf '%s\n' \
    "/test/images   (2, 3, 4)  uint8" \
    "/test/labels   (2,)       uint8" \
    "/train/images  (2, 3, 4)  uint8" \
    "/train/labels  (2,)       uint8" | cmp -s - "$T/out"; then
    ok inspect_shapes
else
    fail inspect_shapes
fi

values idx_values "$T/a.h5" "
for g in ('train', 'test'):
    assert f[g + '/images'].shape == (2, 3, 4)
    assert (f[g + '/images'][:].ravel() == np.arange(24)).all()
    assert list(f[g + '/labels'][:]) == [7, 3]
    assert f[g + '/images'].compression == 'gzip'"

run convert idx "$T/i16.idx" "$T/lab.idx" --out "$T/b.h5" --group /
expect idx_int16 0 "wrote /images (2, 3) int16"
values idx_int16_values "$T/b.h5" "
assert f['images'].dtype == np.int16
assert f['images'][:].tolist() == [[1, -2, 300], [-32768, 32767, 256]]"

if [ "$HAVE_H5PY" -eq 1 ]; then
    "$PY" -c "import h5py; f = h5py.File('$T/attrs.h5', 'w'); f['x'] = [1.5]
f.attrs['epoch'] = 3; f.attrs['config'] = '[data]\npath = x.h5\n'"
    run inspect "$T/attrs.h5"
    if [ "$rc" -eq 0 ] && grep -qx '  epoch = 3' "$T/out" &&
        grep -qx '  config = \[data\] (2 lines)' "$T/out"; then
        ok inspect_attributes
    else
        fail inspect_attributes
    fi
else
    ok "inspect_attributes # skip: no h5py"
fi

# ---- bad idx input --------------------------------------------------------
idx_u8 "$T/short.idx" 2 3 4
bytes $(upto 0 19) >>"$T/short.idx"
run convert idx "$T/short.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_truncated 2 "promises 24 data bytes, found 20"
if [ -e "$T/new.h5" ]; then fail idx_truncated_leaves_no_file; else ok idx_truncated_leaves_no_file; fi

gzip -c "$T/img.idx" | head -c 30 >"$T/short.idx.gz"
run convert idx "$T/short.idx.gz" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_truncated_gzip 2 "is truncated"

cat "$T/img.idx" >"$T/long.idx"
bytes 1 2 3 >>"$T/long.idx"
run convert idx "$T/long.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_trailing_bytes 2 "has 3 bytes after the 24 data bytes"

{ bytes 1 2 8 3; tail -c +5 "$T/img.idx"; } >"$T/magic.idx"
run convert idx "$T/magic.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_bad_magic 2 "is not an IDX file: it starts 01 02 08 03"

{ bytes 0 0 7 1 0 0 0 2 1 2; } >"$T/type.idx"
run convert idx "$T/type.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_bad_type 2 "is not an IDX file"

{ bytes 0 0 8 9; } >"$T/dims.idx"
run convert idx "$T/dims.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_too_many_dims 2 "IDX header has 9 dimensions"

{ bytes 0 0 8 2 255 255 255 255 255 255 255 255; } >"$T/huge.idx"
run convert idx "$T/huge.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_huge_shape 2 "is larger than 16 GiB"

idx_u8 "$T/lab3.idx" 3
bytes 1 2 3 >>"$T/lab3.idx"
run convert idx "$T/img.idx" "$T/lab3.idx" --out "$T/new.h5" --group /train
expect idx_label_count 2 "holds 2 images but '$T/lab3.idx' holds 3 labels"

run convert idx "$T/img.idx" "$T/img.idx" --out "$T/new.h5" --group /train
expect idx_labels_2d 2 "labels need one dimension"
if [ -e "$T/new.h5" ]; then fail bad_input_leaves_no_file; else ok bad_input_leaves_no_file; fi

run convert idx "$T/nope.idx" "$T/lab.idx" --out "$T/new.h5" --group /train
expect idx_missing_input 2 "'$T/nope.idx': cannot open: No such file or directory"

# ---- the output file ------------------------------------------------------
before=$(cksum <"$T/a.h5")
run convert idx "$T/img.idx" "$T/lab.idx" --out "$T/a.h5" --group /train
expect existing_group 2 "already has '/train/images'"
if [ "$(cksum <"$T/a.h5")" = "$before" ]; then ok existing_group_unchanged; else fail existing_group_unchanged; fi

echo "not hdf5" >"$T/text.h5"
run convert idx "$T/img.idx" "$T/lab.idx" --out "$T/text.h5" --group /train
expect output_not_hdf5 2 "exists and is not an HDF5 file"
if [ "$(cat "$T/text.h5")" = "not hdf5" ]; then ok output_not_hdf5_unchanged; else fail output_not_hdf5_unchanged; fi

run convert idx "$T/img.idx" "$T/lab.idx" --out "$T/no/dir/x.h5" --group /train
expect output_dir_missing 2 "cannot create: No such file or directory"

# A write that fails (here: the file size limit, as on a full disk) exits 1
# and removes the file this run created.
idx_u8 "$T/rand.idx" 100 10 100
dd if=/dev/urandom bs=1000 count=100 2>/dev/null >>"$T/rand.idx"
idx_u8 "$T/rand-lab.idx" 100
dd if=/dev/zero bs=100 count=1 2>/dev/null >>"$T/rand-lab.idx"
(trap '' XFSZ; ulimit -f 40 && exec "$SF" convert idx "$T/rand.idx" "$T/rand-lab.idx" \
    --out "$T/full.h5" --group /t) >"$T/out" 2>"$T/err"
rc=$?
expect write_failure 1 "cannot write '/t/images': file write failed: File too large"
if [ -e "$T/full.h5" ]; then fail write_failure_removes_file; else ok write_failure_removes_file; fi

# ---- usage ----------------------------------------------------------------
run convert; expect usage_no_format 2 "missing the input format"
run convert tar x --out "$T/u.h5" --group /g; expect usage_bad_format 2 "unknown input format 'tar'"
run convert idx "$T/img.idx" --out "$T/u.h5" --group /g; expect usage_one_idx_file 2 "idx needs two files"
run convert idx "$T/img.idx" "$T/lab.idx" --group /g; expect usage_no_out 2 "missing --out"
run convert idx "$T/img.idx" "$T/lab.idx" --out "$T/u.h5"; expect usage_no_group 2 "missing --group"
run convert idx "$T/img.idx" "$T/lab.idx" --group /g --out; expect usage_out_no_value 2 "--out needs a value"
run convert idx "$T/img.idx" "$T/lab.idx" --out "$T/u.h5" --group /g --fast; expect usage_unknown_option 2 "unknown option '--fast'"
run convert csv "$T/x.csv" --out "$T/u.h5" --group /g; expect usage_csv_no_label 2 "csv needs --label-column"
run convert --help; expect usage_help 0 "usage: shardfit convert"
run train --help; expect train_help 0 "usage: shardfit train CONFIG.ini"
run eval --help; expect eval_help 0 "usage: shardfit eval --checkpoint"
run predict -h; expect predict_help 0 "usage: shardfit predict --checkpoint"
run inspect --help; expect inspect_help 0 "usage: shardfit inspect"
# Every help text ends its last line (predict's once did not).
for c in train eval predict convert inspect; do
    run "$c" --help
    if [ "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" = '\n' ]; then ok "${c}_help_newline"
    else echo "    '$c --help' does not end with a newline"; fail "${c}_help_newline"; fi
done
run inspect; expect inspect_no_file 2 "missing FILE.h5"
run inspect "$T/a.h5" "$T/a.h5"; expect inspect_two_files 2 "inspect takes one file"
run inspect "$T/nope.h5"; expect inspect_missing 2 "'$T/nope.h5': cannot open: No such file or directory"
run inspect "$T/text.h5"; expect inspect_not_hdf5 2 "is not an HDF5 file"

# ---- csv ------------------------------------------------------------------
printf '"a", b ,"label","c"\r\n1,2,0,3.5\r\n \r\n4,5,1,6\r\n7,8.25,2,9\r\n' >"$T/h.csv"
printf '0.5,1,2\n1.5,3,4\n' >"$T/n.csv"

run convert csv "$T/h.csv" --label-column label --out "$T/c.h5" --group /byname
expect csv_header_by_name 0 "wrote /byname/features (3, 3) float32 and /byname/labels (3,) int64"
run convert csv "$T/h.csv" --label-column 2 --out "$T/c.h5" --group /byindex
expect csv_header_by_index 0 "wrote /byindex/features (3, 3) float32"
run convert csv "$T/n.csv" --label-column 0 --out "$T/c.h5" --group /plain
expect csv_no_header 0 "wrote /plain/features (2, 2) float32 and /plain/labels (2,) float32"
values csv_values "$T/c.h5" "
for g in ('byname', 'byindex'):
    assert f[g + '/features'][:].tolist() == [[1, 2, 3.5], [4, 5, 6], [7, 8.25, 9]]
    assert f[g + '/labels'][:].tolist() == [0, 1, 2] and f[g + '/labels'].dtype == np.int64
assert f['plain/features'][:].tolist() == [[1, 2], [3, 4]]
assert f['plain/labels'][:].tolist() == [0.5, 1.5] and f['plain/labels'].dtype == np.float32"

printf 'a,b,label\n1,2,3\n4,x,5\n' >"$T/bad.csv"
run convert csv "$T/bad.csv" --label-column label --out "$T/new.h5" --group /t
expect csv_bad_value 2 "line 3, column 1 ('b'): 'x' is not a finite float32 number"
printf '1,2,3\n4,5\n' >"$T/ragged.csv"
run convert csv "$T/ragged.csv" --label-column 0 --out "$T/new.h5" --group /t
expect csv_ragged 2 "line 2 has 2 fields; line 1 has 3"
printf '1,2,3\n1,,3\n' >"$T/empty.csv"
run convert csv "$T/empty.csv" --label-column 0 --out "$T/new.h5" --group /t
expect csv_empty_value 2 "line 2, column 1: '' is not"
run convert csv "$T/h.csv" --label-column target --out "$T/new.h5" --group /t
expect csv_unknown_name 2 "--label-column 'target': '$T/h.csv' has no such column; its header is: a, b, label, c"
run convert csv "$T/n.csv" --label-column label --out "$T/new.h5" --group /t
expect csv_name_without_header 2 "has no header line"
run convert csv "$T/n.csv" --label-column 3 --out "$T/new.h5" --group /t
expect csv_index_out_of_range 2 "has 3 columns (0 to 2)"
printf 'a,b\n' >"$T/headonly.csv"
run convert csv "$T/headonly.csv" --label-column 0 --out "$T/new.h5" --group /t
expect csv_no_rows 2 "has no data lines"
if [ -e "$T/new.h5" ]; then fail csv_errors_leave_no_file; else ok csv_errors_leave_no_file; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
