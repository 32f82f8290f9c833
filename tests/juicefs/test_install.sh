#!/usr/bin/env bash
# `make install` into a scratch DESTDIR with PREFIX=/usr/local, then checks
# what landed: binaries, static and shared library with its symlinks, header,
# pkg-config file with the right prefix, systemd units (ExecStart rewritten),
# default config (kept on a second install when it exists), the example mount
# unit, the Python package; then compiles a small C program against the
# installed header and library through pkg-config and runs it against the
# installed hicached (set + get of a page, byte for byte), and does the same
# from Python through the installed package and library.
#
# usage: tests/juicefs/test_install.sh [BUILD_DIR]   (default build/default)
# Exit: 0 pass, 1 fail.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-build/default}
case $BUILD in "$ROOT"/*) BUILD=${BUILD#"$ROOT"/} ;; esac
# What gets installed is a plain build, as a packager makes it: a sanitizer
# build's library cannot be linked into an ordinary program.
case $BUILD in
    build/address | build/undefined)
        echo "test_install: $BUILD is a sanitizer build; installing build/default instead"
        BUILD=build/default
        ;;
esac
PREFIX=/usr/local
. "$ROOT/tests/juicefs/checks.sh"
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else ko "$what"; fi
}

TMP=$(mktemp -d /tmp/test_install.XXXXXX)
D=$TMP/dest
dpid=
cleanup() {
    [ -z "$dpid" ] || { kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null; }
    rm -rf "$TMP"
}
trap cleanup EXIT

t0=$(date +%s%N)
if ! make -C "$ROOT" --no-print-directory install BUILD="$BUILD" DESTDIR="$D" PREFIX=$PREFIX \
    >"$TMP/install.log" 2>&1; then
    tail -n 30 "$TMP/install.log"
    echo "FAIL: make install DESTDIR=$D PREFIX=$PREFIX"
    exit 1
fi
ok "make install DESTDIR=... PREFIX=$PREFIX ($((($(date +%s%N) - t0) / 1000000)) ms)"
P=$D$PREFIX
(cd "$D" && find . -mindepth 1 | sort) >"$TMP/listing"
echo "installed files:"
grep -v '__pycache__' "$TMP/listing" | sed 's/^/    /'

check "bin/hicached executable" test -x "$P/bin/hicached"
check "bin/hicachectl executable" test -x "$P/bin/hicachectl"
check "hicached --help runs" sh -c "'$P/bin/hicached' --help >/dev/null 2>&1"
check "lib/libhicache.a" test -f "$P/lib/libhicache.a"
real=$(cd "$P/lib" && ls libhicache.so.*.*.* 2>/dev/null | head -n 1)
check "lib/libhicache.so.X.Y.Z is a file ($real)" test -f "$P/lib/$real" -a ! -L "$P/lib/$real"
check "libhicache.so.0 -> $real" test "$(readlink "$P/lib/libhicache.so.0")" = "$real"
check "libhicache.so -> libhicache.so.0" test "$(readlink "$P/lib/libhicache.so")" = libhicache.so.0
check "soname libhicache.so.0" sh -c "objdump -p '$P/lib/$real' | grep -q 'SONAME *libhicache.so.0'"
check "include/hicache.h identical to client/hicache.h" cmp -s "$P/include/hicache.h" "$ROOT/client/hicache.h"
check "include/hicache_defs.h identical to common/hicache_defs.h" \
    cmp -s "$P/include/hicache_defs.h" "$ROOT/common/hicache_defs.h"
pc=$P/lib/pkgconfig/hicache.pc
check "hicache.pc prefix=$PREFIX" grep -qx "prefix=$PREFIX" "$pc"
check "hicache.pc libdir=$PREFIX/lib" grep -qx "libdir=$PREFIX/lib" "$pc"
check "hicache.pc includedir=$PREFIX/include" grep -qx "includedir=$PREFIX/include" "$pc"
check "hicache.pc has no @...@ left" sh -c "! grep -q @ '$pc'"

U=$P/lib/systemd/system
check "hicached.service installed" test -f "$U/hicached.service"
check "hicached.socket installed" cmp -s "$U/hicached.socket" "$ROOT/systemd/hicached.socket"
check "ExecStart=$PREFIX/bin/hicached --config /etc/hicached/config.json" \
    grep -qx "ExecStart=$PREFIX/bin/hicached --config /etc/hicached/config.json" "$U/hicached.service"
check "units are 0644" test "$(stat -c %a "$U/hicached.service" "$U/hicached.socket" | sort -u)" = 644
check "/etc/hicached/config.json = systemd/config.json" cmp -s "$D/etc/hicached/config.json" "$ROOT/systemd/config.json"
check "share/doc/hicached/mnt-jfs.mount" cmp -s "$P/share/doc/hicached/mnt-jfs.mount" "$ROOT/systemd/mnt-jfs.mount"

# A second install keeps an edited config, and SYSCONFDIR / BINDIR reach the unit.
echo '{"mount_point": "/mnt/edited"}' >"$D/etc/hicached/config.json"
make -C "$ROOT" --no-print-directory install BUILD="$BUILD" DESTDIR="$D" PREFIX=$PREFIX \
    >"$TMP/install2.log" 2>&1 || ko "second make install"
check "a second install keeps an existing config.json" grep -q /mnt/edited "$D/etc/hicached/config.json"
check "... and says so" grep -q "keeping the existing" "$TMP/install2.log"
D2=$TMP/dest2
make -C "$ROOT" --no-print-directory install BUILD="$BUILD" DESTDIR="$D2" PREFIX=/opt/hc SYSCONFDIR=/opt/hc/etc \
    >"$TMP/install3.log" 2>&1 || ko "make install PREFIX=/opt/hc SYSCONFDIR=/opt/hc/etc"
check "PREFIX=/opt/hc SYSCONFDIR=/opt/hc/etc: ExecStart rewritten" \
    grep -qx "ExecStart=/opt/hc/bin/hicached --config /opt/hc/etc/hicached/config.json" \
    "$D2/opt/hc/lib/systemd/system/hicached.service"
check "PREFIX=/opt/hc: config in SYSCONFDIR" test -f "$D2/opt/hc/etc/hicached/config.json"
check "PREFIX=/opt/hc: hicache.pc prefix" grep -qx "prefix=/opt/hc" "$D2/opt/hc/lib/pkgconfig/hicache.pc"

# The Python package (when pip was there: make install says otherwise).
site=
if [ -d "$ROOT/client/python" ] && python3 -m pip --version >/dev/null 2>&1; then
    site=$(cd "$D" && ls -d ".$PREFIX"/lib/python3*/site-packages 2>/dev/null | head -n 1)
    site=${site:+$D/${site#./}}
    check "python package dir under $PREFIX/lib/python3*/site-packages" test -n "$site"
    for f in hicache/__init__.py hicache/client.py hicache/_lib.py juicefs_hicache_storage.py register_juicefs_backend.py; do
        check "python: $f" test -f "$site/$f"
    done
    check "python: hicache-*.dist-info" sh -c "ls -d '$site'/hicache-*.dist-info >/dev/null 2>&1"
    check "client/python left clean (no build/, no egg-info)" \
        sh -c "! ls -d '$ROOT/client/python/build' '$ROOT'/client/python/*.egg-info >/dev/null 2>&1"
else
    grep -q "Python package" "$TMP/install.log" && ok "make install said why the Python package was not installed" ||
        ko "no Python package and no message"
fi

# The installed daemon, for the programs below.
mkdir -p "$TMP/mnt"
export LD_LIBRARY_PATH=$P/lib
unset HICACHE_LIB
"$P/bin/hicached" --mount-point "$TMP/mnt" --socket "$TMP/h.sock" --node-id inst --foreground \
    >"$TMP/hicached.log" 2>&1 &
dpid=$!
for _ in $(seq 200); do
    "$P/bin/hicachectl" --socket "$TMP/h.sock" ping >/dev/null 2>&1 && break
    sleep 0.05
done
check "installed hicached answers the installed hicachectl" "$P/bin/hicachectl" --socket "$TMP/h.sock" ping

cat >"$TMP/prog.c" <<'EOF'
#include <hicache.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    static char page[70000], back[70000];
    for (size_t i = 0; i < sizeof(page); i++)
        page[i] = (char)(i * 131 + 7);
    hc_client *c = NULL;
    int rc = hc_connect(&c, argv[1], NULL);
    if (rc < 0) {
        fprintf(stderr, "hc_connect: %s\n", hc_strerror(rc));
        return 1;
    }
    hc_buf b = {page, sizeof(page)}, rb = {back, sizeof(back)};
    hc_page p = {argc > 2 ? argv[2] : "installed-page", &b, 1}, rp = {p.key, &rb, 1};
    int res = 1;
    if (hc_batch_set(c, &p, 1, &res) != 1 || hc_batch_get(c, &rp, 1, &res) != 1 ||
        memcmp(page, back, sizeof(page)) != 0) {
        fprintf(stderr, "round trip failed: %d\n", res);
        return 1;
    }
    hc_close(c);
    puts("round trip ok");
    return 0;
}
EOF
export PKG_CONFIG_PATH=$P/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
flags=$(pkg-config --cflags --libs hicache 2>"$TMP/pc.err")
check "pkg-config --cflags --libs hicache: $flags" sh -c "[ -n '$flags' ] && [ ! -s '$TMP/pc.err' ]"
if gcc -std=gnu11 -Wall -Werror -o "$TMP/prog" "$TMP/prog.c" $flags 2>"$TMP/cc.err"; then
    ok "a C program compiles and links against the installed header and libhicache.so"
    check "it loads the installed libhicache.so.0" sh -c "ldd '$TMP/prog' | grep -q '$P/lib/libhicache.so.0'"
    check "it runs: set + get through the installed hicached, byte for byte" "$TMP/prog" "$TMP/h.sock"
else
    cat "$TMP/cc.err"
    ko "a C program against the installed header and library"
fi
# Static: libhicache.a plus what `pkg-config --static` adds (libprotobuf-c).
sflags=$(pkg-config --static --cflags hicache) slibs=$(pkg-config --static --libs-only-other --libs-only-l hicache | sed 's/-lhicache//')
if gcc -std=gnu11 -Wall -Werror -o "$TMP/prog_static" "$TMP/prog.c" $sflags "$P/lib/libhicache.a" $slibs 2>"$TMP/cc2.err"; then
    check "statically linked program runs" "$TMP/prog_static" "$TMP/h.sock" static-page
else
    cat "$TMP/cc2.err"
    ko "a C program linked against the installed libhicache.a"
fi

if [ -n "$site" ]; then
    if PYTHONPATH=$site python3 - "$TMP/h.sock" "$site" >"$TMP/py.out" 2>&1 <<'EOF'
import os, sys, hicache
assert os.path.dirname(hicache.__file__).startswith(sys.argv[2]), hicache.__file__
c = hicache.Client(sys.argv[1])
data = bytes((i * 7 + 3) % 256 for i in range(50000))
assert c.batch_set(["py-page"], [data]) == [0]
buf = bytearray(len(data))
assert c.batch_get(["py-page"], [buf]) == [0]
assert bytes(buf) == data
import juicefs_hicache_storage, register_juicefs_backend  # noqa: F401
print("python ok")
EOF
    then
        ok "the installed Python package round-trips a page through the installed library"
    else
        cat "$TMP/py.out"
        ko "the installed Python package"
    fi
fi

echo "test_install: $pass passed, $fail failed"
[ $fail -eq 0 ]
