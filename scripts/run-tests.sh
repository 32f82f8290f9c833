#!/usr/bin/env bash
# Runs every test binary given (Check suites), then the Python tests when
# present, and prints one summary line. Exit status 0 only if all passed.
# usage: run-tests.sh BUILD_DIR TEST_BIN...
set -uo pipefail
build=$1; shift
export HICACHED_BIN="$PWD/$build/hicached"
export HICACHECTL_BIN="$PWD/$build/hicachectl"
export HICACHE_LIB="$PWD/$build/libhicache.so"
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}

passed=0; failed=0; failed_names=()
for t in "$@"; do
    name=$(basename "$t")
    echo "=== $name"
    if "$t"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failed_names+=("$name")
    fi
done

echo
if [ $failed -gt 0 ]; then
    echo "failed suites: ${failed_names[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
