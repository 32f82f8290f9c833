#!/usr/bin/env bash
# The integration suites again, on a real JuiceFS volume: brings up Redis, a
# volume and two mounts of it (scripts/juicefs-up.sh; state under
# BUILD/jfs-suites, Redis on 127.0.0.1:$JFS_SUITES_PORT), then runs every
# integration suite binary of BUILD/tests with
#   HICACHE_TEST_DATA_ROOT=<mount A>/itest   (each daemon's --mount-point)
#   HICACHE_TEST_PEER_ROOT=<mount B>/itest   (a peer daemon = a second node)
# so the daemons' data is on JuiceFS (sockets and logs stay in /tmp), and
# two-node tests (test_nodes) really use two mounts. Then the Python tests,
# when .venv/bin/python exists and tests/python honours those variables.
# Tears everything down, also on failure or Ctrl-C.
#
# usage: tests/juicefs/test_suites_on_juicefs.sh [BUILD_DIR]  (default build/default)
# env: JFS_SUITES_PORT (6398), SUITES ("test_nodes test_crash": only these,
#      and no Python tests),
#      JFS_SUITES_OPTS (extra juicefs-up.sh options for both mounts).
# Exit: 0 every suite passed, 1 a failure, 77 skip (FUSE unusable: the cause
# is printed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PORT=${JFS_SUITES_PORT:-6398}
ME=test_suites_on_juicefs
UNIT_NAMES=" test_config test_frame test_key test_io test_shm test_notify test_store test_index test_crc32c test_client_errors test_filter test_keys test_prom "

export HICACHED_BIN=${HICACHED_BIN:-$BUILD/hicached}
export HICACHECTL_BIN=${HICACHECTL_BIN:-$BUILD/hicachectl}
export HICACHE_LIB=${HICACHE_LIB:-$BUILD/libhicache.so}
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-300}

[ -x "$HICACHED_BIN" ] || { echo "FAIL: $ME: $HICACHED_BIN not built (make BUILD=... all)"; exit 1; }

# The integration suites: every test binary that is not a unit suite.
suites=()
for f in "$BUILD"/tests/test_*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    n=$(basename "$f")
    case $UNIT_NAMES in *" $n "*) continue ;; esac
    if [ -n "${SUITES:-}" ]; then
        case " $SUITES " in *" $n "*) ;; *) continue ;; esac
    fi
    suites+=("$f")
done
[ ${#suites[@]} -gt 0 ] || { echo "FAIL: $ME: no integration suite binaries in $BUILD/tests"; exit 1; }

STATE=$BUILD/jfs-suites
MA=$STATE/mnt-a
MB=$STATE/mnt-b
LOGS=$(mktemp -d /tmp/$ME.XXXXXX)
t_start=$SECONDS

cleanup() {
    local t0=$SECONDS
    if ! "$ROOT/scripts/juicefs-down.sh" --state-dir "$STATE" --purge >"$LOGS/down.log" 2>&1; then
        echo "$ME: teardown failed:"
        cat "$LOGS/down.log"
    fi
    echo "$ME: teardown took $((SECONDS - t0)) s; whole run $((SECONDS - t_start)) s"
    rm -rf "$LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A state dir left by a run that was killed: take it down first.
[ ! -d "$STATE" ] || "$ROOT/scripts/juicefs-down.sh" --state-dir "$STATE" --purge >/dev/null 2>&1 || true

up() {
    # shellcheck disable=SC2086
    "$ROOT/scripts/juicefs-up.sh" --state-dir "$STATE" --port "$PORT" --name hicache-suites \
        --cache-size 2048 ${JFS_SUITES_OPTS:-} "$@" >>"$LOGS/up.log" 2>&1
}
t0=$SECONDS
up --mount "$MA"
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: $ME: FUSE is unusable on this machine, the suites were NOT run on JuiceFS:"
    grep -i 'fuse' "$LOGS/up.log" | tail -n 3
    exit 77
fi
if [ $rc -ne 0 ]; then
    cat "$LOGS/up.log"
    echo "FAIL: $ME: juicefs-up (mount A) exited $rc"
    exit 1
fi
up --mount "$MB" || { cat "$LOGS/up.log"; echo "FAIL: $ME: juicefs-up (mount B)"; exit 1; }
echo "$ME: volume up with two mounts ($MA, $MB) in $((SECONDS - t0)) s"
mkdir -p "$MA/itest"
export HICACHE_TEST_DATA_ROOT=$MA/itest
export HICACHE_TEST_PEER_ROOT=$MB/itest

passed=0
failed=0
failed_names=()
for s in "${suites[@]}"; do
    n=$(basename "$s")
    t0=$(date +%s%N)
    "$s" >"$LOGS/$n.out" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    summary=$(grep -E '^[0-9]+%: Checks' "$LOGS/$n.out" | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "PASS: $n on JuiceFS (${ms} ms) ${summary}"
        passed=$((passed + 1))
    else
        echo "FAIL: $n on JuiceFS (exit $rc, ${ms} ms); its output:"
        sed 's/^/    /' "$LOGS/$n.out" | tail -n 80
        failed=$((failed + 1))
        failed_names+=("$n")
    fi
done

# The Python backend's tests, when they can put their daemons' data on the
# volume (they read the same variables).
PY=$ROOT/.venv/bin/python
if [ -n "${SUITES:-}" ]; then
    : # only the suites asked for
elif [ ! -x "$PY" ] || [ ! -d "$ROOT/tests/python" ]; then
    echo "NOTE: $ME: Python tests not run on JuiceFS: no $PY or no tests/python"
elif ! grep -rqs HICACHE_TEST_DATA_ROOT "$ROOT/tests/python"; then
    echo "NOTE: $ME: Python tests not run on JuiceFS: tests/python does not honour HICACHE_TEST_DATA_ROOT"
else
    t0=$(date +%s%N)
    (cd "$ROOT" && "$PY" -m pytest tests/python -q) >"$LOGS/pytest.out" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    if [ $rc -eq 0 ]; then
        echo "PASS: python tests on JuiceFS (${ms} ms) $(tail -n 1 "$LOGS/pytest.out")"
        passed=$((passed + 1))
    else
        echo "FAIL: python tests on JuiceFS (exit $rc, ${ms} ms); their output:"
        sed 's/^/    /' "$LOGS/pytest.out" | tail -n 80
        failed=$((failed + 1))
        failed_names+=(python)
    fi
fi

[ $failed -eq 0 ] || echo "$ME: failed on JuiceFS: ${failed_names[*]}"
echo "$ME: $passed passed, $failed failed"
[ $failed -eq 0 ]
