#!/usr/bin/env bash
# A full volume (issue 12, defect 3): hicached on a 24 MiB tmpfs (free-space
# watermark off, a capacity above the volume's size) takes 1 MiB pages until
# the volume is full, then 300 more sets are refused. Checks: the refused
# sets made no files (no empty segment files, a handful of segments in all),
# disk_bytes stays within the volume, no stored page was evicted and every one
# reads back byte for byte; once space is freed, sets are stored again.
#
# usage: tests/juicefs/test_enospc.sh [BUILD_DIR]
# Exit: 0 pass, 1 fail, 77 skip (not root: no tmpfs mount).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
. "$ROOT/tests/juicefs/checks.sh"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (tmpfs mount)"; exit 77; }
PY=$ROOT/.venv/bin/python
[ -x "$PY" ] || PY=python3
export HICACHE_LIB=${HICACHE_LIB:-$ROOT/build/default/libhicache.so}
T=$(mktemp -d /tmp/hctestenospc.XXXXXX)
HPID=
cleanup() {
    [ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null
    umount "$T/mnt" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/mnt"
mount -t tmpfs -o size=24m tmpfs "$T/mnt" || { echo "SKIP: tmpfs mount refused"; exit 77; }
head -c $((4 << 20)) /dev/zero >"$T/mnt/filler" # freed at the end
"$BUILD/hicached" --mount-point "$T/mnt" --socket "$T/h.sock" --node-id full \
    --segment-size 4M --min-free-ratio 0 --capacity-bytes 40M --foreground >"$T/hicached.log" 2>&1 &
HPID=$!
for _ in $(seq 100); do "$BUILD/hicachectl" --socket "$T/h.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

# one 1 MiB page a call: 40 asked (the volume holds fewer), then 300 refused
"$PY" - "$T/h.sock" "$ROOT/client/python" >"$T/run.json" 2>"$T/run.err" <<'EOF'
import json, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np, hicache
c = hicache.Client(sys.argv[1], namespace="full", timeout_ms=5000)
page = lambda i: np.random.default_rng(i).integers(0, 256, 1 << 20, dtype=np.uint8)
stored, refused = [], 0
for i in range(40):
    (stored.append(i) if c.batch_set([f"p{i}"], [page(i)]) == [0] else None)
t0 = time.monotonic()
codes = [c.batch_set([f"r{i}"], [page(1000 + i)])[0] for i in range(300)]
refused = sum(x != 0 for x in codes)
print(json.dumps({"stored": stored, "refused": refused, "codes": sorted(set(codes)),
                  "refused_s": time.monotonic() - t0}))
EOF
[ -s "$T/run.json" ] || { cat "$T/run.err"; ko "the load did not run"; }
read -r nstored refused codes secs < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["stored"]), d["refused"], ",".join(map(str,d["codes"])), round(d["refused_s"],2))' "$T/run.json")
[ "${nstored:-0}" -ge 10 ] && [ "$nstored" -lt 40 ] && [ "${refused:-0}" -ge 290 ] &&
    ok "$nstored pages stored before the volume was full; $refused of 300 later sets refused (codes $codes) in ${secs}s" ||
    ko "stored ${nstored:-?}, refused ${refused:-?} (codes ${codes:-?})"
dir=$T/mnt/hicache/full
nseg=$(find "$dir" -name '*.seg' | wc -l)
nempty=$(find "$dir" -name '*.seg' -size 0 | wc -l)
[ "$nseg" -le $((nstored / 3 + 3)) ] && [ "$nempty" -eq 0 ] &&
    ok "the refused sets made no files: $nseg segment files, none empty" ||
    ko "$nseg segment files, $nempty empty, for $nstored pages"
stats=$("$BUILD/hicachectl" --socket "$T/h.sock" stats --json)
val() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <<<"$stats"; }
[ "$(val disk_bytes)" -le $((24 << 20)) ] && ok "disk_bytes $(val disk_bytes) within the 24 MiB volume" ||
    ko "disk_bytes $(val disk_bytes) on a 24 MiB volume"
[ "$(val evicted_pages)" = 0 ] && ok "no page evicted (capacity 40M above what is really stored)" ||
    ko "$(val evicted_pages) pages evicted by refused writes"
"$PY" - "$T/h.sock" "$ROOT/client/python" "$T/run.json" >"$T/check.out" 2>&1 <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[2])
import numpy as np, hicache
c = hicache.Client(sys.argv[1], namespace="full", timeout_ms=5000)
bad = 0
for i in json.load(open(sys.argv[3]))["stored"]:
    want = np.random.default_rng(i).integers(0, 256, 1 << 20, dtype=np.uint8)
    got = np.zeros_like(want)
    bad += c.batch_get([f"p{i}"], [got]) != [0] or not np.array_equal(got, want)
print(bad)
EOF
[ "$(tail -n 1 "$T/check.out")" = 0 ] && ok "every stored page reads back byte for byte" ||
    ko "pages wrong or missing: $(tail -n 3 "$T/check.out")"
rm -f "$T/mnt/filler"
sleep 1.2 # the backoff after ENOSPC (1 s)
head -c $((1 << 20)) /dev/urandom >"$T/again"
"$BUILD/hicachectl" --socket "$T/h.sock" --namespace full put again "$T/again" >/dev/null 2>&1 &&
    "$BUILD/hicachectl" --socket "$T/h.sock" --namespace full get again "$T/again.back" >/dev/null 2>&1 &&
    cmp -s "$T/again" "$T/again.back" && ok "space freed: a set is stored again" || ko "no set stored after space was freed"
kill "$HPID" && wait "$HPID" && ok "SIGTERM: exit 0" || ko "exit status $?"
HPID=

echo "test_enospc: $pass passed, $fail failed"
[ $fail -eq 0 ]
