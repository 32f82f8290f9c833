#!/usr/bin/env python3
"""hicached benchmark: hicached vs SGLang's HiCacheFile vs the machine's limits.

Run through scripts/bench/run.sh (`make bench`, `make bench QUICK=1`), which
builds, installs what is missing, brings JuiceFS up and calls this with the
paths. Simulated SGLang ranks are separate processes (forked once, after
SGLang is imported), each with its own real SGLang host pool
(MHATokenToKVPoolHost / MLATokenToKVPoolHost, device cpu, page_first layout).
They call the storage backends exactly as SGLang's cache controller does:

  hicached, hicached-nodc  HiCacheJuiceFS with interface_v1: batch_exists per
                           128-key batch, then batch_get_v1 / batch_set_v1
                           (zero-copy via the pool's get_page_buffer_meta).
  hicachefile              SGLang's HiCacheFile from the wheel through the
                           controller's generic path: get_data_page +
                           batch_set; get_dummy_flat_data_page + batch_get +
                           set_from_flat_data_page.

hicached-nodc is the daemon with --dedupe false --coalesce-reads false.
hicached-shm is hicached with the host pools allocated by SGLang's shm
allocator and registered with the daemon (no copy through the region).
Writes results.json, results.md, results.csv and PNG plots into --out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import hc_testenv  # noqa: E402,F401  (client/python on sys.path, torchvision stub, HICACHE_LIB)

import numpy as np  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
BATCH = 128  # SGLang's STORAGE_BATCH_SIZE
HOT1_ROUNDS = 9  # passes of the one-client hot read (hot-1); the median is its row

# Llama-3-8B at TP 4: 32 layers, 2 KV heads a rank, head dim 128, bf16.
# A page of P tokens is 2*32*2*128*2*P = 32 KiB * P on each rank.
MHA = dict(kind="mha", model="meta-llama/Meta-Llama-3-8B-Instruct", L=32, H=2, D=128, ranks=4)
MHA_TOKENS = {256 * KiB: 8, 1 * MiB: 32, 4 * MiB: 128}
# DeepSeek-V3: 61 layers, kv_lora_rank 512 + rope 64, bf16; P=16 tokens is
# 1,124,352 bytes a page, the same on every rank.
MLA = dict(kind="mla", model="deepseek-ai/DeepSeek-V3", L=61, KV_LORA=512, ROPE=64, P=16, ranks=8)

SYSTEMS = ("hicached", "hicached-shm", "hicachefile", "hicached-nodc")
# hicached-shm: the same daemon, the host pools allocated by SGLang's shm
# allocator ("allocator": "shm") and registered with it: pages move straight
# between storage and the pool, no copy through the shared region. Run for the
# 1 MiB MHA pages and MLA (the targets), not every page size.
SHM_SYSTEM = "hicached-shm"
DAEMON_ARGS = {"hicached": [], "hicached-nodc": ["--dedupe", "false", "--coalesce-reads", "false"],
               "hicached-shm": []}
# On JuiceFS (FUSE) the daemon runs as the shipped systemd/config.json sets it
# up for a JuiceFS mount: blocking preadv/pwritev from 4 I/O threads
# (docs/OPERATIONS.md, Sizing).
STORE_DAEMON_ARGS = {"juicefs": ["--io-engine", "threads", "--io-threads", "4"]}


def log(*a):
    print("[bench %s]" % time.strftime("%H:%M:%S"), *a, flush=True)


def pct(xs, q):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# --------------------------------------------------------------------------
# rank worker (a forked process)


def page_keys(tag, n):
    return [hashlib.sha256(f"{tag}-{i}".encode()).hexdigest() for i in range(n)]


class Rank:
    def __init__(self, rank):
        self.rank = rank
        self.pool = None
        self.pool_key = None
        self.backend = None

    # A host pool holding 2*pages pages: [0, n) the backup source, [n, 2n) the
    # prefetch target. Built with a tiny device pool (only its geometry is used).
    def h_pool(self, kind, P, pages, seed, L, H=0, D=0, KV_LORA=0, ROPE=0, allocator="default", **_):
        import torch

        key = (kind, P, pages, L, H, D, allocator)
        if self.pool_key != key:
            self.pool = None
            import gc

            gc.collect()
            tokens = 2 * pages * P
            if kind == "mha":
                from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool
                from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost

                dev = MHATokenToKVPool(
                    2 * P, P, torch.bfloat16, H, D, L, "cpu", False, start_layer=0, end_layer=L
                )
                pool = MHATokenToKVPoolHost(
                    dev.get_device_pool_infos()[0].buffer_info, 1.0, 0, P, "page_first",
                    pin_memory=False, device="cpu", device_capacity_tokens=tokens,
                    start_layer=0, end_layer=L, allocator_type=allocator,
                )
            else:
                from sglang.srt.mem_cache.memory_pool import MLATokenToKVPool
                from sglang.srt.mem_cache.pool_host.mla import MLATokenToKVPoolHost

                dev = MLATokenToKVPool(
                    2 * P, P, torch.bfloat16, KV_LORA, ROPE, L, "cpu", False, start_layer=0, end_layer=L
                )
                pool = MLATokenToKVPoolHost(
                    dev.get_device_pool_infos()[0].buffer_info, 1.0, 0, P, "page_first",
                    pin_memory=False, device="cpu", device_capacity_tokens=tokens,
                    start_layer=0, end_layer=L, target_layer_num=L, allocator_type=allocator,
                )
            del dev
            self.src = pool.alloc(pages * P)
            self.dst = pool.alloc(pages * P)
            self.pool, self.pool_key = pool, key
        self.kind, self.P, self.pages = kind, P, pages
        # fill the whole buffer with random bytes (in chunks), then zero dst
        flat = self.pool.kv_buffer.view(torch.uint8).reshape(-1).numpy().view(np.uint64)
        rng = np.random.default_rng(seed)
        step = 8 * MiB
        for i in range(0, flat.size, step):
            j = min(flat.size, i + step)
            flat[i:j] = rng.integers(0, 2**63, size=j - i, dtype=np.uint64)
        self.zero_dst()
        return {"page_bytes": int(sum(self.pool.get_page_buffer_meta(self.src[:P])[1]))}

    def _tok_view(self, idx):
        import torch

        s, e = int(idx[0]), int(idx[-1]) + 1
        kv = self.pool.kv_buffer.view(torch.int16)  # bits, not bf16 values (NaN != NaN)
        return kv[:, s:e] if self.kind == "mha" else kv[s:e]

    def zero_dst(self):
        self._tok_view(self.dst).zero_()

    def h_zero_dst(self):
        self.zero_dst()

    def h_backend(self, system, world, sock=None, file_dir=None, model="m", tag="t", **_):
        from sglang.srt.mem_cache.hicache_storage import HiCacheFile, HiCacheStorageConfig

        self.h_close()
        extra = {"socket_path": sock, "interface_v1": 1} if system != "hicachefile" else {
            "file_storage_path": file_dir}
        cfg = HiCacheStorageConfig(
            tp_rank=self.rank, tp_size=world, pp_rank=0, pp_size=1, attn_cp_rank=0,
            attn_cp_size=1, is_mla_model=(self.kind == "mla"), enable_storage_metrics=False,
            is_page_first_layout=True, model_name=model, extra_config=extra,
        )
        self.writer = self.kind == "mha" or self.rank == 0
        self.system = system
        if system == "hicachefile":
            os.makedirs(file_dir, exist_ok=True)
            b = HiCacheFile(cfg)
        else:
            from juicefs_hicache_storage import HiCacheJuiceFS

            b = HiCacheJuiceFS(cfg, {})
        b.register_mem_pool_host(self.pool)
        b.batch_exists(["warmup"])  # connects (hicached); untimed
        self.backend = b
        self.keys = page_keys(tag, self.pages)
        return {}

    def h_close(self):
        if self.backend is not None and hasattr(self.backend, "close"):
            self.backend.close()
        self.backend = None
        return {}

    def h_drop_pool(self):
        self.h_close()
        self.pool = self.pool_key = None
        import gc

        gc.collect()
        return {}

    # The controller's calls (cache_controller.py: _page_set_zero_copy /
    # _generic_page_set, _page_get_zero_copy / _generic_page_get).
    def _set(self, keys, idx):
        b, P = self.backend, self.P
        if self.system == "hicachefile":
            data = [self.pool.get_data_page(idx[i * P]) for i in range(len(keys))]
            return b.batch_set(keys, data)
        return all(b.batch_set_v1(keys, idx))

    def _get(self, keys, idx):
        b, P, pool = self.backend, self.P, self.pool
        if self.system == "hicachefile":
            dummy = [pool.get_dummy_flat_data_page() for _ in keys]
            data = b.batch_get(keys, dummy)
            n = 0
            for i in range(len(keys)):
                if data[i] is None:
                    break
                pool.set_from_flat_data_page(idx[i * P], data[i])
                n += 1
            return n
        n = 0
        for ok in b.batch_get_v1(keys, idx):
            if not ok:
                break
            n += 1
        return n

    def h_run(self, phase, start_at, rounds=1):
        P, n = self.P, self.pages
        batches = [(s, min(n, s + BATCH)) for s in range(0, n, BATCH)]
        io0 = proc_io()
        while time.monotonic() < start_at:
            time.sleep(0.0005)
        t0 = time.monotonic()
        lats, pages, hits = [], 0, 0
        if phase == "backup":
            if self.writer:
                for s, e in batches:
                    tb = time.monotonic()
                    ok = self._set(self.keys[s:e], self.src[s * P : e * P])
                    lats.append(time.monotonic() - tb)
                    pages += (e - s) if ok else 0
        elif phase in ("cold", "hot"):
            for s, e in batches:  # _storage_hit_query: batch_exists per batch
                hits += self.backend.batch_exists(self.keys[s:e])
            for s, e in batches:
                tb = time.monotonic()
                pages += self._get(self.keys[s:e], self.dst[s * P : e * P])
                lats.append(time.monotonic() - tb)
        elif phase == "exists":
            for _ in range(rounds):
                for s, e in batches:
                    tb = time.monotonic()
                    hits += self.backend.batch_exists(self.keys[s:e])
                    lats.append(time.monotonic() - tb)
        t1 = time.monotonic()
        io1 = proc_io()
        return {"t0": t0, "t1": t1, "lats": lats, "pages": pages, "hits": hits,
                "read_bytes": io1[0] - io0[0], "write_bytes": io1[1] - io0[1]}

    def h_verify(self):
        """After a prefetch phase, once every rank is done (a rank comparing
        while others still read would take CPU from them): bit for bit."""
        import torch

        return {"verified": bool(torch.equal(self._tok_view(self.src), self._tok_view(self.dst)))}

    def h_memcpy(self):
        """One core's memcpy as hot-1's yardstick, in this process."""
        g = memcpy_gbps()
        return {"median_gbps": statistics.median(g), "best_gbps": max(g)}

    def h_ping(self, rounds):
        """Round trips of the daemon's PING through hicache.Client (Python,
        ctypes, libhicache): the daemon's floor with no work."""
        c = self.backend._get_client()
        lats = []
        for _ in range(rounds):
            tb = time.monotonic()
            c.ping()
            lats.append(time.monotonic() - tb)
        return {"lats": lats}

    def h_pyrtt(self, path, req, rep, rounds):
        """Bare Unix-socket round trips from Python to the C echo server
        (sockrt), frames of the size of a 128-key exists request/answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        msg = struct.pack("<II", req, rep) + b"k" * req
        lats = []
        for _ in range(rounds):
            tb = time.monotonic()
            s.sendall(msg)
            need = 4 + rep
            while need:
                need -= len(s.recv(need))
            lats.append(time.monotonic() - tb)
        s.close()
        return {"lats": lats}


def memcpy_gbps(n=256 * MiB, rounds=5):
    """One core's memcpy: numpy copyto of n bytes (target prefaulted), GB/s of
    each of rounds copies."""
    src = np.random.default_rng(1).integers(0, 255, n, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    g = []
    for _ in range(rounds):
        t = time.perf_counter()
        np.copyto(dst, src)
        g.append(n / (time.perf_counter() - t) / 1e9)
    return g


def proc_io():
    r = w = 0
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                r = int(line.split()[1])
            elif line.startswith("write_bytes:"):
                w = int(line.split()[1])
    return r, w


def worker_main(conn, rank):
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    r = Rank(rank)
    while True:
        try:
            cmd, kw = conn.recv()
        except EOFError:
            return
        if cmd == "quit":
            r.h_close()
            return
        try:
            conn.send(("ok", getattr(r, "h_" + cmd)(**kw)))
        except Exception:
            conn.send(("err", traceback.format_exc()))


class Workers:
    def __init__(self, n):
        ctx = mp.get_context("fork")
        self.conns, self.procs = [], []
        for i in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(b, i), daemon=True)
            p.start()
            self.conns.append(a)
            self.procs.append(p)
        self.pids = {p.pid for p in self.procs}

    def call(self, ranks, cmd, per_rank=None, **kw):
        for i in ranks:
            args = dict(kw)
            if per_rank:
                args.update(per_rank(i))
            self.conns[i].send((cmd, args))
        out, err = [], None
        for i in ranks:  # every answer is read, so the pipes stay in step
            st, res = self.conns[i].recv()
            if st != "ok" and err is None:
                err = f"rank {i} {cmd} failed:\n{res}"
            out.append(res)
        if err:
            raise RuntimeError(err)
        return out

    def close(self):
        for c in self.conns:
            try:
                c.send(("quit", {}))
            except Exception:
                pass
        for p in self.procs:
            p.join(timeout=10)


# --------------------------------------------------------------------------
# machine, stores, daemon


HZ = os.sysconf("SC_CLK_TCK")
# processes whose CPU time a phase reports, by name (comm); the ranks by pid
CPU_GROUPS = {"hicached": "daemon", "juicefs": "juicefs", "redis-server": "redis",
              "netdelay": "netdelay"}


# The cores this run may use (run.sh --cpus pins it and everything it starts
# to fewer than the machine has): "busy" and "idle" are theirs.
CPUS = sorted(os.sched_getaffinity(0))


def cpu_snapshot(rank_pids=()):
    """CPU seconds used so far: the idle time of the run's cores (CPUS;
    /proc/stat: idle and iowait, in 1/HZ s), the time the hypervisor took from
    them (steal) and, in "procs", each process of a group of CPU_GROUPS,
    "ranks" (rank_pids) and "kernel" (kernel threads: write-back, softirq
    daemons; on any core) with its group and the scheduler's run time of its
    live threads (/proc/PID/task/*/schedstat, in ns: precise even for a 20 ms
    hot pass), by (pid, start time), thread by thread."""
    v = [0] * 8  # user nice system idle iowait irq softirq steal
    with open("/proc/stat") as f:
        for line in f:
            w = line.split()
            if w[0].startswith("cpu") and w[0][3:].isdigit() and int(w[0][3:]) in CPUS:
                v = [a + int(b) for a, b in zip(v, w[1:9])]
    out = {"idle": (v[3] + v[4]) / HZ, "softirq": (v[5] + v[6]) / HZ, "steal": v[7] / HZ,
           "procs": {}}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            pid = int(d)
            comm = st[st.index("(") + 1 : st.rindex(")")]
            rest = st[st.rindex(")") + 2 :].split()
            ppid, start = rest[1], int(rest[19])
            g = "ranks" if pid in rank_pids else CPU_GROUPS.get(comm)
            if g is None and (pid == 2 or ppid == "2"):
                g = "kernel"
            if g is None:
                continue
            tasks = os.listdir(f"/proc/{d}/task")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        threads = {}
        for t in tasks:
            try:
                with open(f"/proc/{d}/task/{t}/schedstat") as f:
                    threads[t] = int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                continue  # a thread gone meanwhile
        out["procs"][(pid, start)] = (g, threads)
    out["t"] = time.monotonic()
    return out


def cpu_delta(c0, c1, ncpu=len(CPUS)):
    """CPU seconds between two snapshots: each group's, from the processes
    alive at the second, thread by thread (one started meanwhile: all of its
    time; a process or thread that ended meanwhile is not counted, its time
    in the window falls in "other"), "window"
    the wall seconds between them, "busy" the run's cores' (their number
    times the window, less idle; steal included) and "other"
    what it used beyond the groups and steal (the bench process, interrupts,
    everything else)."""
    d = {k: round(c1[k] - c0[k], 4) for k in ("idle", "softirq", "steal")}
    groups = {}
    for key, (g, threads) in c1["procs"].items():
        before = c0["procs"].get(key, (g, {}))[1]
        secs = sum(t - before.get(tid, 0.0) for tid, t in threads.items())
        groups[g] = groups.get(g, 0.0) + secs
    for g in sorted(set(groups) | {g for g, _ in c0["procs"].values()}):
        d[g] = round(groups.get(g, 0.0), 4)
    d["window"] = round(c1["t"] - c0["t"], 4)
    d["busy"] = round(ncpu * d["window"] - d["idle"], 4)
    d["other"] = round(d["busy"] - d["steal"] - sum(groups.values()), 4)
    return d


def median_row(rows):
    """The row of the median pass of a repeated phase (by GB/s; the upper one
    of an even count), with every pass's GB/s in "rounds_gbps" and "verified"
    and "all_hit" true only if they were in every pass."""
    row = dict(sorted(rows, key=lambda r: r["gbps"])[len(rows) // 2])
    row["rounds_gbps"] = [round(r["gbps"], 3) for r in rows]
    row["verified"] = all(r["verified"] for r in rows)
    if "all_hit" in row:
        row["all_hit"] = all(r["all_hit"] for r in rows)
    return row


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=check, text=True,
                          capture_output=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def block_dev_of(path):
    src = sh(["findmnt", "-n", "-o", "SOURCE", "--target", str(path)]).stdout.strip()
    name = os.path.basename(src.split("[")[0])
    p = Path("/sys/class/block") / name / "stat"
    return p if p.exists() else None


class Dev:
    """Sectors read and written on the root block device (whole machine)."""

    def __init__(self, path):
        self.stat = block_dev_of(path)

    def read(self):
        if not self.stat:
            return (0, 0)
        f = self.stat.read_text().split()
        return int(f[2]) * 512, int(f[6]) * 512


def tree_usage(path):
    files = size = 0
    for dp, _, fns in os.walk(path):
        for fn in fns:
            try:
                size += os.lstat(os.path.join(dp, fn)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return files, size


class Store:
    def __init__(self, name, path, jfs=None):
        self.name, self.path, self.jfs = name, Path(path), jfs
        # JuiceFS has no block device: count the disk under its bucket and cache
        self.dev_path = Path(jfs.state) if jfs else self.path

    def work(self):
        """The volume's work so far (emulated deployments), else {}."""
        return self.jfs.work() if self.jfs and hasattr(self.jfs, "work") else {}

    def make_cold(self):
        """Nothing of the store left in memory: JuiceFS unmounted, its cache
        dir emptied and mounted again; then sync and drop the page cache."""
        if self.jfs:
            self.jfs.remount_clear()
        drop_caches()


class JuiceFS:
    def __init__(self, state, port, mnt, cache):
        self.state, self.port, self.mnt, self.cache = state, port, mnt, cache

    def up(self):
        r = sh(["bash", str(ROOT / "scripts/juicefs-up.sh"), "--state-dir", self.state,
                "--port", str(self.port), "--mount", self.mnt, "--cache-dir", self.cache], check=False)
        if r.returncode != 0:
            raise RuntimeError("juicefs-up failed:\n" + r.stdout + r.stderr)

    def down(self, keep_redis=True):
        args = ["bash", str(ROOT / "scripts/juicefs-down.sh"), "--state-dir", self.state,
                "--mount", self.mnt]
        sh(args + (["--keep-redis"] if keep_redis else []), check=False)

    def remount_clear(self):
        self.down(keep_redis=True)
        shutil.rmtree(self.cache, ignore_errors=True)
        self.up()


class Emulated:
    """A JuiceFS volume whose metadata engine and object store sit behind
    emulated network round trips (scripts/bench/emulate.sh)."""

    def __init__(self, state, mnt, meta_us, obj_us, cache_mib, tag):
        self.state, self.mnt = state, mnt
        self.up_args = ["--meta-rtt-us", str(meta_us), "--obj-rtt-us", str(obj_us),
                        "--cache-size", str(cache_mib), "--tag", tag]

    def _emu(self, *a):
        r = sh(["bash", str(ROOT / "scripts/bench/emulate.sh"), *a, "--state", self.state],
               check=False)
        if r.returncode != 0:
            raise RuntimeError(f"emulate.sh {a[0]} failed:\n" + r.stdout + r.stderr)
        return r.stdout

    def up(self):
        self._emu("up", "--mount", self.mnt, *self.up_args)

    def down(self):
        self._emu("down")

    def remount_clear(self):
        self._emu("remount")

    def work(self):
        w = json.loads(self._emu("work"))
        return {k: v for k, v in w.items() if isinstance(v, (int, float))}


class Daemon:
    def __init__(self, build, mount, sock, logf, args):
        self.build, self.mount, self.sock, self.logf, self.args = build, mount, sock, logf, args
        self.proc = None

    def start(self):
        if self.ctl("ping").returncode == 0:
            raise RuntimeError(f"a daemon already answers on {self.sock}: stop it first")
        cmd = [str(self.build / "hicached"), "--mount-point", str(self.mount), "--root-dir",
               "hicache", "--node-id", "bench", "--socket-path", self.sock, "--foreground"] + self.args
        self.proc = subprocess.Popen(cmd, stdout=open(self.logf, "a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hicached exited {self.proc.returncode}; see {self.logf}")
            if self.ctl("ping").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("hicached did not answer within 60 s")

    def ctl(self, *a):
        return sh([str(self.build / "hicachectl"), "--socket", self.sock, *a], check=False)

    def stats(self):
        r = self.ctl("stats", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else {}

    def rss(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    out[k] = int(line.split()[1]) * 1024
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, a):
        self.a = a
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in list(self.out.glob("hicached-*.log")) + list(self.out.glob("*.png")):
            old.unlink()
        self.build = Path(a.build).resolve()
        # the client library of the same build as the daemon (hc_testenv set
        # the default build's; it is loaded on first use, here and in ranks)
        os.environ["HICACHE_LIB"] = str(self.build / "libhicache.so")
        self.work = Path(a.work)
        self.rows = []
        self.limits = {}
        self.fio_beside = {}  # store name -> one cold fio read of its kept files (fio(keep=True))
        self.extra = {}
        self.t_start = time.monotonic()

    def row(self, kw):
        self.rows.append(kw)
        log("  {store:8} {system:14} {cfg:10} {phase:7} {gbps:7.3f} GB/s {pps:8.0f} p/s "
            "p50 {p50_ms:8.2f} ms p99 {p99_ms:8.2f} ms".format(**kw))

    def hot1(self, W, common):
        """hot-1: rank 0 alone, HOT1_ROUNDS passes over its pages (the median
        pass is the row, every pass in "rounds", CPU of all passes in cpu_*
        over cpu_bytes, mono_t0/t1 the first's start and the last's end, each
        pass's in rounds_mono), then one core's memcpy in the
        same worker process, median of 5 (the figure hot-1 is compared with:
        measured next to it, the same way, in the process that copies)."""
        rows = []
        for _ in range(HOT1_ROUNDS):
            W.call([0], "zero_dst")
            rows.append(self.phase(W, [0], "hot", label="hot-1", record=False, **common))
        row = median_row(rows)
        # CPU of all passes together (one pass is ~20-30 ms), over all their bytes
        for k in [k for k in row if k.startswith("cpu_")]:
            row[k] = round(sum(r[k] for r in rows), 4)
        row["cpu_bytes"] = sum(r["bytes"] for r in rows)
        row["mono_t0"], row["mono_t1"] = rows[0]["mono_t0"], rows[-1]["mono_t1"]
        row["rounds_mono"] = [(r["mono_t0"], r["mono_t1"]) for r in rows]
        row["memcpy_gbps"] = W.call([0], "memcpy")[0]["median_gbps"]
        self.row(row)
        log("  hot-1 passes %s GB/s; memcpy in rank 0 (median of 5) %.2f GB/s: %.0f%%" % (
            ", ".join("%.2f" % g for g in row["rounds_gbps"]), row["memcpy_gbps"],
            100 * row["gbps"] / row["memcpy_gbps"]))

    def phase(self, W, ranks, name, store, system, cfg, dev, daemon=None, data_dir=None,
              store_obj=None, label=None, record=True, **kw):
        s0 = daemon.stats() if daemon else {}
        w0 = store_obj.work() if store_obj else {}
        d0 = dev.read()
        f0 = (0, 0) if (name == "backup" and data_dir) else None  # data_dir starts empty
        start_at = time.monotonic() + 0.1
        # CPU from the ranks' start (not the 0.1 s they wait for it) to their end
        c0 = []
        snap = threading.Timer(max(0.0, start_at - time.monotonic() - 0.003),
                               lambda: c0.append(cpu_snapshot(W.pids)))
        snap.start()
        res = W.call(ranks, "run", phase=name, start_at=start_at, **kw)
        snap.join()
        c1 = cpu_snapshot(W.pids)
        cpu = cpu_delta(c0[0], c1)
        if name in ("cold", "hot"):
            for r, v in zip(res, W.call(ranks, "verify")):
                r.update(v)
        if name == "backup":
            os.sync()  # untimed: the block-device count includes the write-back
        d1 = dev.read()
        s1 = daemon.stats() if daemon else {}
        w1 = store_obj.work() if store_obj else {}
        act = [r for r in res if r["lats"]]
        wall = max(r["t1"] for r in act) - min(r["t0"] for r in act)
        pb = self.page_bytes
        pages = sum(r["pages"] for r in act)
        is_exists = name.startswith("exists")
        if is_exists:
            pages = sum(len(r["lats"]) for r in act) * min(BATCH, self.pages)
        nbytes = pages * pb if not is_exists else 0
        lats = [x for r in act for x in r["lats"]]
        per_client = [r["pages"] * pb / (r["t1"] - r["t0"]) / 1e9 for r in act] if not is_exists else []
        row = dict(
            store=store, system=system, cfg=cfg, phase=label or name, ranks=len(act), page_bytes=pb,
            pages=pages, bytes=nbytes, seconds=wall,
            gbps=nbytes / wall / 1e9 if wall > 0 else 0.0, pps=pages / wall if wall > 0 else 0.0,
            client_gbps=statistics.mean(per_client) if per_client else 0.0,
            p50_ms=pct(lats, 0.5) * 1e3, p99_ms=pct(lats, 0.99) * 1e3,
            dev_read=d1[0] - d0[0], dev_written=d1[1] - d0[1],
            proc_read=sum(r["read_bytes"] for r in res),
            verified=all(r.get("verified", True) for r in act),
        )
        for k, v in cpu.items():
            row["cpu_" + k] = v
        row["mono_t0"], row["mono_t1"] = c0[0]["t"], c1["t"]  # CLOCK_MONOTONIC, to match traces
        if name in ("cold", "hot"):
            row["all_hit"] = all(r["hits"] == self.pages for r in act)
        for k in ("bytes_written", "bytes_read_storage", "dedup_hits", "coalesced_reads", "bytes_served",
                  "pool_pages", "loop_busy_microseconds", "loop_stalls"):
            if s0 or s1:
                row["hc_" + k] = s1.get(k, 0) - s0.get(k, 0)
        if s0 or s1:
            # the daemon's own time for the phase's requests, receipt to reply (its
            # histograms), and the worst its loop thread's tick ran late so far
            row["hc_loop_stall_max_microseconds"] = s1.get("loop_stall_max_microseconds", 0)
            op = {"backup": "set", "cold": "get", "hot": "get"}.get(name, "exists")
            l0, l1 = (s.get("latency", {}).get(op, {}) for s in (s0, s1))
            n = l1.get("count", 0) - l0.get("count", 0)
            if n > 0:
                row["hc_daemon_us_mean"] = (l1.get("sum_us", 0) - l0.get("sum_us", 0)) / n
        for k in w1:
            row["jfs_" + k] = w1[k] - w0.get(k, 0)
        if f0 is not None:
            f1 = tree_usage(data_dir)
            row["files_created"] = f1[0] - f0[0]
            row["store_growth"] = f1[1] - f0[1]
        if not row["verified"]:
            log(f"  WARNING: {system} {cfg} {name}: pages read back differ from those written")
        if record:
            self.row(row)
        return row

    def run_system(self, W, store, geo, system, page_label):
        a = self.a
        kind = geo["kind"]
        ranks = list(range(geo["ranks"]))
        cfg = f"{kind}-{page_label}"
        tag = f"{kind}-{page_label}-{store.name}-{system}-{os.getpid()}"
        sock = str(self.work / "run" / f"{system}.sock")
        (self.work / "run").mkdir(parents=True, exist_ok=True)
        daemon = None
        if system == "hicachefile":
            data_dir = store.path / "bench-hicachefile"
        else:
            data_dir = store.path / "hicache"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        # Every system starts with nothing dirty in the page cache. Before the
        # first one on an emulated deployment, fio's last read of its kept files
        # left 512 MiB of downloaded blocks dirty in the JuiceFS client's cache
        # directory; that system's backup ran 40% slower beside them (0.25
        # against 0.43 GB/s in one run, with three times the Redis CPU and twice
        # the daemon's; run E20's region path at 0.33), the later ones, which
        # start after exists-cold's drop, did not.
        drop_caches()
        dev = Dev(store.dev_path)
        logf = self.out / f"hicached-{store.name}-{system}.log"
        if system != "hicachefile":
            daemon = Daemon(self.build, store.path, sock, logf,
                            DAEMON_ARGS[system] + STORE_DAEMON_ARGS.get("juicefs" if store.jfs else store.name, [])
                            + os.environ.get("BENCH_DAEMON_ARGS", "").split())
            daemon.start()
        bk = dict(system=system, world=len(ranks), sock=sock, file_dir=str(data_dir),
                  model=geo["model"], tag=tag)
        try:
            W.call(ranks, "backend", **bk)
            common = dict(store=store.name, system=system, cfg=cfg, dev=dev, daemon=daemon,
                          store_obj=store)
            self.phase(W, ranks, "backup", data_dir=data_dir, **common)
            # cold: daemon stopped (seals its segment), JuiceFS remounted with an
            # empty cache, page cache dropped, daemon started again (empty memory);
            # on an emulated deployment, MHA, --cold-rounds times (the median's row)
            rounds = a.cold_rounds if kind == "mha" and isinstance(store.jfs, Emulated) else 1
            colds, beside = [], []
            fio_read = self.fio_beside.get(store.name) if rounds > 1 and daemon and page_label == "1M" else None
            for _ in range(rounds):
                W.call(ranks, "close")
                if daemon:
                    daemon.stop()
                if fio_read:  # the mount's limit right before the pass (the machine drifts)
                    beside.append(fio_read()[0])
                store.make_cold()
                if daemon:
                    daemon.start()
                W.call(ranks, "backend", **bk)
                W.call(ranks, "zero_dst")
                colds.append(self.phase(W, ranks, "cold", record=rounds == 1, **common))
            if rounds > 1:
                row = median_row(colds)
                if beside:
                    row["fio_beside_rounds_gbps"] = [round(g, 3) for g in beside]
                    row["fio_beside_gbps"] = sorted(beside)[len(beside) // 2]  # as median_row
                self.row(row)
                log("  cold passes %s GB/s" % ", ".join("%.3f" % r["gbps"] for r in colds)
                    + ("; fio's read before each: %s" % ", ".join("%.3f" % g for g in beside) if beside else ""))
            W.call(ranks, "zero_dst")
            self.phase(W, ranks, "hot", **common)
            if kind == "mha":
                self.hot1(W, common)
            self.phase(W, ranks, "exists", rounds=a.exists_rounds, **common)
            # exists-cold: the kernel's dentries and inodes dropped and JuiceFS's
            # attribute and entry caches (1 s) expired: one batch a rank
            drop_caches()
            time.sleep(1.2)
            self.phase(W, ranks, "exists", rounds=1, label="exists-cold", **common)
            if daemon and kind == "mha" and page_label == "1M" and store.name == "local" \
                    and system == "hicached":
                self.latency_floor(W, daemon)
        finally:
            try:
                W.call(ranks, "close")
            finally:
                if daemon:
                    daemon.stop()
                shutil.rmtree(data_dir, ignore_errors=True)

    def latency_floor(self, W, daemon):
        """Target 5: one client, no other load from the benchmark: batch_exists
        of 128 keys through HiCacheJuiceFS vs bare round trips (Python and C)."""
        n = self.a.rtt_rounds
        e = W.call([0], "run", start_at=time.monotonic(), phase="exists", rounds=max(1, n // 2))[0]
        ping = W.call([0], "ping", rounds=n)[0]
        req, rep = 9216, 1024
        py = W.call([0], "pyrtt", path=self.rtt_sock, req=req, rep=rep, rounds=n)[0]
        c = json.loads(sh([str(self.sockrt), "client", self.rtt_sock, str(req), str(rep), str(n)]).stdout)
        c1 = json.loads(sh([str(self.sockrt), "client", self.rtt_sock, "1", "1", str(n)]).stdout)
        f = lambda xs: {"p50_us": pct(xs, 0.5) * 1e6, "p99_us": pct(xs, 0.99) * 1e6, "n": len(xs)}  # noqa: E731
        self.limits["exists_1client"] = f(e["lats"])
        self.limits["ping_python"] = f(ping["lats"])
        self.limits["rtt_python"] = dict(f(py["lats"]), req=req, rep=rep)
        self.limits["rtt_c"] = c
        self.limits["rtt_c_1byte"] = c1
        log("  exists 1 client p50/p99 %.1f/%.1f us; python RTT %.1f/%.1f us; C RTT %.1f/%.1f us; "
            "ping %.1f/%.1f us" % (self.limits["exists_1client"]["p50_us"], self.limits["exists_1client"]["p99_us"],
                                   self.limits["rtt_python"]["p50_us"], self.limits["rtt_python"]["p99_us"],
                                   c["p50_us"], c["p99_us"], self.limits["ping_python"]["p50_us"],
                                   self.limits["ping_python"]["p99_us"]))

    def fio(self, store, bs, per_job, jobs, rounds=1, keep=False):
        """fio's write, then its cold read rounds times (the median's figures),
        jobs jobs of psync at bs: the mount's own limit. keep: its files stay
        (in a directory of their own, which fio at another block size leaves
        alone), and self.fio_beside[store.name] reads them cold once more;
        fio_drop removes them."""
        d = store.path / ("bench-fio-keep" if keep else "bench-fio")
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        base = ["fio", "--name=seq", f"--directory={d}", f"--bs={bs}", f"--size={per_job}",
                f"--numjobs={jobs}", "--ioengine=psync", "--group_reporting",
                "--output-format=json"]

        def run(rw):
            """fio's JSON and the CPU seconds of its run (fio's own: its
            children's rusage; it is this process's only child meanwhile)."""
            c0, u0 = cpu_snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
            out = json.loads(sh(base + ["--rw=" + rw]).stdout)
            c1, u1 = cpu_snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
            c = cpu_delta(c0, c1)
            c["fio"] = round(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime, 3)
            c["other"] = round(c["other"] - c["fio"], 3)
            return out, c

        def read():
            store.make_cold()
            r, rcpu = run("read")
            return r["jobs"][0]["read"]["bw_bytes"] / 1e9, rcpu

        w, wcpu = run("write")
        reads = [read() for _ in range(rounds)]
        if keep:
            self.fio_beside[store.name] = read
        else:
            shutil.rmtree(d, ignore_errors=True)
        wb = w["jobs"][0]["write"]["bw_bytes"] / 1e9
        rb, rcpu = sorted(reads, key=lambda x: x[0])[len(reads) // 2]
        log(f"  fio {store.name} bs={bs} {jobs}x{per_job}: write {wb:.3f} GB/s, cold read {rb:.3f} GB/s"
            + (" (median of %s)" % ", ".join("%.3f" % x[0] for x in reads) if rounds > 1 else ""))
        return {"write_gbps": wb, "read_gbps": rb, "bs": bs, "jobs": jobs, "size_per_job": per_job,
                "write_cpu": wcpu, "read_cpu": rcpu, "read_rounds_gbps": [round(x[0], 3) for x in reads]}

    def fio_drop(self, store):
        """The files fio(keep=True) left, removed."""
        self.fio_beside.pop(store.name, None)
        shutil.rmtree(store.path / "bench-fio-keep", ignore_errors=True)

    def memcpy(self):
        best = max(memcpy_gbps())
        log(f"  memcpy one core (numpy copyto 256 MiB, best of 5): {best:.2f} GB/s")
        return best

    def rss(self, store):
        """Target 6: daemon RSS with N tiny pages indexed."""
        n = self.a.rss_pages
        d = store.path / "bench-rss"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        sock = str(self.work / "run" / "rss.sock")
        daemon = Daemon(self.build, d, sock, self.out / "hicached-rss.log", [])
        daemon.start()
        try:
            before = daemon.rss()
            r = sh([str(self.rssload), sock, "rss", str(n), "16"])
            load = json.loads(r.stdout)
            st = daemon.stats()
            after = daemon.rss()
        finally:
            daemon.stop()
            shutil.rmtree(d, ignore_errors=True)
        res = {"pages": n, "indexed": st.get("pages"), "load_s": load["seconds"], "before": before,
               "after": after,
               "rss_per_page": after["VmRSS"] / n,
               "delta_per_page": (after["VmRSS"] - before["VmRSS"]) / n,
               "anon_per_page": after["RssAnon"] / n}
        log("  RSS with %d pages: %.1f MiB, %.1f bytes/page (growth %.1f B/page, anon %.1f B/page)"
            % (n, after["VmRSS"] / MiB, res["rss_per_page"], res["delta_per_page"], res["anon_per_page"]))
        return res

    def run(self):
        a = self.a
        self.sockrt, self.rssload = Path(a.sockrt), Path(a.rssload)
        self.rtt_sock = str(self.work / "run" / "rtt.sock")
        (self.work / "run").mkdir(parents=True, exist_ok=True)
        rtt_srv = subprocess.Popen([str(self.sockrt), "serve", self.rtt_sock])
        stores = [Store("local", a.local)]
        if a.jfs_mount:
            stores.append(Store("juicefs", a.jfs_mount,
                                JuiceFS(a.jfs_state, a.jfs_port, a.jfs_mount, a.jfs_cache)))
        emulated = []
        for spec in a.emulate or []:
            name, meta_us, obj_us, cache = spec.split(":")
            st = Path(a.work) / "emulate" / name
            emu = Emulated(str(st), str(st / "mnt"), int(meta_us), int(obj_us), int(cache),
                           "hcb" + str(len(emulated)))
            emulated.append((name, emu))
        page_sizes = [1 * MiB] if a.quick else [256 * KiB, 1 * MiB, 4 * MiB]
        label = {256 * KiB: "256K", 1 * MiB: "1M", 4 * MiB: "4M"}
        W = Workers(max(MHA["ranks"], MLA["ranks"]))
        try:
            log("limits")
            self.limits["memcpy_gbps"] = self.memcpy()
            self.limits["fio"] = {}
            for st in stores:
                if a.stores and st.name not in a.stores:
                    continue
                for ps in page_sizes:
                    per_job = self.pages_for(ps) * ps
                    self.limits["fio"][f"{st.name}-{label[ps]}"] = self.fio(st, ps, per_job, MHA["ranks"])
            # Each emulated deployment is up only for its own turn, after the
            # other stores: its client uploads and compacts in the background,
            # which would slow the other stores' figures.
            for st in stores + [Store(name, emu.mnt, emu) for name, emu in emulated]:
                if a.stores and st.name not in a.stores:
                    continue
                if isinstance(st.jfs, Emulated):
                    log(f"emulated deployment {st.name}: {' '.join(st.jfs.up_args)}")
                    st.jfs.up()
                    for ps in page_sizes:
                        per_job = self.pages_for(ps) * ps
                        # fio's files kept (1 MiB pages only) for a read of them
                        # beside each cold pass of hicached (run_system)
                        self.limits["fio"][f"{st.name}-{label[ps]}"] = self.fio(
                            st, ps, per_job, MHA["ranks"], a.cold_rounds,
                            keep=ps == 1 * MiB and a.cold_rounds > 1)
                for ps in page_sizes:
                    self.pages = self.pages_for(ps)
                    P = MHA_TOKENS[ps]
                    ranks = list(range(MHA["ranks"]))
                    log(f"{st.name}: MHA {MHA['ranks']} ranks, {label[ps]} pages, {self.pages} pages a rank")
                    mha_pool = dict(per_rank=lambda i: {"seed": 1000 * P + i}, kind="mha", P=P,
                                    pages=self.pages, L=MHA["L"], H=MHA["H"], D=MHA["D"])
                    res = W.call(ranks, "pool", **mha_pool)
                    self.page_bytes = res[0]["page_bytes"]
                    for system in a.systems:
                        if system == SHM_SYSTEM:
                            if ps != 1 * MiB:
                                continue
                            W.call(ranks, "pool", allocator="shm", **mha_pool)
                        self.run_system(W, st, MHA, system, label[ps])
                        if system == SHM_SYSTEM:
                            W.call(ranks, "pool", **mha_pool)
                W.call(list(range(MHA["ranks"])), "drop_pool")
                self.fio_drop(st)
                if a.no_mla:
                    if isinstance(st.jfs, Emulated):
                        st.jfs.down()
                    continue
                self.pages = a.mla_pages
                log(f"{st.name}: MLA {MLA['ranks']} ranks (rank 0 writes, all read), {self.pages} pages")
                mla_ranks = list(range(MLA["ranks"]))
                mla_pool = dict(seed=77, kind="mla", P=MLA["P"], pages=self.pages, L=MLA["L"],
                                KV_LORA=MLA["KV_LORA"], ROPE=MLA["ROPE"])
                res = W.call(mla_ranks, "pool", **mla_pool)
                self.page_bytes = res[0]["page_bytes"]
                for system in a.systems:
                    if system == SHM_SYSTEM:
                        W.call(mla_ranks, "pool", allocator="shm", **mla_pool)
                    self.run_system(W, st, MLA, system, "1.07M")
                    if system == SHM_SYSTEM:
                        W.call(mla_ranks, "pool", **mla_pool)
                W.call(list(range(MLA["ranks"])), "drop_pool")
                if isinstance(st.jfs, Emulated):
                    st.jfs.down()
            if not a.stores or "local" in a.stores:
                log("daemon memory")
                self.limits["rss"] = self.rss(stores[0])
        finally:
            W.close()
            rtt_srv.terminate()
            rtt_srv.wait()
            for _, emu in emulated:
                try:
                    emu.down()
                except Exception:
                    log("emulate down failed:\n" + traceback.format_exc())
        self.extra["elapsed_s"] = time.monotonic() - self.t_start
        self.save()

    def pages_for(self, ps):
        if self.a.quick:
            return BATCH
        return 2 * BATCH if ps <= 1 * MiB else BATCH

    # ---------------------------------------------------------------- output

    def machine(self):
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        mem = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = int(line.split()[1]) * 1024
        fs = sh(["df", "-T", self.a.local]).stdout.splitlines()[-1].split()
        return {"cpu": cpu, "cores": len(CPUS), "cores_of_machine": os.cpu_count(), "ram_gib": round(mem / 2**30, 1),
                "kernel": platform.release(), "local_fs": f"{fs[1]} on {fs[0]}",
                "load_before": self.a.load_before, "python": platform.python_version()}

    def table_md(self):
        hdr = ["store", "system", "config", "phase", "ranks", "GB/s", "GB/s/client", "pages/s",
               "p50 ms", "p99 ms", "written to storage", "files", "read from storage", "ok"]
        lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        for r in self.rows:
            wr = rd = ""
            if r["phase"] == "backup":
                w = r.get("hc_bytes_written", r.get("store_growth", 0))
                wr = f"{w / MiB:.0f} MiB ({r['dev_written'] / MiB:.0f} dev)"
            if r["phase"] == "cold":
                rd_hc = r.get("hc_bytes_read_storage")
                rd = (f"{rd_hc / MiB:.0f} MiB, " if rd_hc is not None else "") + f"{r['dev_read'] / MiB:.0f} dev"
            ok = "yes" if r["verified"] and r.get("all_hit", True) else "NO"
            lines.append("| " + " | ".join([
                r["store"], r["system"], r["cfg"], r["phase"], str(r["ranks"]),
                f"{r['gbps']:.3f}" if not r["phase"].startswith("exists") else "-",
                f"{r['client_gbps']:.3f}" if not r["phase"].startswith("exists") else "-",
                f"{r['pps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                wr, str(r.get("files_created", "")) if r["phase"] == "backup" else "", rd, ok]) + " |")
        return "\n".join(lines)

    def cpu_md(self):
        parts = ("daemon", "ranks", "fio", "juicefs", "redis", "netdelay", "kernel", "other", "steal")
        lines = ["| store | system | config | phase | GB/s | busy | " + " | ".join(parts) + " |",
                 "|" + "---|" * (6 + len(parts))]
        ncpu = len(CPUS)

        def line(store, system, cfg, phase, gbps, nbytes, c):
            if not c or not nbytes or c.get("window", 0) <= 0:
                return
            gib = nbytes / 2**30
            busy = 100 * c["busy"] / (ncpu * c["window"])
            lines.append(f"| {store} | {system} | {cfg} | {phase} | {gbps:.3f} | {busy:.0f}% | "
                         + " | ".join(f"{c[k] / gib:.2f}" if k in c else "" for k in parts) + " |")

        for r in self.rows:
            if r["phase"] in ("backup", "cold", "hot-1"):
                c = {k[4:]: v for k, v in r.items() if k.startswith("cpu_")}
                line(r["store"], r["system"], r["cfg"], r["phase"], r["gbps"], r.get("cpu_bytes", r["bytes"]), c)
        for name, f in self.limits.get("fio", {}).items():
            n = f["size_per_job"] * f["jobs"]
            line(name, "fio", f"{f['jobs']} jobs", "write", f["write_gbps"], n, f.get("write_cpu"))
            line(name, "fio", f"{f['jobs']} jobs", "read", f["read_gbps"], n, f.get("read_cpu"))
        return "\n".join(lines)

    def save(self):
        data = {"machine": self.machine(), "args": vars(self.a), "rows": self.rows,
                "limits": self.limits, "extra": self.extra}
        (self.out / "results.json").write_text(json.dumps(data, indent=1, default=str))
        with open(self.out / "results.csv", "w", newline="") as f:
            keys = sorted({k for r in self.rows for k in r})
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        hot1 = ["| store | system | config | hot-1 GB/s (median pass) | passes | memcpy GB/s (rank 0, median of 5) | hot-1 / memcpy |",
                "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if r["phase"] == "hot-1" and r.get("memcpy_gbps"):
                hot1.append(f"| {r['store']} | {r['system']} | {r['cfg']} | {r['gbps']:.3f} | "
                            + ", ".join(f"{g:.2f}" for g in r["rounds_gbps"])
                            + f" | {r['memcpy_gbps']:.2f} | {100 * r['gbps'] / r['memcpy_gbps']:.0f}% |")
        colds = [f"- {r['store']} {r['system']} {r['cfg']}: " + ", ".join(f"{g:.3f}" for g in r["rounds_gbps"])
                 + (f"; fio's read right before each: " + ", ".join(f"{g:.3f}" for g in r["fio_beside_rounds_gbps"])
                    + f" (cold's median / fio's median: {100 * r['gbps'] / r['fio_beside_gbps']:.0f}%)"
                    if r.get("fio_beside_gbps") else "")
                 for r in self.rows if r["phase"] == "cold" and "rounds_gbps" in r]
        colds += [f"- {name} fio read: " + ", ".join(f"{g:.3f}" for g in f["read_rounds_gbps"])
                  for name, f in self.limits.get("fio", {}).items() if len(f.get("read_rounds_gbps", [])) > 1]
        md = [f"# hicached benchmark ({'QUICK' if self.a.quick else 'full'})", "",
              "machine: " + json.dumps(data["machine"]), "", self.table_md(), "",
              *((["hot-1 against one core's memcpy, measured next to it:", ""] + hot1 + [""])
                if len(hot1) > 2 else []),
              *((["cold phases repeated (`--cold-rounds`; the median's row is in the table above), GB/s:",
                  ""] + colds + [""]) if colds else []),
              "CPU by phase: the busy share of the run's cores (`cores` in machine) over the phase, and each "
              "part's CPU seconds per GiB moved (`cpu_*` in results.json; fio from its runs "
              "in the limits):", "", self.cpu_md(), "",
              "limits: " + json.dumps(self.limits, default=str), "",
              f"elapsed: {self.extra['elapsed_s']:.0f} s"]
        (self.out / "results.md").write_text("\n".join(md) + "\n")
        print("\n" + self.table_md() + "\n", flush=True)
        try:
            import plots

            plots.make(data, self.out)
        except Exception:
            log("plots failed:\n" + traceback.format_exc())
        log(f"results in {self.out} (elapsed {self.extra['elapsed_s']:.0f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True, help="scratch dir (sockets)")
    ap.add_argument("--local", required=True, help="directory on the local filesystem")
    ap.add_argument("--jfs-mount")
    ap.add_argument("--jfs-state")
    ap.add_argument("--jfs-port", type=int, default=6393)
    ap.add_argument("--jfs-cache")
    ap.add_argument("--sockrt", required=True)
    ap.add_argument("--rssload", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mla-pages", type=int, default=BATCH)
    ap.add_argument("--exists-rounds", type=int, default=20)
    ap.add_argument("--rtt-rounds", type=int, default=2000)
    ap.add_argument("--rss-pages", type=int, default=1_000_000)
    ap.add_argument("--load-before", default="")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma-separated subset of " + ",".join(SYSTEMS))
    ap.add_argument("--stores", default="",
                    help="comma-separated subset of the stores (local, juicefs, the emulated names); "
                         "empty: all")
    ap.add_argument("--no-mla", action="store_true", help="MHA pages only")
    ap.add_argument("--cold-rounds", type=int, default=1,
                    help="on the emulated deployments, the MHA cold phase and fio's cold read this "
                         "many times each (every pass listed, the median's row kept)")
    ap.add_argument("--emulate", action="append",
                    help="NAME:META_RTT_US:OBJ_RTT_US:CACHE_MIB, an emulated JuiceFS deployment "
                         "(scripts/bench/emulate.sh); repeatable")
    a = ap.parse_args()
    a.systems = [x for x in a.systems.split(",") if x]
    bad = [x for x in a.systems if x not in SYSTEMS]
    if bad:
        ap.error("unknown system(s) " + ",".join(bad))
    a.stores = [x for x in a.stores.split(",") if x]
    if os.geteuid() != 0:
        sys.exit("bench: must run as root (drop_caches, JuiceFS mount)")
    sys.path.insert(0, str(Path(__file__).parent))
    log("importing SGLang")
    import torch  # noqa: F401
    import sglang.srt.mem_cache.hicache_storage  # noqa: F401
    import sglang.srt.mem_cache.memory_pool  # noqa: F401
    import sglang.srt.mem_cache.pool_host.mha  # noqa: F401
    import sglang.srt.mem_cache.pool_host.mla  # noqa: F401
    import juicefs_hicache_storage  # noqa: F401

    torch.set_num_threads(1)
    Bench(a).run()


if __name__ == "__main__":
    main()
