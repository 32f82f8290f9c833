#!/usr/bin/env bash
# Tears down what scripts/juicefs-up.sh brought up: unmounts the mounts it
# recorded (or only --mount DIR), then stops the Redis it started (through its
# pid file, never any other Redis) once no recorded mount is left. Safe to run
# after a failed or partial start, and twice.
#
# Exit status: 0 everything asked for is down; 1 something could not be
# unmounted or stopped (reason on stderr); 2 bad usage.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=juicefs-down

STATE=${JFS_STATE_DIR:-$ROOT/var/juicefs}
ONLY=
KEEP_REDIS=0
PURGE=0
JUICEFS=${JUICEFS:-$ROOT/var/juicefs-venv/bin/juicefs}

usage() {
    cat <<EOF
usage: scripts/juicefs-down.sh [options]

  --state-dir DIR   the state dir given to juicefs-up.sh [\$JFS_STATE_DIR, $ROOT/var/juicefs]
  --mount DIR       unmount only this mount; Redis stops only if no other mount is left
  --keep-redis      leave Redis running
  --purge           afterwards remove the state dir (volume data, metadata, caches, logs)
  --juicefs PATH    juicefs binary [\$JUICEFS, $ROOT/var/juicefs-venv/bin/juicefs]
  -h, --help
EOF
}

say() { echo "$ME: $*"; }
FAILED=0
fail() {
    echo "$ME: error: $*" >&2
    FAILED=1
}

while [ $# -gt 0 ]; do
    case $1 in
    --state-dir) STATE=$2; shift 2 ;;
    --mount) ONLY=$2; shift 2 ;;
    --keep-redis) KEEP_REDIS=1; shift ;;
    --purge) PURGE=1; shift ;;
    --juicefs) JUICEFS=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$ME: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if [ ! -d "$STATE" ]; then
    say "nothing to do: no state dir $STATE"
    exit 0
fi
STATE=$(cd "$STATE" && pwd)

# Pids of juicefs mount processes serving exactly mount point $1.
mount_pids() {
    local f pid log key
    # juicefs 1.4 rewrites its argv (one truncated string), so the argument
    # match below can miss it: a juicefs-up mount also writes its stdout to
    # its record's juicefs.log, which identifies it for sure.
    key=$(printf '%s' "${1#/}" | sed 's|[^A-Za-z0-9_.-]|_|g')
    log=$STATE/mounts/$key/juicefs.log
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        if [ "$(readlink "/proc/$pid/fd/1" 2>/dev/null)" = "$log" ]; then
            echo "$pid"
            continue
        fi
        # cmdline is NUL-separated: look for a juicefs "mount" whose last argument is $1.
        { tr '\0' '\n' <"$f"; } 2>/dev/null | awk -v m="$1" '
            NR == 1 { isj = ($0 ~ /juicefs$/) } $0 == "mount" { ism = 1 } { last = $0 }
            END { exit !(isj && ism && last == m) }' && echo "$pid"
    done
    return 0
}

# True if process $1 exists and is not a zombie (an exited daemon whose new
# parent does not reap it still has a /proc entry).
alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# True if $1 is a mount point, including a dead FUSE mount
# ("Transport endpoint is not connected").
is_mounted() {
    awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# Unmounts $1: juicefs umount (flushing staged writeback blocks), then
# fusermount3 -u, then a lazy umount; then ends a juicefs process left over.
unmount_one() {
    local mnt=$1 pids
    if is_mounted "$mnt"; then
        say "unmounting $mnt"
        if [ -x "$JUICEFS" ] && timeout 120 "$JUICEFS" umount --flush "$mnt" >/dev/null 2>&1; then
            :
        elif [ -x "$JUICEFS" ] && timeout 30 "$JUICEFS" umount --force "$mnt" >/dev/null 2>&1; then
            say "$mnt: busy, unmounted with --force"
        elif fusermount3 -u "$mnt" 2>/dev/null; then
            say "$mnt: unmounted with fusermount3 -u"
        elif umount -l "$mnt" 2>/dev/null; then
            say "$mnt: lazily unmounted (umount -l); open files keep the old mount alive"
        else
            fail "cannot unmount $mnt"
            return 1
        fi
    fi
    pids=$(mount_pids "$mnt")
    if [ -n "$pids" ]; then
        for _ in $(seq 50); do
            pids=$(mount_pids "$mnt")
            [ -n "$pids" ] || break
            sleep 0.1
        done
        if [ -n "$pids" ]; then
            say "$mnt: ending leftover juicefs process(es) $pids"
            # shellcheck disable=SC2086
            kill $pids 2>/dev/null || true
        fi
    fi
    return 0
}

records=()
if [ -n "$ONLY" ]; then
    ONLY=$(realpath -m "$ONLY")
    KEY=$(printf '%s' "${ONLY#/}" | sed 's|[^A-Za-z0-9_.-]|_|g')
    records=("$STATE/mounts/$KEY")
    [ -d "$STATE/mounts/$KEY" ] || is_mounted "$ONLY" || say "$ONLY: not mounted, no record"
else
    for d in "$STATE"/mounts/*/; do
        [ -d "$d" ] && records+=("${d%/}")
    done
fi

for rec in "${records[@]}"; do
    mnt=
    if [ -f "$rec/mount.env" ]; then
        mnt=$(sed -n 's/^MOUNT=//p' "$rec/mount.env")
    elif [ -n "$ONLY" ]; then
        mnt=$ONLY
    fi
    if [ -n "$mnt" ]; then
        unmount_one "$mnt" || continue
    fi
    rm -rf "$rec"
done

# ---------------------------------------------------------------- Redis
REDIS_PID=$STATE/redis/redis.pid
left=$(find "$STATE/mounts" -mindepth 2 -maxdepth 2 -name mount.env 2>/dev/null | wc -l || true)
if [ "$KEEP_REDIS" = 1 ]; then
    say "leaving Redis running (--keep-redis)"
elif [ "$left" -gt 0 ]; then
    say "leaving Redis running: $left mount(s) of this state dir remain"
elif [ -s "$REDIS_PID" ]; then
    pid=$(cat "$REDIS_PID")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server; then
        port=$(cat "$STATE/redis/port" 2>/dev/null || echo 6391)
        say "stopping Redis (pid $pid, port $port)"
        redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "Redis pid $pid still alive after 10s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    else
        say "Redis of $STATE not running (stale pid file)"
    fi
    rm -f "$REDIS_PID"
else
    say "no Redis started from $STATE"
fi

if [ "$FAILED" = 0 ] && [ "$PURGE" = 1 ]; then
    if [ "$left" -gt 0 ] || [ "$KEEP_REDIS" = 1 ]; then
        fail "--purge needs every mount down and Redis stopped"
    else
        say "removing $STATE"
        rm -rf "$STATE"
    fi
fi
[ "$FAILED" = 0 ] || exit 1
say "done"
