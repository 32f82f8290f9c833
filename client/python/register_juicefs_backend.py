"""The original design's helper for wiring HiCacheJuiceFS into SGLang.

SGLang (0.5.3 onwards) loads third-party backends with
`--hicache-storage-backend dynamic` and a JSON extra config naming the module
and class; no registration step is needed (and StorageBackendFactory.
register_backend only serves SGLang's built-in names: create_backend refuses
other registered names). This module builds that config:

    python register_juicefs_backend.py [SOCKET_PATH]

prints the launch flags; extra_config() returns the JSON object.
"""

import json
import sys
from typing import Optional

BACKEND_NAME = "juicefs"
MODULE_PATH = "juicefs_hicache_storage"
CLASS_NAME = "HiCacheJuiceFS"


def default_socket() -> str:
    """hicached's default socket, from libhicache (hicache_defs.h)."""
    from hicache import _lib

    return _lib.default_socket()


def extra_config(socket_path: Optional[str] = None, **extra) -> dict:
    """The --hicache-storage-backend-extra-config object for this backend
    (extra: timeout_ms, namespace, mount_point, use_direct_io,
    enable_compression, SGLang's own prefetch keys...)."""
    cfg = {
        "backend_name": BACKEND_NAME,
        "module_path": MODULE_PATH,
        "class_name": CLASS_NAME,
        "interface_v1": 1,
        "socket_path": socket_path or default_socket(),
    }
    cfg.update(extra)
    return cfg


def launch_args(socket_path: Optional[str] = None, **extra) -> list:
    """The sglang.launch_server arguments that select this backend."""
    return [
        "--enable-hierarchical-cache",
        "--hicache-storage-backend",
        "dynamic",
        "--hicache-storage-backend-extra-config",
        json.dumps(extra_config(socket_path, **extra)),
    ]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock = argv[0] if argv else default_socket()
    a = launch_args(sock)
    print(" ".join(a[:-1]) + " '" + a[-1] + "'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
