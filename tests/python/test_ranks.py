"""TP ranks as separate processes against one daemon: MHA with per-rank
shards, MLA where only TP rank 0 writes and every rank reads. Each rank
builds its own host pool, backend and connections. The ranks come from a
multiprocessing fork server that imported SGLang once (a clean,
single-threaded parent: forking the test process itself, whose torch thread
pool has run, can deadlock the children)."""

import hc_testenv

import multiprocessing
import traceback

import pytest

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

WORLD = 4
PAGES = 128


def _child(q, args):
    try:
        import rank_worker

        q.put(rank_worker.run(*args))
    except BaseException:
        q.put({"error": traceback.format_exc()})


def run_ranks(daemon, kind, layout, tmp_path):
    sync = tmp_path / f"sync-{kind}"
    sync.mkdir()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hc_testenv", "pools", "rank_worker", "juicefs_hicache_storage",
                                "sglang.srt.mem_cache.pool_host.mha",
                                "sglang.srt.mem_cache.pool_host.mla"])
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(q, (daemon.socket, kind, layout, r, WORLD, PAGES, str(sync))))
        for r in range(WORLD)
    ]
    try:
        for p in procs:
            p.start()
        out = [q.get(timeout=150) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    errors = [o["error"] for o in out if "error" in o]
    assert not errors, errors[0]
    return sorted(out, key=lambda o: o["rank"])


def test_tp4_mha_ranks_store_their_own_shards(daemon, tmp_path):
    res = run_ranks(daemon, "mha", "page_first", tmp_path)
    assert all(r["wrote"] and r["read_ok"] for r in res), res
    assert len({r["digest"] for r in res}) == WORLD  # four different shards came back
    assert len({r["namespace"] for r in res}) == 1
    pb = res[0]["page_bytes"]
    st = daemon.client(res[0]["namespace"]).stats()
    assert st["pages"] == WORLD * PAGES
    assert st["bytes_written"] == WORLD * PAGES * pb
    assert st["dedup_hits"] == 0


def test_mla_rank0_writes_all_ranks_read(daemon, tmp_path):
    res = run_ranks(daemon, "mla", "page_first", tmp_path)
    assert [r["wrote"] for r in res] == [True, False, False, False]
    assert all(r["read_ok"] for r in res), res
    assert len({r["digest"] for r in res}) == 1  # every rank got rank 0's pages
    pb = res[0]["page_bytes"]
    st = daemon.client(res[0]["namespace"]).stats()
    data = PAGES * pb
    assert st["pages"] == PAGES
    assert st["bytes_written"] == data  # written once, by rank 0
    assert st["bytes_served"] == WORLD * data
    # every get was either a storage read or joined a concurrent one
    assert st["bytes_read_storage"] + st["coalesced_reads"] * pb == WORLD * data
    print(f"MLA: storage reads {st['bytes_read_storage'] / data:.2f}x the data, "
          f"coalesced_reads {st['coalesced_reads']}")
