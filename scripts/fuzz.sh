#!/bin/sh
# fuzz.sh: builds the libFuzzer targets in fuzz/ and runs them.
#
#   scripts/fuzz.sh check            each target once over its committed seeds
#                                    (fuzz/corpus/T) and regression inputs
#                                    (fuzz/regressions/T): "ok T" / "FAIL T",
#                                    then "N passed, N failed" (make test)
#   scripts/fuzz.sh run SECONDS [T]  fuzzes each target (or only T...) for
#                                    SECONDS, one after the other (make fuzz)
#   scripts/fuzz.sh triage T [FILE]  reruns crash inputs (default: those in
#                                    build-fuzz/artifacts/T/) and says for each
#                                    where it fails: in our code, or in libhdf5
#   scripts/fuzz.sh build            only builds
#
# Targets are fuzz/fuzz_T.c; the library is every src/*.c but main.c, built
# with clang, ASan and UBSan into build-fuzz/ (its own object directory: the
# gcc build in build/ is untouched). A src file that does not compile (work in
# progress) is left out with a warning, and only the targets that need it
# fail to link. New inputs a run finds go to build-fuzz/corpus/T, crashes to
# build-fuzz/artifacts/T/, never into git: a crash worth keeping is fixed and
# its input copied to fuzz/regressions/T/ by hand. Inputs that crash inside
# libhdf5 itself, where our code cannot help, are kept in fuzz/known-hdf5/
# and not run. `run` uses libFuzzer's fork mode and goes on past a crash
# (libhdf5 1.10.8 crashes on many corrupted files; one such crash must not
# end the search for ours): every crash input is kept in build-fuzz/artifacts/T/
# and triaged at the end. Extra libFuzzer flags can be given in FUZZ_ARGS.
set -u
why=""
cd "$(dirname "$0")/.."
OUT=build-fuzz
CC=${FUZZ_CC:-clang}
PKGS="ompi-c hdf5-openmpi openblas inih"
# UBSan findings abort like ASan's, so libFuzzer counts them as crashes.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -DSF_NO_H5_GUARD -Wall -Wextra -Werror -fno-math-errno -O1 -g \
$SAN -fsanitize=fuzzer-no-link -Iinclude"
# Each input must stay under these limits (a huge declared shape must be
# refused, not allocated) and finish in time: 20 s in a check, which may run
# on a loaded machine; 5 s while fuzzing, where inputs take milliseconds and
# every input on which libhdf5 loops forever costs the timeout. One malloc
# may take 1 GiB in the HDF5 targets, 64 MiB in the text ones (config, idx,
# csv), whose inputs are a few KB: memory must follow the data read.
LIMITS="-rss_limit_mb=2048"
CHECK_LIMITS="$LIMITS -timeout=20"
RUN_LIMITS="$LIMITS -timeout=5"

# malloc_limit T: the -malloc_limit_mb flag for target T.
malloc_limit() {
    case $1 in
    dataset|checkpoint) echo "-malloc_limit_mb=1024" ;;
    *) echo "-malloc_limit_mb=64" ;;
    esac
}
# allocator_may_return_null: libhdf5 asks for absurd sizes read from a
# corrupted file and copes with NULL; an allocation of more than
# -malloc_limit_mb that succeeds is still reported, ours or HDF5's.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:symbolize=1"
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OPENBLAS_NUM_THREADS=1

targets() {
    for f in fuzz/fuzz_*.c; do
        t=$(basename "$f" .c)
        [ "$t" = fuzz_common ] || echo "${t#fuzz_}"
    done
}

# newer FILE DEPS...: true if FILE is missing or older than any of DEPS.
newer() {
    f=$1; shift
    [ -e "$f" ] || return 0
    for d in "$@"; do [ "$d" -nt "$f" ] && return 0; done
    return 1
}

# Installs clang and its runtime (libclang-rt-14-dev holds libFuzzer:
# libclang_rt.fuzzer-x86_64.a). Sets $why and fails if that is impossible.
deps() {
    if ! scripts/install-deps.sh clang libclang-rt-14-dev >"$OUT/deps.log" 2>&1; then
        why="cannot install clang and libclang-rt-14-dev (see $OUT/deps.log): \
$(tail -n 1 "$OUT/deps.log")"
        return 1
    fi
    if ! command -v "$CC" >/dev/null 2>&1; then
        why="$CC is not on PATH after installing clang"
        return 1
    fi
    if ! PKG_CFLAGS=$(pkg-config --cflags $PKGS) || ! PKG_LIBS=$(pkg-config --libs $PKGS); then
        why="pkg-config does not know $PKGS"
        return 1
    fi
}

# Compiles the library into $OUT/libshardfit-fuzz.a and links every target
# it can. Sets $why and fails only if nothing could be built at all.
build() {
    mkdir -p "$OUT/obj"
    deps || return 1
    headers="include/shardfit/*.h src/*.h fuzz/*.h scripts/fuzz.sh"
    objs=""
    for src in src/*.c; do
        n=$(basename "$src" .c)
        [ "$n" = main ] && continue
        o=$OUT/obj/$n.o
        # shellcheck disable=SC2086
        if newer "$o" "$src" $headers; then
            # shellcheck disable=SC2086
            if ! $CC $CFLAGS $PKG_CFLAGS -c "$src" -o "$o" 2>"$OUT/obj/$n.err"; then
                echo "fuzz.sh: warning: $src does not compile with $CC; left out:" >&2
                sed 's/^/    /' "$OUT/obj/$n.err" | head -n 20 >&2
                rm -f "$o"
                continue
            fi
            rm -f "$OUT/obj/$n.err"
        fi
        objs="$objs $o"
    done
    lib=$OUT/libshardfit-fuzz.a
    # A new archive when an object changed or one came or went.
    # shellcheck disable=SC2086
    if newer "$lib" $objs || [ "$objs" != "$(cat "$OUT/lib.objs" 2>/dev/null)" ]; then
        rm -f "$lib"
        # shellcheck disable=SC2086
        ar rcs "$lib" $objs || { why="ar failed"; return 1; }
        echo "$objs" >"$OUT/lib.objs"
    fi
    for t in common $(targets); do
        src=fuzz/fuzz_$t.c; o=$OUT/obj/fuzz_$t.o
        # shellcheck disable=SC2086
        if newer "$o" "$src" $headers; then
            # shellcheck disable=SC2086
            $CC $CFLAGS -Isrc $PKG_CFLAGS -c "$src" -o "$o" || rm -f "$o"
        fi
    done
    for t in $(targets); do
        bin=$OUT/fuzz_$t
        if [ ! -e "$OUT/obj/fuzz_$t.o" ] || [ ! -e "$OUT/obj/fuzz_common.o" ]; then
            rm -f "$bin"; continue
        fi
        newer "$bin" "$OUT/obj/fuzz_$t.o" "$OUT/obj/fuzz_common.o" "$lib" || continue
        # Linked under a temporary name: a run may be using the old binary.
        # shellcheck disable=SC2086
        if $CC $SAN -fsanitize=fuzzer "$OUT/obj/fuzz_$t.o" "$OUT/obj/fuzz_common.o" \
            "$lib" $PKG_LIBS -lz -lm -o "$bin.new" 2>"$OUT/link-$t.err"; then
            mv -f "$bin.new" "$bin"
        else
            echo "fuzz.sh: warning: fuzz_$t does not link:" >&2
            sed 's/^/    /' "$OUT/link-$t.err" | head -n 20 >&2
            rm -f "$bin" "$bin.new"
        fi
    done
    # The config keys and enum words, so mutations can spell them.
    {
        sed -nE 's/^ *\{ "([a-z_]+)", "([a-z_]+)".*/"[\1]"\n"\2"\n"\1.\2="/p' src/config_table.c
        grep -E '_names\[\] = ' -A 2 src/config_table.c | grep -oE '"[a-z_]+"'
        printf '"%s"\n' true false yes no on off all " = " "\\x0a"
    } | sort -u >"$OUT/config.dict"
}

# inputs T: the committed files a check runs through target T.
inputs() {
    for d in fuzz/corpus/$1 fuzz/regressions/$1; do
        [ -d "$d" ] && find "$d" -type f ! -name '.*' | sort
    done
}

check() {
    passed=0; failed=0
    mkdir -p "$OUT/logs"
    if ! build; then
        echo "FAIL fuzz build: $why"
        echo "0 passed, 1 failed"
        return 1
    fi
    for t in $(targets); do
        bin=$OUT/fuzz_$t
        files=$(inputs "$t")
        n=$(echo "$files" | grep -c .)
        if [ ! -x "$bin" ]; then
            echo "FAIL fuzz_$t: did not build"; failed=$((failed + 1)); continue
        fi
        if [ "$n" -eq 0 ]; then
            echo "FAIL fuzz_$t: no inputs in fuzz/corpus/$t"; failed=$((failed + 1)); continue
        fi
        log=$OUT/logs/check-$t.log
        # shellcheck disable=SC2086
        if echo "$files" | xargs "$bin" $CHECK_LIMITS "$(malloc_limit "$t")" >"$log" 2>&1; then
            echo "ok fuzz_$t ($n inputs)"; passed=$((passed + 1))
        else
            echo "FAIL fuzz_$t ($n inputs; log: $log)"; failed=$((failed + 1))
            grep -E 'Running:|ERROR|SUMMARY|fuzz: |runtime error' "$log" | tail -n 12 |
                sed 's/^/    /'
        fi
    done
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# triage T FILE...: one line per input, "ours", "hdf5" or "gone" (no
# longer fails), the failure and the innermost frame that is neither the
# sanitizer runtime, libFuzzer nor libc: our source line, or libhdf5.
triage() {
    bin=$OUT/fuzz_$1; limit=$(malloc_limit "$1"); shift
    for f in "$@"; do
        # shellcheck disable=SC2086
        out=$("$bin" $RUN_LIMITS "$limit" "$f" 2>&1) && { echo "gone $f"; continue; }
        what=$(echo "$out" | grep -oE 'ERROR: [A-Za-z]+: [A-Za-z -]+(\(malloc\([0-9]+\)\))?|runtime error: .*|^fuzz: .*' |
            head -n 1 | sed 's/ on unknown address//')
        frame=$(echo "$out" | grep -E '^ +#[0-9]+ ' |
            grep -vE "build-fuzz/fuzz_[a-z]+\+0x|/libc\.so|libc-start|sysdeps/" | head -n 1 |
            sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ //; s/ \(BuildId.*//; s|/lib/x86_64-linux-gnu/||')
        case "$frame" in *libhdf5*) who=hdf5 ;; *) who=ours ;; esac
        echo "$who $f: ${what:-?} | ${frame:-?}"
    done
}

run() {
    secs=$1; shift
    want=${*:-$(targets)}
    passed=0; failed=0
    mkdir -p "$OUT/logs"
    build || { echo "fuzz.sh: $why" >&2; return 1; }
    report=$OUT/fuzz-report.txt
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) fuzz.sh run $secs" >>"$report"
    for t in $want; do
        bin=$OUT/fuzz_$t
        if [ ! -x "$bin" ]; then
            echo "FAIL fuzz_$t: did not build" | tee -a "$report"
            failed=$((failed + 1)); continue
        fi
        art=$OUT/artifacts/$t
        mkdir -p "$OUT/corpus/$t" "$art"
        dict=""
        [ "$t" = config ] && dict=-dict=$OUT/config.dict
        log=$OUT/logs/run-$t.log
        seeds="fuzz/corpus/$t"
        [ -d "fuzz/regressions/$t" ] && seeds="$seeds fuzz/regressions/$t"
        echo "== fuzz_$t for $secs s (log: $log)"
        touch "$OUT/run-start"
        start=$(date +%s)
        # The first corpus directory receives new inputs; the others are read.
        # shellcheck disable=SC2086
        "$bin" $RUN_LIMITS "$(malloc_limit "$t")" -max_total_time="$secs" -fork=1 -ignore_crashes=1 \
            -ignore_ooms=1 -ignore_timeouts=1 -artifact_prefix="$art/" $dict \
            ${FUZZ_ARGS:-} "$OUT/corpus/$t" $seeds >"$log" 2>&1
        took=$(($(date +%s) - start))
        # fork mode's status lines: "#EXECS: cov: ... oom/timeout/crash: A/B/C"
        execs=$(sed -nE 's/^#([0-9]+): cov:.*/\1/p' "$log" | tail -n 1)
        ncorp=$(find "$OUT/corpus/$t" -type f | wc -l)
        new=$(find "$art" -type f -newer "$OUT/run-start" | sort)
        # shellcheck disable=SC2086
        found=$( [ -z "$new" ] || triage "$t" $new)
        # Inputs of children that crashed, left in /dev/shm or /tmp.
        find /dev/shm "${TMPDIR:-/tmp}" -maxdepth 1 -name 'shardfit-fuzz-*' \
            -newer "$OUT/run-start" -exec rm -rf {} + 2>/dev/null
        ours=$(echo "$found" | grep -c '^ours ')
        hdf5=$(echo "$found" | grep -c '^hdf5 ')
        line="fuzz_$t: ${execs:-?} executions in $took s, $ncorp inputs in $OUT/corpus/$t"
        line="$line, failing inputs: $ours ours, $hdf5 in libhdf5"
        if [ "$ours" -eq 0 ]; then
            echo "ok $line" | tee -a "$report"; passed=$((passed + 1))
        else
            echo "FAIL $line" | tee -a "$report"; failed=$((failed + 1))
        fi
        [ -n "$found" ] && echo "$found" | sed 's/^/    /' | tee -a "$report"
    done
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

mkdir -p "$OUT"
case "${1:-}" in
check) check ;;
run)
    [ $# -ge 2 ] || { echo "usage: $0 run SECONDS [TARGET...]" >&2; exit 2; }
    shift; run "$@" ;;
triage)
    [ $# -ge 2 ] || { echo "usage: $0 triage TARGET [FILE...]" >&2; exit 2; }
    target=$2; shift 2
    build || { echo "fuzz.sh: $why" >&2; exit 1; }
    # shellcheck disable=SC2046
    [ $# -gt 0 ] || set -- $(find "$OUT/artifacts/$target" -type f 2>/dev/null | sort)
    [ $# -eq 0 ] || triage "$target" "$@" ;;
build) build || { echo "fuzz.sh: $why" >&2; exit 1; } ;;
*) echo "usage: $0 check | run SECONDS [TARGET...] | triage TARGET [FILE...] | build" >&2
   exit 2 ;;
esac
