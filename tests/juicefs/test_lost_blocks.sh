#!/usr/bin/env bash
# A segment's blocks vanish from the object store for a while, then come back:
# brings up Redis, a volume and one mount without a local cache
# (scripts/juicefs-up.sh; juicefs mount --io-retries 1, so a missing block
# fails a read at once), starts hicached on it, stores pages and waits until
# their segment is sealed, drops the segment's pages from the page cache and
# moves the bucket's blocks away. A get must then fail (an error, never other
# bytes) and hicached stay up. Once the blocks are back every page must come
# back byte for byte, at once.
#
# That last part is what the test is for: JuiceFS keeps an I/O error a handle
# met for every later read through that handle (pkg/vfs/reader.go:
# fileReader.err), so a daemon that kept reading through the segment's fd
# that met the error would answer EIO for that segment until the fd was
# closed. Run for both I/O engines (uring, threads).
#
# usage: tests/juicefs/test_lost_blocks.sh [BUILD_DIR]   (default build/default)
# env: JFS_TEST_PORT (Redis port, 6392).
# State (volume, mount, socket, logs): BUILD_DIR/test_lost_blocks/, removed at
# the end unless KEEP=1.
# Exit: 0 pass, 1 fail, 77 skip (FUSE unusable here: the reason is printed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PORT=${JFS_TEST_PORT:-6392}
PAGES=6
CALL_S=30

NAME=test_lost_blocks
VOLUME=hicache-lb
. "$ROOT/tests/juicefs/stage.sh"
CTL_OPTS=(--timeout 20000)

# No local cache (a block JuiceFS cached on disk would still be read), and
# one try a read: a missing block is an error at once.
up() {
    "$ROOT/scripts/juicefs-up.sh" --state-dir "$STATE" --port "$PORT" --name "$VOLUME" \
        --mount "$MNT" --cache-size 0 -- --io-retries 1 >>"$T/up.log" 2>&1
}
up_first
BLOCKS=$STATE/bucket/$VOLUME/chunks
ok "volume mounted at $MNT without a local cache ($(el))"

# drop_cached FILE...: the files' pages out of the kernel's page cache.
drop_cached() {
    python3 - "$@" <<'EOF'
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
EOF
}

run_engine() { # run_engine ENGINE
    local engine=$1 i key keys=() data n sealed t hits=0 wrong=0 failed=0
    NODE=lb-$engine
    data=$MNT/hicache/$NODE
    echo "--- engine $engine ($(el))"
    daemon_start --io-engine "$engine" --segment-size 64M --seal-interval-ms 500 \
        --read-linger-ms 0 || { ko "$engine: hicached starts on $MNT"; return; }
    for i in $(seq "$PAGES"); do
        key=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')_$i
        head -c $((512 * 1024 + i * 4096)) /dev/urandom >"$T/page.$i"
        ctl put "$key" "$T/page.$i"
        [ $RC -eq 0 ] || ko "$engine: put page $i: exit $RC: $(cat "$T/ctl.err")"
        keys+=("$key")
    done
    t=$(now_ms)
    sealed=0
    while [ $(($(now_ms) - t)) -lt 10000 ]; do
        n=$(find "$data" -maxdepth 1 -name '*.idx' 2>/dev/null | wc -l)
        [ "$n" -ge 1 ] && { sealed=1; break; }
        sleep 0.05
    done
    [ $sealed = 1 ] && ok "$engine: $PAGES pages stored, their segment sealed" ||
        { ko "$engine: no sealed segment after 10 s: $(ls "$data" 2>&1)"; daemon_stop "$engine"; return; }
    # the writes are in the bucket once the segment is sealed (fsync)
    drop_cached "$data"/*.seg
    mv "$BLOCKS" "$BLOCKS.away" || { ko "$engine: cannot move $BLOCKS away"; daemon_stop "$engine"; return; }

    ctl get "${keys[0]}" "$T/got"
    if [ $RC -eq 0 ]; then
        cmp -s "$T/page.1" "$T/got" &&
            ko "$engine: page 1 served although its blocks are gone (cached somewhere): nothing tested" ||
            ko "$engine: page 1 served with other bytes while its blocks are gone"
    else
        ok "$engine: get with the blocks gone fails (exit $RC in $MS ms): $(head -c 160 "$T/ctl.err")"
    fi
    alive "($engine) after a get of a lost block" || return
    mv "$BLOCKS.away" "$BLOCKS" || { ko "$engine: cannot move the blocks back"; return; }

    for i in $(seq "$PAGES"); do
        rm -f "$T/got"
        ctl get "${keys[$((i - 1))]}" "$T/got"
        if [ $RC -ne 0 ]; then
            failed=$((failed + 1))
            [ $failed -gt 1 ] || note "$engine: page $i: exit $RC: $(head -c 200 "$T/ctl.err")"
        elif cmp -s "$T/page.$i" "$T/got"; then
            hits=$((hits + 1))
        else
            wrong=$((wrong + 1))
        fi
    done
    [ $hits -eq "$PAGES" ] && ok "$engine: blocks back: all $PAGES pages byte-exact" ||
        ko "$engine: blocks back: $hits of $PAGES pages byte-exact, $failed failed, $wrong wrong"
    ctl stats
    note "$engine: $(grep -E '^ *(io_errors|corrupt_records)' "$T/ctl.out" | tr -s ' \n' ' ')"
    grep -Eq '^ *corrupt_records +0( |$)' "$T/ctl.out" && ok "$engine: no record counted corrupt" ||
        ko "$engine: records counted corrupt: $(grep corrupt_records "$T/ctl.out")"
    daemon_stop "$engine"
}

run_engine uring
run_engine threads
echo "$NAME: $pass passed, $fail failed"
[ $fail -eq 0 ]
