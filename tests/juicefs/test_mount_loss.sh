#!/usr/bin/env bash
# The JuiceFS mount dies under a running hicached: brings up Redis, a volume and
# one mount (scripts/juicefs-up.sh), starts hicached on it with a short seal
# interval, stores a batch of pages and waits until their segment is sealed,
# stores a second batch (left in the open segment), then kill -9s the
# `juicefs mount` process, so that every access to the mount fails with
# ENOTCONN. Checks that hicached stays up, that gets answer a miss or an error
# (never wrong bytes), that puts fail with an error instead of hanging, that
# `hicachectl stats` answers and that SIGTERM stops it. Then recovers as
# docs/OPERATIONS.md says (umount, remount, restart hicached) and checks that
# the sealed pages come back byte for byte; the open segment's pages must be
# byte-exact or missing. A second loss, with SIGTERM right after it, makes the
# seal at exit meet the dead mount. Tears everything down, also on failure.
# A daemon that dies, hangs (a call over 15 s) or returns other bytes fails.
#
# usage: tests/juicefs/test_mount_loss.sh [BUILD_DIR]   (default build/default)
# env: JFS_TEST_PORT (Redis port, 6394).
# State (volume, mount, socket, logs): BUILD_DIR/test_mount_loss/, removed at
# the end unless KEEP=1.
# Exit: 0 pass, 1 fail, 77 skip (FUSE unusable here: the reason is printed).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PORT=${JFS_TEST_PORT:-6394}
JUICEFS=${JUICEFS:-$ROOT/var/juicefs-venv/bin/juicefs}
SEAL_MS=1000
SEALED_PAGES=8
OPEN_PAGES=4
CALL_S=30    # bound on every client call (timeout(1))
HANG_MS=15000 # a call slower than this counts as a hang (hicachectl's own timeout is 20 s)

NAME=test_mount_loss
VOLUME=hicache-ml
. "$ROOT/tests/juicefs/stage.sh"
CTL_OPTS=(--timeout 20000)
NODE=ml
DATA=$MNT/hicache/$NODE

up_first
[ -x "$JUICEFS" ] || { echo "FAIL: no juicefs binary at $JUICEFS"; exit 1; }
ok "volume mounted at $MNT ($(el))"

# Pids of the juicefs processes serving $MNT: the `juicefs mount -d`
# supervisor and its child both hold /dev/fuse, and the mount ends only when
# both are gone. juicefs rewrites its argv (the mount point is cut off), so
# they are found by their output, which goes to this mount's log.
JLOG=$STATE/mounts/$(printf '%s' "${MNT#/}" | sed 's|[^A-Za-z0-9_.-]|_|g')/juicefs.log
mount_pids() {
    local f pid
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        [ "$(readlink "/proc/$pid/fd/1" 2>/dev/null)" = "$JLOG" ] || continue
        tr '\0' ' ' <"$f" 2>/dev/null | grep -q '^[^ ]*juicefs mount ' && echo "$pid"
    done
    return 0
}

# Starts hicached on $MNT (seal interval $DSEAL ms); waits for its socket.
start_daemon() {
    daemon_start --segment-size 64M --seal-interval-ms "$DSEAL" --discovery-interval-ms 1000 \
        --read-linger-ms 0
}

echo "--- hicached up, pages stored ($(el))"
DSEAL=$SEAL_MS
start_daemon || { ko "hicached starts on $MNT"; exit 1; }
ok "hicached on $MNT (seal interval $SEAL_MS ms, read linger off)"

keys=()
put_batch() { # put_batch FIRST LAST: stores pages FIRST..LAST, appends to keys
    local i key
    for i in $(seq "$1" "$2"); do
        key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')_$i
        head -c $((256 * 1024 + i * 4096)) /dev/urandom >"$T/page.$i"
        ctl put "$key" "$T/page.$i"
        [ $RC -eq 0 ] || ko "put page $i: exit $RC: $(cat "$T/ctl.err")"
        keys+=("$key")
    done
}

put_batch 1 $SEALED_PAGES
t=$(now_ms)
sealed=0
while [ $(($(now_ms) - t)) -lt 10000 ]; do
    n=$(find "$DATA" -maxdepth 1 -name '*.idx' 2>/dev/null | wc -l)
    [ "$n" -ge 1 ] && { sealed=1; break; }
    sleep 0.05
done
[ $sealed = 1 ] && ok "pages 1..$SEALED_PAGES stored and their segment sealed ($(ls "$DATA"))" ||
    { ko "no sealed segment after 10 s: $(ls "$DATA" 2>&1)"; exit 1; }

TOTAL=$((SEALED_PAGES + OPEN_PAGES))
T_OPEN=$(now_ms)
put_batch $((SEALED_PAGES + 1)) $TOTAL
ctl exists "${keys[@]}"
[ $RC -eq 0 ] && ok "all $TOTAL pages exist before the loss" || ko "exists before the loss: exit $RC"

# kill_mount: kill -9 of every juicefs process of $MNT; waits until they are
# gone. Sets T_LOSS.
kill_mount() {
    local jpids p
    jpids=$(mount_pids)
    [ -n "$jpids" ] || { ko "no juicefs mount process found for $MNT"; exit 1; }
    # shellcheck disable=SC2086
    kill -KILL $jpids
    T_LOSS=$(now_ms)
    for p in $jpids; do
        for _ in $(seq 250); do
            [ -r "/proc/$p/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$p/status" 2>/dev/null ||
                break
            sleep 0.01
        done
    done
    note "killed juicefs pids $(echo $jpids) ($((T_LOSS - T_OPEN)) ms after the first put into the open segment; gone $(($(now_ms) - T_LOSS)) ms later)"
}

# check_enotconn: the mount answers ENOTCONN (a new name, which the kernel
# cannot answer from its attribute cache).
check_enotconn() {
    local err
    err=$(timeout 5 touch "$MNT/.probe.$$" 2>&1)
    case $err in
    # the kernel answers ENOTCONN, or ECONNABORTED while the FUSE connection
    # is being torn down (both seen here)
    *"not connected"* | *"connection abort"*) ok "the mount answers ENOTCONN after the kill" ;;
    *) ko "after the kill, touch in $MNT says '${err:-nothing}', not ENOTCONN" ;;
    esac
}

# recover: the documented procedure (hicached already stopped): umount the
# dead mount, mount again, start hicached.
recover() {
    local t
    t=$(now_ms)
    if "$JUICEFS" umount --force "$MNT" >"$T/umount.log" 2>&1; then
        note "juicefs umount --force done"
    elif umount -l "$MNT" 2>>"$T/umount.log"; then
        note "juicefs umount --force failed ($(tail -n 1 "$T/umount.log")); umount -l done"
    else
        ko "cannot unmount the dead mount: $(cat "$T/umount.log")"
    fi
    up && ok "remounted in $(($(now_ms) - t)) ms" || { tail -n 5 "$T/up.log"; ko "remount"; exit 1; }
    note "after the remount, $DATA holds: $(cd "$DATA" && stat -c '%n (%s B)' -- * | tr '\n' ' ')"
    t=$(now_ms)
    start_daemon && ok "hicached restarted in $(($(now_ms) - t)) ms" || { ko "hicached restart"; exit 1; }
}

echo "--- kill -9 of the juicefs mount process ($(el))"
n=$(find "$DATA" -maxdepth 1 -name '*.idx' | wc -l)
kill_mount
check_enotconn
[ "$n" -eq 1 ] && note "pages $((SEALED_PAGES + 1))..$TOTAL were in the open, unsealed segment at the kill" ||
    note "$n sealed segments at the kill: the open segment was sealed before it"
alive "right after the loss"

echo "--- gets on a dead mount ($(el))"
# check_gets WHAT FIRST LAST: pages FIRST..LAST are each byte-exact or a
# miss/error, never other bytes, never a hang. Sets HITS.
check_gets() {
    local i hit=0 miss=0 err=0 wrong=0 hang=0 slow=0 msg=
    for i in $(seq "$2" "$3"); do
        rm -f "$T/got"
        ctl get "${keys[$((i - 1))]}" "$T/got"
        [ $MS -le $slow ] || slow=$MS
        if [ $RC -eq 124 ] || [ $MS -ge $HANG_MS ]; then
            hang=$((hang + 1))
        elif [ $RC -eq 0 ]; then
            if cmp -s "$T/page.$i" "$T/got"; then hit=$((hit + 1)); else wrong=$((wrong + 1)); fi
        elif [ $RC -eq 1 ]; then
            miss=$((miss + 1))
        else
            err=$((err + 1))
            [ -n "$msg" ] || msg=$(head -c 200 "$T/ctl.err")
        fi
    done
    HITS=$hit
    echo "  $1 (pages $2..$3): $hit byte-exact, $miss misses, $err errors, $wrong wrong, $hang hung; slowest ${slow} ms${msg:+; first error: $msg}"
    [ $wrong -eq 0 ] && [ $hang -eq 0 ] && ok "$1: no wrong bytes, no hang" ||
        ko "$1: $wrong wrong pages, $hang hung calls"
}
check_gets "sealed pages after the loss" 1 $SEALED_PAGES
check_gets "open-segment pages after the loss" $((SEALED_PAGES + 1)) $TOTAL
alive "after the gets"
ctl exists "${keys[@]}"
note "exists of the $TOTAL stored keys after the loss: exit $RC ($(grep -c ' yes ' "$T/ctl.out") yes; from the in-memory index)"

echo "--- puts on a dead mount ($(el))"
for j in 1 2 3; do
    key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')_new$j
    head -c 262144 /dev/urandom >"$T/new.$j"
    ctl put "$key" "$T/new.$j"
    if [ $RC -eq 2 ]; then
        ok "put $j after the loss fails with exit 2 in $MS ms: $(head -c 200 "$T/ctl.err")"
    elif [ $RC -eq 124 ] || [ $MS -ge $HANG_MS ]; then
        ko "put $j after the loss hangs (exit $RC after $MS ms)"
    else
        ko "put $j after the loss: exit $RC in $MS ms (acknowledged a page on a dead mount?): $(cat "$T/ctl.out" "$T/ctl.err")"
    fi
done
alive "after the puts"

ctl stats --json
if [ $RC -eq 0 ] && grep -q '"io_errors"' "$T/ctl.out"; then
    ok "stats answers in $MS ms: $(grep -o '"\(io_errors\|hits\|misses\|sets\|corrupt_records\)": *[0-9]*' "$T/ctl.out" | tr '\n' ' ')"
else
    ko "stats after the loss: exit $RC: $(cat "$T/ctl.err")"
fi

# Let the seal timer fire on the open segment (and discovery run) on the dead mount.
while [ $(($(now_ms) - T_LOSS)) -lt $((SEAL_MS * 2 + 500)) ]; do sleep 0.1; done
alive "$((($(now_ms) - T_LOSS) / 1000)) s after the loss (seal timer and discovery ran)"
ctl ping
[ $RC -eq 0 ] && ok "ping answers after the seal timer fired" || ko "ping after the seal timer: exit $RC"

echo "--- SIGTERM on a dead mount ($(el))"
daemon_stop "dead mount, open segment already failed to seal"

echo "--- recovery: umount, remount, restart ($(el))"
# A long seal interval from here on: in the second loss below, only the seal
# at exit can seal the open segment.
DSEAL=60000
recover
check_gets "sealed pages after recovery" 1 $SEALED_PAGES
[ "$HITS" -eq $SEALED_PAGES ] &&
    ok "all $SEALED_PAGES pages of the sealed segment come back byte-exact" ||
    ko "only $HITS of $SEALED_PAGES sealed pages come back byte-exact"
check_gets "open-segment pages after recovery" $((SEALED_PAGES + 1)) $TOTAL

key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')_after
ctl put "$key" "$T/new.1"
rc1=$RC
ctl get "$key" "$T/got"
[ $rc1 -eq 0 ] && [ $RC -eq 0 ] && cmp -s "$T/new.1" "$T/got" &&
    ok "after recovery a new page round-trips" || ko "after recovery: put exit $rc1, get exit $RC"

echo "--- second loss, SIGTERM at once: the seal at exit meets the dead mount ($(el))"
# A page stored just before the kill sits in a fresh open segment (seal
# interval 60 s now): hicached must seal it at exit, on a dead mount.
key2=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')_second
T_OPEN=$(now_ms)
ctl put "$key2" "$T/new.2"
[ $RC -eq 0 ] || ko "put before the second loss: exit $RC"
kill_mount
alive "right after the second loss"
daemon_stop "second loss, SIGTERM $(($(now_ms) - T_LOSS)) ms after the kill"
check_enotconn
grep -Eq 'sealing segment .*(not connected|connection abort)' <(tail -n 5 "$DLOG") &&
    ok "the failed seal at exit is logged" || ko "no failed seal at exit in the log"
DSEAL=$SEAL_MS
recover
check_gets "sealed pages after the second recovery" 1 $SEALED_PAGES
[ "$HITS" -eq $SEALED_PAGES ] && ok "all $SEALED_PAGES sealed pages byte-exact again" ||
    ko "only $HITS of $SEALED_PAGES sealed pages byte-exact after the second recovery"
for k in "$key:new.1" "$key2:new.2"; do
    ctl get "${k%%:*}" "$T/got"
    if [ $RC -eq 0 ]; then
        cmp -s "$T/${k#*:}" "$T/got" && ok "page ${k#*:} of the second open segment is back, byte-exact" ||
            ko "page ${k#*:} of the second open segment has wrong bytes"
    elif [ $RC -eq 1 ]; then
        ok "page ${k#*:} of the second open segment is a miss"
    else
        ko "get of page ${k#*:} of the second open segment: exit $RC: $(cat "$T/ctl.err")"
    fi
done
daemon_stop "after the second recovery"
note "at the end, $DATA holds: $(cd "$DATA" && stat -c '%n (%s B)' -- * | tr '\n' ' ')"

echo "test_mount_loss: $pass passed, $fail failed ($(el))"
[ $fail -eq 0 ]
