#!/usr/bin/env bash
# make bench [QUICK=1]: hicached vs SGLang's HiCacheFile vs the machine's limits,
# on a local directory and on a real JuiceFS mount (Redis + file storage +
# local cache), in one run. Needs root (drop_caches, FUSE).
#
#   scripts/bench/run.sh [--quick] [--emulate] [--no-juicefs] [--out DIR] [--build DIR]
#                        [--systems A,B] [--stores A,B] [--no-mla] [--cpus LIST]
#                        [--cold-rounds N]
#
# --emulate (make bench EMULATE=1) adds emulated production deployments
# (scripts/bench/emulate.sh: metadata Redis and object-store Redis behind
# network round trips): metadata +0.2 ms; metadata +0.5 ms and object store
# +5 ms with a 2 GiB local cache; the same with no cache. Each phase's row
# then carries the volume's work (jfs_*: metadata calls and transactions,
# object GETs/PUTs and bytes, FUSE ops, compactions). It runs the quick
# sizes (1 MiB pages) to stay under 15 minutes, and there the MHA cold phase
# and fio's cold read three times each (--cold-rounds 3: the median's row,
# every pass listed). Every phase's row also has the CPU seconds of the
# machine and of each part (cpu_*: daemon, ranks, JuiceFS, Redis, netdelay,
# kernel threads), tabled per GiB in results.md.
#
# --systems, --stores and --no-mla run a subset (bench.py --help; for example
# --emulate --stores emu-m0.5-o5-nocache --systems hicached --no-mla, about
# two minutes); a subset's tables hold only what it ran. --cold-rounds N
# sets how many cold passes (and fio cold reads) an emulated deployment gets.
#
# --cpus LIST (taskset's form, e.g. 0 or 0,1) pins the run and all it starts
# (daemon, ranks, fio, JuiceFS clients, both Redis servers, netdelay) to those
# cores: how a phase scales with cores. results.md's "busy" is then theirs.
#
# BENCH_NO_BUILD=1 skips `make all` and uses the binaries already in the build
# directory (for measuring a given build while the tree is being edited).
# Installs what is missing (fio from Debian; matplotlib into .venv), builds
# the C helpers, brings up its own JuiceFS volume (state in var/bench/juicefs,
# Redis on port 6393, so it never touches the test suite's volume) and takes
# it down again. Results (table, JSON, CSV, PNG) go to var/bench/results/ (or
# --out). Exit status: 0 the run completed, 1 it failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
QUICK=${QUICK:-}
BUILD=build/default
OUT=$ROOT/var/bench/results
JFS=1
EMULATE=${EMULATE:-}
SUBSET=()
CPUS=
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1; shift ;;
    --emulate) EMULATE=1; shift ;;
    --no-juicefs) JFS=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --systems|--stores) SUBSET+=("$1" "$2"); shift 2 ;;
    --no-mla) SUBSET+=("$1"); shift ;;
    --cold-rounds) SUBSET+=("$1" "$2"); shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (drop_caches, JuiceFS mount)" >&2; exit 1; }

WORK=$ROOT/var/bench
mkdir -p "$WORK/bin" "$OUT"
say() { echo "bench: $*"; }
if [ -n "$CPUS" ]; then
    taskset -pc "$CPUS" $$ >/dev/null || { echo "bench: cannot pin to CPUs $CPUS" >&2; exit 2; }
    say "pinned to CPUs $CPUS (taskset): everything this run starts runs on them"
fi

# ---------------------------------------------------------------- deps
if ! command -v fio >/dev/null; then
    say "installing fio (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fio >/dev/null
fi
PY=$(bash scripts/install-python-deps.sh | tail -n 1)
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib==3.11.2 into $(dirname "$(dirname "$PY")")"
    "$PY" -m pip install -q --disable-pip-version-check -c <(echo torch==2.13.0) matplotlib==3.11.2
fi
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
    say "BENCH_NO_BUILD=1: using the binaries already in $BUILD"
else
    make --no-print-directory all BUILD="$BUILD" >/dev/null
fi
for f in hicached hicachectl libhicache.a libhicache.so; do
    [ -e "$BUILD/$f" ] || { echo "bench: $BUILD/$f missing (build failed?)" >&2; exit 1; }
done
# The Python backend loads this build's libhicache (its header and the
# Python binding change together).
export HICACHE_LIB=$ROOT/$BUILD/libhicache.so
export HICACHED_BIN=$ROOT/$BUILD/hicached
CFLAGS=(-O2 -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread)
gcc "${CFLAGS[@]}" scripts/bench/sockrt.c -o "$WORK/bin/sockrt"
gcc "${CFLAGS[@]}" -Iclient -Icommon scripts/bench/rssload.c "$BUILD/libhicache.a" \
    $(pkg-config --libs libprotobuf-c) -o "$WORK/bin/rssload"

# ---------------------------------------------------------------- stores
LOCAL=$WORK/local
mkdir -p "$LOCAL"
JFS_STATE=$WORK/juicefs
JFS_MNT=$JFS_STATE/mnt
JFS_CACHE=$JFS_STATE/cache
JFS_PORT=6393
jfs_args=()
if [ "$JFS" = 1 ]; then
    rc=0
    bash scripts/juicefs-up.sh --state-dir "$JFS_STATE" --port "$JFS_PORT" --mount "$JFS_MNT" \
        --cache-dir "$JFS_CACHE" || rc=$?
    if [ $rc -eq 0 ]; then
        jfs_args=(--jfs-mount "$JFS_MNT" --jfs-state "$JFS_STATE" --jfs-port "$JFS_PORT" --jfs-cache "$JFS_CACHE")
        trap 'bash scripts/juicefs-down.sh --state-dir "$JFS_STATE" >/dev/null 2>&1 || true' EXIT
    elif [ $rc -eq 77 ]; then
        say "JuiceFS unusable here (FUSE); benchmarking the local store only"
    else
        exit 1
    fi
fi

args=(--build "$BUILD" --out "$OUT" --work "$WORK" --local "$LOCAL" --sockrt "$WORK/bin/sockrt"
    --rssload "$WORK/bin/rssload" --load-before "$(cut -d' ' -f1-3 /proc/loadavg)")
if [ -n "$EMULATE" ] && [ "$EMULATE" != 0 ]; then
    QUICK=1
    args+=(--cold-rounds 3 --emulate emu-m0.2:200:0:2048 --emulate emu-m0.5-o5:500:5000:2048
        --emulate emu-m0.5-o5-nocache:500:5000:0)
fi
if [ -n "$QUICK" ] && [ "$QUICK" != 0 ]; then
    args+=(--quick --mla-pages 64 --exists-rounds 10 --rtt-rounds 1000 --rss-pages 100000)
fi
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" -W ignore scripts/bench/bench.py "${args[@]}" "${jfs_args[@]}" "${SUBSET[@]}"
