#!/usr/bin/env bash
# The emulated production deployment of the benchmark (scripts/bench/emulate.sh)
# does what it says: the metadata engine and the object store each answer a
# round trip no faster than the delay asked for (measured from the JuiceFS
# client's namespace), a file written through the mount reads back byte for
# byte after the page cache is dropped, and with no local cache that read
# comes from the object store (its GET count and bytes in the volume's
# work); after `remount` it reads back again. Then `down` leaves no mount,
# namespace or process behind. A second
# `up` over a leftover is taken down first. Bounded: about 20 s.
#
# usage: tests/juicefs/test_emulate.sh [BUILD_DIR]
# Exit: 0 pass, 1 fail, 77 skip (not root, no FUSE or NFQUEUE here).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
T=$BUILD/test_emulate
MNT=$T/mnt
TAG=hcemutest
META_US=3000
OBJ_US=8000
EMU=$ROOT/scripts/bench/emulate.sh
. "$ROOT/tests/juicefs/checks.sh"

cleanup() {
    bash "$EMU" down --state "$T" >/dev/null 2>&1
    grep -q " $MNT " /proc/self/mounts || rm -rf "$T"
}
cleanup
mkdir -p "$T"
trap cleanup EXIT

bash "$EMU" up --state "$T" --mount "$MNT" --meta-rtt-us $META_US --obj-rtt-us $OBJ_US \
    --cache-size 0 --tag $TAG >"$T/up.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: $(tail -n 1 "$T/up.log")"
    exit 77
fi
[ $rc -eq 0 ] || { cat "$T/up.log"; echo "FAIL: emulate.sh up exited $rc"; exit 1; }
ok "up: $(tail -n 1 "$T/up.log")"

# Round trips from the client's namespace: the smallest of 20 PINGs.
min_rtt_us() {
    ip netns exec "$TAG-cli" python3 - "$1" <<'EOF'
import socket, sys, time
s = socket.create_connection((sys.argv[1], 6379), timeout=5)
best = 1e9
for _ in range(20):
    t0 = time.perf_counter()
    s.sendall(b"PING\r\n")
    assert s.recv(64).startswith(b"+PONG")
    best = min(best, time.perf_counter() - t0)
print(int(best * 1e6))
EOF
}
m=$(min_rtt_us 10.203.1.2)
o=$(min_rtt_us 10.203.2.2)
if [ "${m:-0}" -ge $META_US ] && [ "$m" -lt $((META_US * 3)) ]; then
    ok "metadata round trip ${m} us (asked +$META_US)"
else
    ko "metadata round trip ${m:-?} us, asked +$META_US"
fi
if [ "${o:-0}" -ge $OBJ_US ] && [ "$o" -lt $((OBJ_US * 3)) ]; then
    ok "object store round trip ${o} us (asked +$OBJ_US)"
else
    ko "object store round trip ${o:-?} us, asked +$OBJ_US"
fi

head -c $((12 << 20)) /dev/urandom >"$T/src"
cp "$T/src" "$MNT/f" && sync
before=$(bash "$EMU" work --state "$T")
echo 3 >/proc/sys/vm/drop_caches
if cmp -s "$T/src" "$MNT/f"; then ok "12 MiB read back byte for byte through the mount"; else ko "the file read back differs"; fi
after=$(bash "$EMU" work --state "$T")
got=$(python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(b["obj_get"]-a["obj_get"], int(b["obj_get_bytes"]-a["obj_get_bytes"]))' "$before" "$after")
read -r gets gbytes <<<"$got"
if [ "$gets" -ge 3 ] && [ "$gbytes" -ge $((12 << 20)) ]; then
    ok "the read came from the object store: $gets GETs, $gbytes bytes"
else
    ko "no cache, yet the read made $gets object GETs of $gbytes bytes"
fi

bash "$EMU" remount --state "$T" >"$T/remount.log" 2>&1 && cmp -s "$T/src" "$MNT/f" &&
    ok "remount (cache emptied): the file reads back byte for byte" ||
    ko "remount: $(tail -n 3 "$T/remount.log")"

# up again over the running one: it is taken down first, then up again
bash "$EMU" up --state "$T" --mount "$MNT" --meta-rtt-us 0 --obj-rtt-us 0 --cache-size 0 \
    --tag $TAG >"$T/up2.log" 2>&1 && ok "a second up replaces the first" || ko "second up: $(tail -n 3 "$T/up2.log")"

pids=$(for n in cli meta obj; do ip netns pids "$TAG-$n" 2>/dev/null; done)
bash "$EMU" down --state "$T" >"$T/down.log" 2>&1 || ko "down exited non-zero"
left=$(ip netns list | grep -c "^$TAG-")
procs=0
for p in $pids; do # a zombie waiting for PID 1 to reap it counts as gone
    [ -e "/proc/$p" ] && ! grep -q '^[^)]*) Z' "/proc/$p/stat" 2>/dev/null && procs=$((procs + 1))
done
if [ -n "$pids" ] && [ "$left" = 0 ] && ! grep -q " $MNT " /proc/self/mounts && [ "$procs" = 0 ]; then
    ok "down: no namespace, mount or process left"
else
    ko "down left namespaces: $left, mount: $(grep -c " $MNT " /proc/self/mounts), processes: $procs"
fi

echo "test_emulate: $pass passed, $fail failed"
[ $fail -eq 0 ]
