#!/usr/bin/env bash
# Runs every libFuzzer target of BUILD_DIR/fuzz for SECONDS each, from its
# seed corpus in tests/fuzz/corpus/<target> (copied: new inputs go to
# BUILD_DIR/fuzz/corpus/<target>, never into the tree). A crash, leak,
# sanitizer report or timeout fails the target; its input stays in
# BUILD_DIR/fuzz/ (crash-*, leak-*, timeout-*). Prints one line per target
# (executions, corpus size) and exits 0 only if every target passed.
# usage: scripts/run-fuzz.sh BUILD_DIR SECONDS
set -uo pipefail
build=$(cd "$1" && pwd)
secs=$2
root=$(cd "$(dirname "$0")/.." && pwd)
failed=()
for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus=$build/fuzz/corpus/$name
    mkdir -p "$corpus"
    cp -n "$root"/tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    log=$build/fuzz/$name.log
    echo "=== $name (${secs} s)"
    (cd "$build/fuzz" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        nice ./"$name" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        "corpus/$name" >"$log" 2>&1)
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "$name: passed, ${runs:-?} executions, corpus $(ls "$corpus" | wc -l) inputs"
    else
        echo "$name: FAILED (exit $rc); the end of $log:"
        tail -n 40 "$log"
        failed+=("$name")
    fi
done
[ ${#failed[@]} -eq 0 ] && echo "fuzz: every target passed" && exit 0
echo "fuzz: failed: ${failed[*]}"
exit 1
