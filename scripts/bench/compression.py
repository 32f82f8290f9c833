#!/usr/bin/env python3
"""Compression ratio and cost for docs/COMPRESSION.md.

    .venv/bin/python scripts/bench/compression.py [--build build/default]
        [--page-mib 1] [--pages 256] [--json out.json]

1. Codec: zstd (the libzstd the daemon links, through ctypes) on one core,
   per page, at the daemon's level 1 and at levels -1 and 3 for comparison:
   ratio (stored / original) and GB/s of original bytes, compress and
   decompress, for each data set below.
2. End to end: a real hicached on a temporary directory under /tmp (local
   disk), one client, pages set in batches then read back (hot: the page
   cache holds the segments), once with compression off and once on (the
   client's hello option), GB/s of page bytes and the daemon's counters.

Data sets (page_mib of bf16 each; all synthetic, generated here):
- random: uniform random bytes (the worst case: nothing to find);
- normal: bf16 values ~ N(0, 1) (sign, exponent and top mantissa bits carry
  the only redundancy);
- kv-like: bf16 K/V activations with the structure reported for real models
  (per-channel scales spread over ~2 orders of magnitude and a few outlier
  channels in K, as in KIVI / KVQuant; V closer to normal per head); half
  the page K, half V. Synthetic: no model was run here.
- mla-latent: bf16 compressed KV of an MLA model (DeepSeek-V2/V3 layout, 512
  latent dims after RMSNorm with per-channel gains + 64 RoPE dims).
"""

import argparse
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))


# ---- data -------------------------------------------------------------------

def to_bf16_bytes(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 (round to nearest even) as uint16."""
    u = x.astype(np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + 0x7FFF
    return ((u + r) >> 16).astype(np.uint16)


def make_pages(kind: str, n: int, page_bytes: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    vals = page_bytes // 2
    pages = []
    for _ in range(n):
        if kind == "random":
            pages.append(rng.integers(0, 256, page_bytes, dtype=np.uint8))
            continue
        if kind == "normal":
            x = rng.standard_normal(vals, dtype=np.float32)
        elif kind == "kv-like":
            head_dim, heads = 128, 8
            tokens = vals // (2 * heads * head_dim)
            # K: per-channel scale, log-uniform over ~2 decades, 4 outlier channels per head
            kscale = np.exp(rng.uniform(np.log(0.05), np.log(5.0), (heads, head_dim)))
            out = rng.choice(head_dim, (heads, 4))
            for h in range(heads):
                kscale[h, out[h]] *= 10
            k = rng.standard_normal((tokens, heads, head_dim), dtype=np.float32) * kscale
            # V: per-head scale, otherwise normal
            vscale = np.exp(rng.uniform(np.log(0.1), np.log(1.0), (heads, 1)))
            v = rng.standard_normal((tokens, heads, head_dim), dtype=np.float32) * vscale
            x = np.concatenate([k.ravel(), v.ravel()])
        elif kind == "mla-latent":
            dims = 576
            tokens = vals // dims
            gain = np.exp(rng.normal(0, 0.5, 512))
            lat = rng.standard_normal((tokens, 512), dtype=np.float32) * gain
            rope = rng.standard_normal((tokens, 64), dtype=np.float32) * 2.0
            x = np.concatenate([lat, rope], axis=1).ravel()
        else:
            raise ValueError(kind)
        b = to_bf16_bytes(x[:vals]).view(np.uint8)
        if b.size < page_bytes:
            b = np.concatenate([b, np.zeros(page_bytes - b.size, np.uint8)])
        pages.append(np.ascontiguousarray(b))
    return pages


KINDS = ("random", "normal", "kv-like", "mla-latent")


# ---- codec ------------------------------------------------------------------

class Zstd:
    def __init__(self):
        self.lib = ctypes.CDLL("libzstd.so.1")
        L = self.lib
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        L.ZSTD_createCCtx.restype = vp
        L.ZSTD_createDCtx.restype = vp
        L.ZSTD_compressBound.restype = sz
        L.ZSTD_compressBound.argtypes = [sz]
        L.ZSTD_compressCCtx.restype = sz
        L.ZSTD_compressCCtx.argtypes = [vp, vp, sz, vp, sz, ctypes.c_int]
        L.ZSTD_decompressDCtx.restype = sz
        L.ZSTD_decompressDCtx.argtypes = [vp, vp, sz, vp, sz]
        L.ZSTD_isError.restype = ctypes.c_uint
        L.ZSTD_isError.argtypes = [sz]
        L.ZSTD_versionString.restype = ctypes.c_char_p
        self.cctx = L.ZSTD_createCCtx()
        self.dctx = L.ZSTD_createDCtx()
        self.version = L.ZSTD_versionString().decode()

    def bench(self, pages, level, min_s=0.5):
        L = self.lib
        n = pages[0].size
        cap = L.ZSTD_compressBound(n)
        dst = np.empty(cap, np.uint8)
        out = np.empty(n, np.uint8)
        stored = []
        comp = []
        for p in pages:  # one pass for the sizes and the frames
            z = L.ZSTD_compressCCtx(self.cctx, dst.ctypes.data, cap, p.ctypes.data, n, level)
            assert not L.ZSTD_isError(z)
            stored.append(z)
            comp.append(dst[:z].copy())
        t0, done = time.perf_counter(), 0
        while True:
            for p in pages:
                L.ZSTD_compressCCtx(self.cctx, dst.ctypes.data, cap, p.ctypes.data, n, level)
            done += len(pages)
            if time.perf_counter() - t0 >= min_s:
                break
        c_gbs = done * n / (time.perf_counter() - t0) / 1e9
        t0, done = time.perf_counter(), 0
        while True:
            for z in comp:
                r = L.ZSTD_decompressDCtx(self.dctx, out.ctypes.data, n, z.ctypes.data, z.size)
                assert r == n
            done += len(comp)
            if time.perf_counter() - t0 >= min_s:
                break
        d_gbs = done * n / (time.perf_counter() - t0) / 1e9
        assert np.array_equal(out, pages[-1])
        # what the daemon would store: raw unless ~3% and a 4 KiB block saved
        lim = min(n - n // 32, ((n + 4095) // 4096) * 4096 - 4096)
        kept = [z if z <= lim else n for z in stored]
        return {"ratio": sum(stored) / (len(pages) * n), "stored_ratio": sum(kept) / (len(pages) * n),
                "compress_GBps": c_gbs, "decompress_GBps": d_gbs}


def memcpy_gbs(page_bytes, min_s=0.5):
    a = np.ones(page_bytes, np.uint8)
    b = np.empty_like(a)
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_s:
        for _ in range(16):
            np.copyto(b, a)
        done += 16
    return done * page_bytes / (time.perf_counter() - t0) / 1e9


# ---- end to end -------------------------------------------------------------

def start_daemon(build, base):
    data = os.path.join(base, "data")
    os.makedirs(data)
    sock = os.path.join(base, "s.sock")
    log = open(os.path.join(base, "log"), "wb")
    p = subprocess.Popen([os.path.join(build, "hicached"), "--mount-point", data, "--socket", sock,
                          "--node-id", "bench", "--foreground", "--region-size", "256M"],
                         stdout=log, stderr=subprocess.STDOUT)
    for _ in range(500):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            return p, sock
        except OSError:
            time.sleep(0.01)
    p.kill()
    raise RuntimeError("hicached did not start")


def end_to_end(build, pages, kind, compress, batch=32, rounds=3):
    import hicache

    base = tempfile.mkdtemp(prefix="hc-zbench-", dir="/tmp")
    p, sock = start_daemon(build, base)
    try:
        mode = hicache.COMPRESSION_ZSTD if compress else hicache.COMPRESSION_OFF
        c = hicache.Client(sock, namespace=f"z{kind}", compression=mode,
                           page_size_hint=pages[0].size)
        keys = [f"{kind}-{i:060d}" for i in range(len(pages))]
        n = pages[0].size
        t0 = time.perf_counter()
        for i in range(0, len(pages), batch):
            r = c.batch_set(keys[i:i + batch], pages[i:i + batch])
            assert all(x == 0 for x in r), r
        set_s = time.perf_counter() - t0
        st = c.stats()
        outs = [np.empty(n, np.uint8) for _ in range(batch)]
        best = None
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(0, len(pages), batch):
                k = keys[i:i + batch]
                r = c.batch_get(k, outs[:len(k)])
                assert all(x == 0 for x in r), r
            t = time.perf_counter() - t0
            best = t if best is None else min(best, t)
        last = (len(pages) - 1) // batch * batch  # the batch read last
        for j in range(len(pages) - last):
            assert np.array_equal(outs[j], pages[last + j])
        total = len(pages) * n
        c.close()
        return {"set_GBps": total / set_s / 1e9, "get_hot_GBps": total / best / 1e9,
                "bytes_written_ratio": st["bytes_written"] / total,
                "compressed_pages": st["compressed_pages"]}
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "default"))
    ap.add_argument("--page-mib", type=float, default=1.0)
    ap.add_argument("--pages", type=int, default=256)
    ap.add_argument("--codec-pages", type=int, default=16)
    ap.add_argument("--json")
    a = ap.parse_args()
    os.environ.setdefault("HICACHE_LIB", os.path.join(a.build, "libhicache.so"))
    page_bytes = int(a.page_mib * (1 << 20))
    z = Zstd()
    res = {"zstd": z.version, "page_bytes": page_bytes, "cpu": os.cpu_count(),
           "memcpy_GBps": memcpy_gbs(page_bytes), "codec": {}, "e2e": {}}
    print(f"zstd {z.version}, pages of {page_bytes} bytes, one core; memcpy "
          f"{res['memcpy_GBps']:.1f} GB/s")
    print(f"{'data':<11} {'level':>5} {'ratio':>6} {'stored':>6} {'comp GB/s':>9} {'decomp GB/s':>11}")
    for kind in KINDS:
        pages = make_pages(kind, a.codec_pages, page_bytes, seed=1)
        for level in (1, -1, 3):
            r = z.bench(pages, level)
            res["codec"][f"{kind}/{level}"] = r
            print(f"{kind:<11} {level:>5} {r['ratio']:>6.3f} {r['stored_ratio']:>6.3f} "
                  f"{r['compress_GBps']:>9.2f} {r['decompress_GBps']:>11.2f}")
    print(f"\nend to end ({a.pages} pages, batches of 32, one client, local disk, hot reads)")
    print(f"{'data':<11} {'zstd':>4} {'set GB/s':>8} {'get GB/s':>8} {'written':>7}")
    for kind in KINDS:
        pages = make_pages(kind, a.pages, page_bytes, seed=2)
        for comp in (False, True):
            r = end_to_end(a.build, pages, kind, comp)
            res["e2e"][f"{kind}/{'zstd' if comp else 'off'}"] = r
            print(f"{kind:<11} {'on' if comp else 'off':>4} {r['set_GBps']:>8.2f} "
                  f"{r['get_hot_GBps']:>8.2f} {r['bytes_written_ratio']:>7.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
