#!/usr/bin/env bash
# The Prometheus endpoint (metrics_listen): hicached started with it on a
# loopback port serves GET /metrics as exposition text that promtool (from
# Debian's prometheus package, unpacked, not installed) accepts; the counters
# follow the requests made (sets, gets, exists and their latency histograms);
# `hicachectl stats --prometheus` prints the same text; other paths and
# methods get 404 / 405; scrapers that connect and never ask, or ask with an
# oversized request, neither stall the endpoint nor the daemon. Then the
# same on a Unix socket path.
#
# usage: tests/juicefs/test_metrics.sh [BUILD_DIR]
# Exit: 0 pass, 1 fail, 77 skip (no curl and none to be had).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build/default}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
. "$ROOT/tests/juicefs/checks.sh"
T=$(mktemp -d /tmp/hctestmetrics.XXXXXX)
HPID=
cleanup() {
    [ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
if ! command -v curl >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null 2>&1 ||
        { echo "SKIP: no curl"; exit 77; }
fi
# promtool from Debian's prometheus package, unpacked here (installing the
# package would start a Prometheus server)
PROMTOOL=$ROOT/var/promtool/usr/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
    mkdir -p "$ROOT/var/promtool"
    (cd "$T" && apt-get download prometheus >/dev/null 2>&1) &&
        dpkg-deb -x "$T"/prometheus_*.deb "$ROOT/var/promtool" || true
fi
[ -x "$PROMTOOL" ] || PROMTOOL=

CTL="$BUILD/hicachectl --socket $T/h.sock"
start() { # $1: metrics_listen
    "$BUILD/hicached" --mount-point "$T/data" --socket "$T/h.sock" --node-id metrics-node \
        --metrics-listen "$1" --foreground >>"$T/hicached.log" 2>&1 &
    HPID=$!
    for _ in $(seq 100); do $CTL ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    return 1
}
stop() { kill "$HPID" && wait "$HPID"; rc=$?; HPID=; return $rc; }
# a free loopback port
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$T/data"
start "127.0.0.1:$PORT" && ok "hicached with metrics_listen 127.0.0.1:$PORT" || { cat "$T/hicached.log"; ko "no start"; exit 1; }
URL=http://127.0.0.1:$PORT/metrics

head -c 70000 /dev/urandom >"$T/page"
$CTL put m1 "$T/page" >/dev/null && $CTL put m2 "$T/page" >/dev/null && $CTL get m1 "$T/back" >/dev/null &&
    $CTL exists m1 m2 >/dev/null || ko "requests failed"
curl -s -D "$T/headers" "$URL" >"$T/metrics.txt"
grep -qi "^content-type: text/plain; version=0.0.4" "$T/headers" && ok "200 with the exposition content type" ||
    ko "headers: $(cat "$T/headers")"
if [ -n "$PROMTOOL" ]; then
    if "$PROMTOOL" check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1; then
        ok "promtool check metrics accepts it ($("$PROMTOOL" --version 2>&1 | head -n 1 | cut -d' ' -f1-3))"
    else
        ko "promtool: $(head -n 5 "$T/promtool.out")"
    fi
else
    ko "no promtool (apt-get download prometheus failed)"
fi
val() { awk -v k="$1" '$1 == k {print $2}' "$T/metrics.txt"; }
# hicachectl get asks exists for the page's length first: 2 exists
# requests (the get's, then exists m1 m2), 3 keys
[ "$(val hicached_sets_total)" = 2 ] && [ "$(val hicached_gets_total)" = 1 ] &&
    [ "$(val hicached_hits_total)" = 1 ] && [ "$(val hicached_exists_total)" = 3 ] &&
    [ "$(val hicached_pages)" = 2 ] && ok "counters follow the requests (2 sets, 1 get, 1 hit, 3 keys asked about, 2 pages)" ||
    ko "counters: sets $(val hicached_sets_total) gets $(val hicached_gets_total) hits $(val hicached_hits_total) exists $(val hicached_exists_total) pages $(val hicached_pages)"
[ "$(val 'hicached_request_duration_seconds_count{op="set"}')" = 2 ] &&
    [ "$(val 'hicached_request_duration_seconds_bucket{op="set",le="+Inf"}')" = 2 ] &&
    [ "$(val 'hicached_request_duration_seconds_count{op="get"}')" = 1 ] &&
    [ "$(val 'hicached_request_duration_seconds_count{op="exists"}')" = 2 ] &&
    ok "latency histograms: 2 set, 1 get, 2 exists requests" ||
    ko "histograms: $(grep duration_seconds_count "$T/metrics.txt" | tr '\n' ' ')"
grep -q '^hicached_info{node_id="metrics-node",version="' "$T/metrics.txt" &&
    ok "hicached_info names the node" || ko "info line: $(grep hicached_info "$T/metrics.txt")"
# the same text from hicachectl (lines that move between two reads left out)
moving='uptime_seconds|hicached_clients|connections_total|exists|inflight|hicached_loop_'
curl -s "$URL" | grep -Ev "$moving" >"$T/a"
$CTL stats --prometheus | grep -Ev "$moving" >"$T/b"
cmp -s "$T/a" "$T/b" && ok "hicachectl stats --prometheus prints the same text" || ko "differs: $(diff "$T/a" "$T/b" | head -5)"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "http://127.0.0.1:$PORT/")" = 404 ] && [ "$(code -X POST "$URL")" = 405 ] &&
    [ "$(code -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' x)" "$URL")" = 431 ] &&
    ok "404 elsewhere, 405 for POST, 431 for an oversized request" || ko "status codes"
# 40 scrapers that connect and never ask: the endpoint and the daemon go on
python3 - "$PORT" >"$T/idle.out" 2>&1 <<'EOF' &
import socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(40)]
time.sleep(3)
EOF
idle=$!
sleep 0.5
t0=$(date +%s%N)
ok_scrape=$(code --max-time 5 "$URL")
$CTL get m2 "$T/back2" >/dev/null && cmp -s "$T/page" "$T/back2" && pages_ok=1 || pages_ok=0
t1=$(date +%s%N)
wait $idle
[ "$ok_scrape" = 200 ] || [ "$ok_scrape" = 000 ] # 000: refused while over the limit is allowed
[ "$pages_ok" = 1 ] && [ $(((t1 - t0) / 1000000)) -lt 3000 ] &&
    ok "40 idle scrapers: the daemon serves pages at once (scrape answered $ok_scrape)" ||
    ko "with idle scrapers: page ok $pages_ok, $(((t1 - t0) / 1000000)) ms"
sleep 2.5 # their deadline (5 s) passes, the endpoint answers again
[ "$(code --max-time 5 "$URL")" = 200 ] && ok "the endpoint answers again after them" || ko "endpoint stuck"
stop && ok "SIGTERM: exit 0 with the endpoint open" || ko "exit status $?"

# a Unix socket
start "$T/metrics.sock" && [ "$(stat -c %a "$T/metrics.sock")" = 660 ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/metrics.sock" http://x/metrics)" = 200 ] &&
    ok "metrics_listen on a Unix socket (mode 660)" || ko "Unix socket endpoint"
stop
[ ! -e "$T/metrics.sock" ] && ok "its socket file is removed at stop" || ko "socket file left"

echo "test_metrics: $pass passed, $fail failed"
[ $fail -eq 0 ]
