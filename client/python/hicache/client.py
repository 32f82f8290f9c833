"""hicache.Client: batch set/get/exists against hicached through libhicache.

Page bytes never go through Python: the caller's buffers are described as
(address, length) lists (hc_buf) and libhicache copies them to and from the
shared region in C, with the GIL released.

Threads: every thread gets its own connection (threading.local), so calls
from several threads run in parallel; close() closes them all and must not
race with calls in flight.

Daemon away: a call whose connection fails is retried once on a fresh
connection (this covers a daemon restart); if that fails too the client is
"down": calls raise DaemonUnavailable at once, without touching the socket,
until a backoff (0.05 s doubling to 5 s) has passed, then one call tries to
reconnect. The outage is logged once, the recovery once.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import threading
import time
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._lib import BUF_DTYPE, COMPRESSION_DEFAULT, COMPRESSION_OFF, COMPRESSION_ZSTD, PAGE_DTYPE

logger = logging.getLogger("hicache")

# batch_exists's length of a page that exists with its length not known (a
# page another node holds in a filter: remote_index "filter"; HC_LEN_UNKNOWN).
LEN_UNKNOWN = 2**64 - 1

# Errors that mean "the connection (or the daemon) is gone", as opposed to an
# answer about one page or a bad argument.
CONNECTION_ERRORS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ENOTCONN,
        errno.ETIMEDOUT,
        errno.ESHUTDOWN,
        errno.EPROTO,
    }
)
# Of those, the ones a restarted daemon shows on an old connection: worth one
# immediate retry on a new connection. (A timeout is not retried: a hung
# daemon must cost one timeout, not several.)
RETRY_ERRORS = frozenset(
    {errno.ECONNRESET, errno.EPIPE, errno.ESHUTDOWN, errno.ECONNABORTED, errno.ENOTCONN}
)


class HicacheError(OSError):
    """A libhicache call failed as a whole; .errno is the positive errno."""

    def __init__(self, err: int, what: str = "", msg: Optional[str] = None):
        code = -err if err < 0 else err
        msg = msg or _lib.strerror(-code)
        super().__init__(code, f"{what}: {msg} ({_lib.err_name(-code)})" if what else msg)


class DaemonUnavailable(HicacheError, ConnectionError):
    """hicached cannot be reached now (down, restarting, or in backoff)."""


def _is_pair(obj) -> bool:
    return (
        isinstance(obj, tuple)
        and len(obj) == 2
        and all(isinstance(x, (int, np.integer)) for x in obj)
    )


def _addr_len(obj, writable: bool) -> Tuple[int, int, object]:
    """(address, byte length, keepalive) of one buffer: an (addr, len) pair,
    a CPU torch tensor, or any C-contiguous buffer-protocol object."""
    if _is_pair(obj):
        return int(obj[0]), int(obj[1]), None
    if hasattr(obj, "data_ptr") and hasattr(obj, "element_size"):  # torch.Tensor
        if getattr(obj, "device", None) is not None and obj.device.type != "cpu":
            raise ValueError("hicache: tensors must be in host (CPU) memory")
        if not obj.is_contiguous():
            raise ValueError("hicache: tensors must be contiguous")
        return obj.data_ptr(), obj.numel() * obj.element_size(), obj
    if isinstance(obj, np.ndarray):
        if not obj.flags.c_contiguous:
            raise ValueError("hicache: arrays must be C-contiguous")
        if writable and not obj.flags.writeable:
            raise ValueError("hicache: a get needs writable buffers")
        return obj.ctypes.data, obj.nbytes, obj
    mv = memoryview(obj)
    if not mv.c_contiguous:
        raise ValueError("hicache: buffers must be C-contiguous")
    if writable and mv.readonly:
        raise ValueError("hicache: a get needs writable buffers")
    arr = np.frombuffer(mv.cast("B"), dtype=np.uint8) if mv.nbytes else np.empty(0, np.uint8)
    return arr.ctypes.data, mv.nbytes, (arr, mv)


def _keys_blob(keys: Sequence[str]):
    """The keys as NUL-terminated C strings in one byte blob: (the blob, which
    keeps them alive, the address of each key in it). The blob is
    _packed_keys' (a few C-level calls for the usual ASCII str keys: this
    runs on every get/set, so it must not cost a Python step per key); the
    addresses follow its NULs, whose count also catches a key holding one."""
    n = len(keys)
    blob = _packed_keys(keys)
    arr = np.frombuffer(blob, dtype=np.uint8)
    nuls = np.flatnonzero(arr == 0)
    if nuls.size != n:
        raise ValueError("hicache: a key contains a NUL byte")
    offs = np.zeros(n, dtype=np.uintp)
    offs[1:] = nuls[:-1] + 1
    return blob, arr.ctypes.data + offs


def packed_str_keys(keys: Sequence[str], suffix: str = "") -> Optional[bytes]:
    """The keys, each with suffix and a NUL byte after it, as one bytes object
    (hc_batch_exists_packed), in two C-level calls; None unless every key is
    an ASCII str. The checks are the daemon's (a key holding a NUL shows as a
    wrong NUL count in C)."""
    sep = suffix + "\0"
    try:
        joined = sep.join(keys) + sep
    except TypeError:
        return None
    return joined.encode() if joined.isascii() else None


def _packed_keys(keys: Sequence[str], suffix: str = "") -> bytes:
    """packed_str_keys for any str or bytes-like keys."""
    blob = packed_str_keys(keys, suffix)
    if blob is not None:
        return blob
    # memoryview: bytes-like keys only (bytes(5) would be five NULs, not "5")
    enc = [(k.encode() if isinstance(k, str) else memoryview(k).tobytes()) + suffix.encode() for k in keys]
    for k, b in zip(keys, enc):
        if b"\0" in b:
            raise ValueError(f"hicache: key {k!r} contains a NUL byte")
    return b"\0".join(enc) + b"\0"


def names_valid(names: Sequence[str], suffix: str = "") -> np.ndarray:
    """Which names (each with suffix) are valid keys / namespaces, by the
    library's check (hc_names_check: the daemon's rule, no copy of it here):
    one C call for the whole list. A name holding a NUL byte is invalid."""
    n = len(names)
    ok = np.zeros(n, dtype=np.uint8)
    if n == 0:
        return ok.astype(bool)
    try:
        blob = _packed_keys(names, suffix)
    except ValueError:  # a NUL inside a name: check one by one
        blob = None
    lib = _lib.lib()
    if blob is None or lib.hc_names_check(blob, len(blob), n, ok.ctypes.data) < 0:
        for i, name in enumerate(names):
            try:
                one = _packed_keys([name], suffix)
            except ValueError:
                continue
            if lib.hc_names_check(one, len(one), 1, ok[i:].ctypes.data) < 0:
                ok[i] = 0
    return ok.astype(bool)


class Client:
    """A connection set (one per thread) to hicached.

    socket_path: the daemon's socket (None: $HICACHED_SOCKET or the
    library's default, /run/hicached/hicached.sock). namespace: [A-Za-z0-9_.-]{1,256}.
    timeout_ms bounds every call (a hung daemon costs at most that).
    readers_per_page: how many clients read each page this one reads (the TP
    ranks of an MLA model); the daemon keeps a page it read for the others, so
    it is read from storage once. 0/1: none. compression: COMPRESSION_DEFAULT
    (the daemon's enable_compression), COMPRESSION_OFF or COMPRESSION_ZSTD for
    the pages this client sets."""

    def __init__(
        self,
        socket_path: Optional[str] = None,
        namespace: str = "default",
        rank: int = 0,
        page_size_hint: int = 0,
        timeout_ms: int = 5000,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        connect: bool = True,
        readers_per_page: int = 0,
        compression: int = COMPRESSION_DEFAULT,
    ):
        self._lib = _lib.lib()
        self.socket_path = socket_path or os.environ.get("HICACHED_SOCKET") or _lib.default_socket()
        self.namespace = namespace
        self.rank = int(rank)
        self.page_size_hint = int(page_size_hint)
        self.timeout_ms = int(timeout_ms)
        self.readers_per_page = int(readers_per_page)
        self.compression = int(compression)
        rmax = _lib.max_readers_per_page()
        if not 0 <= self.readers_per_page <= rmax:
            raise ValueError(f"readers_per_page {readers_per_page} is not in 0..{rmax}")
        if self.compression not in (COMPRESSION_DEFAULT, COMPRESSION_OFF, COMPRESSION_ZSTD):
            raise ValueError(f"compression {compression!r} is not 0, 1 or 2")
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._handles: List[ctypes.c_void_p] = []
        self._closed = False
        self._down = False  # an outage is ongoing (logged once)
        self._down_until = 0.0
        self._backoff = backoff_min
        self._connects = 0
        self._pools: List[Tuple[int, int, int]] = []  # (our dup of the fd, base, size)
        self._pool_warned = False
        if connect:
            self._handle()  # fail early (DaemonUnavailable) if nothing listens

    # ---- connection management ------------------------------------------

    def _connect(self) -> ctypes.c_void_p:
        opts = _lib.HcConnectOpts(
            self.namespace.encode(),
            self.rank,
            self.page_size_hint,
            self.timeout_ms,
            self.readers_per_page,
            self.compression,
        )
        h = ctypes.c_void_p()
        rc = self._lib.hc_connect(ctypes.byref(h), self.socket_path.encode(), ctypes.byref(opts))
        if rc < 0:
            if -rc in (errno.EINVAL, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG):
                raise HicacheError(rc, f"connect to {self.socket_path}")
            msg = "no socket there (daemon not running?)" if rc == -errno.ENOENT else None
            raise DaemonUnavailable(rc, f"connect to {self.socket_path}", msg)
        with self._lock:
            if self._closed:
                self._lib.hc_close(h)
                raise HicacheError(-errno.EBADF, "client closed")
            self._handles.append(h)
            self._connects += 1
            pools = list(self._pools)
        for fd, base, size in pools:
            self._pool_on(h, fd, base, size)
        return h

    def _pool_on(self, h, fd: int, base: int, size: int) -> bool:
        rc = self._lib.hc_pool_register(h, fd, base, size)
        if rc > 0:
            return True
        if not self._pool_warned:
            self._pool_warned = True
            logger.warning(
                "hicache: host pool of %d bytes not registered with the daemon (%s): "
                "its pages go through the shared region",
                size,
                _lib.strerror(rc),
            )
        return False

    def register_pool(self, fd: int, base: int, size: int) -> bool:
        """Registers a host pool: fd a memfd (or /dev/shm file) of at least
        size bytes that this process maps at address base (SGLang's shm host
        KV pool). Pages whose buffers all lie in it then move straight between
        the daemon and the pool, with no copy through the shared region; every
        connection of this client (also later ones) registers it. The pool
        must stay mapped while the client is open. Returns whether the daemon
        took it on the current connection (False: those pages go through the
        region, as before)."""
        dup = os.dup(fd)
        with self._lock:
            self._pools.append((dup, int(base), int(size)))
            handles = list(self._handles)
        ok = True
        for h in handles:
            ok = self._pool_on(h, dup, int(base), int(size)) and ok
        return ok

    def _drop(self, h) -> None:
        with self._lock:
            try:
                self._handles.remove(h)
            except ValueError:
                return
        self._lib.hc_close(h)
        if getattr(self._tls, "h", None) is h:
            self._tls.h = None

    def _mark_down(self, err: DaemonUnavailable) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.backoff_max)
            first = not self._down
            self._down = True
        if first:
            logger.warning(
                "hicache: daemon unreachable at %s (%s); answering misses, reconnecting with backoff",
                self.socket_path,
                err.strerror,
            )

    def _mark_up(self) -> None:
        with self._lock:
            was_down = self._down
            self._down = False
            self._backoff = self.backoff_min
            self._down_until = 0.0
        if was_down:
            logger.warning("hicache: reconnected to the daemon at %s", self.socket_path)

    def _handle(self, force: bool = False) -> ctypes.c_void_p:
        if self._closed:
            raise HicacheError(-errno.EBADF, "client closed")
        h = getattr(self._tls, "h", None)
        if h is not None:
            return h
        if not force and self._down and time.monotonic() < self._down_until:
            raise DaemonUnavailable(-errno.ECONNREFUSED, "daemon down (in backoff)")
        try:
            h = self._connect()
        except DaemonUnavailable as e:
            self._mark_down(e)
            raise
        self._tls.h = h
        self._mark_up()
        return h

    def _run(self, what: str, fn):
        """Runs fn(handle) -> rc. A connection error on a working connection
        is retried once on a new one; a second one marks the daemon down."""
        h = self._handle()
        rc = fn(h)
        if rc >= 0 or -rc not in CONNECTION_ERRORS:
            return rc
        self._drop(h)
        if -rc in RETRY_ERRORS:
            h = self._handle(force=True)
            rc = fn(h)
            if rc >= 0 or -rc not in CONNECTION_ERRORS:
                return rc
            self._drop(h)
        err = DaemonUnavailable(rc, what)
        self._mark_down(err)
        raise err

    @property
    def is_down(self) -> bool:
        return self._down

    @property
    def connects(self) -> int:
        """How many connections this client has opened (tests, diagnostics)."""
        return self._connects

    def close(self) -> None:
        """Closes every thread's connection. No call may be running."""
        with self._lock:
            self._closed = True
            handles, self._handles = self._handles, []
            pools, self._pools = self._pools, []
        for h in handles:
            self._lib.hc_close(h)
        for fd, _, _ in pools:
            os.close(fd)
        self._tls = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    # ---- page batches -----------------------------------------------------

    def _pages(self, keys, ptrs, lens, counts):
        n = len(keys)
        ptrs = np.ascontiguousarray(ptrs, dtype=np.uintp).reshape(-1)
        lens = np.ascontiguousarray(lens, dtype=np.uintp).reshape(-1)
        if ptrs.shape != lens.shape:
            raise ValueError("hicache: as many lengths as addresses are needed")
        if np.isscalar(counts) or isinstance(counts, int):
            counts = np.full(n, int(counts), dtype=np.uintc)
        else:
            counts = np.ascontiguousarray(counts, dtype=np.uintc)
        if counts.shape != (n,) or int(counts.sum()) != ptrs.size:
            raise ValueError("hicache: buffer counts do not match the buffers given")
        bufs = np.empty(ptrs.size, dtype=BUF_DTYPE)
        bufs["base"] = ptrs
        bufs["len"] = lens
        blob, key_addrs = _keys_blob(keys)
        pages = np.zeros(n, dtype=PAGE_DTYPE)
        pages["key"] = key_addrs
        pages["nbufs"] = counts
        starts = np.zeros(n, dtype=np.uintp)
        if n > 1:
            np.cumsum(counts[:-1], out=starts[1:])
        pages["bufs"] = bufs.ctypes.data + starts * BUF_DTYPE.itemsize
        return pages, (bufs, blob)

    def _batch(self, op: str, keys, ptrs, lens, counts) -> List[int]:
        n = len(keys)
        if n == 0:
            return []
        pages, keep = self._pages(keys, ptrs, lens, counts)
        results = np.zeros(n, dtype=np.intc)
        fn = self._lib.hc_batch_set if op == "set" else self._lib.hc_batch_get
        self._run(
            f"batch {op}",
            lambda h: fn(h, pages.ctypes.data, n, results.ctypes.data),
        )
        del keep
        return results.tolist()

    def batch_set_raw(self, keys: Sequence[str], ptrs, lens, counts=1) -> List[int]:
        """Stores len(keys) pages; page i is the concatenation of its counts[i]
        buffers (ptrs/lens, in page order; counts may be one int for all).
        Returns per page 0 (stored) or -errno. Raises DaemonUnavailable."""
        return self._batch("set", keys, ptrs, lens, counts)

    def batch_get_raw(self, keys: Sequence[str], ptrs, lens, counts=1) -> List[int]:
        """Reads pages into their buffers. Per page: 0 hit (buffers hold the
        page), -ENOENT miss (buffers untouched, but for a record that failed
        its check), -ENOSPC / -EMSGSIZE the page is longer / shorter than the
        buffers, other -errno."""
        return self._batch("get", keys, ptrs, lens, counts)

    def _describe(self, values, writable: bool):
        ptrs, lens, counts, keep = [], [], [], []
        for v in values:
            parts = v if isinstance(v, list) or (isinstance(v, tuple) and not _is_pair(v)) else [v]
            for part in parts:
                a, ln, k = _addr_len(part, writable)
                ptrs.append(a)
                lens.append(ln)
                keep.append(k)
            counts.append(len(parts))
        return ptrs, lens, counts, keep

    def batch_set(self, keys: Sequence[str], values: Sequence) -> List[int]:
        """values[i]: a buffer (numpy array, CPU tensor, bytes-like, or an
        (address, length) pair) or a list of them. Per-page codes as
        batch_set_raw."""
        return self._batch_buffers("set", keys, values)

    def batch_get(self, keys: Sequence[str], buffers: Sequence) -> List[int]:
        """Reads each page into buffers[i] (same forms as batch_set, writable).
        Per-page codes as batch_get_raw."""
        return self._batch_buffers("get", keys, buffers)

    def _batch_buffers(self, op: str, keys, values) -> List[int]:
        if len(values) != len(keys):
            raise ValueError(f"hicache: one {'value' if op == 'set' else 'buffer'} per key")
        ptrs, lens, counts, keep = self._describe(values, writable=op == "get")
        r = self._batch(op, keys, ptrs, lens, counts)
        del keep
        return r

    def batch_exists(self, keys: Sequence[str], with_lengths: bool = False, suffix: str = ""):
        """How many leading keys exist; with_lengths: (leading, [length or 0];
        LEN_UNKNOWN for a page that exists whose length is not known).
        suffix is appended to every key (the backend's rank suffix), so the
        caller need not build a new list. Invalid keys: HicacheError EINVAL."""
        if len(keys) == 0:
            return (0, []) if with_lengths else 0
        return self.batch_exists_packed(_packed_keys(keys, suffix), len(keys), with_lengths)

    def batch_exists_packed(self, blob: bytes, n: int, with_lengths: bool = False):
        """batch_exists for n keys already packed in blob, each followed by a
        NUL byte (hc_batch_exists_packed). EINVAL when the NULs are not n."""
        if n == 0:
            return (0, []) if with_lengths else 0
        lengths = np.zeros(n, dtype=np.uint64) if with_lengths else None
        lp = lengths.ctypes.data if with_lengths else None
        rc = self._run(
            "batch exists",
            lambda h: self._lib.hc_batch_exists_packed(h, blob, len(blob), n, lp),
        )
        if rc < 0:
            raise HicacheError(rc, "batch exists")
        return (rc, lengths.tolist()) if with_lengths else rc

    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    # ---- control ----------------------------------------------------------

    def stats(self) -> dict:
        """The daemon's counters (DESIGN §7) as a dict."""
        out = ctypes.c_void_p()
        rc = self._run("stats", lambda h: self._lib.hc_stats(h, ctypes.byref(out)))
        if rc < 0:
            raise HicacheError(rc, "stats")
        try:
            return json.loads(ctypes.string_at(out.value).decode())
        finally:
            self._lib.hc_free(out)

    def clear(self) -> int:
        """Drops every page of this namespace on this node; returns how many."""
        rc = self._run("clear", lambda h: self._lib.hc_clear(h))
        if rc < 0:
            raise HicacheError(rc, "clear")
        return rc

    def ping(self) -> None:
        rc = self._run("ping", lambda h: self._lib.hc_ping(h))
        if rc < 0:
            raise HicacheError(rc, "ping")

    @property
    def region_size(self) -> int:
        return int(self._lib.hc_region_size(self._handle()))

    @property
    def node_id(self) -> str:
        return self._lib.hc_node_id(self._handle()).decode()


def ok(codes: Iterable[int]) -> List[bool]:
    """Per-page codes to booleans (True where 0)."""
    return [c == 0 for c in codes]
