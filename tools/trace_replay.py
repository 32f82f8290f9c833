#!/usr/bin/env python3
"""Replays a KV-cache reuse trace against hicached and against exact LRU and
FIFO caches of the same capacity, and prints their prefix-hit ratios.

The trace is Mooncake's format (one JSON object a line, `hash_ids`: the
request's 512-token prefix blocks; equal ids are the same block). The replay
follows SGLang's use of L3 for each request: batch_exists of its blocks (the
leading hits), get of the hits (their bytes are checked: each page's bytes are
a function of its id), set of the blocks after the hits. The prefix-hit ratio
is the sum of leading hits over the sum of blocks.

hicached runs on a fresh local directory with capacity_bytes set to hold
--capacity-frac of the trace's distinct blocks (each block one page of
--page-size bytes; a record takes 4 KiB more) and segments of --segment-size.
The simulated LRU and FIFO hold the same number of pages. The default
geometry (60 KiB pages, 16 records a 1 MiB segment, 274 segments in the
capacity of the Mooncake trace) keeps what a segment is of the capacity
small, as in a deployment (256 MiB segments of MiB-sized pages, thousands
of them in a node's capacity); with 4 KiB pages a segment is 3% of the
capacity, and an LRU that drops a segment's pages at once (printed as
lru-seg) loses 2% of LRU's hits on that trace by that alone. hicached's write
amplification is the page bytes its store wrote over the bytes of the pages
the replay stored (its sets less the dedupe hits). Exit status 1 when a page
came back with other bytes.

--zipf N replays a generated trace instead: N requests, each a shared prefix
drawn from a Zipf(--zipf-s) popularity over --zipf-prefixes prefixes (1 to
16 blocks each), then 1 to 8 blocks of its own.

usage: tools/trace_replay.py [--trace FILE | --zipf N] [--capacity-frac F]
           [--page-size BYTES] [--segment-size BYTES] [--build DIR] [--json FILE]
           [--zipf-prefixes N] [--zipf-s S] [--zipf-seed N]
"""
import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))


def load_trace(path):
    with open(path) as f:
        return [json.loads(line)["hash_ids"] for line in f if line.strip()]


def zipf_trace(n, prefixes, s, seed=1):
    rng = random.Random(seed)
    weights = [1.0 / (k + 1) ** s for k in range(prefixes)]
    lens = [rng.randint(1, 16) for _ in range(prefixes)]
    starts, nxt = [], 0
    for ln in lens:
        starts.append(nxt)
        nxt += ln
    out = []
    for _ in range(n):
        p = rng.choices(range(prefixes), weights)[0]
        own = rng.randint(1, 8)
        out.append(list(range(starts[p], starts[p] + lens[p])) + list(range(nxt, nxt + own)))
        nxt += own
    return out


def leading_hits(req, cached):
    """How many of the request's blocks, from the first, are in cached: what
    SGLang's batch_exists answers (it stops at the first miss)."""
    lead = 0
    for b in req:
        if b not in cached:
            break
        lead += 1
    return lead


class Sim:
    """An exact LRU (lru=True) or FIFO cache of cap pages; with batch > 1, one
    that drops its batch least recently used pages at once when full (a
    reference for what dropping a segment at once costs an LRU; not a bound:
    a policy other than LRU can do better)."""

    def __init__(self, cap, lru, batch=1):
        self.cap, self.lru, self.batch, self.d = cap, lru, batch, collections.OrderedDict()

    def replay(self, req):
        lead = leading_hits(req, self.d)
        for b in req[:lead]:
            if self.lru:
                self.d.move_to_end(b)
        for b in req[lead:]:
            if b in self.d:  # a later block still cached: SGLang sets it again (dedupe)
                if self.lru:
                    self.d.move_to_end(b)
                continue
            self.d[b] = True
            if len(self.d) > self.cap:
                for _ in range(min(self.batch, len(self.d))):
                    self.d.popitem(last=False)
        return lead


def record_size(page_size):
    """Bytes a page takes in a segment: a 4 KiB header, the page rounded up to
    4 KiB."""
    return 4096 + (page_size + 4095) // 4096 * 4096


def page_bytes(block, size):
    seed = (block * 2654435761 + 12345) & 0xFFFFFFFF
    rnd = random.Random(seed)
    head = rnd.getrandbits(64).to_bytes(8, "little")
    return (head * (size // 8 + 1))[:size]


def replay_daemon(trace, args, cap_pages):
    from hicache.client import Client

    build = os.path.join(ROOT, args.build)
    tmp = tempfile.mkdtemp(prefix="hc_replay.")
    sock = os.path.join(tmp, "s")
    rec = record_size(args.page_size)
    cmd = [os.path.join(build, "hicached"), "--mount-point", tmp, "--socket", sock, "--node-id",
           "replay", "--foreground", "--log-level", "error", "--capacity-bytes",
           str(cap_pages * rec), "--segment-size", str(args.segment_size), "--min-free-ratio", "0",
           "--seal-interval-ms", "600000"]
    d = subprocess.Popen(cmd)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        c = Client(sock, namespace="replay", page_size_hint=args.page_size, timeout_ms=30000)
        hits = total = wrong = 0
        set_bytes = 0
        for req in trace:
            keys = [f"b{b}" for b in req]
            lead = 0
            for i in range(0, len(keys), 128):
                part = keys[i:i + 128]
                n = c.batch_exists(part)
                lead += n
                if n < len(part):
                    break
            for i in range(0, lead, 128):
                part = req[i:min(lead, i + 128)]
                bufs = [bytearray(args.page_size) for _ in part]
                res = c.batch_get([f"b{b}" for b in part], bufs)
                for b, r, got in zip(part, res, bufs):
                    if r == 0 and bytes(got) != page_bytes(b, args.page_size):
                        wrong += 1
                    if r != 0:  # evicted between exists and get: a miss from here on
                        lead = min(lead, req.index(b))
            rest = req[lead:]
            for i in range(0, len(rest), 128):
                part = rest[i:i + 128]
                vals = [page_bytes(b, args.page_size) for b in part]
                res = c.batch_set([f"b{b}" for b in part], vals)
                set_bytes += sum(len(v) for v, r in zip(vals, res) if r == 0)
            hits += lead
            total += len(req)
        st = c.stats()
        c.close()
        # pages the replay stored: its sets less those that found the page
        # already there (dedupe: nothing written)
        stored = set_bytes - st.get("dedup_bytes", 0)
        return {"hits": hits, "lookups": total, "ratio": hits / total, "wrong": wrong,
                "stored_bytes": stored, "bytes_written": st["bytes_written"],
                "write_amp": st["bytes_written"] / max(1, stored),
                "evicted_pages": st.get("evicted_pages", 0),
                "evicted_segments": st.get("evicted_segments", 0),
                "dedup_hits": st.get("dedup_hits", 0)}
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", default=os.path.join(ROOT, "..", "shared", "traces",
                                                    "synthetic_trace.jsonl"))
    ap.add_argument("--zipf", type=int, default=0)
    ap.add_argument("--zipf-prefixes", type=int, default=2000)
    ap.add_argument("--zipf-s", type=float, default=1.0)
    ap.add_argument("--zipf-seed", type=int, default=1)
    ap.add_argument("--capacity-frac", type=float, default=0.10)
    ap.add_argument("--page-size", type=int, default=60 << 10)
    ap.add_argument("--segment-size", type=int, default=1 << 20)
    ap.add_argument("--build", default="build/default")
    ap.add_argument("--json")
    args = ap.parse_args()

    trace = zipf_trace(args.zipf, args.zipf_prefixes, args.zipf_s, args.zipf_seed) if args.zipf else \
        load_trace(args.trace)
    distinct = len({b for r in trace for b in r})
    cap = max(1, int(distinct * args.capacity_frac))
    name = f"zipf n={args.zipf} s={args.zipf_s}" if args.zipf else os.path.basename(args.trace)
    lookups = sum(len(r) for r in trace)
    print(f"trace {name}: {len(trace)} requests, {lookups} block lookups, {distinct} distinct "
          f"blocks; capacity {cap} pages ({args.capacity_frac:.0%}) of {args.page_size} bytes, "
          f"segments of {args.segment_size} bytes")
    out = {"trace": name, "requests": len(trace), "lookups": lookups, "distinct": distinct,
           "capacity_pages": cap, "page_size": args.page_size, "segment_size": args.segment_size}
    seg_pages = max(1, args.segment_size // record_size(args.page_size))
    for pol in ("lru", "fifo", "lru-seg"):
        sim = Sim(cap, pol != "fifo", seg_pages if pol == "lru-seg" else 1)
        h = sum(sim.replay(r) for r in trace)
        out[pol] = {"hits": h, "ratio": h / lookups}
    t0 = time.time()
    out["hicached"] = replay_daemon(trace, args, cap)
    out["hicached"]["seconds"] = round(time.time() - t0, 1)
    lru = out["lru"]["ratio"]
    print(f"{'policy':<10} {'prefix hits':>12} {'ratio':>8} {'of LRU':>8} {'write amp':>10}")
    for pol in ("lru", "fifo", "lru-seg", "hicached"):
        r = out[pol]
        wa = f"{r['write_amp']:.3f}" if "write_amp" in r else "-"
        print(f"{pol:<10} {r['hits']:>12} {r['ratio']:>8.4f} {r['ratio'] / lru:>8.1%} {wa:>10}")
    hc = out["hicached"]
    print(f"lru-seg: an LRU dropping {seg_pages} pages (a segment's) at once when full")
    print(f"hicached: {hc['wrong']} pages with wrong bytes, {hc['evicted_segments']} segments "
          f"evicted ({hc['evicted_pages']} pages), {hc['seconds']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if hc["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
