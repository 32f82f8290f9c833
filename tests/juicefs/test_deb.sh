#!/usr/bin/env bash
# `make deb` builds a package that installs, works and purges cleanly on this
# machine: dpkg -L lists the daemon, the CLI, the library with its header and
# pkg-config file, the units and the conffile; postinst made the group and
# user hicached; the units carry the socket group; the installed hicached
# and hicachectl round-trip a page on a temporary directory (through the
# installed library); `dpkg --purge` leaves no file, no /etc/hicached and no
# user or group behind. Needs root; refuses to touch an hicached package that
# was installed before it ran.
#
# usage: tests/juicefs/test_deb.sh [BUILD_DIR]     (a plain build: default build/default)
# Exit: 0 pass, 1 fail, 77 skip (not root, or no dpkg).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-build/default}
case $BUILD in /*) BUILD=${BUILD#"$ROOT"/} ;; esac
. "$ROOT/tests/juicefs/checks.sh"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (dpkg -i)"; exit 77; }
command -v dpkg-deb >/dev/null || { echo "SKIP: no dpkg-deb"; exit 77; }
if dpkg-query -W -f='${Status}' hicached 2>/dev/null | grep -q installed; then
    echo "FAIL: an hicached package is already installed here; not touching it"
    exit 1
fi
T=$(mktemp -d /tmp/hctestdeb.XXXXXX)
HPID=
cleanup() {
    [ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null
    dpkg --purge hicached >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT

deb=$(cd "$ROOT" && make --no-print-directory deb BUILD="$BUILD" 2>"$T/make.err" | tail -n 1)
[ -f "$deb" ] && ok "make deb: $(basename "$deb")" || { cat "$T/make.err"; ko "make deb built nothing"; exit 1; }
dpkg -i "$deb" >"$T/install.log" 2>&1 && ok "dpkg -i" || { cat "$T/install.log"; ko "dpkg -i failed"; exit 1; }
list=$(dpkg -L hicached)
for f in /usr/bin/hicached /usr/bin/hicachectl /usr/lib/libhicache.so.0 /usr/lib/libhicache.a \
    /usr/include/hicache.h /usr/include/hicache_defs.h /usr/lib/pkgconfig/hicache.pc \
    /usr/lib/systemd/system/hicached.service /usr/lib/systemd/system/hicached.socket \
    /etc/hicached/config.json; do
    if grep -qx "$f" <<<"$list" && [ -e "$f" ]; then ok "installed $f"; else ko "dpkg -L lacks $f"; fi
done
grep -qx "/etc/hicached/config.json" /var/lib/dpkg/info/hicached.conffiles &&
    ok "config.json is a conffile" || ko "config.json is not a conffile"
getent group hicached >/dev/null && getent passwd hicached >/dev/null &&
    ok "postinst made group and user hicached" || ko "no hicached group or user after install"
grep -qx "SocketGroup=hicached" /usr/lib/systemd/system/hicached.socket &&
    grep -qx "Group=hicached" /usr/lib/systemd/system/hicached.service &&
    grep -qx "ExecStart=/usr/bin/hicached --config /etc/hicached/config.json" \
        /usr/lib/systemd/system/hicached.service &&
    ok "units: socket group hicached, ExecStart /usr/bin/hicached" || ko "units not as packaged"

mkdir -p "$T/data"
env -u HICACHE_LIB /usr/bin/hicached --config /etc/hicached/config.json --mount-point "$T/data" \
    --socket "$T/h.sock" --node-id deb --foreground >"$T/hicached.log" 2>&1 &
HPID=$!
for _ in $(seq 100); do /usr/bin/hicachectl --socket "$T/h.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
head -c 100000 /dev/urandom >"$T/page"
if /usr/bin/hicachectl --socket "$T/h.sock" put deb-page "$T/page" &&
    /usr/bin/hicachectl --socket "$T/h.sock" get deb-page "$T/back" && cmp -s "$T/page" "$T/back"; then
    ok "installed hicached + hicachectl round-trip a page byte for byte"
else
    ko "round trip through the installed binaries failed: $(tail -n 3 "$T/hicached.log")"
fi
kill "$HPID"
wait "$HPID" && ok "installed hicached stops with exit 0 on SIGTERM" || ko "hicached exit status $?"
HPID=

dpkg --purge hicached >"$T/purge.log" 2>&1 && ok "dpkg --purge" || ko "purge: $(cat "$T/purge.log")"
left=""
for f in $list; do [ -e "$f" ] && [ ! -d "$f" ] && left="$left $f"; done
[ -z "$left" ] && [ ! -e /etc/hicached ] && ok "purge left no file and no /etc/hicached" ||
    ko "left after purge:$left $(ls -d /etc/hicached 2>/dev/null)"
! getent passwd hicached >/dev/null && ! getent group hicached >/dev/null &&
    ok "purge removed user and group hicached" || ko "user or group hicached left after purge"

echo "test_deb: $pass passed, $fail failed"
[ $fail -eq 0 ]
