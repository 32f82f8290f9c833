#!/usr/bin/env bash
# How soon a page set on one node is visible on another (issue 14, item 2),
# on a real JuiceFS volume with two mounts (tests/juicefs/test_suites_on_juicefs.sh
# brings them up and down): test_nodes' test_open_segment_visible_on_b with
# ROUNDS rounds (node A sets 16 pages into its open segment, node B polls
# exists every 50 ms until all 16 are there) at visibility_ms VIS, and the
# metadata engine's commands during the suite (Redis INFO commandstats of the
# volume's Redis; the suite's other tests run too).
#
# usage: scripts/bench/visibility.sh [BUILD_DIR]   env: ROUNDS (100), VIS (1000),
#        JFS_SUITES_PORT (6397)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-build/default}
PORT=${JFS_SUITES_PORT:-6397}
export JFS_SUITES_PORT=$PORT SUITES=test_nodes HICACHE_VIS_ROUNDS=${ROUNDS:-100}
export HICACHE_VIS_MS=${VIS:-1000}
export HICACHE_VIS_OUT=$(mktemp /tmp/visibility.XXXXXX)
cmds() { redis-cli -p "$PORT" info commandstats 2>/dev/null |
    awk -F'[:=,]' '/^cmdstat_/ {n += $3} END {print n + 0}'; }
( # sample the metadata commands while the suite runs
    while ! redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.2; done
    c0=$(cmds); t0=$(date +%s.%N)
    while redis-cli -p "$PORT" ping >/dev/null 2>&1; do
        c1=$(cmds); t1=$(date +%s.%N); sleep 1
    done
    echo "metadata commands: $((c1 - c0)) in $(echo "$t1 - $t0" | bc) s"
) &
sampler=$!
bash "$ROOT/tests/juicefs/test_suites_on_juicefs.sh" "$BUILD" 2>&1 | grep -E "open segment|PASS|FAIL"
wait $sampler
cat "$HICACHE_VIS_OUT"
rm -f "$HICACHE_VIS_OUT"
