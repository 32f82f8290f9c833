#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/ (they
are committed; run this again after a change of the protocol or the file
formats). Frames are encoded by hand (protobuf wire format) so that no
protobuf package is needed; the .idx and .seg seeds come from a real hicached
(BUILD_DIR, default build/default) storing a few pages with hicache-load.

usage: tests/fuzz/make_seeds.py [BUILD_DIR]"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, sys.argv[1] if len(sys.argv) > 1 else "build/default")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def frame(body):
    return len(body).to_bytes(4, "little") + body


def request(rid, num, body):
    return frame(field(1, 0, rid) + field(num, 2, body))


def slot(key, off, length):
    return field(1, 2, key) + field(2, 0, off) + field(3, 0, length)


HELLO = request(1, 10, field(1, 0, 1) + field(2, 2, b"fuzz") + field(4, 0, 4096))
SET = request(2, 11, field(1, 2, slot(b"k1", 0, 4096)) + field(1, 2, slot(b"k2", 4096, 8192)))
GET = request(3, 12, field(1, 2, slot(b"k1", 0, 4096)) + field(1, 2, slot(b"k2", 8192, 8192)))
EXISTS = request(4, 13, field(1, 2, b"k1") + field(1, 2, b"k2"))
PACKED = request(5, 13, field(2, 2, b"k1\0k2\0nope\0"))
STATS = request(6, 14, b"")
CLEAR = request(7, 15, b"")
PING = request(8, 16, field(1, 0, 42))
BAD_SLOT = request(9, 11, field(1, 2, slot(b"big", (1 << 20) - 4096, 8192)))
BAD_KEY = request(10, 12, field(1, 2, slot(b"../x", 0, 4096)))


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames():
    for piece in (0, 3, 60):
        write("fuzz_frame", f"hello-set-get-{piece}", bytes([piece]) + HELLO + SET + GET)
    write("fuzz_frame", "exists", bytes([7]) + HELLO + EXISTS + PACKED)
    write("fuzz_frame", "misc", bytes([1]) + STATS + CLEAR + PING + BAD_SLOT + BAD_KEY)
    write("fuzz_frame", "huge-len", bytes([5]) + b"\xff\xff\xff\x7f" + b"x" * 16)
    write("fuzz_conn", "set-get", SET + GET + EXISTS)
    write("fuzz_conn", "packed-stats", SET + PACKED + STATS)
    write("fuzz_conn", "clear-get", SET + CLEAR + GET + PING)
    write("fuzz_conn", "bad", BAD_SLOT + BAD_KEY + HELLO)
    write("fuzz_conn", "torn", SET[:-3])


def files():
    tmp = tempfile.mkdtemp(prefix="hc_seeds.")
    sock = os.path.join(tmp, "s")
    d = subprocess.Popen([os.path.join(BUILD, "hicached"), "--mount-point", tmp, "--socket", sock,
                          "--node-id", "seed", "--foreground", "--log-level", "error"])
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        for size, pages in (("4K", 3), ("9000", 2)):
            subprocess.run([os.path.join(BUILD, "hicache-load"), "--socket", sock, "--clients", "1",
                            "--pages", str(pages), "--shared", "0", "--page-size", size,
                            "--namespace", "seed" + size], check=True, stdout=subprocess.DEVNULL)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(30)
    node = os.path.join(tmp, "hicache", "seed")
    for n, name in enumerate(sorted(os.listdir(node))):
        with open(os.path.join(node, name), "rb") as f:
            data = f.read()
        if name.endswith(".idx"):
            write("fuzz_idx", f"valid-{n}", b"\0" + data)
            write("fuzz_idx", f"fixcrc-{n}", b"\1" + data)
        elif name.endswith(".seg"):
            write("fuzz_record", f"segment-{n}", data)
            write("fuzz_record", f"torn-{n}", data[: len(data) - 5000])
    shutil.rmtree(tmp)


def keys():
    """Keys files (daemon/keysfile.c) with their CRCs left zero: the target
    fixes them (first byte 1)."""
    import struct
    for name, nsegs, nents in (("empty", 1, 0), ("one-block", 2, 5), ("three-blocks", 3, 800)):
        hashes = sorted((i * 0x9E3779B97F4A7C15 + 12345) % 2**64 for i in range(nents))
        nblocks = (nents + 340) // 341
        head = b"HCK1" + struct.pack("<IQII", 2, nents, nsegs, nblocks) + bytes(44)
        segs = b"".join(struct.pack("<Q", 0x1000 + s) for s in range(nsegs))
        blocks = b"".join(struct.pack("<QII", hashes[b * 341], min(341, nents - b * 341), 0)
                          for b in range(nblocks))
        ents = b"".join(struct.pack("<QIIIHH", h, i % nsegs, i * 2, 4096 + i, 0, 0)
                        for i, h in enumerate(hashes))
        write("fuzz_keys", name, b"\1" + head + segs + blocks + ents)


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    frames()
    files()
    keys()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))), "seeds")
