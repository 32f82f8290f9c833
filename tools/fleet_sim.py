#!/usr/bin/env python3
"""What indexing a fleet's pages costs one daemon (issue 14, the fleet-scale
index), by simulation: tools/fleet-sim (build dir) writes the sealed .idx
files of NODES nodes x PAGES pages on a local directory (no segment data),
then a fresh hicached (node "observer", discovery every 100 ms) is started on
it, and for each fleet size this measures:

  discovery  seconds from start until every page is in the index (stats
             "pages"), and the .idx bytes read;
  rss        the daemon's VmRSS a second after discovery (the walk that
             completed it over), less that of the same daemon on an empty
             directory, per page; with filters, also their bytes (stats
             filter_bytes);
  exists     batch_exists of 128 keys, p50/p99 over --rounds calls, against a
             ping's p50/p99 (the socket round trip) on the same connection.
             --pattern prefix (default): 127 consecutive pages of a random
             node and a key nobody stored, as SGLang asks (a request's prefix
             pages, written together, then its first miss); scattered: 128
             pages of random nodes.

With --remote-index filter the daemon holds the fleet's pages as per-node
filters (daemon/fleet.c) and discovery counts until stats "filter_pages" has
them all and every node's keys file (fleet-sim writes them) is loaded; exists
answers from the filters.

usage: tools/fleet_sim.py [--build DIR] [--sizes 1e6,1e7] [--nodes 100]
           [--work DIR] [--rounds 500] [--json FILE] [--remote-index exact|filter]
           [--pattern prefix|scattered]
"""
import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))


def vm_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def start(build, mount, sock, remote_index="exact"):
    """hicached on mount; the first connection once it listens (it loads the
    .idx files found at start before it listens: that counts as discovery)."""
    cmd = [os.path.join(build, "hicached"), "--mount-point", mount, "--socket", sock,
           "--node-id", "observer", "--foreground", "--log-level", "error",
           "--discovery-interval-ms", "100", "--min-free-ratio", "0",
           "--remote-index", remote_index]
    d = subprocess.Popen(cmd)
    from hicache.client import Client
    for _ in range(600):
        try:
            c = Client(sock, namespace="fleet", timeout_ms=600000)
            return d, c
        except Exception:
            time.sleep(0.05)
    d.kill()
    raise SystemExit("hicached did not start")


def stop(d, c):
    c.close()
    d.terminate()
    d.wait(timeout=600)


def measure(args, total, work):
    nodes = min(args.nodes, total)
    per_node = total // nodes
    mount = os.path.join(work, f"fleet-{total}")
    shutil.rmtree(mount, ignore_errors=True)
    t = time.monotonic()
    subprocess.run([os.path.join(args.build, "fleet-sim"), mount, str(nodes), str(per_node),
                    str(args.per_segment)], check=True)
    gen_s = time.monotonic() - t
    idx_bytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(mount) for f in fs)
    sock = os.path.join(work, "fleet.sock")
    t0 = time.monotonic()
    d, c = start(args.build, mount, sock, args.remote_index)
    want = nodes * per_node
    counter = "filter_pages" if args.remote_index == "filter" else "pages"
    while True:
        st = c.stats()
        if st[counter] >= want and (args.remote_index == "exact" or
                                    st["keys_files_loaded"] >= nodes):
            break
        if time.monotonic() - t0 > args.timeout:
            stop(d, c)
            raise SystemExit(f"discovery: {st[counter]} of {want} pages after {args.timeout} s")
        time.sleep(0.05)
    disc_s = time.monotonic() - t0
    # the walk that completed the count may still hold its .idx images:
    # the steady RSS is taken once it is over (discovery runs every 100 ms)
    time.sleep(1.0)
    rss = vm_kib(d.pid) * 1024
    filt = c.stats().get("filter_bytes", 0)
    rng = random.Random(7)
    lats, pings = [], []
    for r in range(args.rounds):
        if args.pattern == "prefix":
            node, first = rng.randrange(nodes), rng.randrange(per_node - 127)
            keys = [f"p{node}-{first + j}" for j in range(127)] + [f"absent-{r}"]
            want_n = 127
        else:
            keys = [f"p{rng.randrange(nodes)}-{rng.randrange(per_node)}" for _ in range(128)]
            want_n = 128
        t = time.perf_counter()
        n = c.batch_exists(keys)
        lats.append(time.perf_counter() - t)
        if n < want_n:
            stop(d, c)
            raise SystemExit(f"exists: {n} of {want_n} leading keys found")
        t = time.perf_counter()
        c.ping()
        pings.append(time.perf_counter() - t)
    stop(d, c)
    shutil.rmtree(mount, ignore_errors=True)
    return {"pages": want, "nodes": nodes, "idx_bytes": idx_bytes, "gen_s": gen_s,
            "discovery_s": disc_s, "rss_bytes": rss, "filter_bytes": filt,
            "exists_p50_us": pct(lats, 0.5) * 1e6, "exists_p99_us": pct(lats, 0.99) * 1e6,
            "ping_p50_us": pct(pings, 0.5) * 1e6, "ping_p99_us": pct(pings, 0.99) * 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/default")
    ap.add_argument("--sizes", default="1e6,1e7")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--per-segment", type=int, default=32768)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--work")
    ap.add_argument("--json")
    ap.add_argument("--remote-index", choices=("exact", "filter"), default="exact")
    ap.add_argument("--pattern", choices=("prefix", "scattered"), default="prefix")
    args = ap.parse_args()
    logging.getLogger("hicache").setLevel(logging.ERROR)  # "unreachable" while it starts
    work = args.work or tempfile.mkdtemp(prefix="hc-fleet-")
    os.makedirs(work, exist_ok=True)
    empty = os.path.join(work, "empty")
    os.makedirs(empty, exist_ok=True)
    d, c = start(args.build, empty, os.path.join(work, "empty.sock"), args.remote_index)
    time.sleep(0.5)
    base = vm_kib(d.pid) * 1024
    stop(d, c)
    rows = []
    print(f"fleet simulation: {args.nodes} nodes at most, {args.per_segment} pages a segment, "
          f"4 KiB pages, remote_index {args.remote_index}, {args.pattern} batches; empty daemon RSS "
          f"{base / 2**20:.1f} MiB")
    print(f"{'pages':>12} {'idx MB':>8} {'discovery s':>12} {'RSS MB':>8} {'B/page':>7} "
          f"{'filters MB':>11} {'exists p50/p99 us':>18} {'ping p50/p99 us':>16}")
    for s in args.sizes.split(","):
        r = measure(args, int(float(s)), work)
        r["rss_per_page"] = (r["rss_bytes"] - base) / r["pages"]
        rows.append(r)
        print(f"{r['pages']:>12} {r['idx_bytes'] / 1e6:>8.0f} {r['discovery_s']:>12.1f} "
              f"{r['rss_bytes'] / 1e6:>8.0f} {r['rss_per_page']:>7.2f} "
              f"{r['filter_bytes'] / 1e6:>11.1f} {r['exists_p50_us']:>8.0f}/{r['exists_p99_us']:<9.0f} "
              f"{r['ping_p50_us']:>7.0f}/{r['ping_p99_us']:<8.0f}", flush=True)
    if rows:
        last = rows[-1]
        print(f"10^9 pages at {last['rss_per_page']:.2f} B/page (the largest run's): "
              f"{last['rss_per_page']:.2f} GB of RSS in every daemon")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"empty_rss_bytes": base, "rows": rows}, f, indent=1)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
