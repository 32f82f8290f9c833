#!/usr/bin/env python3
"""CPU profiles of an emulated deployment's JuiceFS client, from its own pprof
agent (a diagnosis tool; docs/BENCHMARKS.md, "The JuiceFS client's profile").

  jfsprof.py record NETNS_GLOB OUTDIR   1-second CPU profiles until killed
  jfsprof.py group OUTDIR RESULTS_JSON  profiles by phase (fio's, cold passes)
  jfsprof.py report PROFILE...          flat and cumulative CPU by function

`record` runs beside `scripts/bench/run.sh --emulate`: it finds the client's
namespace (for example 'hcb*-cli'), the client's agent port there (the
process that also serves metrics on 9567), and fetches
/debug/pprof/profile?seconds=1 again and again, each listed in
OUTDIR/index.tsv with its CLOCK_MONOTONIC start and end and whether fio was
running. `group` puts each profile with fio's reads or writes (by whether
the client's FUSE writes are in it) or with a system's cold passes (between
the end of its backup row and the start of its hot row in results.json) and
writes OUTDIR/group-NAME. A cold group's window also holds the remounts and
daemon restarts between the passes (a new client's start-up counts there). The profiles are gzipped profile.proto, decoded
here without Go's tools (the client binary is stripped; the agent names the
functions itself)."""
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import time


def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b):
    i = 0
    while i < len(b):
        k, i = _varint(b, i)
        f, t = k >> 3, k & 7
        if t == 0:
            v, i = _varint(b, i)
        elif t == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        elif t == 1:
            v, i = b[i : i + 8], i + 8
        elif t == 5:
            v, i = b[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {t}")
        yield f, t, v


def _packed(t, v):
    if t == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def load(path):
    """[(stack of function names, leaf first; CPU nanoseconds)] of one profile."""
    b = gzip.decompress(open(path, "rb").read())
    samples, locs, funcs, strs = [], {}, {}, []
    for f, t, v in _fields(b):
        if f == 2:  # Sample: location_id, value
            lid, val = [], []
            for f2, t2, v2 in _fields(v):
                if f2 == 1:
                    lid += _packed(t2, v2)
                elif f2 == 2:
                    val += _packed(t2, v2)
            samples.append((lid, val))
        elif f == 4:  # Location: id, line (function_id)
            lid, fn = None, []
            for f2, _, v2 in _fields(v):
                if f2 == 1:
                    lid = v2
                elif f2 == 4:
                    fn += [v3 for f3, _, v3 in _fields(v2) if f3 == 1]
            locs[lid] = fn
        elif f == 5:  # Function: id, name
            fid = name = 0
            for f2, _, v2 in _fields(v):
                if f2 == 1:
                    fid = v2
                elif f2 == 2:
                    name = v2
            funcs[fid] = name
        elif f == 6:
            strs.append(v.decode("utf-8", "replace"))
    return [([strs[funcs[fid]] for lo in lid for fid in locs.get(lo, []) if fid in funcs], val[-1] if val else 0)
            for lid, val in samples]


def record(ns_glob, out):
    os.makedirs(out, exist_ok=True)
    n = 0
    while True:
        names = glob.glob("/run/netns/" + ns_glob)
        if not names:
            time.sleep(0.2)
            continue
        ns = os.path.basename(names[0])
        ss = subprocess.run(["ip", "netns", "exec", ns, "ss", "-ltnpH"], capture_output=True, text=True).stdout
        mpids = re.findall(r":9567 .*pid=(\d+)", ss)
        port = None
        for line in ss.splitlines():
            m = re.search(r"127\.0\.0\.1:(60\d\d) .*pid=(\d+)", line)
            if m and m.group(2) in mpids:
                port = m.group(1)
        if not port:
            time.sleep(0.1)
            continue
        fio = lambda: subprocess.run(["pgrep", "-x", "fio"], capture_output=True).returncode == 0  # noqa: E731
        p = os.path.join(out, "p%05d.pb.gz" % n)
        t0, f0 = time.monotonic(), fio()
        r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-f", "-m", "3", "-o", p,
                            f"http://127.0.0.1:{port}/debug/pprof/profile?seconds=1"], capture_output=True)
        t1, f1 = time.monotonic(), fio()
        ok = r.returncode == 0 and os.path.exists(p) and os.path.getsize(p) > 0
        with open(os.path.join(out, "index.tsv"), "a") as f:
            f.write("%s\t%.3f\t%.3f\t%d\t%d\n" % (os.path.basename(p), t0, t1, f0 or f1, ok))
        n += 1
        if not ok:
            time.sleep(0.1)


def group(out, results):
    rows = [r for r in json.load(open(results))["rows"] if r.get("mono_t0")]
    win = {}
    for r in rows:
        if r["phase"] == "backup":
            hot = [h for h in rows if h["system"] == r["system"] and h["store"] == r["store"]
                   and h["cfg"] == r["cfg"] and h["phase"] == "hot"]
            if hot:
                win[f"{r['store']}-{r['system']}-{r['cfg']}-cold"] = (r["mono_t1"], hot[0]["mono_t0"])
    groups = collections.defaultdict(list)
    for line in open(os.path.join(out, "index.tsv")):
        name, t0, t1, fio, ok = line.split("\t")
        if ok.strip() != "1":
            continue
        p, t0, t1 = os.path.join(out, name), float(t0), float(t1)
        if fio == "1":
            st = load(p)
            w = sum(v for s, v in st if any("fileSystem).Write" in f for f in s))
            groups["fio-write" if w > 0.05 * (sum(v for _, v in st) or 1) else "fio-read"].append(p)
            continue
        for g, (a, b) in win.items():
            if t0 >= a and t1 <= b:
                groups[g].append(p)
    for g, ps in sorted(groups.items()):
        with open(os.path.join(out, "group-" + g), "w") as f:
            f.write("\n".join(ps) + "\n")
        print(f"{g}: {len(ps)} profiles")


def report(paths, top=30):
    flat, cum, tot = collections.Counter(), collections.Counter(), 0
    for p in paths:
        for stack, v in load(p):
            tot += v
            if stack:
                flat[stack[0]] += v
            for fn in set(stack):
                cum[fn] += v
    print(f"total {tot / 1e9:.2f} CPU-seconds in {len(paths)} profiles")
    for title, c in (("flat", flat), ("cumulative", cum)):
        print(f"-- {title}")
        for k, v in c.most_common(top):
            print(f"{v / 1e9:8.2f} s {100 * v / (tot or 1):6.2f}%  {k}")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "record":
        record(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "group":
        group(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "report":
        report(sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
