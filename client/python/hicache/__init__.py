"""hicache: Python client of hicached, and its SGLang HiCache storage backend.

    import hicache
    c = hicache.Client("/run/hicached/hicached.sock", namespace="demo")
    c.batch_set(["k1"], [numpy_array])          # -> [0]
    c.batch_get(["k1"], [out_array])            # -> [0] hit, [-2] miss (-ENOENT)
    c.batch_exists(["k1", "k2"])                # -> 1 (leading keys that exist)

The SGLang backend is `hicache.HiCacheJuiceFS` (also importable as
`juicefs_hicache_storage.HiCacheJuiceFS`); it imports SGLang only when it is
first used. libhicache is found through $HICACHE_LIB, next to this package, or
the system library path.
"""

from .client import (
    COMPRESSION_DEFAULT,
    COMPRESSION_OFF,
    COMPRESSION_ZSTD,
    CONNECTION_ERRORS,
    Client,
    DaemonUnavailable,
    HicacheError,
    ok,
)

__version__ = "0.1.0"

__all__ = [
    "COMPRESSION_DEFAULT",
    "COMPRESSION_OFF",
    "COMPRESSION_ZSTD",
    "CONNECTION_ERRORS",
    "Client",
    "DaemonUnavailable",
    "HicacheError",
    "HiCacheJuiceFS",
    "ok",
    "__version__",
]


def __getattr__(name):
    # Lazy: the backend module imports SGLang (heavy) when it is present.
    if name == "HiCacheJuiceFS":
        from .sglang_backend import HiCacheJuiceFS

        return HiCacheJuiceFS
    raise AttributeError(f"module 'hicache' has no attribute {name!r}")
