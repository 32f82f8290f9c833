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

from .client import (
    COMPRESSION_DEFAULT,
    COMPRESSION_OFF,
    COMPRESSION_ZSTD,
    DEFAULT_SOCKET,
    Client,
    DaemonUnavailable,
    HicacheError,
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


_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
FORMAT_VERSION = 1


def valid_name(s: str) -> bool:
    """What the daemon accepts as a key or namespace (common/key.h)."""
    return bool(_NAME_RE.match(s)) and ".." not in s and s != "."


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
            opts.get("socket_path") or os.environ.get("HICACHED_SOCKET") or DEFAULT_SOCKET
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

        suffix = []
        if not self.is_mla_model:
            suffix.append(f"tp{self.tp_rank}-{self.tp_size}")
        if self.pp_size > 1:
            suffix.append(f"pp{self.pp_rank}-{self.pp_size}")
        if self.attn_cp_size > 1:
            suffix.append(f"cp{self.attn_cp_rank}-{self.attn_cp_size}")
        if self.dcp_size > 1:
            suffix.append(f"dcp{self.dcp_rank}-{self.dcp_size}")
        self.key_suffix = ("_" + "_".join(suffix)) if suffix else ""

        # Ranks that read each key: for MLA every TP rank of the storage
        # config's group reads the same rank-neutral page (PP, attention-CP
        # and DCP ranks have keys of their own). tp_size is an upper bound
        # when CP ranks share the TP group: too high only keeps a page in the
        # daemon until read_linger_ms, too low would read it again.
        rpp = opts.get("readers_per_page", None)
        if rpp is not None:
            self.readers_per_page = max(0, min(int(rpp), 1024))
        else:
            self.readers_per_page = min(self.tp_size, 1024) if self.is_mla_model else 1

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

    # ---- naming -------------------------------------------------------------

    def _describe_pool(self, pool) -> dict:
        d = {
            "fmt": FORMAT_VERSION,
            "model": self.model_name,
            "kind": "mla" if hasattr(pool, "kv_lora_rank") else "mha",
            "dtype": str(getattr(pool, "dtype", "")),
            "layout": getattr(pool, "layout", ""),
            "page_size": int(getattr(pool, "page_size", 0)),
            "layers": int(getattr(pool, "layer_num", 0)),
            "page_bytes": self.page_bytes,
            "bufs_per_page": self.bufs_per_page,
            "tag": getattr(pool, "storage_format_tag", None),
        }
        for a in ("head_num", "head_dim", "v_head_dim", "kv_cache_dim", "kv_lora_rank"):
            if hasattr(pool, a):
                d[a] = int(getattr(pool, a))
        if hasattr(pool, "qk_rope_head_dim"):
            d["qk_rope_head_dim"] = int(pool.qk_rope_head_dim)
        return d

    def _namespace(self, pool) -> str:
        if self._ns_override:
            ns = str(self._ns_override)
            if not valid_name(ns):
                raise ValueError(f"hicache: namespace {ns!r} is not [A-Za-z0-9_.-]{{1,256}}")
            return ns
        model = sanitize(self.model_name, 64) or "model"
        if pool is None:
            desc = {"fmt": FORMAT_VERSION, "model": self.model_name, "kind": "generic"}
            readable = f"{model}.generic"
        else:
            desc = self._describe_pool(pool)
            readable = "{}.{}.{}.{}.p{}".format(
                model,
                desc["kind"],
                _short_dtype(desc["dtype"]),
                sanitize(desc["layout"], 24),
                desc["page_size"],
            )
        digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
        return sanitize(f"{readable}.{digest}", 256)

    def _key(self, key) -> str:
        k = key if isinstance(key, str) else str(key)
        full = k + self.key_suffix
        if valid_name(full):
            return full
        return "h" + hashlib.sha256(k.encode()).hexdigest() + self.key_suffix

    def _keys(self, keys) -> List[str]:
        return [self._key(k) for k in keys]

    # ---- set-up ------------------------------------------------------------

    def register_mem_pool_host(self, mem_pool_host):
        super().register_mem_pool_host(mem_pool_host)
        self.mem_pool_host = mem_pool_host
        pool = mem_pool_host
        import torch

        lps = int(getattr(pool, "logical_page_size", pool.page_size))
        try:
            ptrs, sizes = pool.get_page_buffer_meta(torch.arange(lps, dtype=torch.int64))
            self.bufs_per_page = len(ptrs)
            self.page_bytes = int(sum(sizes))
        except Exception as e:  # a pool without zero-copy metadata: generic path only
            logger.warning("hicache: %s has no usable get_page_buffer_meta (%s)", type(pool), e)
            self.bufs_per_page = 0
            self.page_bytes = int(pool.get_size_per_token() * pool.page_size)
        # MHA layer_first: get_page_buffer_meta lists K0 V0 K1 V1 ...; store
        # K0..Kn V0..Vn, the order of get_data_page(flat=True).
        self._order = None
        if (
            getattr(pool, "layout", None) == "layer_first"
            and hasattr(pool, "k_buffer")
            and hasattr(pool, "v_buffer")
            and self.bufs_per_page == 2 * int(getattr(pool, "layer_num", -1))
        ):
            n = self.bufs_per_page
            self._order = np.concatenate([np.arange(0, n, 2), np.arange(1, n, 2)])
        self.namespace = self._namespace(pool)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        self._get_client()
        logger.info(
            "hicache: namespace %s, %d bytes in %d buffers a page, keys%s, daemon %s",
            self.namespace,
            self.page_bytes,
            self.bufs_per_page,
            self.key_suffix or " rank-neutral",
            self.socket_path,
        )

    def _get_client(self) -> Client:
        c = self._client
        if c is not None:
            return c
        with self._client_lock:
            if self._client is None:
                self._client = Client(
                    self.socket_path,
                    namespace=self.namespace,
                    rank=self.tp_rank,
                    page_size_hint=self.page_bytes,
                    timeout_ms=self.timeout_ms,
                    connect=False,
                    readers_per_page=self.readers_per_page,
                    compression=self.compression,
                )
            return self._client

    def _warn_once(self, what: str, msg: str, *args) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(msg, *args)

    def _page_meta(self, host_indices, n: int):
        pool = self.mem_pool_host
        if pool is None:
            raise RuntimeError("hicache: register_mem_pool_host() was not called")
        lps = int(getattr(pool, "logical_page_size", pool.page_size))
        if host_indices.numel() < n * lps:
            raise ValueError(f"hicache: {host_indices.numel()} host indices for {n} pages")
        ptrs, sizes = pool.get_page_buffer_meta(host_indices[: n * lps])
        ptrs = np.asarray(ptrs, dtype=np.uintp)
        sizes = np.asarray(sizes, dtype=np.uintp)
        per = ptrs.size // n
        if per * n != ptrs.size:
            raise ValueError("hicache: uneven page buffers")
        if self._order is not None and per == self._order.size:
            ptrs = ptrs.reshape(n, per)[:, self._order].ravel()
            sizes = sizes.reshape(n, per)[:, self._order].ravel()
        return ptrs, sizes, per

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
            ptrs, sizes, per = self._page_meta(host_indices, n)
            c = self._get_client()
            fn = c.batch_set_raw if op == "set" else c.batch_get_raw
            codes = fn(self._keys(keys), ptrs, sizes, per)
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
        _, lengths = self._get_client().batch_exists(self._keys(keys), with_lengths=True)
        return [torch.empty(int(max(ln, 1)), dtype=torch.uint8) for ln in lengths]

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
        """Drops this namespace's pages on this node's daemon."""
        try:
            n = self._get_client().clear()
            logger.info("hicache: cleared %d pages of %s", n, self.namespace)
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
