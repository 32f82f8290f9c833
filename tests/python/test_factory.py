"""The dynamic-loading path as SGLang runs it: the launch flag's JSON,
StorageBackendFactory.create_backend("dynamic", config, host_pool), then
register_mem_pool_host and the zero-copy calls the controller picks."""

import hc_testenv

import json

import pytest
import torch

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

from pools import P, fill_random, make_pool, page_bytes, storage_config  # noqa: E402


def sglang_extra_config(flag_json):
    """What SGLang does with --hicache-storage-backend-extra-config: parse,
    pop its own keys, pass the rest as storage_config.extra_config."""
    cfg = json.loads(flag_json)
    for k in ("prefetch_threshold", "prefetch_timeout_base", "prefetch_timeout_per_ki_token",
              "prefetch_timeout_max", "hicache_storage_pass_prefix_keys", "tp_lcm_size"):
        cfg.pop(k, None)
    return cfg


@pytest.mark.parametrize("module_path", ["juicefs_hicache_storage", "hicache.sglang_backend"])
def test_dynamic_backend_through_storage_backend_factory(daemon, module_path):
    import register_juicefs_backend as reg
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage
    from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory

    args = reg.launch_args(daemon.socket, prefetch_threshold=256, enable_compression=False,
                           mount_point="/mnt/jfs", use_direct_io=True)
    assert args[:4] == ["--enable-hierarchical-cache", "--hicache-storage-backend", "dynamic",
                        "--hicache-storage-backend-extra-config"]
    extra = sglang_extra_config(args[4])
    extra["module_path"] = module_path
    pool = make_pool("mha", "page_first_direct")
    fill_random(pool, seed=3)
    cfg = storage_config("mha", layout="page_first_direct", extra=extra)

    backend = StorageBackendFactory.create_backend("dynamic", cfg, pool)
    assert type(backend).__name__ == "HiCacheJuiceFS"
    assert isinstance(backend, HiCacheStorage)
    backend.register_mem_pool_host(pool)  # what attach_storage_backend does next
    # the controller's test for the zero-copy functions
    assert bool(cfg.extra_config.get("interface_v1", 0))
    assert backend.mount_point == "/mnt/jfs" and backend.use_direct_io

    idx = pool.alloc(8 * P)
    keys = [f"{i:064x}" for i in range(8)]
    assert all(backend.batch_set_v1(keys, idx))
    assert backend.batch_exists(keys) == 8
    dst = make_pool("mha", "page_first_direct")
    didx = dst.alloc(8 * P)
    b2 = StorageBackendFactory.create_backend("dynamic", cfg, dst)
    b2.register_mem_pool_host(dst)
    assert b2.batch_get_v1(keys, didx) == [True] * 8
    assert all(page_bytes(dst, int(didx[i * P])) == page_bytes(pool, int(idx[i * P])) for i in range(8))
    assert backend.clear() is True
    assert b2.batch_exists(keys) == 0
    backend.close()
    b2.close()


def test_factory_refuses_a_class_that_is_not_a_storage():
    from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory

    cfg = storage_config("mha", extra={"backend_name": "x", "module_path": "hicache.client",
                                       "class_name": "Client"})
    with pytest.raises(TypeError):
        StorageBackendFactory.create_backend("dynamic", cfg, None)


def test_backend_class_subclasses_the_real_abc():
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage

    import juicefs_hicache_storage

    assert issubclass(juicefs_hicache_storage.HiCacheJuiceFS, HiCacheStorage)
    assert torch  # torch imported with SGLang
