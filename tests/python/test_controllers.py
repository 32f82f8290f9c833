"""SGLang's real cache controllers over hicached, with SGLang's HiCacheFile
as the control: every scenario runs against both backends, so a failure of
HiCacheJuiceFS alone is the backend's, and a failure of both is the test's.

HiCacheController (plain KV, interface_v1) and HybridCacheController (KV plus
side pools: SGLang's v2 storage interface) are built unpatched over real
CPU host pools (controllers.py); only the scheduler side that drains their
queues is a stand-in. Backup goes through write_storage and the backup
thread, prefetch through the prefetch thread's hit query (batch_exists or
batch_exists_v2, rank-agreed over gloo) and the I/O thread's loads into a
fresh controller's host pool; the pages must come back bit for bit."""

import hc_testenv

import json
import logging
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

import pools  # noqa: E402
from pools import LAYOUTS, P  # noqa: E402

BACKENDS = ("hicache", "file")


@pytest.fixture(scope="module")
def tp1(tmp_path_factory):
    """This process as TP rank 0 of 1 (gloo over a file), for every test here."""
    import controllers

    return controllers.init_dist(str(tmp_path_factory.mktemp("dist") / "init"))


@pytest.fixture
def ctl(tp1, daemon, tmp_path):
    """make(backend, kind, layout, **kw) -> controllers.Ctl on this test's
    daemon (hicache) or directory (file); all closed at the end."""
    import controllers

    made = []

    def make(backend, kind="mha", layout="page_first", **kw):
        name, cfg = controllers.backend_args(backend, socket=daemon.socket,
                                             file_dir=str(tmp_path / "hicache-file"))
        c = controllers.Ctl(kind, layout, name, cfg, tp1, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _backed_up(src, n, seed, extra=None, **kw):
    import controllers

    toks = controllers.tokens_of(n, seed)
    idx = src.host.alloc(n * P)
    controllers.fill(src.host, seed)
    return toks, idx, src.backup(toks, idx, extra_pools=extra, **kw)


def _check_loaded(src, sidx, dst, didx, pages, name=None):
    import controllers

    bad = controllers.pages_equal(src.host_of(name), sidx, dst.host_of(name), didx, pages)
    assert not bad, f"{len(bad)} of {pages} pages differ (first: page {bad[0]})"


# ---- HiCacheController: plain KV through interface_v1 / HiCacheFile --------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mha", "mla"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_backup_then_prefetch_into_fresh_pool(ctl, backend, kind, layout):
    n = 24
    src = ctl(backend, kind, layout)
    toks, sidx, done = _backed_up(src, n, seed=11)
    assert done == n * P
    dst = ctl(backend, kind, layout)
    dst.host.alloc(5 * P)  # the pages land at other host slots than they left
    op = dst.query(toks)
    assert op.storage_hit_count == n * P
    got, didx, _ = dst.load(op)
    assert got == n * P
    _check_loaded(src, sidx, dst, didx, n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_hit_is_exact_past_one_batch(ctl, backend):
    """130 of 150 pages stored: the hit query (128-key batches) reports
    exactly 130, and those load; 150 stored of a 60-page query: 60."""
    import controllers

    src = ctl(backend, "mha", "page_first")
    toks, sidx, done = _backed_up(src, 130, seed=12)
    assert done == 130 * P
    longer = toks + controllers.tokens_of(20, seed=99)
    dst = ctl(backend, "mha", "page_first")
    op = dst.query(longer)
    assert op.storage_hit_count == 130 * P
    got, didx, _ = dst.load(op)
    assert got == 130 * P
    _check_loaded(src, sidx, dst, didx, 130)

    op = dst.query(toks[: 60 * P])
    assert op.storage_hit_count == 60 * P
    assert dst.query(controllers.tokens_of(8, seed=98)).storage_hit_count == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_backups_and_prefetches(ctl, backend):
    """Four backups queued at once, then four prefetches in flight at once
    on one controller: every page of each comes back."""
    import controllers

    src = ctl(backend, "mha", "layer_first")
    reqs = []
    for r in range(4):
        toks = controllers.tokens_of(16, seed=200 + r)
        idx = src.host.alloc(16 * P)
        reqs.append((toks, idx))
    controllers.fill(src.host, 21)
    ids = [src.cc.write_storage(idx, toks, hash_value=controllers.page_hashes(toks))
           for toks, idx in reqs]
    acked = {}
    while len(acked) < len(ids):
        op = src.cc.ack_backup_queue.get(timeout=controllers.TIMEOUT)
        acked[op.id] = op.completed_tokens
    assert all(acked[i] == 16 * P for i in ids)

    dst = ctl(backend, "mha", "layer_first")
    ops = [dst.query(toks) for toks, _ in reqs]
    assert [op.storage_hit_count for op in ops] == [16 * P] * 4
    placed = {}
    for op in ops:
        op.host_indices = dst.mem.alloc(op.storage_hit_count)
        placed[id(op)] = op.host_indices
        dst.cc.prefetch_buffer.put(op)
    done = {}
    while len(done) < len(ops):
        ack = dst.cc.ack_prefetch_queue.get(timeout=controllers.TIMEOUT)
        if ack.completed_tokens is not None:
            ack.operation.completed_tokens = ack.completed_tokens
        if ack.completed_req:
            done[id(ack.operation)] = ack.operation.completed_tokens
    for (toks, sidx), op in zip(reqs, ops):
        assert done[id(op)] == 16 * P
        _check_loaded(src, sidx, dst, placed[id(op)], 16)


@pytest.mark.parametrize("hybrid", [False, True], ids=["kv", "kv+draft"])
def test_daemon_stopped_mid_prefetch_is_a_miss(ctl, daemon, caplog, hybrid):
    """The hit query found every page; then the daemon dies before the
    loads. The loads answer misses within the backend's timeout, and no
    exception reaches SGLang's controller (it would log one). With a draft
    pool beside KV the same holds through the v2 calls. (No HiCacheFile
    control here: it has no daemon to lose.)"""
    import time

    side = dict([_draft()]) if hybrid else None
    extra = (lambda: [_draft_transfer()]) if hybrid else (lambda: None)
    src = ctl("hicache", "mha", "page_first", sidecars=side)
    toks, _, done = _backed_up(src, 24, seed=13, extra=extra())
    assert done == 24 * P
    dst = ctl("hicache", "mha", "page_first", sidecars=side)
    op = dst.query(toks, extra_pools=extra()) if hybrid else dst.query(toks)
    assert op.storage_hit_count == 24 * P
    daemon.kill()
    caplog.set_level(logging.WARNING)
    t0 = time.monotonic()
    got, _, _ = dst.load(op)
    assert got == 0
    assert time.monotonic() - t0 < 16  # within the backend's timeout (8 s), twice at most
    assert not [r for r in caplog.records if r.exc_info], "an exception reached the controller"
    # and the next hit query is a plain miss, not an error
    op = dst.query(toks, extra_pools=extra()) if hybrid else dst.query(toks)
    assert op.storage_hit_count == 0
    assert not [r for r in caplog.records if "query failed" in r.getMessage()]


# ---- HybridCacheController: side pools through the v2 interface ---------------------


def _draft():
    from sglang.srt.mem_cache.hicache_storage import PoolName

    return PoolName.DRAFT, pools.mha_pools("page_first", layers=1, heads=1)


def _draft_transfer():
    from sglang.srt.mem_cache.hicache_storage import PoolName, PoolTransfer

    return PoolTransfer(name=PoolName.DRAFT, indices_from_pool=PoolName.KV)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mha", "mla"])
def test_hybrid_kv_with_draft_sidecar(ctl, backend, kind):
    """KV plus a speculative-decoding draft pool (indices from KV, all
    pages): both pools back up and come back bit for bit; pages whose draft
    part is missing end the hit."""
    import controllers

    name, _ = _draft()
    src = ctl(backend, kind, "page_first", sidecars=dict([_draft()]))
    n = 20
    toks = controllers.tokens_of(n, seed=14)
    hashes = controllers.page_hashes(toks)
    sidx = src.host.alloc(n * P)
    controllers.fill(src.host, 14)
    controllers.fill(src.host_of(name), 15)
    assert src.backup(toks, sidx, extra_pools=[_draft_transfer()]) == n * P

    dst = ctl(backend, kind, "page_first", sidecars=dict([_draft()]))
    op = dst.query(toks, extra_pools=[_draft_transfer()])
    assert op.storage_hit_count == n * P
    got, didx, _ = dst.load(op)
    assert got == n * P
    _check_loaded(src, sidx, dst, didx, n)
    _check_loaded(src, sidx, dst, didx, n, name=name)

    # 30 more pages of KV, of which only the first 12 also have their draft part
    more = toks + controllers.tokens_of(30, seed=16)
    mh = controllers.page_hashes(more)
    midx = src.host.alloc(30 * P)
    assert src.backup(more[n * P:(n + 12) * P], midx[: 12 * P], hashes=mh[n:n + 12],
                      extra_pools=[_draft_transfer()]) == 12 * P
    assert src.backup(more[(n + 12) * P:], midx[12 * P:], hashes=mh[n + 12:]) == 18 * P
    assert dst.query(more).storage_hit_count == (n + 30) * P  # KV alone: all 50
    op = dst.query(more, extra_pools=[_draft_transfer()])
    assert op.storage_hit_count == (n + 12) * P
    assert hashes == mh[:n]


def _trailing_pool(kind):
    """(name, (device, host), window pages) of a trailing_pages pool: SWA
    state (an MHA pool, 2-page window) or Mamba state (one slot a page)."""
    import controllers
    from sglang.srt.mem_cache.hicache_storage import PoolName

    if kind == "swa":
        return PoolName.SWA, pools.mha_pools("page_first", layers=2, tokens=1024), 2
    return PoolName.MAMBA, controllers.mamba_pool(), 1


def _trailing_transfer(name, keys, host_indices=None):
    from sglang.srt.mem_cache.hicache_storage import PoolHitPolicy, PoolTransfer

    return PoolTransfer(name=name, keys=list(keys), host_indices=host_indices,
                        hit_policy=PoolHitPolicy.TRAILING_PAGES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pool_kind", ["swa", "mamba"])
def test_hybrid_kv_with_trailing_pages_pool(ctl, backend, pool_kind):
    """KV plus a trailing_pages pool (sliding-window state, 2 pages; Mamba
    state, 1): a prefix is restorable only where the window's pages before
    its end are stored. KV of 20 pages with the window stored at the end of
    page 12 and of page 20: a 20-page query restores 20 and loads the last
    window; a request that shares the first 12 pages and has no window at
    its own end restores 12 and loads the window there."""
    import controllers

    name, pair, W = _trailing_pool(pool_kind)
    src = ctl(backend, "mha", "page_first", sidecars={name: pair})
    side_src = src.host_of(name)
    ps = side_src.page_size
    toks = controllers.tokens_of(20, seed=17)
    h = controllers.page_hashes(toks)
    sidx = src.host.alloc(20 * P)
    controllers.fill(src.host, 17)
    controllers.fill(side_src, 18)
    w1 = side_src.alloc(W * ps)
    w2 = side_src.alloc(W * ps)
    assert src.backup(toks[: 12 * P], sidx[: 12 * P], hashes=h[:12],
                      extra_pools=[_trailing_transfer(name, h[12 - W:12], w1)]) == 12 * P
    assert src.backup(toks[12 * P:], sidx[12 * P:], hashes=h[12:],
                      extra_pools=[_trailing_transfer(name, h[20 - W:], w2)]) == 8 * P

    _, dpair, _ = _trailing_pool(pool_kind)
    dst = ctl(backend, "mha", "page_first", sidecars={name: dpair})
    side_dst = dst.host_of(name)
    placed = {}

    def alloc_window(op):
        t = op.pool_transfers[0]
        t.host_indices = placed["w"] = side_dst.alloc(W * ps)

    op = dst.query(toks, extra_pools=[_trailing_transfer(name, h[-W:])])
    assert op.storage_hit_count == 20 * P
    got, didx, _ = dst.load(op, alloc_extra=alloc_window)
    assert got == 20 * P
    _check_loaded(src, sidx, dst, didx, 20)
    bad = controllers.pages_equal(side_src, w2, side_dst, placed["w"], W)
    assert not bad, f"window pages {bad} differ"

    other = toks[: 12 * P] + controllers.tokens_of(8, seed=19)
    oh = controllers.page_hashes(other)
    oidx = src.host.alloc(8 * P)
    assert src.backup(other[12 * P:], oidx, hashes=oh[12:]) == 8 * P
    op = dst.query(other, extra_pools=[_trailing_transfer(name, oh[-W:])])
    assert op.storage_hit_count == 12 * P
    got, didx, _ = dst.load(op, alloc_extra=alloc_window)
    assert got == 12 * P
    bad = controllers.pages_equal(side_src, w1, side_dst, placed["w"], W)
    assert not bad, f"window pages {bad} differ"


def test_v2_bad_transfers_change_nothing(ctl):
    """A transfer whose host indices do not cover its keys, or that names a
    pool never registered, answers False for each key and leaves the pool
    as it was; an empty transfer answers []."""
    import controllers
    from sglang.srt.mem_cache.hicache_storage import PoolName, PoolTransfer

    src = ctl("hicache", "mha", "page_first", sidecars=dict([_draft()]))
    b = src.backend
    toks = controllers.tokens_of(4, seed=22)
    h = controllers.page_hashes(toks)
    idx = src.host.alloc(4 * P)
    controllers.fill(src.host_of(PoolName.DRAFT), 22)
    assert b.batch_set_v2([PoolTransfer(name=PoolName.DRAFT, host_indices=idx, keys=h)]) == {
        PoolName.DRAFT: [True] * 4}
    draft = src.host_of(PoolName.DRAFT)
    before = draft.kv_buffer.clone()
    short = PoolTransfer(name=PoolName.DRAFT, host_indices=idx[: 3 * P], keys=h)
    unknown = PoolTransfer(name=PoolName.INDEXER, host_indices=idx, keys=h)
    empty = PoolTransfer(name=PoolName.DRAFT, host_indices=idx[:0], keys=[])
    assert b.batch_get_v2([short, unknown]) == {PoolName.DRAFT: [False] * 4,
                                                PoolName.INDEXER: [False] * 4}
    assert b.batch_get_v2([empty]) == {PoolName.DRAFT: []}
    assert torch_equal(draft.kv_buffer, before)
    assert b.batch_set_v1(h, idx) == [True] * 4
    assert b.batch_exists_v2(h, []).kv_hit_pages == 4
    r = b.batch_exists_v2(h, [PoolTransfer(name=PoolName.INDEXER, indices_from_pool=PoolName.KV)])
    assert r.kv_hit_pages == 0 and r.restorable_prefix_pages == []


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8)))


def test_pool_pages_never_read_as_kv(ctl, daemon):
    """A side pool's pages live in a namespace of their own: the KV
    namespace holds none of the draft's keys' pages after a draft-only set."""
    import controllers
    from sglang.srt.mem_cache.hicache_storage import PoolName, PoolTransfer

    src = ctl("hicache", "mha", "page_first", sidecars=dict([_draft()]))
    b = src.backend
    toks = controllers.tokens_of(4, seed=20)
    h = controllers.page_hashes(toks)
    idx = src.host.alloc(4 * P)
    res = b.batch_set_v2([PoolTransfer(name=PoolName.DRAFT, host_indices=idx, keys=h)])
    assert res[PoolName.DRAFT] == [True] * 4
    assert b.batch_exists(h) == 0
    r = b.batch_exists_v2(h, [PoolTransfer(name=PoolName.DRAFT, indices_from_pool=PoolName.KV)])
    assert r.kv_hit_pages == 0
    kv_ns, draft_ns = b.namespace, b._views["draft"].namespace
    assert kv_ns != draft_ns and ".draft." in draft_ns
    st = daemon.client(draft_ns).stats()
    assert st["pages"] == 4


# ---- TP=2: two processes, gloo ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_tp2_ranks_agree_on_the_hit(daemon, tmp_path, backend):
    """Two TP ranks (MHA: each stores its own shard), rank 1 backed up 12
    of the 20 pages rank 0 backed up: both controllers agree on 12 (MIN over
    gloo) and load 12 pages of their own shard, bit for bit."""
    here = os.path.dirname(os.path.abspath(__file__))
    init = tmp_path / "tp2-init"
    args = [sys.executable, os.path.join(here, "controller_worker.py"), backend, daemon.socket,
            str(tmp_path / "hicache-file"), str(init), "2"]
    procs = [subprocess.Popen(args + [str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-4000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for o in outs:
        assert o["backed_up"] == (20 if o["rank"] == 0 else 12) * P
        assert o["hit"] == 12 * P and o["loaded"] == 12 * P
        assert o["bad_pages"] == []
