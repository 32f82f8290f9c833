"""exists, get and set from three threads at once on one backend, as
SGLang's prefetch, transfer and backup threads do."""

import hc_testenv

import threading
import time

import pytest

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

from pools import P, fill_random, make_pool, page_bytes, storage_config  # noqa: E402

BATCHES = 12
PER = 16


@pytest.mark.parametrize("kind,layout", [("mha", "layer_first"), ("mla", "page_first_direct")])
def test_three_threads_exists_get_set(daemon, kind, layout):
    from juicefs_hicache_storage import HiCacheJuiceFS

    pool = make_pool(kind, layout, tokens=2 * BATCHES * PER * P)
    fill_random(pool, seed=21)
    cfg = storage_config(kind, layout=layout, extra={"socket_path": daemon.socket, "interface_v1": 1})
    b = HiCacheJuiceFS(cfg, {})
    b.register_mem_pool_host(pool)
    src = [pool.alloc(PER * P) for _ in range(BATCHES)]  # backed up from here
    dst = [pool.alloc(PER * P) for _ in range(BATCHES)]  # prefetched into here
    keys = [[f"{kind}-{i}-{j}" for j in range(PER)] for i in range(BATCHES)]
    written = [threading.Event() for _ in range(BATCHES)]
    seen = [threading.Event() for _ in range(BATCHES)]
    errors = []

    def backup():
        for i in range(BATCHES):
            if not all(b.batch_set_v1(keys[i], src[i])):
                errors.append(f"set {i}")
            written[i].set()
            time.sleep(0.005)

    def prefetch_query():
        for i in range(BATCHES):
            deadline = time.monotonic() + 20
            while b.batch_exists(keys[i]) < PER:
                if time.monotonic() > deadline:
                    errors.append(f"exists {i}")
                    break
            seen[i].set()

    def transfer():
        for i in range(BATCHES):
            seen[i].wait(30)
            if not all(b.batch_get_v1(keys[i], dst[i])):
                errors.append(f"get {i}")

    ts = [threading.Thread(target=f) for f in (backup, prefetch_query, transfer)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    for i in range(BATCHES):
        for j in range(PER):
            assert page_bytes(pool, int(dst[i][j * P])) == page_bytes(pool, int(src[i][j * P]))
    assert b._get_client().connects == 3  # one connection per thread
    b.close()
