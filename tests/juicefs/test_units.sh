#!/usr/bin/env bash
# Verifies the systemd units with `systemd-analyze verify`, the way they will
# be installed: PID 1 here need not be systemd, and verify checks that every
# Exec*= binary exists, so the units are verified inside a temporary root that
# holds a copy of the system's unit directory and stubs of /bin/kill and
# /usr/local/bin/hicached. Any message from verify (an unknown key, a bad
# value, a missing command) fails the test. A deliberately broken copy must
# fail too, so the check is known to bite. Also checks that systemd/config.json
# is accepted by hicached, and that hicached takes a socket through
# LISTEN_FDS and sends READY=1/STOPPING=1, when a build is given (BUILD dir as
# $1, optional).
#
# Exit: 0 pass, 1 fail, 77 skip (no systemd-analyze and apt-get cannot help).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-}
UNITS=(hicached.service hicached.socket mnt-jfs.mount)
. "$ROOT/tests/juicefs/checks.sh"

if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "test_units: installing systemd (for systemd-analyze)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null; }
    fi
    command -v systemd-analyze >/dev/null || {
        echo "SKIP: systemd-analyze is not available"
        exit 77
    }
fi
UNITDIR=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || true)
[ -d "$UNITDIR" ] || UNITDIR=/lib/systemd/system
[ -f "$UNITDIR/sysinit.target" ] || {
    echo "SKIP: no systemd unit directory with sysinit.target (looked in $UNITDIR)"
    exit 77
}

TMP=$(mktemp -d /tmp/test_units.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# make_root DIR: a root holding the system's units, stub /bin/kill and
# hicached, and our units in /etc/systemd/system.
make_root() {
    local r=$1
    mkdir -p "$r/usr/lib/systemd" "$r/usr/local/bin" "$r/bin" "$r/etc/systemd/system" "$r/etc/hicached"
    cp -a "$UNITDIR" "$r/usr/lib/systemd/system"
    printf '#!/bin/sh\nexit 0\n' >"$r/usr/local/bin/hicached"
    cp "$r/usr/local/bin/hicached" "$r/bin/kill" # ExecReload=/bin/kill
    chmod 0755 "$r/usr/local/bin/hicached" "$r/bin/kill"
    cp "$ROOT/systemd/config.json" "$r/etc/hicached/config.json"
    for u in "${UNITS[@]}"; do
        cp "$ROOT/systemd/$u" "$r/etc/systemd/system/$u"
    done
}

# verify DIR UNIT...: 0 when systemd-analyze exits 0 and prints nothing.
verify() {
    local r=$1 out rc
    shift
    out=$(cd "$r" && systemd-analyze verify --man=no --root="$r" "${@/#/$r/etc/systemd/system/}" 2>&1)
    rc=$?
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    verify: /'
    [ $rc -eq 0 ] && [ -z "$out" ]
}

make_root "$TMP/good"
for u in "${UNITS[@]}"; do
    if verify "$TMP/good" "$u"; then ok "systemd-analyze verify $u"; else ko "systemd-analyze verify $u"; fi
done

# The facts the fleet guide relies on.
svc=$ROOT/systemd/hicached.service
for want in 'Type=notify' 'ExecStart=/usr/local/bin/hicached --config /etc/hicached/config.json' \
    'RequiresMountsFor=/mnt/jfs' 'RuntimeDirectory=hicached' 'Restart=on-failure' \
    'ReadWritePaths=/mnt/jfs' 'ProtectSystem=strict' 'NoNewPrivileges=yes'; do
    if grep -qxF "$want" "$svc"; then ok "hicached.service has $want"; else ko "hicached.service lacks $want"; fi
done
grep -q '^After=.*mnt-jfs.mount' "$svc" && ok "hicached.service ordered after mnt-jfs.mount" ||
    ko "hicached.service not ordered after mnt-jfs.mount"
grep -qxF 'ListenStream=/run/hicached/hicached.sock' "$ROOT/systemd/hicached.socket" &&
    ok "hicached.socket listens where config.json's socket_path points" || ko "hicached.socket ListenStream"
grep -q '"socket_path": "/run/hicached/hicached.sock"' "$ROOT/systemd/config.json" &&
    ok "config.json socket_path" || ko "config.json socket_path"

# Broken copies must be refused: an unknown key, and a missing ExecStart binary.
make_root "$TMP/bad1"
sed -i 's/^Type=notify/Tpye=notify/' "$TMP/bad1/etc/systemd/system/hicached.service"
if verify "$TMP/bad1" hicached.service >/dev/null; then ko "a unit with an unknown key passed verify"; else ok "a unit with an unknown key fails verify"; fi
make_root "$TMP/bad2"
rm "$TMP/bad2/usr/local/bin/hicached"
if verify "$TMP/bad2" hicached.service >/dev/null; then ko "a missing ExecStart binary passed verify"; else ok "a missing ExecStart binary fails verify"; fi

# The default config is accepted by the daemon (unknown keys or bad values
# would stop it with a message naming the key). Run it against a scratch
# mount point and socket, stop it with SIGTERM.
if [ -n "$BUILD" ] && [ -x "$BUILD/hicached" ]; then
    mkdir -p "$TMP/mnt" "$TMP/run"
    "$BUILD/hicached" --config "$ROOT/systemd/config.json" --mount-point "$TMP/mnt" \
        --socket "$TMP/run/h.sock" --node-id unittest --foreground >"$TMP/hicached.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        [ -S "$TMP/run/h.sock" ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.05
    done
    if [ -S "$TMP/run/h.sock" ]; then
        ok "hicached starts with systemd/config.json"
        kill -TERM $pid
        wait $pid && ok "hicached exits 0 on SIGTERM" || ko "hicached exit status on SIGTERM"
    else
        ko "hicached refused systemd/config.json: $(tail -n 3 "$TMP/hicached.log")"
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
    fi
fi

# Socket activation and sd_notify the way systemd does them: systemd-socket-
# activate holds the listening socket and execs hicached with LISTEN_FDS=1 on
# the first connection; a datagram socket stands in for $NOTIFY_SOCKET.
if [ -n "$BUILD" ] && [ -x "$BUILD/hicached" ] && [ -x "$BUILD/hicachectl" ] &&
    command -v systemd-socket-activate >/dev/null; then
    sa=$TMP/sa
    mkdir -p "$sa/mnt"
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], "a") as out:
    try:
        while True:
            out.write(s.recv(4096).decode() + "\n")
            out.flush()
    except socket.timeout:
        pass
' "$sa/notify" "$sa/notify.log" &
    npid=$!
    for _ in $(seq 100); do
        [ -S "$sa/notify" ] && break
        sleep 0.05
    done
    systemd-socket-activate -E NOTIFY_SOCKET="$sa/notify" -l "$sa/h.sock" "$BUILD/hicached" \
        --mount-point "$sa/mnt" --socket "$sa/unused.sock" --node-id sa --foreground \
        >"$sa/log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do
        [ -S "$sa/h.sock" ] && break
        sleep 0.05
    done
    if "$BUILD/hicachectl" --socket "$sa/h.sock" ping >/dev/null 2>&1; then
        ok "hicached serves a socket passed through LISTEN_FDS"
    else
        ko "no answer on the socket passed through LISTEN_FDS: $(tail -n 3 "$sa/log")"
    fi
    [ ! -e "$sa/unused.sock" ] && ok "socket_path unused under socket activation" ||
        ko "hicached bound socket_path although a socket was passed"
    kill -TERM $spid 2>/dev/null
    wait $spid && ok "socket-activated hicached exits 0 on SIGTERM" || ko "socket-activated exit status"
    [ -S "$sa/h.sock" ] && ok "the passed socket's file is left to its owner" ||
        ko "hicached unlinked the socket systemd owns"
    sleep 0.2
    kill $npid 2>/dev/null
    wait $npid 2>/dev/null
    grep -q '^READY=1' "$sa/notify.log" && ok "READY=1 sent to NOTIFY_SOCKET" || ko "no READY=1 on NOTIFY_SOCKET"
    grep -q '^STOPPING=1' "$sa/notify.log" && ok "STOPPING=1 sent to NOTIFY_SOCKET" || ko "no STOPPING=1"
fi

echo "test_units: $pass passed, $fail failed"
[ $fail -eq 0 ]
