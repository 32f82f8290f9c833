#!/bin/bash
# tools/replay_suite.sh [BUILD_DIR]: make replay's replay (tools/trace_replay.py,
# the daemon on a local directory) over 18 cases: the Mooncake trace and five
# Zipf traces (4,000 requests with seeds 1 and 2, 20,000, and 8,000 at
# s = 0.8 and 1.2) at capacities of 5%, 10% and 20% of their distinct blocks.
# Prints each case's share of an exact LRU's prefix hits and the write
# amplification, then how many cases are under 98%. About 6 minutes here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/default}
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
under=0
n=0
printf '%-34s %8s %10s %10s\n' trace capacity "of LRU" "write amp"
for tr in "" "--zipf 4000" "--zipf 4000 --zipf-seed 2" "--zipf 20000" \
    "--zipf 8000 --zipf-s 0.8" "--zipf 8000 --zipf-s 1.2"; do
    for f in 0.05 0.10 0.20; do
        # shellcheck disable=SC2086
        out=$(HICACHE_LIB="$PWD/$BUILD/libhicache.so" "$PY" tools/trace_replay.py --build "$BUILD" \
            $tr --capacity-frac "$f")
        line=$(grep '^hicached ' <<<"$out")
        ratio=$(awk '{print $4}' <<<"$line")
        wa=$(awk '{print $5}' <<<"$line")
        printf '%-34s %8s %10s %10s\n' "${tr:-mooncake synthetic}" "$f" "$ratio" "$wa"
        n=$((n + 1))
        if awk -v r="${ratio%\%}" 'BEGIN { exit !(r < 98) }'; then under=$((under + 1)); fi
    done
done
echo "$under of $n cases under 98% of LRU"
