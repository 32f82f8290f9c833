#!/usr/bin/env python3
"""Measures the JuiceFS semantics hicached relies on (docs/OPERATIONS.md).

Usage: probe_semantics.py MOUNT_A [MOUNT_B]

MOUNT_A and MOUNT_B are two mounts of the same volume (two "nodes"). With only
MOUNT_A, the cross-mount probes are skipped. Prints one line per probe:
"name: result" (times in milliseconds). Exit status 0 unless a probe found
wrong bytes (1) or the arguments are bad (2). Not a pass/fail test: the
numbers go into the operations guide.
"""
import mmap
import os
import sys
import time
import uuid

POLL_S = 0.005
TIMEOUT_S = 15.0


def now():
    return time.monotonic()


def report(name, value):
    print(f"{name}: {value}", flush=True)


def aligned(size, fill):
    buf = mmap.mmap(-1, size)
    buf.write(bytes([fill]) * size)
    return buf


def probe_direct(mnt):
    path = os.path.join(mnt, f"probe-direct-{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
    except OSError as e:
        report("o_direct_open", f"refused ({e.strerror})")
        return
    report("o_direct_open", "ok")
    try:
        w = aligned(1 << 20, 0x5A)
        try:
            n = os.pwritev(fd, [w], 0)
            report("o_direct_write_1MiB_aligned", f"ok ({n} bytes)")
        except OSError as e:
            report("o_direct_write_1MiB_aligned", f"refused ({e.strerror})")
        try:
            n = os.pwrite(fd, b"x" * 100, 4097)
            report("o_direct_write_unaligned", f"accepted ({n} bytes)")
        except OSError as e:
            report("o_direct_write_unaligned", f"refused ({e.strerror})")
        r = aligned(1 << 20, 0)
        try:
            n = os.preadv(fd, [r], 0)
            ok = r[:4096] == bytes([0x5A]) * 4096
            report("o_direct_read_1MiB_aligned", f"ok ({n} bytes, bytes {'match' if ok else 'DIFFER'})")
        except OSError as e:
            report("o_direct_read_1MiB_aligned", f"refused ({e.strerror})")
        flags = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        report("o_direct_flag_kept", "yes" if flags & os.O_DIRECT else "no (dropped by the kernel)")
    finally:
        os.close(fd)
        os.unlink(path)


def probe_read_after_write(mnt):
    """The daemon appends to the open segment and serves reads of it on the
    same node through another fd: are appended bytes readable at once?"""
    path = os.path.join(mnt, f"probe-raw-{uuid.uuid4().hex[:8]}")
    wfd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    rfd = os.open(path, os.O_RDONLY)
    bad = 0
    try:
        for i in range(64):
            chunk = os.urandom(65536)
            os.write(wfd, chunk)
            got = os.pread(rfd, len(chunk), i * len(chunk))
            if got != chunk:
                bad += 1
        report("read_after_write_same_mount_64x64KiB", "all match" if bad == 0 else f"{bad} DIFFER")
        # A fresh fd opened after the writes, writer still open.
        fd2 = os.open(path, os.O_RDONLY)
        size = os.fstat(fd2).st_size
        os.close(fd2)
        report("read_after_write_fresh_fd_size", f"{size} (expected {64 * 65536})")
    finally:
        os.close(wfd)
        os.close(rfd)
        os.unlink(path)
    return bad


def wait_for(pred):
    t0 = now()
    while now() - t0 < TIMEOUT_S:
        if pred():
            return (now() - t0) * 1000.0
        time.sleep(POLL_S)
    return None


def fmt_ms(ms):
    return "not within %.0f s" % TIMEOUT_S if ms is None else "%.0f ms" % ms


def exists(p):
    try:
        os.stat(p)
        return True
    except FileNotFoundError:
        return False


def size_of(p):
    try:
        return os.stat(p).st_size
    except FileNotFoundError:
        return -1


def read_fresh(p, n):
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except FileNotFoundError:
        return b""


def probe_cross(mnt_a, mnt_b, label):
    bad = 0
    name = f"probe-x-{uuid.uuid4().hex[:8]}"
    pa, pb = os.path.join(mnt_a, name), os.path.join(mnt_b, name)
    # B looks the name up first, as a discovery scan would (negative entry).
    exists(pb)
    first = os.urandom(4096)
    fd = os.open(pa, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    os.write(fd, first)
    t_new = wait_for(lambda: exists(pb))
    report(f"{label}new_file_visible_on_B (stat, after B's negative lookup)", fmt_ms(t_new))
    # Size and bytes B sees while A still holds the file open, no fsync.
    t_first = wait_for(lambda: read_fresh(pb, 4096) == first)
    report(f"{label}unsynced_4KiB_readable_on_B (fresh open, writer open)", fmt_ms(t_first))
    more = os.urandom(1 << 20)
    os.write(fd, more)
    t_app = wait_for(lambda: size_of(pb) == 4096 + len(more))
    report(f"{label}unsynced_append_1MiB_size_on_B (stat)", fmt_ms(t_app))
    t_app_b = wait_for(lambda: read_fresh(pb, 4096 + len(more)) == first + more)
    report(f"{label}unsynced_append_1MiB_bytes_on_B (fresh open)", fmt_ms(t_app_b))
    # fsync without close (the daemon fdatasyncs a segment at seal, keeps the fd).
    more2 = os.urandom(1 << 20)
    os.write(fd, more2)
    t0 = now()
    os.fsync(fd)
    report(f"{label}fsync_1MiB_on_A", "%.0f ms" % ((now() - t0) * 1000.0))
    want = first + more + more2
    t_sync = wait_for(lambda: read_fresh(pb, len(want)) == want)
    report(f"{label}after_fsync_bytes_on_B (fresh open, writer open)", fmt_ms(t_sync))
    # close, then close-to-open on B with a long-lived fd opened earlier too.
    bfd = os.open(pb, os.O_RDONLY)
    more3 = os.urandom(1 << 20)
    os.write(fd, more3)
    os.close(fd)
    want += more3
    t_cto = wait_for(lambda: read_fresh(pb, len(want)) == want)
    report(f"{label}after_close_bytes_on_B (fresh open: close-to-open)", fmt_ms(t_cto))
    t_old = wait_for(lambda: os.pread(bfd, len(more3), len(want) - len(more3)) == more3)
    report(f"{label}after_close_bytes_on_B (fd opened before A's close)", fmt_ms(t_old))
    os.close(bfd)
    got = read_fresh(pb, len(want) + 1)
    if got != want:
        bad += 1
        report(f"{label}final_bytes_on_B", "DIFFER")
    # rename: A writes tmp, fsyncs, renames (how a sealed index appears).
    tmp, final = pa + ".tmp", pa + ".idx"
    exists(pb + ".idx")
    with open(tmp, "wb") as f:
        f.write(b"i" * 8192)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, final)
    t_ren = wait_for(lambda: read_fresh(pb + ".idx", 8192) == b"i" * 8192)
    report(f"{label}renamed_file_readable_on_B", fmt_ms(t_ren))
    # listdir: a new name in a directory B listed before.
    d_a, d_b = os.path.join(mnt_a, name + ".d"), os.path.join(mnt_b, name + ".d")
    os.mkdir(d_a)
    wait_for(lambda: exists(d_b))
    os.listdir(d_b)
    open(os.path.join(d_a, "x"), "wb").close()
    t_ls = wait_for(lambda: "x" in os.listdir(d_b))
    report(f"{label}new_name_in_listdir_on_B", fmt_ms(t_ls))
    os.unlink(os.path.join(d_a, "x"))
    os.rmdir(d_a)
    # unlink on A while B holds an fd: B keeps reading (eviction safety).
    bfd = os.open(pb, os.O_RDONLY)
    os.unlink(pa)
    os.unlink(final)
    t_gone = wait_for(lambda: not exists(pb))
    report(f"{label}unlink_on_A_seen_on_B", fmt_ms(t_gone))
    try:
        got = os.pread(bfd, len(want), 0)
        report(f"{label}read_on_B_of_fd_open_across_unlink",
               "full bytes" if got == want else f"{len(got)} bytes, {'prefix ok' if want.startswith(got) else 'DIFFER'}")
    except OSError as e:
        report(f"{label}read_on_B_of_fd_open_across_unlink", f"error ({e.strerror})")
    os.close(bfd)
    return bad


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    mnt_a = sys.argv[1]
    label = os.environ.get("PROBE_LABEL", "")
    bad = 0
    probe_direct(mnt_a)
    bad += probe_read_after_write(mnt_a)
    if len(sys.argv) == 3:
        bad += probe_cross(mnt_a, sys.argv[2], label)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
