#!/usr/bin/env bash
# make deb: builds build/deb/hicached_<version>_<arch>.deb with dpkg-deb from
# `make install` into a staging root (PREFIX=/usr, SYSCONFDIR=/etc, no Python
# package: that one is a wheel, `make wheel`), plus packaging/deb/: control
# (Depends computed from the libraries the binaries link), conffiles
# (/etc/hicached/config.json), postinst (system group and user "hicached"),
# prerm, postrm (purge removes them). The units are the shipped ones with
# Group=hicached (service) and SocketGroup=hicached (socket), so members of
# group hicached (SGLang's user) may connect.
#
# usage: scripts/make-deb.sh [BUILD_DIR]    (default build/default)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${1:-build/default}
OUT=$ROOT/build/deb
STAGE=$OUT/root
VERSION=$(sed -n 's/^VERSION := //p' Makefile)
ARCH=$(dpkg --print-architecture)

rm -rf "$OUT"
mkdir -p "$STAGE/DEBIAN"
make --no-print-directory install BUILD="$BUILD" DESTDIR="$STAGE" PREFIX=/usr SYSCONFDIR=/etc \
    INSTALL_PYTHON=0 >"$OUT/install.log"
# the units of this package: the service's group and the socket's group
sed -i 's/^\[Service\]$/[Service]\nGroup=hicached/' "$STAGE/usr/lib/systemd/system/hicached.service"
sed -i 's/^\[Socket\]$/[Socket]\nSocketGroup=hicached/' "$STAGE/usr/lib/systemd/system/hicached.socket"

# Depends: the Debian package of every library the binaries link
deps=$(for f in "$STAGE/usr/bin/hicached" "$STAGE/usr/bin/hicachectl" "$STAGE"/usr/lib/libhicache.so.*.*.*; do
    ldd "$f" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
    real=$(readlink -f "$lib")
    dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true
done | cut -d: -f1 | sort -u | grep -v '^libc6$' || true)
depends="libc6"
for p in $deps; do
    v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null | sed 's/-[^-]*$//')
    depends="$depends, $p (>= ${v%%+*})"
done
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$depends/" \
    packaging/deb/control.in >"$STAGE/DEBIAN/control"
echo "/etc/hicached/config.json" >"$STAGE/DEBIAN/conffiles"
echo "activate-noawait ldconfig" >"$STAGE/DEBIAN/triggers" # libhicache.so.0
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$STAGE/DEBIAN/"
dpkg-deb --root-owner-group --build "$STAGE" "$OUT/hicached_${VERSION}_${ARCH}.deb" >/dev/null
echo "$OUT/hicached_${VERSION}_${ARCH}.deb"
