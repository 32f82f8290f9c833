"""The original design's module name for the SGLang backend:
module_path "juicefs_hicache_storage", class_name "HiCacheJuiceFS"."""

from hicache.sglang_backend import HiCacheJuiceFS, StorageMetrics

__all__ = ["HiCacheJuiceFS", "StorageMetrics"]
