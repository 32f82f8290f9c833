#!/usr/bin/env bash
# An emulated production JuiceFS on one machine: the metadata engine (Redis)
# and the object store (a second Redis, JuiceFS --storage redis) each in a
# network namespace of their own, the JuiceFS client in a third, with a
# chosen round trip to each. The mount stays visible in this (root) mount
# namespace, so hicached, HiCacheFile and fio use it as a local path.
#
#   scripts/bench/emulate.sh up   --state DIR --mount DIR [--meta-rtt-us N]
#                                 [--obj-rtt-us N] [--cache-size MIB] [--tag NAME]
#   scripts/bench/emulate.sh down --state DIR
#   scripts/bench/emulate.sh remount --state DIR  (unmount, empty the cache, mount)
#   scripts/bench/emulate.sh work --state DIR     (JSON: the volume's work so far)
#
# The delay: this kernel has no sch_netem, so every packet that reaches a
# server namespace from the client is held on an iptables NFQUEUE by
# netdelay (scripts/bench/netdelay.c) for the chosen time, at the receiver
# (holding a sender's packets would throttle TCP small queues). So a round
# trip costs N microseconds more; replies are not delayed. --cache-size 0
# leaves the client without a local block cache: every read goes to the
# object store.
#
# JFS_MOUNT_ARGS (environment): more options for `juicefs mount`, for a
# diagnosis (for example --debug, which logs each object request with its
# range into STATE/juicefs.log).
#
# Addresses: 10.203.<k>.1 (client side) and 10.203.<k>.2 (server side) on
# veth pairs between namespaces this script creates (<tag>-cli, <tag>-meta,
# <tag>-obj); no other address is ever used, and nothing outside those
# namespaces is routed. `down` (also run when `up` fails) unmounts, stops
# every process it started and deletes the namespaces; it is idempotent.
#
# Exit: 0 done; 1 failed (reason on stderr); 2 bad usage; 77 not possible
# here (not root, no FUSE, no network namespaces or NFQUEUE).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ME=emulate
CMD=${1:-}
[ $# -gt 0 ] && shift
STATE=
MNT=
META_US=500
OBJ_US=5000
CACHE_SIZE=2048
TAG=hcemu
while [ $# -gt 0 ]; do
    case $1 in
    --state) STATE=$2; shift 2 ;;
    --mount) MNT=$2; shift 2 ;;
    --meta-rtt-us) META_US=$2; shift 2 ;;
    --obj-rtt-us) OBJ_US=$2; shift 2 ;;
    --cache-size) CACHE_SIZE=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    *) echo "$ME: unknown option $1" >&2; exit 2 ;;
    esac
done
say() { echo "$ME: $*" >&2; }
die() {
    echo "$ME: error: $*" >&2
    exit 1
}
skip() {
    echo "$ME: not possible here: $*" >&2
    exit 77
}
[ -n "$STATE" ] || { echo "$ME: --state DIR is required" >&2; exit 2; }
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
ENVF=$STATE/emulate.env

ns() { ip netns exec "$1" "${@:2}"; }

# wait_gone SECONDS PID...: wait until every PID has exited (a zombie counts
# as gone), then SIGKILL whatever is left.
wait_gone() {
    local secs=$1 q live
    shift
    for _ in $(seq $((secs * 10))); do
        live=""
        for q in "$@"; do
            [ -e "/proc/$q" ] && ! grep -q '^[^)]*) Z' "/proc/$q/stat" 2>/dev/null && live="$live $q"
        done
        [ -z "$live" ] && return 0
        sleep 0.1
    done
    for q in $live; do kill -9 "$q" 2>/dev/null || true; done
}

# ---------------------------------------------------------------- down
down() {
    local tag mnt juicefs f
    [ -f "$ENVF" ] || return 0
    tag=$(sed -n 's/^TAG=//p' "$ENVF")
    mnt=$(sed -n 's/^MOUNT=//p' "$ENVF")
    juicefs=$(sed -n 's/^JUICEFS=//p' "$ENVF")
    if [ -n "$mnt" ] && mountpoint -q "$mnt" 2>/dev/null; then
        "$juicefs" umount --force "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null || true
    fi
    # every process in one of our namespaces: the juicefs client, netdelay,
    # the two Redis servers; waited for by pid (a process leaves the
    # namespace's list before it is gone)
    local pids="" p n
    for n in "$tag-cli" "$tag-meta" "$tag-obj"; do
        [ -e "/run/netns/$n" ] && pids="$pids $(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')"
    done
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    # shellcheck disable=SC2086
    wait_gone 5 $pids
    for n in "$tag-cli" "$tag-meta" "$tag-obj"; do
        [ -e "/run/netns/$n" ] && ip netns del "$n" 2>/dev/null || true
    done
    for f in "$STATE"/redis-*.pid; do rm -f "$f"; done
    rm -f "$ENVF"
}

if [ "$CMD" = down ]; then
    down
    exit 0
fi

# The client in its namespace for the network only (nsenter --net), so the
# FUSE mount lands in this mount namespace.
jfs_mount() {
    local juicefs=$1 cli=$2 mnt=$3 cache=$4
    mkdir -p "$mnt" "$STATE/cache"
    nsenter --net="/run/netns/$cli" "$juicefs" mount -d --no-usage-report \
        --log "$STATE/juicefs.log" --cache-dir "$STATE/cache" --cache-size "$cache" \
        ${JFS_MOUNT_ARGS:-} redis://10.203.1.2:6379/1 "$mnt" >"$STATE/mount.out" 2>&1 || {
        tail -n 5 "$STATE/mount.out" >&2
        grep -qiE 'fuse|permission denied' "$STATE/mount.out" && skip "FUSE mount refused"
        die "juicefs mount failed (log $STATE/juicefs.log)"
    }
    for _ in $(seq 100); do
        mountpoint -q "$mnt" && [ -e "$mnt/.stats" ] && return 0
        sleep 0.1
    done
    die "$mnt is not mounted after 10 s"
}

# ---------------------------------------------------------------- remount
if [ "$CMD" = remount ]; then
    [ -f "$ENVF" ] || die "no emulated volume in $STATE"
    # shellcheck disable=SC1090
    . "$ENVF"
    "$JUICEFS" umount "$MOUNT" >/dev/null 2>&1 || umount -l "$MOUNT" 2>/dev/null || true
    for _ in $(seq 100); do
        mountpoint -q "$MOUNT" || break
        sleep 0.1
    done
    # The old client gone before its cache is removed: unmounted, it may
    # still be writing a downloaded block there, and rm then fails. Only the
    # client's processes (a diagnosis may run others in the namespace).
    jpids=""
    for p in $(ip netns pids "$TAG-cli" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = juicefs ] && jpids="$jpids $p"
    done
    # shellcheck disable=SC2086
    wait_gone 10 $jpids
    rm -rf "$STATE/cache"
    jfs_mount "$JUICEFS" "$TAG-cli" "$MOUNT" "$CACHE_SIZE"
    exit 0
fi

# ---------------------------------------------------------------- work
if [ "$CMD" = work ]; then
    [ -f "$ENVF" ] || die "no emulated volume in $STATE"
    # shellcheck disable=SC1090
    . "$ENVF"
    meta=$(ns "$TAG-meta" redis-cli -h 10.203.1.2 info commandstats | tr -d '\r')
    obj=$(ns "$TAG-obj" redis-cli -h 10.203.2.2 info commandstats | tr -d '\r')
    stats=$(cat "$MOUNT/.stats" 2>/dev/null || true)
    python3 - "$meta" "$obj" "$stats" <<'EOF'
import json, re, sys
def cmds(text):
    out = {}
    for m in re.finditer(r"^cmdstat_(\w+):calls=(\d+)", text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out
def metric(text, prefix):
    """Sum of the .stats lines whose name starts with prefix."""
    return sum(float(m.group(2)) for m in re.finditer(r"^(%s\w*) ([0-9.e+-]+)$" % re.escape(prefix), text, re.M))
NOISE = {"select", "ping", "hello", "info", "client", "command"}
meta, obj, st = cmds(sys.argv[1]), cmds(sys.argv[2]), sys.argv[3]
print(json.dumps({
    "meta_calls": sum(v for k, v in meta.items() if k not in NOISE),
    "meta_tx": meta.get("exec", 0) + meta.get("evalsha", 0) + meta.get("eval", 0),
    "obj_get": obj.get("get", 0) + obj.get("getrange", 0), "obj_put": obj.get("set", 0),
    "obj_del": obj.get("del", 0) + obj.get("unlink", 0),
    "fuse_ops": metric(st, "juicefs_fuse_ops_total_"),
    "fuse_read_bytes": metric(st, "juicefs_fuse_read_size_bytes_sum"),
    "fuse_written_bytes": metric(st, "juicefs_fuse_written_size_bytes_sum"),
    "obj_get_bytes": metric(st, "juicefs_object_request_data_bytes_GET"),
    "obj_put_bytes": metric(st, "juicefs_object_request_data_bytes_PUT"),
    "compactions": metric(st, "juicefs_compact_size_histogram_bytes_total"),
    "compacted_bytes": metric(st, "juicefs_compact_size_histogram_bytes_sum"),
    "meta": meta, "obj": obj,
}))
EOF
    exit 0
fi

[ "$CMD" = up ] || { echo "usage: $ME up|down|work --state DIR [...]" >&2; exit 2; }
[ -n "$MNT" ] || { echo "$ME: up needs --mount DIR" >&2; exit 2; }
for v in "$META_US" "$OBJ_US" "$CACHE_SIZE"; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "$ME: --meta-rtt-us, --obj-rtt-us, --cache-size take integers" >&2; exit 2; }
done
[[ $TAG =~ ^[a-z][a-z0-9]{1,10}$ ]] || { echo "$ME: --tag: 2 to 11 of [a-z0-9]" >&2; exit 2; }

# ---------------------------------------------------------------- up
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, iptables, FUSE)"
[ ! -f "$ENVF" ] || down
# what up needs: JuiceFS (and Redis, fuse3) through juicefs-up.sh's installer,
# iptables and libnetfilter-queue from Debian
JUICEFS=$(bash "$ROOT/scripts/juicefs-up.sh" --install-only | tail -n 1) || die "JuiceFS could not be installed"
missing=()
for p in iptables libnetfilter-queue-dev iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NETDELAY=$STATE/netdelay
gcc -O2 -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE "$ROOT/scripts/bench/netdelay.c" \
    -lnetfilter_queue -o "$NETDELAY" || die "netdelay did not build"

cat >"$ENVF" <<EOF
TAG=$TAG
MOUNT=$MNT
JUICEFS=$JUICEFS
META=redis://10.203.1.2:6379/1
META_RTT_US=$META_US
OBJ_RTT_US=$OBJ_US
CACHE_SIZE=$CACHE_SIZE
EOF
trap 'rc=$?; if [ $rc -ne 0 ]; then say "failed: tearing down"; down; fi; exit $rc' EXIT

CLI=$TAG-cli
ip netns add "$CLI" 2>/dev/null || skip "cannot create network namespaces"
ns "$CLI" ip link set lo up
k=1
for role in meta obj; do
    n=$TAG-$role
    ip netns add "$n"
    ns "$n" ip link set lo up
    ip link add "$TAG-c$k" netns "$CLI" type veth peer name "$TAG-s$k" netns "$n"
    ns "$CLI" ip addr add "10.203.$k.1/30" dev "$TAG-c$k"
    ns "$n" ip addr add "10.203.$k.2/30" dev "$TAG-s$k"
    ns "$CLI" ip link set "$TAG-c$k" up
    ns "$n" ip link set "$TAG-s$k" up
    mkdir -p "$STATE/redis-$role"
    ns "$n" redis-server --bind "10.203.$k.2" 127.0.0.1 --port 6379 --protected-mode no \
        --daemonize yes --save '' --appendonly no --dir "$STATE/redis-$role" \
        --pidfile "$STATE/redis-$role.pid" --logfile "$STATE/redis-$role/redis.log" ||
        die "redis-server ($role) did not start"
    us=$META_US
    [ $role = obj ] && us=$OBJ_US
    if [ "$us" -gt 0 ]; then
        ns "$n" iptables -A INPUT -s "10.203.$k.1" -j NFQUEUE --queue-num "$k" ||
            skip "iptables NFQUEUE refused in a namespace"
        rm -f "$STATE/netdelay-$role.ready"
        ns "$n" "$NETDELAY" "$k" "$us" "$STATE/netdelay-$role.ready" \
            >"$STATE/netdelay-$role.log" 2>&1 &
        for _ in $(seq 50); do
            [ -e "$STATE/netdelay-$role.ready" ] && break
            sleep 0.1
        done
        [ -e "$STATE/netdelay-$role.ready" ] || die "netdelay ($role) did not start: $(cat "$STATE/netdelay-$role.log")"
    fi
    k=$((k + 1))
done
for k in 1 2; do
    for _ in $(seq 50); do
        [ "$(ns "$CLI" redis-cli -h "10.203.$k.2" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    [ "$(ns "$CLI" redis-cli -h "10.203.$k.2" ping 2>/dev/null)" = PONG ] || die "Redis 10.203.$k.2 does not answer"
done

jfs() { nsenter --net="/run/netns/$CLI" "$JUICEFS" "$@"; }
jfs format --storage redis --bucket redis://10.203.2.2:6379/1 --trash-days 0 \
    redis://10.203.1.2:6379/1 "$TAG-vol" >"$STATE/format.log" 2>&1 ||
    die "juicefs format failed: $(tail -n 3 "$STATE/format.log")"
mkdir -p "$MNT"
mountpoint -q "$MNT" && die "$MNT is already a mount point"
jfs_mount "$JUICEFS" "$CLI" "$MNT" "$CACHE_SIZE"
trap - EXIT
say "up: $MNT (metadata +${META_US} us, object store +${OBJ_US} us a round trip, cache ${CACHE_SIZE} MiB; tag $TAG)"
