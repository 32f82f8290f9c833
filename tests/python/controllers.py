"""SGLang's own cache controllers on CPU host pools, for the controller tests.

HiCacheController (plain KV) and HybridCacheController (KV plus side pools,
the v2 storage interface) are SGLang 0.5.23's real classes, unpatched, built
over real device and host pools on the CPU, with their storage backend
loaded by SGLang's factory ("dynamic" for HiCacheJuiceFS, "file" for SGLang's
own HiCacheFile as the control). What stands in is only the scheduler side:
the code that in SGLang lives in the radix tree (UnifiedRadixCache) and
drains the controller's queues (prefetch_hit_queue, ack_prefetch_queue,
ack_backup_queue), allocates host memory for a hit and hands the operation
to the I/O thread (prefetch_buffer). Host pages are filled by the test
itself (the device-to-host copy kernels are the GPU-only part).
"""

import hc_testenv  # noqa: F401  (paths first)

import os
import threading
import time

import torch

import pools
from pools import P

TIMEOUT = 60.0


def init_dist(init_file, rank=0, world=1):
    """gloo over a file (no ports) and SGLang's parallel context for this
    process: TP rank and size, no PP / DCP."""
    import torch.distributed as dist
    from sglang.srt.runtime_context import get_parallel

    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                world_size=world)
    get_parallel().override_permanently(tp_rank=rank, tp_size=world, pp_rank=0, pp_size=1,
                                        attn_dcp_size=1, attn_dcp_rank=0)
    return dist.group.WORLD


def backend_args(backend, socket=None, file_dir=None, **extra):
    """(storage_backend, extra config) as SGLang's server args give them."""
    if backend == "hicache":
        cfg = {"backend_name": "juicefs", "module_path": "juicefs_hicache_storage",
               "class_name": "HiCacheJuiceFS", "interface_v1": 1, "socket_path": socket,
               "timeout_ms": 8000}
        cfg.update(extra)
        return "dynamic", cfg
    assert backend == "file"
    return "file", {"file_storage_path": file_dir, **extra}


def page_hashes(tokens):
    """The page keys SGLang's controller derives from the token ids."""
    from sglang.srt.mem_cache.utils import get_storage_hash_str

    return get_storage_hash_str(tokens, None, page_size=P)


def tokens_of(n_pages, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 32000, (n_pages * P,), generator=g).tolist()


class Ctl:
    """One controller with its pools. sidecars: {PoolName: (device, host)}
    pools beside KV (a HybridCacheController then, with a HostPoolGroup)."""

    def __init__(self, kind, layout, backend_name, backend_cfg, tp_group, sidecars=None,
                 tokens=4096, model="test/Model-7B"):
        from sglang.srt.mem_cache.allocator.paged import PagedTokenToKVPoolAllocator

        self.dev, self.host = pools.make_pools(kind, layout, tokens=tokens)
        alloc = PagedTokenToKVPoolAllocator(tokens, P, self.dev.dtype, "cpu", self.dev, False)
        self.sidecars = dict(sidecars or {})
        args = dict(write_policy="write_through", storage_backend=backend_name,
                    model_name=model, storage_backend_extra_config=dict(backend_cfg))
        if not self.sidecars:
            from sglang.srt.managers.cache_controller import HiCacheController

            self.mem = self.host
            self.cc = HiCacheController(alloc, self.host, P, tp_group, threading.Event(), **args)
        else:
            from sglang.srt.mem_cache.hicache_storage import PoolName
            from sglang.srt.mem_cache.hybrid_cache.hybrid_cache_controller import (
                HybridCacheController,
            )
            from sglang.srt.mem_cache.pool_host.group import HostPoolGroup, PoolEntry

            ident = lambda layer: layer  # noqa: E731
            entries = [PoolEntry(PoolName.KV, self.host, self.dev, ident,
                                 is_primary_index_anchor=True)]
            entries += [PoolEntry(name, h, d, ident) for name, (d, h) in self.sidecars.items()]
            self.mem = HostPoolGroup(entries)
            self.cc = HybridCacheController(alloc, self.mem, P, tp_group, threading.Event(),
                                            **args)
        self.backend = self.cc.storage_backend
        self._rid = 0

    def host_of(self, name):
        return self.host if name is None else self.sidecars[name][1]

    def close(self):
        self.cc.detach_storage_backend()

    # ---- the scheduler side ------------------------------------------------------

    def backup(self, tokens, host_indices, extra_pools=None, hashes=None):
        """write_storage of the pages at host_indices; waits for its ack and
        returns the tokens the controller reports as backed up."""
        hashes = page_hashes(tokens) if hashes is None else hashes
        if extra_pools is None:
            op_id = self.cc.write_storage(host_indices, tokens, hash_value=hashes)
        else:
            op_id = self.cc.write_storage(host_indices, tokens, hash_value=hashes,
                                          extra_pools=extra_pools)
        deadline = time.monotonic() + TIMEOUT
        while True:
            op = self.cc.ack_backup_queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if op.id == op_id:
                return op.completed_tokens

    def query(self, tokens, extra_pools=None):
        """prefetch(): the controller's hit query; returns the operation as
        the prefetch thread hands it to the scheduler (storage_hit_count is
        the hit every rank agreed on)."""
        self._rid += 1
        rid = f"req-{self._rid}"
        if not self.sidecars:
            op = self.cc.prefetch(rid, tokens, None, None)
        else:
            from sglang.srt.mem_cache.base_prefix_cache import CacheRequestHandle

            op = self.cc.prefetch(CacheRequestHandle(rid, 0), tokens, None, None,
                                  extra_pools=extra_pools)
        got = self.cc.prefetch_hit_queue.get(timeout=TIMEOUT)
        assert got is op
        return op

    def load(self, op, alloc_extra=None):
        """Allocates host memory for op's hit, hands op to the controller's
        I/O thread and drains its acks until the last; returns (tokens
        loaded into host memory, host indices, per-pool hits of the acks).
        alloc_extra(op) may allocate side-pool host indices first, as the
        radix tree does for trailing pools."""
        hit = op.storage_hit_count
        if hit == 0:
            return 0, None, {}
        idx = self.mem.alloc(hit)
        assert idx is not None, "no host memory for the hit"
        op.host_indices = idx
        if alloc_extra is not None:
            alloc_extra(op)
        self.cc.prefetch_buffer.put(op)
        completed, pool_hits = 0, {}
        deadline = time.monotonic() + TIMEOUT
        while True:
            ack = self.cc.ack_prefetch_queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if ack.operation is not op:
                continue
            if ack.completed_tokens is not None:
                completed = ack.completed_tokens
            if ack.pool_hits:
                pool_hits.update(ack.pool_hits)
            if ack.completed_req:
                return completed, idx, pool_hits


def fill(pool, seed):
    """Random bytes in every page of a host pool (it stands in for the
    device-to-host copy): KV buffers, or a Mamba pool's state buffers."""
    g = torch.Generator().manual_seed(seed)
    filled = 0
    for name in ("kv_buffer", "temporal_buffer", "conv_buffer"):
        buf = getattr(pool, name, None)
        for b in buf if isinstance(buf, (list, tuple)) else [buf]:
            if isinstance(b, torch.Tensor):
                flat = b.view(torch.uint8)
                flat.copy_(torch.randint(0, 256, flat.shape, generator=g, dtype=torch.uint8))
                filled += 1
        if filled and name == "kv_buffer":
            return
    assert filled, f"no buffer to fill in {type(pool).__name__}"


def pages_equal(src_pool, src_idx, dst_pool, dst_idx, n):
    """Which of the first n pages differ (page i at idx[i * the pool's page
    size]), compared as SGLang's flat data pages."""
    ps = int(getattr(src_pool, "page_size", P))
    return [i for i in range(n)
            if pools.page_bytes(src_pool, int(src_idx[i * ps]))
            != pools.page_bytes(dst_pool, int(dst_idx[i * ps]))]


def mamba_pool(capacity=64):
    """(None, MambaPoolHost): SGLang's Mamba state host pool on the CPU (2
    layers; fp32 temporal state and a bf16 conv state per slot)."""
    from sglang.srt.mem_cache.device_pool_info import MambaStateBufferInfo
    from sglang.srt.mem_cache.pool_host.mamba import MambaPoolHost

    info = MambaStateBufferInfo(
        temporal=torch.zeros(2, capacity, 4, 8, dtype=torch.float32),
        conv=(torch.zeros(2, capacity, 3, 16, dtype=torch.bfloat16),),
    )
    return None, MambaPoolHost(info, 1.0, 0, device_capacity=capacity, pin_memory=False,
                               device="cpu", layout="page_first")


def tmpdir_for(base, name):
    d = os.path.join(str(base), name)
    os.makedirs(d, exist_ok=True)
    return d
