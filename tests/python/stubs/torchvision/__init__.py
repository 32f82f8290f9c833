"""Test-only stand-in for torchvision.

PyPI has no CPU build of torchvision for torch 2.13.0 (its Linux wheels link
libtorch_cuda), yet SGLang's config package and transformers import
torchvision submodules at module level for vision models. The HiCache storage
path never calls them; this stub only lets `import
sglang.srt.mem_cache.pool_host` succeed on a CPU-only test machine. The tests
put its directory on sys.path only when the real torchvision cannot be
imported. Every submodule (torchvision.x.y) is synthesized on import, and every
attribute is a placeholder class that raises when called."""

import enum
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.0.0+hicachestub"
HICACHE_TEST_STUB = True


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _placeholder(qualname):
    class _Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(f"{qualname}: torchvision stub (tests only)")

        def __class_getitem__(cls, item):
            return cls

    _Unavailable.__name__ = qualname.rsplit(".", 1)[-1]
    _Unavailable.__qualname__ = qualname
    return _Unavailable


def _module_getattr(modname):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return InterpolationMode
        return _placeholder(f"{modname}.{name}")

    return __getattr__


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []  # a package, so deeper submodules import too
        mod.__getattr__ = _module_getattr(spec.name)
        return mod

    def exec_module(self, module):
        pass


class _StubFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)
        return None


if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
    sys.meta_path.append(_StubFinder())

__getattr__ = _module_getattr(__name__)
