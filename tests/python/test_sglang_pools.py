"""HiCacheJuiceFS with SGLang's real MHATokenToKVPoolHost / MLATokenToKVPoolHost
(device cpu, no pinned memory) in layer_first, page_first and
page_first_direct: batch_set_v1 from one pool, batch_get_v1 into a fresh one,
page by page comparison; misses; the generic path; key and namespace rules."""

import hc_testenv

import pytest
import torch

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

from pools import LAYOUTS, P, fill_random, make_pool, page_bytes, storage_config  # noqa: E402

KINDS = ("mha", "mla")


def backend_for(daemon, kind, layout, pool, **kw):
    from juicefs_hicache_storage import HiCacheJuiceFS

    cfg = storage_config(kind, layout=layout,
                         extra={"socket_path": daemon.socket, "interface_v1": 1}, **kw)
    b = HiCacheJuiceFS(cfg, {})
    b.register_mem_pool_host(pool)
    return b


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_v1_round_trip_between_pools(daemon, kind, layout):
    src = make_pool(kind, layout)
    fill_random(src, seed=11)
    dst = make_pool(kind, layout)
    n = 128
    src_idx = src.alloc(n * P)
    dst.alloc(5 * P)  # so the target pages sit elsewhere than the source pages
    dst_idx = dst.alloc(n * P)
    assert not torch.equal(src_idx, dst_idx)

    b = backend_for(daemon, kind, layout, src)
    keys = [f"{i:064x}" for i in range(n)]
    assert b.batch_exists(keys) == 0
    assert b.batch_set_v1(keys, src_idx) == [True] * n
    assert b.batch_exists(keys) == n

    rb = backend_for(daemon, kind, layout, dst)
    assert rb.namespace == b.namespace
    assert rb.batch_get_v1(keys, dst_idx) == [True] * n
    for i in range(n):
        assert page_bytes(dst, int(dst_idx[i * P])) == page_bytes(src, int(src_idx[i * P])), i

    st = b.daemon_stats()
    assert st["pages"] == n and st["bytes_stored"] == n * b.page_bytes
    m = b.get_stats()
    assert sum(m.backup_pgs) == n and all(bw > 0 for bw in m.backup_bandwidth)
    assert sum(rb.get_stats().prefetch_pgs) == n
    b.close()
    rb.close()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_missing_key_is_false_and_leaves_target_untouched(daemon, kind, layout):
    src = make_pool(kind, layout)
    fill_random(src, seed=5)
    dst = make_pool(kind, layout)
    fill_random(dst, seed=6)
    idx = src.alloc(4 * P)
    didx = dst.alloc(4 * P)
    b = backend_for(daemon, kind, layout, src)
    keys = ["a" * 64, "b" * 64, "c" * 64, "d" * 64]
    assert b.batch_set_v1([keys[0], keys[2]], torch.cat([idx[:P], idx[2 * P:3 * P]])) == [True, True]
    before = [page_bytes(dst, int(didx[i * P])) for i in range(4)]
    rb = backend_for(daemon, kind, layout, dst)
    assert rb.batch_get_v1(keys, didx) == [True, False, True, False]
    assert page_bytes(dst, int(didx[0])) == page_bytes(src, int(idx[0]))
    assert page_bytes(dst, int(didx[2 * P])) == page_bytes(src, int(idx[2 * P]))
    assert page_bytes(dst, int(didx[1 * P])) == before[1]
    assert page_bytes(dst, int(didx[3 * P])) == before[3]
    assert rb.batch_exists(keys) == 1
    assert rb.exists(keys[2]) and not rb.exists(keys[3])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_generic_path_reads_zero_copy_pages_and_back(daemon, kind, layout):
    """Stored bytes are SGLang's flat data page, whichever path wrote them."""
    pool = make_pool(kind, layout)
    fill_random(pool, seed=9)
    idx = pool.alloc(3 * P)
    b = backend_for(daemon, kind, layout, pool)
    assert b.batch_set_v1(["v1-0", "v1-1"], idx[: 2 * P]) == [True, True]
    got = b.batch_get(["v1-0", "v1-1", "absent"], [pool.get_dummy_flat_data_page() for _ in range(3)])
    assert got[2] is None
    for i in range(2):
        assert got[i].contiguous().view(torch.uint8).numpy().tobytes() == page_bytes(pool, int(idx[i * P]))
    # generic set (SGLang's _generic_page_set) -> zero-copy get
    assert b.batch_set(["gen-0"], [pool.get_data_page(int(idx[2 * P]))])
    dst = make_pool(kind, layout)
    didx = dst.alloc(P)
    assert b.get("gen-0") is not None
    b2 = backend_for(daemon, kind, layout, dst)
    assert b2.batch_get_v1(["gen-0"], didx) == [True]
    assert page_bytes(dst, int(didx[0])) == page_bytes(pool, int(idx[2 * P]))
    assert b.set("one", pool.get_data_page(int(idx[0])))
    assert b.exists("one")


@pytest.mark.parametrize("kind", KINDS)
def test_exists_with_keys_that_need_mapping(daemon, kind):
    """batch_exists sends SGLang's keys with the rank suffix as they are; a key
    the daemon refuses (a '/', a space, '..', too long, not a str) makes the
    whole batch go through the key mapping, and the answer is the same as for
    batch_get_v1 of those keys."""
    layout = "page_first"
    pool = make_pool(kind, layout)
    fill_random(pool, seed=3)
    idx = pool.alloc(7 * P)
    b = backend_for(daemon, kind, layout, pool)
    # bytes keys are mapped from their str() by _key, like any other non-str
    keys = ["a" * 64, "odd key/1", "x..y", "L" * 300, 12345, b"bytes-key", "b" * 64]
    assert b.batch_exists(keys) == 0
    assert b.batch_set_v1(keys[:6], idx[: 6 * P]) == [True] * 6
    assert b.batch_exists(keys) == 6
    assert b.batch_exists(keys[:1] + keys[6:]) == 1
    assert b.batch_exists(keys[1:6]) == 5
    assert b.batch_exists([b"bytes-key", "a" * 64]) == 2
    assert b.exists("odd key/1") and not b.exists("odd key/2")
    dst = make_pool(kind, layout)
    didx = dst.alloc(7 * P)
    assert backend_for(daemon, kind, layout, dst).batch_get_v1(keys, didx) == [True] * 6 + [False]
    for i in range(6):
        assert page_bytes(dst, int(didx[i * P])) == page_bytes(pool, int(idx[i * P])), i


def test_keys_rank_neutral_for_mla_per_rank_for_mha():
    from juicefs_hicache_storage import HiCacheJuiceFS

    def key(kind, rank, **kw):
        return HiCacheJuiceFS(storage_config(kind, tp_rank=rank, tp_size=4, **kw))._key("ab" * 32)

    assert key("mla", 0) == key("mla", 3) == "ab" * 32
    assert len({key("mha", r) for r in range(4)}) == 4
    assert key("mha", 1).endswith("_tp1-4")
    assert key("mha", 1, pp_rank=1, pp_size=2) != key("mha", 1)
    assert key("mla", 0, attn_cp_rank=1, attn_cp_size=2) != key("mla", 0)
    b = HiCacheJuiceFS(storage_config("mha"))
    k = b._key("weird key/with:chars" * 20)
    assert hc_testenv.__name__ and len(k) <= 256 and "/" not in k and " " not in k


def test_namespace_separates_incompatible_pools():
    from hicache.sglang_backend import HiCacheJuiceFS, valid_name

    def ns(kind, layout, model="org/Model-7B", **kw):
        b = HiCacheJuiceFS(storage_config(kind, layout=layout, model=model))
        b.register_mem_pool_host(make_pool(kind, layout, tokens=256, **kw))
        b.close()
        return b.namespace

    base = ns("mha", "page_first")
    assert valid_name(base) and base.startswith("org_Model-7B.mha.bf16.page_first.p16.")
    others = {
        ns("mha", "layer_first"),
        ns("mha", "page_first_direct"),
        ns("mha", "page_first", dtype=torch.float16),
        ns("mha", "page_first", page_size=32),
        ns("mha", "page_first", heads=4),
        ns("mha", "page_first", layers=2),
        ns("mla", "page_first"),
        ns("mha", "page_first", model="org/Other"),
    }
    assert base not in others and len(others) == 8
    long = ns("mha", "page_first", model="m/" + "x" * 400 + "/ü nicode")
    assert valid_name(long) and len(long) <= 256


def test_config_fields_read_with_defaults():
    """Old configs lack fields; a plain dict works too (no SGLang needed)."""
    from juicefs_hicache_storage import HiCacheJuiceFS
    import types

    old = types.SimpleNamespace(tp_rank=1, tp_size=2, is_mla_model=False, is_page_first_layout=True,
                                model_name="m", extra_config={"socket_path": "/x.sock",
                                                              "enable_compression": "true"})
    b = HiCacheJuiceFS(old, {})
    assert b.pp_size == 1 and b.attn_cp_size == 1 and b.key_suffix == "_tp1-2"
    assert b.socket_path == "/x.sock" and b.enable_compression is True
    assert b.is_storage_writer
    d = HiCacheJuiceFS({"tp_rank": 2, "tp_size": 4, "is_mla_model": True})
    assert d.key_suffix == "" and not d.is_storage_writer


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_shm_host_pool_moves_pages_without_the_region(daemon, kind, layout):
    """SGLang's shm allocator ("allocator": "shm"): the host pools are memfds,
    registered with the daemon, which reads and writes every page straight
    in them, in as many pieces as the layout cuts it (K and V, layers):
    pool_pages counts them. Bytes match page by page."""
    src = make_pool(kind, layout, allocator="shm")
    dst = make_pool(kind, layout, allocator="shm")
    assert src.allocator.fd is not None and dst.allocator.fd is not None
    fill_random(src, seed=21)
    n = 64
    src_idx = src.alloc(n * P)
    dst.alloc(3 * P)
    dst_idx = dst.alloc(n * P)
    b = backend_for(daemon, kind, layout, src)
    keys = [f"shm{i:061x}" for i in range(n)]
    before = b.daemon_stats()["pool_pages"]
    assert b.batch_set_v1(keys, src_idx) == [True] * n
    rb = backend_for(daemon, kind, layout, dst)
    assert rb.batch_get_v1(keys, dst_idx) == [True] * n
    for i in range(n):
        assert page_bytes(dst, int(dst_idx[i * P])) == page_bytes(src, int(src_idx[i * P])), i
    st = b.daemon_stats()
    assert st["pools"] >= 2
    assert st["pool_pages"] - before == 2 * n
    assert st["client_faults"] == 0
    b.close()
    rb.close()
