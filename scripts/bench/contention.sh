#!/usr/bin/env bash
# What the JuiceFS client spends per GiB of a cold read on the emulated
# deployment (metadata +0.5 ms, object store +5 ms, 2 GiB cache:
# scripts/bench/emulate.sh), with the CPU free or taken by others: hicached's
# cold gets (4 clients x 256 pages of 1 MiB, hicache-load, which checks every
# byte), fio's read (4 jobs x 256 MiB, 1 MiB blocks) alone, and the same fio
# read beside two busy loops (as many as the cores of this 2-core VM). Each
# pass starts cold: the mount's cache emptied, the page cache dropped, the
# daemon restarted. Prints one line a pass. The JuiceFS client's CPU is the
# scheduler's run time of all its threads (/proc/PID/task/*/schedstat).
#
# Why: in the bench's cold phase the JuiceFS client spent 1.85-2.01 CPU-s/GiB
# on hicached's reads against 1.69 on fio's (docs/BENCHMARKS.md, "The JuiceFS
# client under a busy CPU"), though the reads it gets are alike.
#
# usage: scripts/bench/contention.sh [BUILD_DIR]   env: ROUNDS (3)
# Root, FUSE and network namespaces needed (emulate.sh); fio is installed
# from Debian when missing. Everything is torn down at the end, also after a
# failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build/default}
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" -eq 0 ] || { echo "contention: run as root" >&2; exit 1; }
[ -x "$BUILD/hicached" ] && [ -x "$BUILD/hicache-load" ] ||
    { echo "contention: build first (make all): $BUILD/hicached" >&2; exit 1; }
if ! command -v fio >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fio >/dev/null
fi
WORK=$(mktemp -d /tmp/hc-contention.XXXXXX)
ST=$WORK/state MNT=$WORK/mnt SOCK=$WORK/hicached.sock
mkdir -p "$ST" "$MNT"
DPID= HOGS=()
cleanup() {
    set +e
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
    [ ${#HOGS[@]} -gt 0 ] && kill "${HOGS[@]}" 2>/dev/null
    bash scripts/bench/emulate.sh down --state "$ST" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
bash scripts/bench/emulate.sh up --state "$ST" --mount "$MNT" --meta-rtt-us 500 \
    --obj-rtt-us 5000 --cache-size 2048 --tag hccont >/dev/null

jfs_ns() { # run time of every thread of this volume's JuiceFS client, in ns
    local p t=0 f n
    for p in $(ip netns pids hccont-cli 2>/dev/null); do
        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = juicefs ] || continue
        for f in /proc/"$p"/task/*/schedstat; do
            { read -r n _ <"$f"; } 2>/dev/null && t=$((t + n))
        done
    done
    echo "$t"
}
start_daemon() {
    "$BUILD/hicached" --mount-point "$MNT" --socket "$SOCK" --io-engine threads \
        --io-threads 4 --log-level warning 2>>"$WORK/hicached.log" &
    DPID=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && return; sleep 0.1; done
    echo "contention: hicached did not start" >&2; exit 1
}
stop_daemon() { kill "$DPID"; wait "$DPID" || true; DPID=; rm -f "$SOCK"; }
cold() {
    bash scripts/bench/emulate.sh remount --state "$ST" >/dev/null
    sync
    echo 3 >/proc/sys/vm/drop_caches
}
LOAD=("$BUILD/hicache-load" --socket "$SOCK" --clients 4 --pages 256 --page-size 1M --batch 128)
FIO=(fio --name=seq --directory="$MNT/fio" --bs=1M --size=256M --numjobs=4 --ioengine=psync
    --group_reporting --output-format=terse)
measure() { # name, command...: 1 GiB read
    local name=$1 c0 c1 t0 t1
    shift
    c0=$(jfs_ns) t0=$(date +%s.%N)
    "$@" >/dev/null
    c1=$(jfs_ns) t1=$(date +%s.%N)
    awk -v n="$name" -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" 'BEGIN {
        printf "%-24s %7.3f GB/s   JuiceFS client %5.2f CPU-s/GiB\n", n, 1.073741824 / (t1 - t0), c / 1e9 }'
}

start_daemon
"${LOAD[@]}" --only set >/dev/null
stop_daemon
mkdir -p "$MNT/fio"
"${FIO[@]}" --rw=write >/dev/null
sync
echo "contention: $(nproc) CPUs, $(uname -r); cold reads of 1 GiB on the emulated volume"
for r in $(seq "$ROUNDS"); do
    cold
    start_daemon
    measure "hicached gets" "${LOAD[@]}" --only get
    stop_daemon
    cold
    measure "fio read" "${FIO[@]}" --rw=read
    cold
    HOGS=()
    for _ in $(seq "$(nproc)"); do
        sh -c 'while :; do :; done' &
        HOGS+=($!)
    done
    measure "fio read + busy loops" "${FIO[@]}" --rw=read
    kill "${HOGS[@]}"
    wait "${HOGS[@]}" 2>/dev/null || true
    HOGS=()
done
