# Sourced by the shell tests that bring up their own JuiceFS volume and run
# one hicached on it (test_mount_loss.sh, test_meta_stall.sh): their state
# under the build dir, the bring-up (exit 77 when FUSE is unusable), the
# teardown at exit, also on failure, starting and stopping the daemon, and the
# bounded client call.
#
# Before sourcing, the test sets ROOT, BUILD, NAME (its name: the state dir
# is BUILD/NAME), PORT (its own Redis port), VOLUME (the volume's name) and
# CALL_S (the bound on every client call), and NODE (hicached's node id)
# before daemon_start. It gets T, STATE, MNT, SOCK, DLOG,
# HICACHED, CTL (HICACHED_BIN / HICACHECTL_BIN override the last two), the
# PASS/FAIL helpers of checks.sh, note, now_ms and el; it keeps HPID set to
# the daemon's pid while one runs. A test that leaves something to undo
# before the teardown (a stopped Redis) defines stage_before_down.

HICACHED=${HICACHED_BIN:-$BUILD/hicached}
CTL=${HICACHECTL_BIN:-$BUILD/hicachectl}
for b in "$HICACHED" "$CTL"; do
    [ -x "$b" ] || { echo "FAIL: $b not built (make BUILD=... all)"; exit 1; }
done

T=$BUILD/$NAME
STATE=$T/jfs
MNT=$T/mnt
SOCK=$T/hicached.sock
DLOG=$T/hicached.log
HPID=
CTL_OPTS=() # options every ctl call passes before its own
. "$ROOT/tests/juicefs/checks.sh"
note() { echo "note: $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(now_ms)
el() { echo "t+$(($(now_ms) - T0)) ms"; }

stage_cleanup() {
    declare -F stage_before_down >/dev/null && stage_before_down
    if [ -n "$HPID" ] && kill -0 "$HPID" 2>/dev/null; then
        kill -TERM "$HPID" 2>/dev/null
        for _ in $(seq 100); do
            kill -0 "$HPID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$HPID" 2>/dev/null
        wait "$HPID" 2>/dev/null
    fi
    "$ROOT/scripts/juicefs-down.sh" --state-dir "$STATE" --purge >"$T/down.log" 2>&1 ||
        { echo "$NAME: teardown failed:"; cat "$T/down.log"; }
    if grep -q " $T/" /proc/self/mounts; then
        echo "$NAME: something is still mounted under $T; left in place"
    elif [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$T"
    fi
}

# A leftover of an interrupted run: take it down before starting again (its
# Redis may have been left stopped).
if [ -d "$STATE" ]; then
    [ -r "$STATE/redis/redis.pid" ] && kill -CONT "$(cat "$STATE/redis/redis.pid")" 2>/dev/null
    "$ROOT/scripts/juicefs-down.sh" --state-dir "$STATE" --purge >/dev/null 2>&1
fi
grep -q " $T/" /proc/self/mounts && { echo "FAIL: $T still has a mount from an earlier run"; exit 1; }
rm -rf "$T"
mkdir -p "$T"
trap stage_cleanup EXIT

# Mounts the volume at MNT (Redis on PORT, started if needed). Returns
# juicefs-up's status; its output goes to T/up.log.
up() {
    "$ROOT/scripts/juicefs-up.sh" --state-dir "$STATE" --port "$PORT" --name "$VOLUME" \
        --mount "$MNT" --cache-size 256 >>"$T/up.log" 2>&1
}

# The first mount: exits 77 (skip) when FUSE is unusable, 1 when it fails.
up_first() {
    local rc
    up
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "SKIP: $NAME: FUSE is unusable on this machine:"
        grep -i 'fuse' "$T/up.log" | tail -n 3 | grep . || tail -n 3 "$T/up.log"
        exit 77
    fi
    [ $rc -eq 0 ] || { cat "$T/up.log"; echo "FAIL: juicefs-up exited $rc"; exit 1; }
}

# daemon_start ARGS...: starts hicached on MNT as node NODE in the
# background, with ARGS, logging to DLOG; waits for its socket. Sets HPID, and
# LOGPOS to the log's line count before it. Returns 1 if it does not come up.
daemon_start() {
    touch "$DLOG"
    LOGPOS=$(wc -l <"$DLOG")
    "$HICACHED" --mount-point "$MNT" --socket "$SOCK" --node-id "$NODE" --foreground "$@" \
        >>"$DLOG" 2>&1 &
    HPID=$!
    for _ in $(seq 200); do
        "$CTL" --socket "$SOCK" ping >/dev/null 2>&1 && return 0
        kill -0 "$HPID" 2>/dev/null || break
        sleep 0.05
    done
    echo "hicached did not come up:"
    tail -n 5 "$DLOG"
    return 1
}

# daemon_stop WHEN: SIGTERM, at most 30 s; the exit status must be 0. Prints
# the daemon's log since LOGPOS.
daemon_stop() {
    local t rc
    t=$(now_ms)
    kill -TERM "$HPID"
    for _ in $(seq 300); do
        kill -0 "$HPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$HPID" 2>/dev/null; then
        ko "$1: hicached still running 30 s after SIGTERM"
        kill -KILL "$HPID"
        wait "$HPID"
    else
        wait "$HPID"
        rc=$?
        [ $rc -eq 0 ] && ok "$1: SIGTERM, hicached exits 0 in $(($(now_ms) - t)) ms" ||
            ko "$1: SIGTERM, hicached exits $rc in $(($(now_ms) - t)) ms"
    fi
    HPID=
    echo "  daemon log of this run:"
    tail -n +$((LOGPOS + 1)) "$DLOG" | sed 's/^/    /'
    LOGPOS=$(wc -l <"$DLOG")
}

# ctl ARGS...: hicachectl bounded by timeout(1); sets RC (124: killed by the
# bound) and MS (wall time). Output in T/ctl.out and T/ctl.err.
ctl() {
    local t=$(now_ms)
    timeout "$CALL_S" "$CTL" --socket "$SOCK" "${CTL_OPTS[@]}" "$@" >"$T/ctl.out" 2>"$T/ctl.err"
    RC=$?
    MS=$(($(now_ms) - t))
}

# alive WHEN: PASS if hicached still runs; else FAIL with its log's tail,
# HPID cleared, and status 1.
alive() {
    if kill -0 "$HPID" 2>/dev/null; then
        ok "hicached (pid $HPID) still alive $1"
    else
        wait "$HPID"
        ko "hicached died $1: exit status $?; log tail:"
        tail -n 20 "$DLOG"
        HPID=
        return 1
    fi
}
