#!/usr/bin/env bash
# Two nodes, one JuiceFS volume: brings up Redis, the volume and two mounts of
# it (scripts/juicefs-up.sh), starts one hicached per mount with different
# node ids and short seal/discovery intervals, puts random pages through node
# A, and checks that node B returns them byte for byte once it has discovered
# A's sealed segment. Tears everything down, also on failure.
#
# usage: tests/juicefs/test_two_nodes.sh [BUILD_DIR]   (default build/default)
# env: JFS_TEST_PORT (Redis port, 6397), PAGES (8), WAIT_S (30), JFS_A_OPTS,
# HICACHED_OPTS.
# Exit: 0 pass, 1 fail, 77 skip (FUSE unusable here: the reason is printed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
HICACHED=$BUILD/hicached
CTL=$BUILD/hicachectl
PORT=${JFS_TEST_PORT:-6397}
PAGES=${PAGES:-8}
WAIT_S=${WAIT_S:-30}

for b in "$HICACHED" "$CTL"; do
    [ -x "$b" ] || { echo "FAIL: $b not built (make BUILD=... all)"; exit 1; }
done

TMP=$(mktemp -d /tmp/test_two_nodes.XXXXXX)
STATE=$TMP/jfs
MA=$TMP/node-a
MB=$TMP/node-b
pids=()
. "$ROOT/tests/juicefs/checks.sh"

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    "$ROOT/scripts/juicefs-down.sh" --state-dir "$STATE" --purge >"$TMP/down.log" 2>&1 ||
        { echo "test_two_nodes: teardown failed:"; cat "$TMP/down.log"; }
    grep -q " $TMP/" /proc/self/mounts || rm -rf "$TMP"
}
trap cleanup EXIT

up() {
    "$ROOT/scripts/juicefs-up.sh" --state-dir "$STATE" --port "$PORT" --name hicache-test \
        --cache-size 512 "$@" >>"$TMP/up.log" 2>&1
}
# JFS_A_OPTS: extra juicefs-up.sh options for node A's mount, e.g.
# "--writeback --upload-delay 30s" to see what other nodes get meanwhile.
# shellcheck disable=SC2086
up --mount "$MA" ${JFS_A_OPTS:-}
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: test_two_nodes: FUSE is unusable on this machine:"
    grep -i 'fuse' "$TMP/up.log" | tail -n 3
    exit 77
fi
[ $rc -eq 0 ] || { cat "$TMP/up.log"; echo "FAIL: juicefs-up (node A) exited $rc"; exit 1; }
up --mount "$MB" || { cat "$TMP/up.log"; echo "FAIL: juicefs-up (node B)"; exit 1; }
ok "volume mounted twice ($MA, $MB)"

# start_node NAME MOUNT: hicached in the background; waits for its socket.
# HICACHED_OPTS: extra daemon flags for both nodes (e.g. "--use-direct-io true").
# shellcheck disable=SC2086
start_node() {
    local name=$1 mnt=$2 sock=$TMP/$1.sock
    "$HICACHED" --mount-point "$mnt" --socket "$sock" --node-id "$name" --foreground \
        --segment-size 64M --seal-interval-ms 200 --discovery-interval-ms 200 ${HICACHED_OPTS:-} \
        >"$TMP/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        "$CTL" --socket "$sock" ping >/dev/null 2>&1 && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "hicached $name did not come up:"
    tail -n 5 "$TMP/$name.log"
    return 1
}
start_node a "$MA" && start_node b "$MB" || { ko "daemons start"; exit 1; }
ok "hicached node a on $MA, node b on $MB"

keys=()
for i in $(seq "$PAGES"); do
    key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')_$i
    head -c $((256 * 1024 + i * 4096)) /dev/urandom >"$TMP/page.$i"
    "$CTL" --socket "$TMP/a.sock" put "$key" "$TMP/page.$i" >/dev/null || ko "put $key via node a"
    keys+=("$key")
done
"$CTL" --socket "$TMP/a.sock" exists "${keys[@]}" >/dev/null && ok "node a has its $PAGES pages" || ko "node a exists"

t0=$(date +%s%N)
seen=0
for _ in $(seq $((WAIT_S * 20))); do
    if "$CTL" --socket "$TMP/b.sock" exists "${keys[@]}" >/dev/null 2>&1; then
        seen=1
        break
    fi
    sleep 0.05
done
ms=$((($(date +%s%N) - t0) / 1000000))
if [ $seen = 1 ]; then
    ok "node b sees every page of node a after ${ms} ms (seal 200 ms, discovery 200 ms)"
else
    ko "node b does not see node a's pages after ${WAIT_S}s"
fi

good=0
for i in $(seq "$PAGES"); do
    if "$CTL" --socket "$TMP/b.sock" get "${keys[$((i - 1))]}" "$TMP/got.$i" >/dev/null &&
        cmp -s "$TMP/page.$i" "$TMP/got.$i"; then
        good=$((good + 1))
    fi
done
[ $good -eq "$PAGES" ] && ok "node b returns all $PAGES pages byte for byte" ||
    ko "node b returned $good of $PAGES pages intact"

# B's reads of A's pages reach A through hint files in B's directory (B
# writes them every 5 s, A's discovery reads them every 200 ms): A counts
# each page read once.
stat_of() { # stat_of SOCK NAME: a counter of that daemon
    "$CTL" --socket "$1" stats --json 2>/dev/null | tr ',{}' '\n\n\n' |
        sed -n "s/^ *\"$2\": *\([0-9]*\).*/\1/p"
}
applied=0
for _ in $(seq 150); do
    applied=$(stat_of "$TMP/a.sock" hints_applied)
    [ "${applied:-0}" -ge "$PAGES" ] && break
    sleep 0.1
done
[ "${applied:-0}" -eq "$PAGES" ] &&
    ok "node a counted node b's $PAGES reads through the volume (hints_sent $(stat_of "$TMP/b.sock" hints_sent))" ||
    ko "node a counted ${applied:-?} of node b's $PAGES reads (hints_applied)"

"$CTL" --socket "$TMP/b.sock" exists nosuchkey_0 >/dev/null 2>&1
[ $? -eq 1 ] && ok "node b: unknown key is a miss (exit 1)" || ko "node b: unknown key not a miss"

"$CTL" --socket "$TMP/b.sock" stats --json >"$TMP/b.stats" 2>/dev/null &&
    grep -q '"bytes_read_storage"' "$TMP/b.stats" && ok "node b stats --json" || ko "node b stats --json"

for p in "${pids[@]}"; do
    kill -TERM "$p"
    wait "$p" || ko "hicached pid $p exit status $? after SIGTERM"
done
pids=()
if grep -qi 'O_DIRECT' "$TMP/a.log" "$TMP/b.log"; then
    echo "note: $(grep -hi 'O_DIRECT' "$TMP/a.log" "$TMP/b.log" | head -n 1)"
fi

echo "test_two_nodes: $pass passed, $fail failed"
[ $fail -eq 0 ]
