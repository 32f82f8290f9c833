"""HiCacheJuiceFS: SGLang HiCache L3 storage backend over hicached.

Loaded by SGLang's StorageBackendFactory with
    --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "juicefs",
        "module_path": "juicefs_hicache_storage", "class_name": "HiCacheJuiceFS",
        "interface_v1": 1, "socket_path": "/run/hicached/hicached.sock"}'
(older SGLang: --hicache-storage-backend-config). SGLang calls
cls(storage_config, kwargs), then register_mem_pool_host(host_pool); with
"interface_v1": 1 it uses batch_get_v1 / batch_set_v1 (zero-copy: libhicache
copies straight between the host pool's page buffers and the daemon's shared
region); exists/get/set run from three threads at once (one connection each).

Config keys (extra_config, or the kwargs dict): socket_path (default
$HICACHED_SOCKET or /run/hicached/hicached.sock), timeout_ms (5000),
namespace (override; default derived, see below), enable_compression (true:
the daemon stores this backend's pages zstd-compressed; false: raw; absent:
the daemon's enable_compression), readers_per_page (override; default the TP
size for MLA, whose ranks all read each page, so the daemon reads it from
storage once and keeps it for the other ranks; 1 for MHA), and the original
design's mount_point, use_direct_io: those are the daemon's own settings
(hicached --mount-point, its config file); they are accepted here and
recorded, not sent.

Namespace: model name, KV kind (mha/mla), dtype, layout, page size and the
page geometry (layers, heads, head dims, bytes and buffers per page), so pages
of incompatible pools never mix; the readable part is sanitized into
[A-Za-z0-9_.-] and the whole description is hashed into it. Keys: SGLang's
page hash plus, for MHA, the TP rank and size (each rank stores its shard);
MLA keys are rank-neutral (every rank reads what TP rank 0 wrote). PP,
attention-CP and DCP ranks are added when their size is > 1.

Hybrid pools (SGLang's v2 interface, used by HybridCacheController whenever
a host pool sits beside KV: speculative-decoding drafts, the DSA indexer,
Mamba and SWA state): each pool registered with register_mem_host_pool_v2
gets a namespace of its own (its name and geometry), its pages are keyed by
the KV page they belong to, and batch_exists_v2 applies the all_pages and
trailing_pages hit policies as SGLang's HiCacheFile does.

Page bytes are the concatenation of the pool's page buffers in the order of
get_data_page(index, flat=True) (the order SGLang's generic path and HiCacheFile
use), so the zero-copy and the generic paths read each other's pages.

If the daemon is down, every call answers misses / False / 0 within the
timeout, the outage is logged once, and the client reconnects with backoff.
"""

from __future__ import annotations

import abc
import errno
import hashlib
import json
import logging
import os
import re
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np

from . import _lib
from .client import (
    COMPRESSION_DEFAULT,
    COMPRESSION_OFF,
    COMPRESSION_ZSTD,
    Client,
    LEN_UNKNOWN,
    DaemonUnavailable,
    HicacheError,
    names_valid,
    packed_str_keys,
)

logger = logging.getLogger("hicache.sglang")

try:  # the factory checks issubclass(cls, HiCacheStorage): subclass the real one
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage as _HiCacheStorage

    HAVE_SGLANG = True
except Exception:  # SGLang absent (or not importable here): a stand-in base
    HAVE_SGLANG = False

    class _HiCacheStorage(abc.ABC):
        """Stand-in for sglang's HiCacheStorage when SGLang is absent."""

        def register_mem_pool_host(self, mem_pool_host):
            self.mem_pool_host = mem_pool_host

        def batch_exists(self, keys, extra_info=None) -> int:
            for i, k in enumerate(keys):
                if not self.exists(k):
                    return i
            return len(keys)

        def clear(self):
            pass

        def get_stats(self):
            return None


try:
    from sglang.srt.observability.metrics_collector import StorageMetrics
except Exception:

    @dataclass
    class StorageMetrics:  # same shape as SGLang's
        prefetch_pgs: List[int] = field(default_factory=list)
        backup_pgs: List[int] = field(default_factory=list)
        prefetch_bandwidth: List[float] = field(default_factory=list)
        backup_bandwidth: List[float] = field(default_factory=list)


_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
FORMAT_VERSION = 1


def valid_name(s: str) -> bool:
    """What the daemon accepts as a key or namespace (libhicache's check)."""
    return bool(names_valid([s])[0])


def sanitize(s: str, limit: int = 64) -> str:
    """s mapped into [A-Za-z0-9_.-] (runs of other characters become '_',
    no '..'), at most limit characters; '' stays ''."""
    s = _BAD_CHARS.sub("_", s)
    s = re.sub(r"\.{2,}", ".", s).strip(".")
    return s[:limit].rstrip(".")


def _short_dtype(dtype) -> str:
    s = str(dtype).replace("torch.", "")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(s, s)


def _opt_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


KV_POOL = "kv"


def _lib_fact(name: str):
    """hicache_defs.h's value through libhicache (_lib.default_socket,
    _lib.max_readers_per_page), or None without the library: then the
    first call to the daemon reports the missing library."""
    try:
        return getattr(_lib, name)()
    except OSError:
        return None


def _pool_name(name) -> str:
    """A pool name (SGLang's PoolName, a str Enum, or a str) as its value."""
    return str(getattr(name, "value", name))


def _policy_name(policy) -> str:
    return str(getattr(policy, "value", policy))


def _KV_NAME():
    """PoolName.KV where SGLang is there (the controller looks its verdict up
    by that key), else "kv"."""
    try:
        from sglang.srt.mem_cache.hicache_storage import PoolName

        return PoolName.KV
    except Exception:
        return KV_POOL


def _shm_pools(host_pool):
    """The memfds of a host pool SGLang allocated with its shm allocator
    ("allocator": "shm" in the dynamic backend's extra config): (fd, address
    in this process, bytes) of each allocation. Empty for other allocators."""
    alloc = getattr(host_pool, "allocator", None)
    fds, mms = getattr(alloc, "fds", None), getattr(alloc, "mms", None)
    out = []
    if not fds or not mms:
        return out
    import ctypes

    for fd, mm in zip(fds, mms):
        try:
            view = ctypes.c_char.from_buffer(mm)  # raises for a closed or read-only map
            out.append((int(fd), ctypes.addressof(view), len(mm)))
            del view
        except (TypeError, ValueError, BufferError):
            continue
    return out


def _attach_shm_pools(client: Client, host_pool) -> int:
    """Registers host_pool's memfds with the daemon through client, so its
    pages move without a copy through the shared region. Returns how many
    pools the daemon took."""
    n = 0
    for fd, base, size in _shm_pools(host_pool):
        try:
            n += bool(client.register_pool(fd, base, size))
        except (OSError, HicacheError) as e:
            logger.warning("hicache: host pool fd %d not registered: %s", fd, e)
    if n:
        logger.info("hicache: %d host pool(s) shared with the daemon (no copy through the region)", n)
    return n


def _transfer_result(kv_hit_pages: int, extra: dict, restorable: List[int]):
    """SGLang's PoolTransferResult, or a stand-in of the same shape."""
    try:
        from sglang.srt.mem_cache.hicache_storage import PoolTransferResult
    except Exception:
        return types.SimpleNamespace(
            kv_hit_pages=kv_hit_pages,
            extra_pool_hit_pages=extra,
            restorable_prefix_pages=restorable,
        )
    r = PoolTransferResult(kv_hit_pages, extra)
    if hasattr(r, "restorable_prefix_pages"):
        r.restorable_prefix_pages = restorable
    return r


class _PoolView:
    """One host pool as the backend stores it: the pool, its page geometry
    (tokens, bytes and buffers a page; buffer order), the namespace of its
    pages, this rank's key suffix for them, readers per page, and the daemon
    connection set of that namespace. Built on the control path
    (registration) and not changed afterwards, except client, which is
    created once under the backend's client lock; the exists / get / set
    threads only read it."""

    __slots__ = ("name", "pool", "page_tokens", "page_bytes", "bufs_per_page", "order",
                 "namespace", "suffix", "readers", "client")

    def __init__(self, name, pool, page_tokens, page_bytes, bufs_per_page, order, namespace,
                 suffix, readers):
        self.name = name
        self.pool = pool
        self.page_tokens = page_tokens
        self.page_bytes = page_bytes
        self.bufs_per_page = bufs_per_page
        self.order = order
        self.namespace = namespace
        self.suffix = suffix
        self.readers = readers
        self.client: Optional[Client] = None


class HiCacheJuiceFS(_HiCacheStorage):
    """SGLang HiCache storage backend backed by the node's hicached."""

    def __init__(self, storage_config: Any = None, kwargs: Optional[dict] = None, **kw):
        if isinstance(storage_config, dict):
            storage_config = types.SimpleNamespace(**storage_config)
        cfg = storage_config if storage_config is not None else types.SimpleNamespace()
        self.storage_config = cfg
        g = lambda name, default: getattr(cfg, name, default)  # noqa: E731
        self.tp_rank = int(g("tp_rank", 0) or 0)
        self.tp_size = int(g("tp_size", 1) or 1)
        self.pp_rank = int(g("pp_rank", 0) or 0)
        self.pp_size = int(g("pp_size", 1) or 1)
        self.attn_cp_rank = int(g("attn_cp_rank", 0) or 0)
        self.attn_cp_size = int(g("attn_cp_size", 1) or 1)
        self.dcp_rank = int(g("dcp_rank", 0) or 0)
        self.dcp_size = int(g("dcp_size", 1) or 1)
        self.is_mla_model = bool(g("is_mla_model", False))
        self.is_page_first_layout = bool(g("is_page_first_layout", False))
        self.model_name = g("model_name", None) or ""
        self.enable_storage_metrics = bool(g("enable_storage_metrics", False))
        self.should_split_heads = bool(g("should_split_heads", False))
        writer = getattr(cfg, "is_storage_writer", None)  # SGLang >= 0.5.2x
        self.is_storage_writer = (
            bool(writer) if writer is not None else (not self.is_mla_model or self.tp_rank == 0)
        )

        opts: dict = {}
        opts.update(kwargs or {})
        opts.update(kw)
        opts.update(g("extra_config", None) or {})
        self.options = opts
        self.socket_path = (
            opts.get("socket_path")
            or os.environ.get("HICACHED_SOCKET")
            or _lib_fact("default_socket")
        )
        self.timeout_ms = int(opts.get("timeout_ms", 5000))
        self.mount_point = opts.get("mount_point")
        self.use_direct_io = _opt_bool(opts.get("use_direct_io", False))
        comp = opts.get("enable_compression", None)
        self.enable_compression = _opt_bool(comp) if comp is not None else False
        if comp is None:
            self.compression = COMPRESSION_DEFAULT
        else:
            self.compression = COMPRESSION_ZSTD if self.enable_compression else COMPRESSION_OFF
        self._ns_override = opts.get("namespace")
        if self.mount_point or self.use_direct_io:
            logger.info(
                "hicache: mount_point=%s use_direct_io=%s are hicached's own settings "
                "(its --mount-point / config file); pages go through the daemon at %s",
                self.mount_point,
                self.use_direct_io,
                self.socket_path,
            )
        if self.should_split_heads:
            logger.warning(
                "hicache: should_split_heads (heterogeneous TP) is not supported; "
                "pages are keyed per TP rank and size"
            )

        self.key_suffix = self._suffix(rank_sharded=not self.is_mla_model)

        # Ranks that read each key: for MLA every TP rank of the storage
        # config's group reads the same rank-neutral page (PP, attention-CP
        # and DCP ranks have keys of their own). tp_size is an upper bound
        # when CP ranks share the TP group: too high only keeps a page in the
        # daemon until read_linger_ms, too low would read it again.
        rpp = opts.get("readers_per_page", None)
        rmax = _lib_fact("max_readers_per_page") or 0
        if rpp is not None:
            self.readers_per_page = max(0, min(int(rpp), rmax))
        else:
            self.readers_per_page = min(self.tp_size, rmax) if self.is_mla_model else 1

        self.mem_pool_host = None
        self.page_bytes = 0
        self.bufs_per_page = 0
        self._order = None  # buffer permutation within a page (MHA layer_first)
        self._client: Optional[Client] = None
        self._client_lock = threading.Lock()
        self._metrics_lock = threading.Lock()
        self._metrics = StorageMetrics()
        self._warned = set()
        self.namespace = self._namespace(None)
        self._kv: Optional[_PoolView] = None  # the pool of register_mem_pool_host
        # v2 (hybrid pools): pool name -> _PoolView (self._kv for the anchor)
        self._views: dict = {}

    # ---- naming -------------------------------------------------------------

    def _suffix(self, rank_sharded: bool) -> str:
        """The key suffix of this rank: the TP rank and size for pages each
        rank holds its own shard of; PP, attention-CP and DCP ranks when their
        size is > 1."""
        parts = []
        if rank_sharded:
            parts.append(f"tp{self.tp_rank}-{self.tp_size}")
        if self.pp_size > 1:
            parts.append(f"pp{self.pp_rank}-{self.pp_size}")
        if self.attn_cp_size > 1:
            parts.append(f"cp{self.attn_cp_rank}-{self.attn_cp_size}")
        if self.dcp_size > 1:
            parts.append(f"dcp{self.dcp_rank}-{self.dcp_size}")
        return ("_" + "_".join(parts)) if parts else ""

    def _describe_pool(self, pool, page_bytes: int, bufs_per_page: int, name: str) -> dict:
        d = {
            "fmt": FORMAT_VERSION,
            "model": self.model_name,
            "kind": "mla" if hasattr(pool, "kv_lora_rank") else "mha",
            "dtype": str(getattr(pool, "dtype", "")),
            "layout": getattr(pool, "layout", ""),
            "page_size": int(getattr(pool, "page_size", 0)),
            "layers": int(getattr(pool, "layer_num", 0)),
            "page_bytes": page_bytes,
            "bufs_per_page": bufs_per_page,
            "tag": getattr(pool, "storage_format_tag", None),
        }
        if name != KV_POOL:  # the KV pool's namespace is the one v1 uses
            d["pool"] = name
            d["pool_class"] = type(pool).__name__
        for a in ("head_num", "head_dim", "v_head_dim", "kv_cache_dim", "kv_lora_rank"):
            if hasattr(pool, a):
                d[a] = int(getattr(pool, a))
        if hasattr(pool, "qk_rope_head_dim"):
            d["qk_rope_head_dim"] = int(pool.qk_rope_head_dim)
        return d

    def _namespace(self, pool, page_bytes: int = 0, bufs_per_page: int = 0,
                   name: str = KV_POOL) -> str:
        """The namespace of pool's pages: model, pool name (other than kv),
        kind, dtype, layout, page size and geometry, hashed; the configured
        namespace (plus ".<pool>" for pools other than kv) when one is set."""
        if self._ns_override:
            ns = str(self._ns_override)
            if name != KV_POOL:
                ns = f"{ns}.{sanitize(name, 64)}"
            if not valid_name(ns):
                raise ValueError(f"hicache: namespace {ns!r} is not [A-Za-z0-9_.-]{{1,256}}")
            return ns
        model = sanitize(self.model_name, 64) or "model"
        if pool is None:
            desc = {"fmt": FORMAT_VERSION, "model": self.model_name, "kind": "generic"}
            readable = f"{model}.generic"
        else:
            desc = self._describe_pool(pool, page_bytes, bufs_per_page, name)
            readable = "{}.{}{}.{}.{}.p{}".format(
                model,
                "" if name == KV_POOL else sanitize(name, 32) + ".",
                desc["kind"],
                _short_dtype(desc["dtype"]),
                sanitize(desc["layout"], 24),
                desc["page_size"],
            )
        digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
        return sanitize(f"{readable}.{digest}", 256)

    def _key(self, key, suffix: Optional[str] = None) -> str:
        return self._keys([key], suffix)[0]

    def _keys(self, keys, suffix: Optional[str] = None) -> List[str]:
        """The stored keys: SGLang's key plus this rank's suffix when that is
        a valid name (checked by libhicache, one call for all), else "h" +
        the key's SHA-256 + the suffix."""
        sfx = self.key_suffix if suffix is None else suffix
        ks = [k if isinstance(k, str) else str(k) for k in keys]
        ok = names_valid(ks, sfx)
        if ok.all():
            return [k + sfx for k in ks]
        return [
            k + sfx if good else "h" + hashlib.sha256(k.encode()).hexdigest() + sfx
            for k, good in zip(ks, ok)
        ]

    # ---- set-up ------------------------------------------------------------

    def _make_view(self, pool, name: str) -> "_PoolView":
        """pool's geometry, namespace, key suffix and readers per page."""
        import torch

        lps = int(getattr(pool, "logical_page_size", None) or getattr(pool, "page_size", 1) or 1)
        try:
            ptrs, sizes = pool.get_page_buffer_meta(torch.arange(lps, dtype=torch.int64))
            bufs_per_page = len(ptrs)
            page_bytes = int(sum(sizes))
        except Exception as e:  # no zero-copy metadata: copied through flat pages
            logger.info("hicache: %s pool %s: no usable get_page_buffer_meta (%s), "
                        "pages copied through flat data pages", name, type(pool).__name__, e)
            bufs_per_page = 0
            flat = pool.get_dummy_flat_data_page()
            page_bytes = int(flat.numel() * flat.element_size())
        # MHA layer_first: get_page_buffer_meta lists K0 V0 K1 V1 ...; store
        # K0..Kn V0..Vn, the order of get_data_page(flat=True).
        order = None
        if (
            getattr(pool, "layout", None) == "layer_first"
            and hasattr(pool, "k_buffer")
            and hasattr(pool, "v_buffer")
            and bufs_per_page == 2 * int(getattr(pool, "layer_num", -1))
        ):
            order = np.concatenate([np.arange(0, bufs_per_page, 2), np.arange(1, bufs_per_page, 2)])
        # Rank-replicated pages (MLA KV, its DSA indexer, MLA drafts) are keyed
        # rank-neutral and read by every TP rank; a pool whose pages differ per
        # rank (Mamba state, an MHA pool's heads) keeps the TP rank in its keys
        # even in an MLA model, so a rank never reads another rank's shard.
        sharded = (not self.is_mla_model) or name == "mamba" or (
            hasattr(pool, "head_num") and not hasattr(pool, "kv_lora_rank")
        )
        readers = 1 if (self.is_mla_model and sharded) else self.readers_per_page
        return _PoolView(
            name=name,
            pool=pool,
            page_tokens=lps,
            page_bytes=page_bytes,
            bufs_per_page=bufs_per_page,
            order=order,
            namespace=self._namespace(pool, page_bytes, bufs_per_page, name),
            suffix=self._suffix(rank_sharded=sharded),
            readers=readers,
        )

    def register_mem_pool_host(self, mem_pool_host):
        super().register_mem_pool_host(mem_pool_host)
        v = self._make_view(mem_pool_host, KV_POOL)
        v.suffix = self.key_suffix  # the storage config decides the KV keys
        v.readers = self.readers_per_page
        self.mem_pool_host = mem_pool_host
        self.bufs_per_page, self.page_bytes, self._order = v.bufs_per_page, v.page_bytes, v.order
        self.namespace = v.namespace
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            self._kv = v
        self._get_client()
        logger.info(
            "hicache: namespace %s, %d bytes in %d buffers a page, keys%s, daemon %s",
            self.namespace,
            self.page_bytes,
            self.bufs_per_page,
            self.key_suffix or " rank-neutral",
            self.socket_path,
        )

    def register_mem_host_pool_v2(self, host_pool, host_pool_name):
        """A host pool of a hybrid pool group (SGLang's v2 interface): KV,
        draft, DSA indexer, Mamba or SWA state... Its pages get a namespace
        of their own, derived from the pool's name and geometry."""
        name = _pool_name(host_pool_name)
        if not hasattr(self, "registered_pools"):
            self.registered_pools = {}
        self.registered_pools[host_pool_name] = host_pool  # as SGLang's base does
        if host_pool is self.mem_pool_host and self._kv is not None:
            self._views[name] = self._kv  # the anchor: one view, one namespace
            return
        v = self._make_view(host_pool, name)
        with self._client_lock:
            old = self._views.get(name)
            if old is not None and old.client is not None:
                old.client.close()
            self._views[name] = v
        logger.info(
            "hicache: pool %s: namespace %s, %d bytes in %d buffers a page, keys%s",
            name,
            v.namespace,
            v.page_bytes,
            v.bufs_per_page,
            v.suffix or " rank-neutral",
        )

    def on_host_pools_registered(self) -> None:
        """Every pool of the group is known: connect each namespace now, so
        that a daemon that is away shows at attach in the log, not later."""
        for v in list(self._views.values()):
            try:
                self._view_client(v)._handle()
            except (DaemonUnavailable, HicacheError):
                pass  # logged once by the client; calls answer misses meanwhile

    def _view_client(self, v: "_PoolView") -> Client:
        if v is self._kv:
            return self._get_client()
        c = v.client
        if c is not None:
            return c
        with self._client_lock:
            if v.client is None:
                c = self._new_client(v.namespace, v.page_bytes, v.readers)
                _attach_shm_pools(c, v.pool)
                v.client = c
            return v.client

    def _new_client(self, namespace: str, page_bytes: int, readers: int) -> Client:
        return Client(
            self.socket_path,
            namespace=namespace,
            rank=self.tp_rank,
            page_size_hint=page_bytes,
            timeout_ms=self.timeout_ms,
            connect=False,
            readers_per_page=readers,
            compression=self.compression,
        )

    def _get_client(self) -> Client:
        c = self._client
        if c is not None:
            return c
        with self._client_lock:
            if self._client is None:
                c = self._new_client(self.namespace, self.page_bytes, self.readers_per_page)
                _attach_shm_pools(c, self.mem_pool_host)
                self._client = c
            return self._client

    def _warn_once(self, what: str, msg: str, *args) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(msg, *args)

    def _kv_view(self) -> "_PoolView":
        if self._kv is None:
            raise RuntimeError("hicache: register_mem_pool_host() was not called")
        return self._kv

    @staticmethod
    def _page_meta_of(v: "_PoolView", host_indices, n: int):
        """(addresses, lengths, buffers per page) of the n pages of v's pool
        at host_indices (page i at host_indices[i * page_tokens])."""
        pool = v.pool
        lps = v.page_tokens
        if host_indices.numel() < n * lps:
            raise ValueError(f"hicache: {host_indices.numel()} host indices for {n} pages")
        ptrs, sizes = pool.get_page_buffer_meta(host_indices[: n * lps])
        ptrs = np.asarray(ptrs, dtype=np.uintp)
        sizes = np.asarray(sizes, dtype=np.uintp)
        per = ptrs.size // n
        if per * n != ptrs.size:
            raise ValueError("hicache: uneven page buffers")
        if v.order is not None and per == v.order.size:
            ptrs = ptrs.reshape(n, per)[:, v.order].ravel()
            sizes = sizes.reshape(n, per)[:, v.order].ravel()
        return ptrs, sizes, per

    def _page_meta(self, host_indices, n: int):
        return self._page_meta_of(self._kv_view(), host_indices, n)

    def _pool_io(self, op: str, v: "_PoolView", keys, host_indices) -> List[int]:
        """Per-page codes of a set or get of v's pages at host_indices:
        zero-copy between the pool's buffers and the daemon's region, or,
        for a pool without buffer metadata, through its flat data pages."""
        n = len(keys)
        c = self._view_client(v)
        skeys = self._keys(keys, v.suffix)
        if v.bufs_per_page:
            ptrs, sizes, per = self._page_meta_of(v, host_indices, n)
            fn = c.batch_set_raw if op == "set" else c.batch_get_raw
            return fn(skeys, ptrs, sizes, per)
        pool, lps = v.pool, v.page_tokens
        if host_indices.numel() < n * lps:
            raise ValueError(f"hicache: {host_indices.numel()} host indices for {n} pages")
        at = [int(host_indices[i * lps]) for i in range(n)]
        if op == "set":
            pages = [pool.get_data_page(i, flat=True).contiguous() for i in at]
            return c.batch_set(skeys, pages)
        pages = [pool.get_dummy_flat_data_page() for _ in at]
        codes = c.batch_get(skeys, pages)
        for i, code in enumerate(codes):
            if code == 0:
                pool.set_from_flat_data_page(at[i], pages[i])
        return codes

    def _present(self, v: "_PoolView", keys) -> np.ndarray:
        """Which of keys v's namespace holds (bool per key)."""
        c = self._view_client(v)
        blob = packed_str_keys(keys, v.suffix)
        if blob is not None:
            try:
                _, lengths = c.batch_exists_packed(blob, len(keys), with_lengths=True)
                return np.asarray(lengths, dtype=np.uint64) > 0
            except HicacheError as e:
                if isinstance(e, DaemonUnavailable) or e.errno != errno.EINVAL:
                    raise
        _, lengths = c.batch_exists(self._keys(keys, v.suffix), with_lengths=True)
        return np.asarray(lengths, dtype=np.uint64) > 0

    def _note_codes(self, op: str, codes) -> None:
        for c in set(codes):
            if c not in (0, -2):  # -ENOENT is an ordinary miss
                self._warn_once(
                    f"{op}{c}",
                    "hicache: %s answered %s for some pages (%s)",
                    op,
                    c,
                    HicacheError(c).strerror,
                )

    def _record(self, kind: str, pages: int, nbytes: int, t0: float) -> None:
        if not self.enable_storage_metrics or pages == 0:
            return
        dt = max(time.perf_counter() - t0, 1e-9)
        with self._metrics_lock:
            if kind == "get":
                self._metrics.prefetch_pgs.append(pages)
                self._metrics.prefetch_bandwidth.append(nbytes / dt / 1e9)
            else:
                self._metrics.backup_pgs.append(pages)
                self._metrics.backup_bandwidth.append(nbytes / dt / 1e9)

    # ---- zero-copy interface (interface_v1) ---------------------------------

    def _batch_v1(self, op: str, keys, host_indices) -> List[bool]:
        n = len(keys)
        if n == 0:
            return []
        t0 = time.perf_counter()
        try:
            codes = self._pool_io(op, self._kv_view(), keys, host_indices)
        except DaemonUnavailable:
            return [False] * n
        except Exception as e:
            self._warn_once(f"exc-{op}", "hicache: batch %s_v1 failed: %r", op, e)
            logger.debug("hicache: batch %s_v1 failed", op, exc_info=True)
            return [False] * n
        self._note_codes(op, codes)
        res = [x == 0 for x in codes]
        self._record(op, sum(res), sum(res) * self.page_bytes, t0)
        return res

    def batch_get_v1(self, keys: List[str], host_indices, extra_info=None) -> List[bool]:
        """Reads pages straight into the host pool at host_indices (page i at
        host_indices[i * page_size]); False for a miss (its target untouched)."""
        return self._batch_v1("get", keys, host_indices)

    def batch_set_v1(self, keys: List[str], host_indices, extra_info=None) -> List[bool]:
        """Stores the host pool's pages at host_indices under keys."""
        return self._batch_v1("set", keys, host_indices)

    # ---- hybrid pools (SGLang's v2 interface) ------------------------------------

    def batch_exists_v2(self, keys, pool_transfers=None, extra_info=None):
        """The usable prefix of keys over KV and every pool in pool_transfers,
        as HiCacheFile computes it: kv_hit_pages is the longest prefix length
        p at which KV holds pages [0, p) and every pool holds what its hit
        policy asks (all_pages: [0, p); trailing_pages: the last
        len(transfer.keys) pages before p). extra_pool_hit_pages holds each
        pool's own boundary, restorable_prefix_pages every such p (a trailing
        pool can restore at 5 pages but not at 4). Pool pages are keyed by the
        KV page's key in the pool's own namespace. Empty when the daemon is
        away or a pool was never registered."""
        n = len(keys)
        if n == 0:
            return _transfer_result(0, {}, [])
        try:
            kv_present = self._present(self._kv_view(), keys)
            kv = n if kv_present.all() else int(np.argmin(kv_present))
            hits = {_KV_NAME(): kv} if kv else {}
            ok = np.ones(kv + 1, dtype=bool)  # ok[p]: prefix length p usable
            ok[0] = False
            for t in pool_transfers or []:
                if kv == 0 or not ok.any():
                    break
                name = _pool_name(t.name)
                policy = _policy_name(getattr(t, "hit_policy", "all_pages"))
                v = self._views.get(name)
                if v is None:
                    self._warn_once(f"nopool-{name}",
                                    "hicache: pool %s was not registered: no hits", name)
                    ok[:] = False
                    break
                present = self._present(v, keys[:kv])
                if policy == "all_pages":
                    bound = kv if present.all() else int(np.argmin(present))
                    pool_ok = np.arange(kv + 1) <= bound
                elif policy == "trailing_pages":
                    trailing = max(1, len(t.keys) if t.keys else 1)
                    missing = np.concatenate(([0], np.cumsum(~present)))
                    p = np.arange(kv + 1)
                    pool_ok = missing[p] - missing[np.maximum(0, p - trailing)] == 0
                    pool_ok[0] = False
                    bound = int(np.flatnonzero(pool_ok).max()) if pool_ok.any() else 0
                else:
                    raise ValueError(f"hicache: unsupported pool hit policy {policy!r}")
                if bound:
                    hits[t.name] = bound
                ok &= pool_ok
            restorable = np.flatnonzero(ok).tolist()
            return _transfer_result(restorable[-1] if restorable else 0, hits, restorable)
        except DaemonUnavailable:
            return _transfer_result(0, {}, [])
        except Exception as e:
            self._warn_once("exc-exists-v2", "hicache: batch_exists_v2 failed: %r", e)
            logger.debug("hicache: batch_exists_v2 failed", exc_info=True)
            return _transfer_result(0, {}, [])

    def _batch_v2(self, op: str, transfers) -> dict:
        out = {}
        for t in transfers or []:
            keys = list(t.keys or [])
            n = len(keys)
            name = _pool_name(t.name)
            v = self._views.get(name)
            if v is None:
                self._warn_once(f"nopool-{name}",
                                "hicache: pool %s was not registered: no hits", name)
                out[t.name] = [False] * n
                continue
            hi = t.host_indices
            if hi is None or int(hi.numel()) != n * v.page_tokens:
                self._warn_once(
                    f"idx-{op}-{name}",
                    "hicache: batch %s_v2 of pool %s: %s host indices for %d pages of %d",
                    op, name, None if hi is None else int(hi.numel()), n, v.page_tokens,
                )
                out[t.name] = [False] * n
                continue
            if n == 0:
                out[t.name] = []
                continue
            t0 = time.perf_counter()
            try:
                codes = self._pool_io(op, v, keys, hi)
            except DaemonUnavailable:
                out[t.name] = [False] * n
                continue
            except Exception as e:
                self._warn_once(f"exc-{op}-v2", "hicache: batch %s_v2 failed: %r", op, e)
                logger.debug("hicache: batch %s_v2 failed", op, exc_info=True)
                out[t.name] = [False] * n
                continue
            self._note_codes(op, codes)
            res = [x == 0 for x in codes]
            self._record(op, sum(res), sum(res) * v.page_bytes, t0)
            out[t.name] = res
        return out

    def batch_get_v2(self, transfers, extra_info=None) -> dict:
        """Reads each transfer's pages (keys, host_indices of its pool) into
        the pool; per pool name, one bool per key (False: miss, untouched)."""
        return self._batch_v2("get", transfers)

    def batch_set_v2(self, transfers, extra_info=None) -> dict:
        """Stores each transfer's pages from its pool; per pool name, one
        bool per key."""
        return self._batch_v2("set", transfers)

    # ---- generic interface ----------------------------------------------------

    @staticmethod
    def _as_buffer(value, size=None):
        if isinstance(value, int) and size is not None:
            return (value, int(size))
        if hasattr(value, "is_contiguous") and not value.is_contiguous():
            value = value.contiguous()
        return value

    def _targets(self, keys, target_locations, target_sizes):
        if target_locations is not None:
            sizes = target_sizes if isinstance(target_sizes, (list, tuple)) else None
            return [
                self._as_buffer(t, sizes[i] if sizes is not None else None)
                for i, t in enumerate(target_locations)
            ]
        import torch

        pool = self.mem_pool_host
        if pool is not None:
            return [pool.get_dummy_flat_data_page() for _ in keys]
        c = self._get_client()
        _, lengths = c.batch_exists(self._keys(keys), with_lengths=True)
        # a page another node's filter holds has no known length
        # (LEN_UNKNOWN, remote_index "filter"): as long as the longest known
        # one of the batch, else a quarter of the region (the largest a get
        # places in one go); a longer page is answered ENOSPC
        known = [ln for ln in lengths if ln != LEN_UNKNOWN]
        guess = max(known) if known else c.region_size // 4
        return [
            torch.empty(int(guess if ln == LEN_UNKNOWN else max(ln, 1)), dtype=torch.uint8)
            for ln in lengths
        ]

    def batch_get(self, keys, target_locations=None, target_sizes=None):
        """Reads pages into target_locations (flat tensors, or addresses with
        target_sizes; None: fresh flat pages). Returns, per key, the filled
        target or None (miss, error, daemon down)."""
        n = len(keys)
        if n == 0:
            return []
        t0 = time.perf_counter()
        try:
            targets = self._targets(keys, target_locations, target_sizes)
            codes = self._get_client().batch_get(self._keys(keys), targets)
        except DaemonUnavailable:
            return [None] * n
        except Exception as e:
            self._warn_once("exc-get", "hicache: batch_get failed: %r", e)
            return [None] * n
        self._note_codes("get", codes)
        out = [t if c == 0 else None for t, c in zip(targets, codes)]
        hits = sum(c == 0 for c in codes)
        self._record("get", hits, hits * self.page_bytes, t0)
        return out

    def get(self, key, target_location=None, target_sizes=None):
        locs = None if target_location is None else [target_location]
        sizes = None if target_sizes is None else [target_sizes]
        return self.batch_get([key], locs, sizes)[0]

    def batch_set(self, keys, values=None, target_locations=None, target_sizes=None) -> bool:
        """Stores values (tensors / buffers), or target_locations with
        target_sizes (addresses). True only if every page was stored."""
        n = len(keys)
        if n == 0:
            return True
        t0 = time.perf_counter()
        try:
            if values is not None:
                bufs = [self._as_buffer(v) for v in values]
            else:
                sizes = target_sizes if isinstance(target_sizes, (list, tuple)) else None
                bufs = [
                    self._as_buffer(t, sizes[i] if sizes is not None else None)
                    for i, t in enumerate(target_locations)
                ]
            codes = self._get_client().batch_set(self._keys(keys), bufs)
        except DaemonUnavailable:
            return False
        except Exception as e:
            self._warn_once("exc-set", "hicache: batch_set failed: %r", e)
            return False
        self._note_codes("set", codes)
        stored = sum(c == 0 for c in codes)
        self._record("set", stored, stored * self.page_bytes, t0)
        return stored == n

    def set(self, key, value=None, target_location=None, target_sizes=None) -> bool:
        return self.batch_set(
            [key],
            None if value is None else [value],
            None if target_location is None else [target_location],
            None if target_sizes is None else [target_sizes],
        )

    def exists(self, key) -> bool:
        return self.batch_exists([key]) == 1

    def batch_exists(self, keys, extra_info=None) -> int:
        """How many leading keys exist (0 when the daemon is away)."""
        if not keys:
            return 0
        try:
            c = self._get_client()
            # SGLang's keys are valid names: send them with the rank suffix as
            # they are and let the daemon check them (one pass in C). Keys that
            # are not all ASCII str, or that the daemon refuses, go through the
            # mapping of _key, as set/get do.
            blob = packed_str_keys(keys, self.key_suffix)
            if blob is not None:
                try:
                    return c.batch_exists_packed(blob, len(keys))
                except HicacheError as e:
                    if isinstance(e, DaemonUnavailable) or e.errno != errno.EINVAL:
                        raise
            return c.batch_exists(self._keys(keys))
        except DaemonUnavailable:
            return 0
        except Exception as e:
            self._warn_once("exc-exists", "hicache: batch_exists failed: %r", e)
            return 0

    # ---- management ------------------------------------------------------------

    def clear(self) -> bool:
        """Drops the pages of this backend's namespaces (KV and every
        registered pool) on this node's daemon."""
        clients = [(self.namespace, self._get_client())]
        clients += [(v.namespace, self._view_client(v)) for v in list(self._views.values())
                    if v is not self._kv]
        try:
            for ns, c in clients:
                n = c.clear()
                logger.info("hicache: cleared %d pages of %s", n, ns)
            return True
        except (DaemonUnavailable, HicacheError) as e:
            logger.warning("hicache: clear failed: %s", e)
            return False

    def get_stats(self):
        """SGLang's StorageMetrics (pages and GB/s per get/set batch since the
        last call), or None when storage metrics are off."""
        if not self.enable_storage_metrics:
            return None
        with self._metrics_lock:
            m, self._metrics = self._metrics, StorageMetrics()
        return m

    def daemon_stats(self) -> Optional[dict]:
        """The daemon's counters, or None when it is away."""
        try:
            return self._get_client().stats()
        except (DaemonUnavailable, HicacheError):
            return None

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            for v in self._views.values():
                if v.client is not None:
                    v.client.close()
                    v.client = None
