#!/usr/bin/env bash
# The shipped units under a real systemd: systemd runs as PID 1 of a new PID
# and mount namespace (unshare; container mode), with a private /run and an
# /etc/systemd/system that holds only hicached.service and hicached.socket,
# as shipped except for the paths a deployment sets (ExecStart's binary and
# config file, the mount in RequiresMountsFor= and ReadWritePaths=, here a
# local directory). Every hardening option of the service stays. Checks:
# the socket unit listens; the first connection starts the service through
# it (socket activation, Type=notify: active only after READY=1); a page
# round-trips byte for byte through hicachectl; the daemon ran with io_uring
# (io_engine uring) under that hardening; `systemctl reload` applies a new
# capacity_bytes; `systemctl stop` ends it with status 0 and the open
# segment sealed (its .idx written). Everything in the namespace dies with
# it. systemd shares this machine's files there, so every unit a boot would
# start is masked (tmpfiles would empty /tmp, sysctl and sysusers would change
# the machine): it starts only the units under test. Bounded: about 20 s.
#
# usage: tests/juicefs/test_systemd.sh [BUILD_DIR]
# Exit: 0 pass, 1 fail, 77 skip (not root, no systemd binary, or no
# namespaces here).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
. "$ROOT/tests/juicefs/checks.sh"
SYSTEMD=/lib/systemd/systemd
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (namespaces, systemd)"; exit 77; }
[ -x "$SYSTEMD" ] || { echo "SKIP: no $SYSTEMD"; exit 77; }
command -v unshare >/dev/null && command -v nsenter >/dev/null || { echo "SKIP: no unshare/nsenter"; exit 77; }

# Outside /tmp: the service has PrivateTmp=yes.
T=$BUILD/test_systemd
rm -rf "$T"
mkdir -p "$T/data" "$T/units"
PID1=
cleanup() {
    [ -n "$PID1" ] && kill -9 "$PID1" 2>/dev/null
    sleep 0.2
    [ "${KEEP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT

cat >"$T/config.json" <<EOF
{"mount_point": "$T/data", "io_engine": "uring", "seal_interval_ms": 600000, "capacity_bytes": 0}
EOF
sed -e "s|^ExecStart=.*|ExecStart=$BUILD/hicached --config $T/config.json|" \
    -e "s|/mnt/jfs|$T/data|g" "$ROOT/systemd/hicached.service" >"$T/units/hicached.service"
cp "$ROOT/systemd/hicached.socket" "$T/units/"
# systemd here shares this machine's files (only mounts are its own): every
# unit a boot would start (sysinit.target's wants: tmpfiles, which empties
# /tmp, sysctl, sysusers, journald, ...) is masked, and sysinit.target,
# local-fs.target and swap.target are empty, so it starts what the test asks
# for and nothing else. The unit files under test come as shipped.
cat >"$T/inner.sh" <<'EOF'
set -e
T=$1 SYSTEMD=$2
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc/systemd/system
cd /etc/systemd/system
for u in /lib/systemd/system/sysinit.target.wants/* /lib/systemd/system/local-fs.target.wants/*; do
    [ -e "$u" ] || [ -L "$u" ] || continue
    ln -sf /dev/null "$(basename "$u")"
done
for u in systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket \
    systemd-journald-audit.socket systemd-journal-flush.service systemd-tmpfiles-setup.service \
    systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer \
    systemd-sysctl.service systemd-sysusers.service systemd-update-utmp.service \
    systemd-random-seed.service systemd-firstboot.service tmp.mount; do
    ln -sf /dev/null "$u"
done
for t in sysinit.target local-fs.target swap.target; do
    printf '[Unit]\nDescription=%s (empty for the test)\n' "$t" >"$t"
done
cp "$T/units/hicached.service" "$T/units/hicached.socket" /etc/systemd/system/
# no journald here: the daemon's stderr goes to a file (opened by systemd)
mkdir -p hicached.service.d
printf '[Service]\nStandardOutput=append:%s/daemon.log\nStandardError=append:%s/daemon.log\n' \
    "$T" "$T" >hicached.service.d/log.conf
printf '[Unit]\nDescription=hicached unit test\n' >/etc/systemd/system/hicached-test.target
echo $$ >"$T/pid1"
exec env container=other "$SYSTEMD" --system --unit=hicached-test.target --log-target=console
EOF
timeout 300 unshare --pid --fork --mount --uts --ipc --mount-proc bash "$T/inner.sh" "$T" \
    "$SYSTEMD" >"$T/systemd.log" 2>&1 &
for _ in $(seq 100); do [ -s "$T/pid1" ] && break; sleep 0.05; done
# pid1 holds the namespace's PID 1 as seen inside (1); find it from here
for _ in $(seq 100); do
    PID1=$(ps -eo pid,args | awk -v u="--unit=hicached-test.target" '$0 ~ u && $2 ~ /systemd$/ {print $1; exit}')
    [ -n "$PID1" ] && break
    sleep 0.05
done
[ -n "$PID1" ] || { cat "$T/systemd.log"; echo "SKIP: systemd did not start as PID 1 of a namespace here"; exit 77; }
IN() { timeout 30 nsenter -t "$PID1" -m -p "$@"; }
for _ in $(seq 100); do
    st=$(IN systemctl is-system-running 2>/dev/null)
    [ "$st" = running ] || [ "$st" = degraded ] && break
    sleep 0.1
done
[ "$st" = running ] && ok "systemd is PID 1 of the namespace and running" ||
    { IN systemctl --failed --no-pager; ko "systemd state: $st"; }

IN systemctl start hicached.socket && [ "$(IN systemctl is-active hicached.socket)" = active ] &&
    ok "hicached.socket listens" || ko "hicached.socket: $(IN systemctl status hicached.socket --no-pager | tail -n 5)"
[ "$(IN systemctl is-active hicached.service)" != active ] &&
    ok "hicached.service not started before a client comes" || ko "service started without a client"

CTL="$BUILD/hicachectl"
head -c 200000 /dev/urandom >"$T/page"
if IN "$CTL" put unit-page "$T/page" >/dev/null && IN "$CTL" get unit-page "$T/back" >/dev/null &&
    cmp -s "$T/page" "$T/back"; then
    ok "a client through the socket unit: page stored and read back byte for byte"
else
    ko "round trip through the socket unit failed"
fi
[ "$(IN systemctl is-active hicached.service)" = active ] &&
    ok "the connection started hicached.service (Type=notify: active after READY=1)" ||
    ko "service: $(IN systemctl status hicached.service --no-pager | tail -n 8)"
# io_engine "uring" has no fallback: a daemon that serves set up its rings
if grep -q "serving $T/data" "$T/daemon.log" && ! grep -qi "io_uring\|ring.*fail" "$T/daemon.log"; then
    ok "io_engine uring works under the unit's hardening (rings set up, the page went through them)"
else
    ko "daemon log: $(tail -n 5 "$T/daemon.log")"
fi

sed -i 's/"capacity_bytes": 0/"capacity_bytes": "512M"/' "$T/config.json"
IN systemctl reload hicached.service
cap=
for _ in $(seq 50); do
    cap=$(IN "$CTL" stats --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["capacity_bytes"])' 2>/dev/null)
    [ "$cap" = $((512 << 20)) ] && break
    sleep 0.1
done
[ "$cap" = $((512 << 20)) ] && ok "systemctl reload: capacity_bytes now 512M" || ko "after reload capacity_bytes is '$cap'"

IN systemctl stop hicached.service
res=$(IN systemctl show -p Result --value hicached.service)
code=$(IN systemctl show -p ExecMainStatus --value hicached.service)
[ "$res" = success ] && [ "$code" = 0 ] && ok "systemctl stop: exit status 0 (Result=$res)" ||
    ko "systemctl stop: Result=$res ExecMainStatus=$code"
idx=$(find "$T/data" -name '*.idx' | wc -l)
[ "$idx" -ge 1 ] && ok "the open segment was sealed at stop ($idx .idx file)" || ko "no .idx after stop"

echo "test_systemd: $pass passed, $fail failed"
[ $fail -eq 0 ]
