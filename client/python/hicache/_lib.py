"""ctypes binding of libhicache (client/hicache.h).

The library is found, in order, at $HICACHE_LIB (a file path), next to this
package (hicache/libhicache.so*), then by the system's library search
(libhicache.so.0 / libhicache.so). It is loaded on first use, so importing
`hicache` works on a machine without it.

Every function returns 0 (or a count) or a negative errno, as in C. CDLL
releases the GIL around each call, so the page copies (done in C, between the
caller's buffers and the shared region) run in parallel across threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading

import numpy as np

class HcBuf(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class HcPage(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_char_p),
        ("bufs", ctypes.POINTER(HcBuf)),
        ("nbufs", ctypes.c_uint),
    ]


class HcConnectOpts(ctypes.Structure):
    _fields_ = [
        ("ns", ctypes.c_char_p),
        ("rank", ctypes.c_uint32),
        ("page_size_hint", ctypes.c_uint64),
        ("timeout_ms", ctypes.c_int),
        ("readers_per_page", ctypes.c_uint32),
        ("compression", ctypes.c_uint32),
    ]


# HcConnectOpts.compression (hicache.h HC_COMPRESSION_*)
COMPRESSION_DEFAULT = 0  # the daemon's enable_compression
COMPRESSION_OFF = 1
COMPRESSION_ZSTD = 2


def _np_struct(cls, kinds):
    """numpy dtype with exactly the C layout of a ctypes Structure, so arrays
    of hc_buf / hc_page can be filled with vectorized numpy writes."""
    names = [f[0] for f in cls._fields_]
    return np.dtype(
        {
            "names": names,
            "formats": kinds,
            "offsets": [getattr(cls, n).offset for n in names],
            "itemsize": ctypes.sizeof(cls),
        }
    )


BUF_DTYPE = _np_struct(HcBuf, [np.uintp, np.uintp])
PAGE_DTYPE = _np_struct(HcPage, [np.uintp, np.uintp, np.uintc])

_lock = threading.Lock()
_lib = None
_lib_path = None


def _candidates():
    env = os.environ.get("HICACHE_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libhicache.so", "libhicache.so.0"):
        p = os.path.join(here, name)
        if os.path.exists(p):
            yield p
    yield "libhicache.so.0"
    found = ctypes.util.find_library("hicache")
    if found:
        yield found
    yield "libhicache.so"


def _declare(lib):
    c_int, c_char_p, c_size_t = ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t
    vp = ctypes.c_void_p
    sigs = {
        "hc_connect": (c_int, [ctypes.POINTER(vp), c_char_p, ctypes.POINTER(HcConnectOpts)]),
        "hc_close": (None, [vp]),
        "hc_batch_set": (c_int, [vp, vp, c_size_t, vp]),
        "hc_batch_get": (c_int, [vp, vp, c_size_t, vp]),
        "hc_batch_exists": (c_int, [vp, vp, c_size_t, vp]),
        "hc_batch_exists_packed": (c_int, [vp, c_char_p, c_size_t, c_size_t, vp]),
        "hc_stats": (c_int, [vp, ctypes.POINTER(vp)]),
        "hc_clear": (c_int, [vp]),
        "hc_ping": (c_int, [vp]),
        "hc_pool_register": (c_int, [vp, c_int, vp, ctypes.c_uint64]),
        "hc_region_size": (ctypes.c_uint64, [vp]),
        "hc_node_id": (c_char_p, [vp]),
        "hc_free": (None, [vp]),
        "hc_strerror": (c_char_p, [c_int]),
        "hc_err_name": (c_char_p, [c_int]),
        "hc_names_check": (ctypes.c_long, [c_char_p, c_size_t, c_size_t, vp]),
        "hc_default_socket": (c_char_p, []),
        "hc_max_readers_per_page": (ctypes.c_uint, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def lib():
    """Returns the loaded library; raises OSError naming every place tried."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for cand in _candidates():
            try:
                handle = ctypes.CDLL(cand)
            except OSError as e:
                tried.append(f"{cand} ({e})")
                continue
            _declare(handle)
            _lib_path = cand
            _lib = handle
            return _lib
        raise OSError(
            "libhicache not found: set HICACHE_LIB to the path of libhicache.so "
            "(built by `make`), install it, or put it next to the hicache package. "
            "Tried: " + "; ".join(tried)
        )


def lib_path():
    lib()
    return _lib_path


def default_socket() -> str:
    """The daemon's control socket when none is configured (hicache_defs.h,
    through the library: the one source of it). Raises OSError without
    the library."""
    return lib().hc_default_socket().decode()


def max_readers_per_page() -> int:
    """The largest readers_per_page a client may declare (hicache_defs.h)."""
    return int(lib().hc_max_readers_per_page())


def strerror(err: int) -> str:
    try:
        return lib().hc_strerror(err).decode()
    except OSError:
        return os.strerror(-err) if err < 0 else "ok"


def err_name(err: int) -> str:
    try:
        return lib().hc_err_name(err).decode()
    except OSError:
        return errno.errorcode.get(-err, "UNKNOWN")
