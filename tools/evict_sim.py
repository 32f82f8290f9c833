#!/usr/bin/env python3
"""Simulates hicached's capacity eviction (a log of segments, the oldest
dropped first, some of its pages written again: reinsertion) against an
exact LRU of the same number of pages, over many traces and capacities at
once, to choose a reinsertion rule; tools/trace_replay.py (make replay) then
checks the chosen rule on the real daemon.

A segment holds --segment-pages pages; eviction drops the oldest sealed
segment when the pages exceed the capacity; reinserted pages stay within
REINSERT_RATIO (0.25) of the pages clients wrote, as in daemon/evict.c.
Rules (--rules, comma-separated):
  reads2      a page read at least twice since written (with the second
              chance for segments read more often than they hold pages):
              hicached until 2026-11-27
  late<W>     a page read when at least (1 - W) x capacity pages had been
              written since its segment stopped taking appends (read in
              about the last W of its life)
  late<W>+r<N>  the same, or a page read at least N times since written:
              daemon/evict.c is late0.4+r2 (REINSERT_LATE = 1 - W = 0.6)
  none        FIFO of segments
Traces: the Mooncake trace (../shared/traces/synthetic_trace.jsonl) and
Zipf traces of tools/trace_replay.py (4,000 requests with two seeds, 20,000,
and 8,000 at s = 0.8 and 1.2), at capacities of 5%, 10% and 20% of their
distinct blocks. Prints, per rule, the mean and the worst ratio of LRU's
prefix hits, how many cases fall under 98%, and the largest write
amplification.

usage: tools/evict_sim.py [--segment-pages N] [--rules R1,R2,...] [--cases]
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trace_replay as tr  # noqa: E402

REINSERT_RATIO = 0.25


class Seg:
    __slots__ = ("keys", "reads", "closed")

    def __init__(self):
        self.keys, self.reads, self.closed = [], 0, None


class Store:
    """Segments of seg_pages pages, cap pages in all; rule as in the usage."""

    def __init__(self, cap, seg_pages, rule):
        self.cap, self.seg_pages, self.rule = cap, seg_pages, rule
        # late<W>[+r<N>]: a read counts as late past (1 - W) x cap writes
        self.late_at = (1 - float(rule[4:].split("+")[0])) * cap if rule.startswith("late") \
            else None
        self.min_reads = int(rule.split("+r")[1]) if "+r" in rule else None
        self.idx = {}  # key -> [segment, reads, read late]
        self.sealed, self.open = [], Seg()
        self.pages = self.clock = self.client = self.rein = 0

    def append(self, k):
        if len(self.open.keys) >= self.seg_pages:
            self.open.closed = self.clock
            self.sealed.append(self.open)
            self.open = Seg()
        self.open.keys.append(k)
        self.idx[k] = [self.open, 0, False]
        self.pages += 1
        self.clock += 1
        while self.pages > self.cap and self.sealed:
            self.evict()

    def evict(self):
        if self.rule == "reads2":  # the second chance of segments read often
            for _ in range(len(self.sealed)):
                v = self.sealed[0]
                if v.reads <= sum(1 for k in v.keys if self.idx.get(k, [None])[0] is v):
                    break
                v.reads = 0
                self.sealed.append(self.sealed.pop(0))
        v = self.sealed.pop(0)
        self.pages -= len(v.keys)
        keep = []
        for k in v.keys:
            e = self.idx.get(k)
            if e is None or e[0] is not v:
                continue
            del self.idx[k]
            if self.rule == "reads2":
                want = e[1] >= 2
            else:
                want = e[2] or (self.min_reads is not None and e[1] >= self.min_reads)
            if want and self.rein + 1 <= REINSERT_RATIO * self.client:
                keep.append(k)
        for k in keep:
            self.rein += 1
            self.append(k)

    def read(self, k):
        e = self.idx[k]
        e[1] += 1
        seg = e[0]
        seg.reads += 1
        if self.late_at is not None and seg.closed is not None and \
                self.clock - seg.closed >= self.late_at:
            e[2] = True

    def replay(self, req):
        lead = tr.leading_hits(req, self.idx)
        for b in req[:lead]:
            self.read(b)
        for b in req[lead:]:
            if b not in self.idx:
                self.client += 1
                self.append(b)
        return lead


def ratio(trace, cache):
    return sum(cache.replay(r) for r in trace) / sum(len(r) for r in trace)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segment-pages", type=int, default=16)
    ap.add_argument("--rules", default="none,reads2,late0.4,late0.45,late0.5,late0.6,late0.35+r2,late0.4+r2,late0.45+r2")
    ap.add_argument("--cases", action="store_true", help="print every case's ratio too")
    ap.add_argument("--trace", default=os.path.join(os.path.dirname(tr.ROOT), "shared", "traces",
                                                    "synthetic_trace.jsonl"))
    args = ap.parse_args()
    traces = [("mooncake", tr.load_trace(args.trace))]
    for n, s, seed in ((4000, 1.0, 1), (4000, 1.0, 2), (20000, 1.0, 1), (8000, 0.8, 1),
                       (8000, 1.2, 1)):
        traces.append((f"zipf{n}s{s}r{seed}", tr.zipf_trace(n, 2000, s, seed)))
    rules = args.rules.split(",")
    res = {r: [] for r in rules}
    for name, trace in traces:
        distinct = len({b for r in trace for b in r})
        for frac in (0.05, 0.10, 0.20):
            cap = int(distinct * frac)
            lru = ratio(trace, tr.Sim(cap, True))
            for rule in rules:
                st = Store(cap, args.segment_pages, rule)
                r = ratio(trace, st) / lru * 100
                res[rule].append((r, (st.client + st.rein) / st.client, f"{name} {frac:.0%}"))
                if args.cases:
                    print(f"  {rule:<12} {name:<18} {frac:>4.0%} {r:7.2f}%", flush=True)
    print(f"segments of {args.segment_pages} pages; {len(traces)} traces x 3 capacities")
    print(f"{'rule':<12} {'mean % of LRU':>14} {'worst':>7} {'worst case':<24} {'< 98%':>6} "
          f"{'max write amp':>14}")
    for rule, v in res.items():
        worst = min(v)
        print(f"{rule:<12} {statistics.mean(x[0] for x in v):>14.2f} {worst[0]:>7.2f} "
              f"{worst[2]:<24} {sum(x[0] < 98 for x in v):>3}/{len(v)} "
              f"{max(x[1] for x in v):>14.3f}")


if __name__ == "__main__":
    main()
