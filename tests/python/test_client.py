"""hicache.Client against a real daemon: buffers of every accepted form,
misses, length mismatches, bad keys, big batches, stats, threads."""

import errno
import threading

import numpy as np
import pytest
import torch

import hicache


def rnd(n, seed):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


def test_set_get_numpy_torch_bytes_and_address_pairs(daemon):
    c = daemon.client("t")
    a = rnd(100_000, 1)
    t = torch.randn(1000)
    raw = rnd(4096, 2)
    assert c.batch_set(["a", "b", "c"], [a, [t, b"xyz"], (raw.ctypes.data, raw.nbytes)]) == [0, 0, 0]

    oa, ot, ob, oraw = np.zeros_like(a), torch.zeros(1000), bytearray(3), np.zeros_like(raw)
    assert c.batch_get(["a", "b", "c"], [oa, [ot, ob], (oraw.ctypes.data, oraw.nbytes)]) == [0, 0, 0]
    assert np.array_equal(oa, a)
    assert torch.equal(ot, t) and bytes(ob) == b"xyz"
    assert np.array_equal(oraw, raw)
    k, v = torch.arange(16, dtype=torch.int32), torch.arange(16, 32, dtype=torch.int32)
    assert c.batch_set(["kv"], [(k, v)]) == [0]  # a tuple of buffers is one page
    whole = torch.zeros(32, dtype=torch.int32)
    assert c.batch_get(["kv"], [whole]) == [0] and torch.equal(whole, torch.arange(32, dtype=torch.int32))
    c.close()


def test_miss_leaves_buffer_untouched_and_exists_counts_leading(daemon):
    c = daemon.client("t")
    assert c.batch_set(["k0", "k1", "k3"], [rnd(10, i) for i in range(3)]) == [0, 0, 0]
    out = np.full(10, 0xAB, dtype=np.uint8)
    assert c.batch_get(["nope"], [out]) == [-errno.ENOENT]
    assert (out == 0xAB).all()
    assert c.batch_exists(["k0", "k1", "k2", "k3"]) == 2
    assert c.batch_exists(["k0", "k1", "k2", "k3"], with_lengths=True) == (2, [10, 10, 0, 10])
    assert c.exists("k3") and not c.exists("k2")
    # suffix: appended to every key on the way (the backend's rank suffix)
    assert c.batch_set(["s0_r1", "s1_r1"], [rnd(5, 1), rnd(7, 2)]) == [0, 0]
    assert c.batch_exists(["s0", "s1", "s2"], with_lengths=True, suffix="_r1") == (2, [5, 7, 0])
    assert c.batch_exists(["s0", "s1"], suffix="_r2") == 0
    assert c.batch_exists([b"s0_r1", bytearray(b"s1_r1")]) == 2
    with pytest.raises(TypeError):
        c.batch_exists([5])


def test_length_mismatch_and_invalid_keys(daemon):
    c = daemon.client("t")
    assert c.batch_set(["p"], [rnd(1000, 3)]) == [0]
    small, big = np.zeros(10, np.uint8), np.full(2000, 7, np.uint8)
    assert c.batch_get(["p", "p"], [small, big]) == [-errno.ENOSPC, -errno.EMSGSIZE]
    assert (big == 7).all()
    assert c.batch_set(["bad/key", "ok", "x..y", ""], [b"1", b"2", b"3", b"4"]) == [
        -errno.EINVAL, 0, -errno.EINVAL, -errno.EINVAL]
    with pytest.raises(ValueError):
        c.batch_set(["nul\0key"], [b"x"])
    for bad in (["ok", "bad key"], ["ok", "x\0y"], ["ok", ""], ["L" * 257], ["ok", "caf\u00e9"]):
        with pytest.raises(hicache.HicacheError) as e:
            c.batch_exists(bad)
        assert e.value.errno == errno.EINVAL, bad
    assert c.batch_exists(["ok"]) == 1  # stored above; the connection goes on


def test_namespaces_are_separate(daemon):
    a, b = daemon.client("ns-a"), daemon.client("ns-b")
    assert a.batch_set(["k"], [b"from-a"]) == [0]
    assert b.batch_exists(["k"]) == 0
    assert a.clear() == 1
    assert a.batch_exists(["k"]) == 0


def test_batch_larger_than_128_and_than_the_region(daemon):
    c = daemon.client("big", page_size_hint=1 << 20)
    n, size = 300, 256 * 1024  # 75 MiB: more than max_batch and the 64 MiB region
    data = rnd(n * size, 4).reshape(n, size)
    keys = [f"page-{i}" for i in range(n)]
    assert c.batch_set(keys, list(data)) == [0] * n
    out = np.zeros_like(data)
    assert c.batch_get(keys, list(out)) == [0] * n
    assert np.array_equal(out, data)
    st = c.stats()
    for k in ("pages", "bytes_stored", "sets", "gets", "hits", "misses", "dedup_hits",
              "bytes_written", "bytes_read_storage", "bytes_served", "coalesced_reads",
              "clients", "corrupt_records", "evicted_pages"):
        assert k in st
    assert st["pages"] == n and st["bytes_stored"] == n * size


def test_raw_interface_with_page_buffer_lists(daemon):
    c = daemon.client("raw")
    bufs = [rnd(512, i) for i in range(6)]  # 3 pages of 2 buffers
    ptrs = [b.ctypes.data for b in bufs]
    lens = [b.nbytes for b in bufs]
    assert c.batch_set_raw(["r0", "r1", "r2"], ptrs, lens, 2) == [0, 0, 0]
    whole = np.zeros(1024, np.uint8)
    assert c.batch_get(["r1"], [whole]) == [0]
    assert np.array_equal(whole, np.concatenate([bufs[2], bufs[3]]))
    outs = [np.zeros(512, np.uint8) for _ in range(3)]
    assert c.batch_get_raw(["r2"], [o.ctypes.data for o in outs[:1]] + [outs[1].ctypes.data],
                           [512, 512], [2]) == [0]
    assert np.array_equal(outs[0], bufs[4]) and np.array_equal(outs[1], bufs[5])


def test_threads_share_one_client(daemon):
    c = daemon.client("thr")
    errors = []

    def work(tid):
        try:
            for it in range(20):
                keys = [f"t{tid}-{it}-{j}" for j in range(16)]
                vals = [rnd(8192, tid * 1000 + it * 16 + j) for j in range(16)]
                assert c.batch_set(keys, vals) == [0] * 16
                outs = [np.zeros(8192, np.uint8) for _ in range(16)]
                assert c.batch_get(keys, outs) == [0] * 16
                assert all(np.array_equal(o, v) for o, v in zip(outs, vals))
                assert c.batch_exists(keys) == 16
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert c.connects == 5  # the constructor's thread plus one per worker thread


def test_daemon_absent_raises_unavailable(tmp_path):
    with pytest.raises(hicache.DaemonUnavailable):
        hicache.Client(str(tmp_path / "none.sock"))


def test_shared_facts_come_from_libhicache(monkeypatch):
    """The default socket and the readers_per_page limit are hicache_defs.h's,
    read through the library: the Python package holds no copy of them, and
    hicachectl (compiled from the same header) shows the same default."""
    import os
    import subprocess

    from hicache import _lib

    monkeypatch.delenv("HICACHED_SOCKET", raising=False)
    ctl = os.environ.get("HICACHECTL_BIN") or os.path.join(
        os.path.dirname(os.environ["HICACHED_BIN"]), "hicachectl")
    out = subprocess.run([ctl, "--help"], capture_output=True, text=True)
    default = _lib.default_socket()
    assert default.startswith("/") and default in out.stdout + out.stderr
    assert hicache.Client(None, connect=False).socket_path == default
    rmax = _lib.max_readers_per_page()
    hicache.Client(None, connect=False, readers_per_page=rmax)
    with pytest.raises(ValueError, match=f"0..{rmax}"):
        hicache.Client(None, connect=False, readers_per_page=rmax + 1)


def test_names_valid_is_the_daemons_rule(daemon):
    """names_valid (libhicache's hc_names_check, one call for a list) agrees
    with what the daemon does with each name: a valid one is stored, an
    invalid one refused."""
    from hicache.client import names_valid

    names = ["a" * 64, "x.y_z-1", "a" * 256, "a" * 257, ".", "..", "a..b", "a/b", "a b", "",
             "ü", "ok\x00no"]
    got = names_valid(names).tolist()
    assert got == [True, True, True, False, False, False, False, False, False, False, False, False]
    assert names_valid(["k"], suffix="_tp0-2").tolist() == [True]
    assert names_valid(["k"], suffix="/x").tolist() == [False]
    c = daemon.client("names")
    page = rnd(4096, 9)
    for name, ok in zip(names, got):
        if "\x00" in name:
            continue
        codes = c.batch_set([name], [page])
        assert (codes == [0]) == ok, (name, codes)
