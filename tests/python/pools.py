"""SGLang's real host pools (device cpu, no pinned memory) and config, small."""

import hc_testenv  # noqa: F401  (paths first)

import torch

LAYOUTS = ("layer_first", "page_first", "page_first_direct")

# Small geometry: MHA page = 2 * L * H * D * 2 B * P = 16 KiB; MLA = L*C*2*P = 12 KiB.
P, L, H, D = 16, 4, 2, 32
KV_LORA, ROPE = 64, 32


def _host_pool(host_cls, dev, layout, page_size, **extra):
    """SGLang's host pool over device pool dev: ratio 1.0, cpu, not pinned."""
    return host_cls(
        dev.get_device_pool_infos()[0].buffer_info,
        1.0,
        0,
        page_size,
        layout,
        pin_memory=False,
        device="cpu",
        device_capacity_tokens=dev.size,
        start_layer=dev.start_layer,
        end_layer=dev.end_layer,
        **extra,
    )


def mha_pools(layout, tokens=4096, page_size=P, layers=L, heads=H, head_dim=D, dtype=torch.bfloat16,
              allocator="default"):
    """(device pool, host pool) of an MHA model on the CPU (allocator "shm":
    in memfds, as SGLang allocates it for "allocator": "shm")."""
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool
    from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost

    dev = MHATokenToKVPool(
        tokens, page_size, dtype, heads, head_dim, layers, "cpu", False, start_layer=0, end_layer=layers
    )
    return dev, _host_pool(MHATokenToKVPoolHost, dev, layout, page_size, allocator_type=allocator)


def mla_pools(layout, tokens=4096, page_size=P, layers=L, dtype=torch.bfloat16, allocator="default"):
    """(device pool, host pool) of an MLA model on the CPU (allocator as for
    mha_pools)."""
    from sglang.srt.mem_cache.memory_pool import MLATokenToKVPool
    from sglang.srt.mem_cache.pool_host.mla import MLATokenToKVPoolHost

    dev = MLATokenToKVPool(
        tokens, page_size, dtype, KV_LORA, ROPE, layers, "cpu", False, start_layer=0, end_layer=layers
    )
    return dev, _host_pool(MLATokenToKVPoolHost, dev, layout, page_size, target_layer_num=dev.layer_num,
                           allocator_type=allocator)


def mha_pool(layout, **kw):
    return mha_pools(layout, **kw)[1]


def mla_pool(layout, **kw):
    return mla_pools(layout, **kw)[1]


def make_pools(kind, layout, **kw):
    return (mha_pools if kind == "mha" else mla_pools)(layout, **kw)


def make_pool(kind, layout, **kw):
    return make_pools(kind, layout, **kw)[1]


def fill_random(pool, seed):
    g = torch.Generator().manual_seed(seed)
    buf = pool.kv_buffer
    flat = buf.view(torch.int16) if buf.element_size() == 2 else buf.view(torch.uint8)
    flat.copy_(torch.randint(-30000, 30000, flat.shape, generator=g, dtype=torch.int32).to(flat.dtype))


def storage_config(kind, tp_rank=0, tp_size=1, model="test/Model-7B", layout="page_first", extra=None, **kw):
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig

    args = dict(
        tp_rank=tp_rank,
        tp_size=tp_size,
        pp_rank=0,
        pp_size=1,
        attn_cp_rank=0,
        attn_cp_size=1,
        is_mla_model=(kind == "mla"),
        enable_storage_metrics=True,
        is_page_first_layout=(layout == "page_first"),
        model_name=model,
        extra_config=dict(extra or {}),
    )
    args.update(kw)
    return HiCacheStorageConfig(**args)


def page_bytes(pool, index):
    """The page at token index as raw bytes (SGLang's flat data page)."""
    return pool.get_data_page(index, flat=True).contiguous().view(torch.uint8).numpy().tobytes()
