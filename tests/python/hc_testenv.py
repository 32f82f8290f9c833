"""Shared set-up for the Python tests and their worker processes.

Importing this module puts client/python on sys.path, and the torchvision
stub (tests/python/stubs) after site-packages when the real torchvision cannot
be imported (PyPI has no CPU torchvision for torch 2.13.0; SGLang's config
package imports it at module level but the storage path never uses it).
It also points HICACHE_LIB / HICACHED_BIN at the default build when unset."""

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PKG = os.path.join(ROOT, "client", "python")

if PKG not in sys.path:
    sys.path.insert(0, PKG)

try:
    import torchvision  # noqa: F401
except Exception:
    for _m in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[_m]
    if os.path.join(HERE, "stubs") not in sys.path:
        sys.path.append(os.path.join(HERE, "stubs"))

os.environ.setdefault("HICACHE_LIB", os.path.join(ROOT, "build", "default", "libhicache.so"))
os.environ.setdefault("HICACHED_BIN", os.path.join(ROOT, "build", "default", "hicached"))
for _v in ("HICACHE_LIB", "HICACHED_BIN"):  # child processes may run elsewhere
    os.environ[_v] = os.path.abspath(os.environ[_v])
# SGLang warns at import about GPU-only quantization kernels on a CPU machine.
warnings.filterwarnings("ignore", message=r".*support.*currently.*")


def have_sglang() -> bool:
    try:
        import sglang.srt.mem_cache.hicache_storage  # noqa: F401

        return True
    except Exception:
        return False
