#!/usr/bin/env bash
# Segments JuiceFS reads without compaction (issue 11, item 3). JuiceFS
# keeps one slice per chunk (64 MiB) of a file written by one writer in
# order; writes at scattered offsets of one file (several I/O threads
# appending to one open segment) leave many slices per chunk, and the first
# read of a chunk of 5 or more makes the JuiceFS client compact it (the
# chunk downloaded and uploaded again). This test brings up a volume (Redis
# metadata, scripts/juicefs-up.sh), runs hicached with 4 I/O threads on it,
# stores 384 pages of 1 MiB from 4 clients at once (hicache-load --only set:
# a read of a file being written makes JuiceFS flush and cut the slice, see
# docs/OPERATIONS.md), stops the
# daemon (every segment sealed): the mount must not have compacted anything
# meanwhile. Then it reads the layout from the metadata
# engine itself: the slices of every chunk of every segment (the Redis list
# c<inode>_<chunk>). Every chunk must hold at most MAX_SLICES slices. Then a
# new daemon reads every page back byte for byte (hicache-load verifies) with
# the page cache dropped, and the mount's own counter of compactions
# (juicefs_compact_size_histogram_bytes_total in .stats) must not move.
# On the old layout (one open segment, 4 I/O threads writing it): 39-62
# slices per chunk, and 6 chunks compacted during the reads; now 1 slice per
# chunk and none.
#
# usage: tests/juicefs/test_layout.sh [BUILD_DIR]   (default build/default)
# env: JFS_TEST_PORT (Redis port, 6395), HICACHED_BIN / HICACHECTL_BIN,
# LAYOUT_ARGS (more daemon flags), MAX_SLICES.
# State: BUILD_DIR/test_layout/, removed at the end unless KEEP=1.
# Exit: 0 pass, 1 fail, 77 skip (FUSE unusable here: the reason is printed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PORT=${JFS_TEST_PORT:-6395}
CLIENTS=4
PAGES=96     # per client
# per chunk: one writer in order gives 1 (2 if a flush cut it); with tail
# indexes on (LAYOUT_ARGS="--visibility-ms 1000", MAX_SLICES=4) each publish
# cuts one, at most 2 a chunk on schedule: 4 is the most JuiceFS reads
# without compacting
MAX_SLICES=${MAX_SLICES:-2}
CHUNK=$((64 << 20))
CALL_S=120

NAME=test_layout
VOLUME=hicache-layout
. "$ROOT/tests/juicefs/stage.sh"
NODE=layout
DATA=$MNT/hicache/$NODE
LOAD=${HICACHE_LOAD_BIN:-$BUILD/hicache-load}
[ -x "$LOAD" ] || { echo "FAIL: $LOAD not built"; exit 1; }

up_first
ok "volume mounted at $MNT ($(el))"

compactions() {
    awk '$1 ~ /^juicefs_compact_size_histogram_bytes_total/ {n += $2} END {print n + 0}' "$MNT/.stats"
}

load() {
    timeout "$CALL_S" "$LOAD" --socket "$SOCK" --clients $CLIENTS --pages $PAGES --shared 0 \
        --page-size 1M --batch 16 "$@" >"$T/load.out" 2>&1
}

cw=$(compactions)
# shellcheck disable=SC2086 # LAYOUT_ARGS: extra daemon flags, split on spaces
daemon_start --io-threads 4 --segment-size 256M --read-linger-ms 0 ${LAYOUT_ARGS:-} ||
    { ko "hicached starts on $MNT"; exit 1; }
ok "hicached on $MNT with 4 I/O threads"
if load --only set; then
    ok "$CLIENTS clients stored $PAGES pages of 1 MiB each ($(el))"
else
    ko "hicache-load failed: $(tail -n 3 "$T/load.out" | tr '\n' ' ')"
fi
# publishes past a chunk's schedule (records that waited: a segment written
# slowly, as under a sanitizer on a busy machine) may each add a slice, and a
# chunk of 5 or more is compacted when read: tail.c's choice of the
# visibility bound over the slice bound for slow writers
counter() { # counter NAME: that counter of the daemon now
    ctl stats --json
    tr ',{}' '\n\n\n' <"$T/ctl.out" | awk -F: -v k="\"$1\"" '$1 ~ k {print $2 + 0}'
}
# the publishes of the last records happen at the next ticks: counted once
# tail_publishes stays put for a second (visibility_ms 1000 at most here)
pubs=-1
for _ in $(seq 20); do
    p=$(counter tail_publishes)
    [ "${p:-0}" = "$pubs" ] && break
    pubs=${p:-0}
    sleep 1
done
late=$(counter tail_late_publishes)
late=${late:-0}
daemon_stop "after the stores"
c=$(compactions)
[ "$c" = "$cw" ] && ok "no compaction by the mount while the pages were stored" ||
    ko "the mount compacted $((c - cw)) time(s) while the pages were stored ($(awk '$1 ~ /^juicefs_compact_size_histogram_bytes_sum/ {print $2}' "$MNT/.stats") bytes)"

# The slices of each chunk, from the metadata engine (JuiceFS's Redis schema:
# the list c<inode>_<chunk index>, one element per slice written).
worst=0
over=0   # chunks of more than MAX_SLICES
excess=0 # their slices past MAX_SLICES, together
chunks=0
segs=0
for f in "$DATA"/*.seg; do
    [ -f "$f" ] || continue
    segs=$((segs + 1))
    ino=$(stat -c %i "$f")
    size=$(stat -c %s "$f")
    for ((i = 0; i * CHUNK < size; i++)); do
        n=$(redis-cli -h 127.0.0.1 -p "$PORT" -n 1 llen "c${ino}_$i")
        chunks=$((chunks + 1))
        [ "$n" -gt "$worst" ] && worst=$n
        if [ "$n" -gt $MAX_SLICES ]; then
            note "$(basename "$f") chunk $i: $n slices"
            over=$((over + 1))
            excess=$((excess + n - MAX_SLICES))
        fi
    done
done
if [ $segs -ge 1 ] && [ $chunks -ge 6 ] && [ "$worst" -le $MAX_SLICES ]; then
    ok "$segs segments, $chunks chunks, at most $worst slices per chunk (limit $MAX_SLICES; $late late publishes)"
elif [ $segs -ge 1 ] && [ $chunks -ge 6 ] && [ "$late" -gt 0 ] && [ $excess -le "$late" ]; then
    ok "$segs segments, $chunks chunks, at most $worst slices per chunk: $excess past $MAX_SLICES, no more than the $late late publish(es) of slow writes (one slice each)"
else
    ko "$segs segments, $chunks chunks: up to $worst slices per chunk (limit $MAX_SLICES, $late late publishes)"
fi

# A new daemon reads them all back with the page cache dropped: no
# compaction on the way.
daemon_start --io-threads 4 --read-linger-ms 0 || { ko "hicached restarts"; exit 1; }
sync
echo 3 >/proc/sys/vm/drop_caches
c0=$(compactions)
if load --only get; then
    ok "every page read back byte for byte after the restart ($(el))"
else
    ko "the read back failed: $(tail -n 3 "$T/load.out" | tr '\n' ' ')"
fi
c1=$(compactions)
if [ "$c1" = "$c0" ]; then
    ok "no compaction by the mount during the reads ($c0 before and after)"
elif [ "$late" -gt 0 ] && [ $((c1 - c0)) -le $over ]; then
    ok "the mount compacted $((c1 - c0)) chunk(s) during the reads, of the $over the late publishes gave more than $MAX_SLICES slices"
else
    ko "the mount compacted $((c1 - c0)) chunk(s) during the reads ($over chunks over $MAX_SLICES slices, $late late publishes)"
fi
daemon_stop "after the reads"

echo "test_layout: $pass passed, $fail failed ($(el))"
[ $fail -eq 0 ]
