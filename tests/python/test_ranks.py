"""TP ranks as separate processes against one daemon: MHA with per-rank
shards, MLA where only TP rank 0 writes and every rank reads. Each rank
builds its own host pool, backend and connections. The ranks come from a
multiprocessing fork server that imported SGLang once (a clean,
single-threaded parent: forking the test process itself, whose torch thread
pool has run, can deadlock the children).

In SGLang every TP rank's cache controller prefetches on its own thread, so
the ranks' gets of one page arrive close together but not at once: some
while the first storage read is in flight (coalesced), some after it
finished (served from the daemon's read linger). The MLA test spreads the
ranks' reads that way and requires one storage read per page."""

import hc_testenv

import multiprocessing
import time
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


# Start of each rank's batch_get after the common barrier, in seconds: rank 1
# nearly with rank 0 (joins reads in flight), ranks 2 and 3 after rank 0's
# reads finished.
READ_DELAYS = (0.0, 0.002, 0.05, 0.3)


def _child_staggered(q, args, delays):
    """_child, with rank r starting its reads delays[r] s after the others
    met at the "read" barrier."""
    import rank_worker

    met = rank_worker.barrier

    def barrier(syncdir, name, rank, world, timeout=120):
        met(syncdir, name, rank, world, timeout)
        if name == "read":
            time.sleep(delays[rank])

    rank_worker.barrier = barrier
    _child(q, args)


def run_ranks(daemon, kind, layout, tmp_path, delays=None):
    sync = tmp_path / f"sync-{kind}"
    sync.mkdir()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hc_testenv", "pools", "rank_worker", "juicefs_hicache_storage",
                                "sglang.srt.mem_cache.pool_host.mha",
                                "sglang.srt.mem_cache.pool_host.mla"])
    q = ctx.Queue()
    def proc(r):
        args = (daemon.socket, kind, layout, r, WORLD, PAGES, str(sync))
        if delays is None:
            return ctx.Process(target=_child, args=(q, args))
        return ctx.Process(target=_child_staggered, args=(q, args, delays))

    procs = [proc(r) for r in range(WORLD)]
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
    res = run_ranks(daemon, "mla", "page_first", tmp_path, delays=READ_DELAYS)
    assert [r["wrote"] for r in res] == [True, False, False, False]
    assert all(r["read_ok"] for r in res), res
    assert len({r["digest"] for r in res}) == 1  # every rank got rank 0's pages
    pb = res[0]["page_bytes"]
    st = daemon.client(res[0]["namespace"]).stats()
    data = PAGES * pb
    assert st["pages"] == PAGES
    assert st["bytes_written"] == data  # written once, by rank 0
    assert st["bytes_served"] == WORLD * data
    # read from storage once: every other get joined the read in flight or
    # was served from the page the daemon kept for the other ranks
    assert st["bytes_read_storage"] == data, st
    assert st["coalesced_reads"] == (WORLD - 1) * PAGES, st
    assert st["linger_bytes"] == 0  # each page was dropped after its 4th reader
    print(f"MLA: storage reads {st['bytes_read_storage'] / data:.2f}x the data, "
          f"coalesced_reads {st['coalesced_reads']}")


def test_mla_without_linger_reads_again(daemon_factory, tmp_path):
    """The same spread with the daemon's linger off: the late ranks read
    storage again (what the linger saves, and proof the test above can fail)."""
    d = daemon_factory("nolinger", extra_args=["--read-linger-ms", "0"]).start()
    res = run_ranks(d, "mla", "page_first", tmp_path, delays=READ_DELAYS)
    assert all(r["read_ok"] for r in res), res
    assert len({r["digest"] for r in res}) == 1
    data = PAGES * res[0]["page_bytes"]
    st = d.client(res[0]["namespace"]).stats()
    # more than one read per page (how many more depends on how the ranks'
    # reads overlap in flight, which the storage's speed decides)
    assert st["bytes_read_storage"] > data, st
    d.stop()
