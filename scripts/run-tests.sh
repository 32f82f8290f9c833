#!/usr/bin/env bash
# Runs every test given: Check suite binaries, shell tests (*.sh, called
# with the build directory as their argument) and tests/python (pytest in the
# project venv). Exit status 77 from a test
# means "skipped": it is reported loudly with the test's own reason. Prints
# one summary line; exits 0 only if nothing failed.
# usage: run-tests.sh BUILD_DIR TEST...
set -uo pipefail
build=$1; shift
export HICACHED_BIN="$PWD/$build/hicached"
export HICACHECTL_BIN="$PWD/$build/hicachectl"
# the library Python loads: never a sanitizer build (see the Makefile)
export HICACHE_LIB="$PWD/${HICACHE_PY_LIB:-$build/libhicache.so}"
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
# ThreadSanitizer builds (make test SANITIZER=thread): a report fails the
# suite (exit 66); tests/tsan.supp holds the one known false report.
export TSAN_OPTIONS=${TSAN_OPTIONS:-"suppressions=$PWD/tests/tsan.supp second_deadlock_stack=1"}

passed=0; failed=0; skipped=0; failed_names=(); skipped_names=()
for t in "$@"; do
    name=$(basename "$t")
    echo "=== $name"
    case "$t" in
        *.sh) bash "$t" "$build"; rc=$? ;;
        tests/python)
            # pytest in the project venv (scripts/install-python-deps.sh),
            # with this build's daemon and a library the interpreter can load
            .venv/bin/python -m pytest -q tests/python; rc=$?
            ;;
        *) "$t"; rc=$? ;;
    esac
    case $rc in
        0) passed=$((passed + 1)) ;;
        77) skipped=$((skipped + 1)); skipped_names+=("$name") ;;
        *) failed=$((failed + 1)); failed_names+=("$name") ;;
    esac
done

echo
if [ $skipped -gt 0 ]; then
    echo "SKIPPED (see their output above for the cause): ${skipped_names[*]}"
fi
if [ $failed -gt 0 ]; then
    echo "failed suites: ${failed_names[*]}"
fi
echo "suites: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
