# lib.sh: what the script tests share. Each cli_*.sh starts with
#   cd "$(dirname "$0")/.." && . tests/lib.sh
# and ends with `summary`, the "N passed, N failed" line tests/run-all.sh reads.
set -u
BUILD=${BUILD:-build}
SF="$(pwd)/$BUILD/shardfit"
RUN="$(pwd)/scripts/mpirun-local.sh"
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
passed=0; failed=0

ok() { passed=$((passed + 1)); echo "ok   $1"; }
# bad NAME: a failure, with the tail of the last command's output ($tmp/out).
bad() {
    failed=$((failed + 1)); echo "FAIL $1"
    [ -f "$tmp/out" ] && sed 's/^/     | /' "$tmp/out" | tail -n 12
    return 0
}
summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

# gen_csv SEED N [BAD_ROW] [COLS]: a CSV with a header, N rows of COLS (4 or
# 2) uniform features and a learnable class 0..2 in column "label"; row
# BAD_ROW gets label 5, outside the classes.
gen_csv() {
    awk -v seed="$1" -v n="$2" -v bad="${3:--1}" -v cols="${4:-4}" 'BEGIN {
        srand(seed);
        print (cols > 2 ? "a,b,c,d" : "a,b") ",label";
        for (i = 0; i < n; i++) {
            a = rand(); b = rand(); c = rand(); d = rand();
            l = (a + b > c + d) ? 1 : 0; if (a > 0.75) l = 2; if (i == bad) l = 5;
            if (cols > 2) printf "%.4f,%.4f,%.4f,%.4f,%d\n", a, b, c, d, l;
            else printf "%.4f,%.4f,%d\n", a, b, l } }'
}

# add_group FILE.h5 GROUP SEED N [BAD_ROW] [COLS]: gen_csv converted into
# GROUP/features (float32) and GROUP/labels (int64) of FILE.h5.
add_group() {
    gen_csv "$3" "$4" "${5:--1}" "${6:-4}" > "$tmp/gen.csv" &&
    "$SF" convert csv "$tmp/gen.csv" --label-column label --out "$1" --group "$2" > /dev/null ||
        { echo "cannot make test data $1 $2"; echo "0 passed, 1 failed"; exit 1; }
}

# Clocks for the tests that time how a job ends.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
within() { awk -v t="$1" -v m="$2" 'BEGIN { exit !(t <= m) }'; }

# wait_job LIMIT: waits up to LIMIT seconds for the background job whose pid
# is $job (killing it past that: status 124); sets status and took.
wait_job() {
    t0=$(now)
    while kill -0 "$job" 2>/dev/null; do
        if ! within "$(elapsed "$t0" "$(now)")" "$1"; then
            kill -9 "$job"; status=124; took=$(elapsed "$t0" "$(now)"); return
        fi
        sleep 0.1
    done
    wait "$job"; status=$?
    took=$(elapsed "$t0" "$(now)")
}
