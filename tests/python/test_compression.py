"""enable_compression through HiCacheJuiceFS with SGLang's real host pools:
pages of bf16 KV-like values are stored zstd-compressed by the daemon (fewer
bytes written, the same bytes read back into a fresh pool), random bytes are
stored raw, enable_compression false stores raw, and a backend that does not
say follows the daemon's enable_compression."""

import hc_testenv

import pytest
import torch

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

from pools import fill_random, make_pool, page_bytes, storage_config  # noqa: E402

PS = 64  # tokens a page: MHA pages of 64 KiB, MLA of 48 KiB
N = 64
TOKENS = (N + 8) * PS


def fill_kv_like(pool, seed):
    """bf16 values drawn from a normal distribution (synthetic, KV-shaped)."""
    g = torch.Generator().manual_seed(seed)
    buf = pool.kv_buffer
    buf.copy_((torch.randn(buf.shape, generator=g) * 0.5).to(buf.dtype))


def backend(sock, kind, pool, **extra):
    from juicefs_hicache_storage import HiCacheJuiceFS

    cfg = storage_config(kind, layout="page_first",
                         extra={"socket_path": sock, "interface_v1": 1, **extra})
    b = HiCacheJuiceFS(cfg, {})
    b.register_mem_pool_host(pool)
    return b


def set_and_check(sock, kind, fill, keys, **extra):
    """Backs up N pages of a filled pool, reads them into a fresh pool through
    a backend without the option, compares. Returns (writer backend, stats
    delta of bytes_written and compressed_pages)."""
    src = make_pool(kind, "page_first", page_size=PS, tokens=TOKENS)
    fill(src)
    idx = src.alloc(N * PS)
    b = backend(sock, kind, src, **extra)
    st0 = b.daemon_stats()
    assert b.batch_set_v1(keys, idx) == [True] * N
    st1 = b.daemon_stats()
    dst = make_pool(kind, "page_first", page_size=PS, tokens=TOKENS)
    dst.alloc(3 * PS)
    didx = dst.alloc(N * PS)
    rb = backend(sock, kind, dst)
    assert rb.batch_get_v1(keys, didx) == [True] * N
    for i in range(N):
        assert page_bytes(dst, int(didx[i * PS])) == page_bytes(src, int(idx[i * PS])), i
    rb.close()
    b.close()
    return b, {k: st1[k] - st0[k] for k in ("bytes_written", "compressed_pages",
                                           "bytes_saved_compression", "bytes_stored")}


@pytest.mark.parametrize("kind", ("mha", "mla"))
def test_enable_compression_true_stores_kv_pages_compressed(daemon, kind):
    keys = [f"{i:064x}" for i in range(N)]
    b, d = set_and_check(daemon.socket, kind, lambda p: fill_kv_like(p, 1), keys,
                         enable_compression=True)
    data = N * b.page_bytes
    assert b.compression == 2
    assert d["bytes_stored"] == data  # exists / lengths: the original sizes
    assert d["compressed_pages"] == N
    assert d["bytes_written"] < data * 0.9, d
    assert d["bytes_saved_compression"] == data - d["bytes_written"]
    print(f"{kind}: bf16 normal pages stored at {d['bytes_written'] / data:.3f} of their size")

    # random bytes: compression does not pay, stored raw
    keys2 = [f"{i + 1000:064x}" for i in range(N)]
    b, d = set_and_check(daemon.socket, kind, lambda p: fill_random(p, 2), keys2,
                         enable_compression="true")
    assert d["compressed_pages"] == 0
    assert d["bytes_written"] == data


def test_enable_compression_false_and_daemon_default(daemon_factory):
    d = daemon_factory("zdefault", extra_args=["--enable-compression", "true"]).start()
    data = None
    # false: raw, even though the daemon compresses by default
    keys = [f"{i:064x}" for i in range(N)]
    b, delta = set_and_check(d.socket, "mha", lambda p: fill_kv_like(p, 3), keys,
                             enable_compression=False)
    data = N * b.page_bytes
    assert b.compression == 1
    assert delta["compressed_pages"] == 0 and delta["bytes_written"] == data
    # not given: the daemon's enable_compression (true here)
    keys = [f"{i + 5000:064x}" for i in range(N)]
    b, delta = set_and_check(d.socket, "mha", lambda p: fill_kv_like(p, 4), keys)
    assert b.compression == 0
    assert delta["compressed_pages"] == N and delta["bytes_written"] < data
    d.stop()


def test_compressed_pages_survive_a_restart(daemon):
    keys = [f"{i:064x}" for i in range(N)]
    src = make_pool("mla", "page_first", page_size=PS, tokens=TOKENS)
    fill_kv_like(src, 9)
    idx = src.alloc(N * PS)
    b = backend(daemon.socket, "mla", src, enable_compression=True)
    assert b.batch_set_v1(keys, idx) == [True] * N
    ns, pb = b.namespace, b.page_bytes
    b.close()
    daemon.restart()
    st = daemon.client(ns).stats()
    assert st["pages"] == N and st["bytes_stored"] == N * pb
    dst = make_pool("mla", "page_first", page_size=PS, tokens=TOKENS)
    didx = dst.alloc(N * PS)
    rb = backend(daemon.socket, "mla", dst)
    assert rb.batch_get_v1(keys, didx) == [True] * N
    for i in range(N):
        assert page_bytes(dst, int(didx[i * PS])) == page_bytes(src, int(idx[i * PS])), i
    st = daemon.client(ns).stats()
    assert st["corrupt_records"] == 0
    assert st["bytes_read_storage"] < N * pb  # the compressed bytes were read
    rb.close()


def test_client_refuses_unknown_compression(daemon):
    import hicache

    with pytest.raises(ValueError):
        hicache.Client(daemon.socket, compression=7)
    with pytest.raises(ValueError):
        hicache.Client(daemon.socket, readers_per_page=5000)
    c = hicache.Client(daemon.socket, compression=hicache.COMPRESSION_ZSTD, readers_per_page=4)
    c.ping()
    c.close()
