#!/usr/bin/env bash
# The demo behind `make run`: hicached on a local directory under the checkout
# (var/data), four client processes storing and reading back 512 pages
# (128 each, 32 of them shared by all four so dedupe shows), the daemon's
# stats, and a clean stop.
# usage: demo.sh BUILD_DIR
set -euo pipefail
build=${1:-build/default}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

data=var/data
sock=var/run/hicached.sock
log=var/hicached.log
mkdir -p "$data" var/run

"$build/hicached" --mount-point "$data" --socket "$sock" --node-id demo \
    --seal-interval-ms 2000 --foreground 2>"$log" &
pid=$!
cleanup() {
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

for _ in $(seq 100); do
    if "$build/hicachectl" --socket "$sock" ping >/dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "demo: hicached exited at start; its log:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
done

echo "== hicached (pid $pid) serving $data on $sock"
echo "== 4 client processes: 128 pages of 64 KiB each (32 shared), set then get, verified"
"$build/hicache-load" --socket "$sock" --namespace demo --clients 4 --pages 128 --shared 32 \
    --page-size 64K --batch 32
echo
echo "== hicachectl stats"
"$build/hicachectl" --socket "$sock" stats
echo
echo "== stopping hicached (SIGTERM)"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
trap - EXIT
if [ "$status" -ne 0 ]; then
    echo "demo: hicached exited with status $status; its log:" >&2; cat "$log" >&2; exit 1
fi
if [ -e "$sock" ]; then echo "demo: socket $sock left behind" >&2; exit 1; fi
echo "hicached stopped cleanly; pages are in $data (run 'make run' again: they are found again)"
