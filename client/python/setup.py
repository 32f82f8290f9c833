"""Build hook of the hicache package: libhicache goes inside it.

Built from a checkout of hicached (`pip install client/python`, `make wheel`),
the package's build step compiles libhicache from the tree's C sources with
the tree's Makefile (into build/python/, apart from `make`'s own build) and
puts it next to the package as hicache/libhicache.so.0, where the package
looks first after $HICACHE_LIB. So a fresh venv plus `pip install` is enough;
$HICACHE_LIB still overrides. The wheel is tagged for this platform (it holds
a shared library). The library links the system's libprotobuf-c (Debian:
libprotobuf-c1), which scripts/install-deps.sh installs with the build tools.

Built elsewhere (a copy of client/python without the tree), nothing is
compiled: the package then uses $HICACHE_LIB or a system libhicache
(`make install`).

Everything else is in pyproject.toml.
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
TREE = HERE.parent.parent  # client/python -> the checkout
VERSION = "0.1.0"  # libhicache's (Makefile VERSION)


def _in_tree() -> bool:
    return (TREE / "Makefile").is_file() and (TREE / "client" / "hicache.c").is_file()


class BuildPyWithLib(build_py):
    """build_py, then libhicache built by the tree's Makefile and copied in."""

    def run(self):
        super().run()
        if not _in_tree() or os.environ.get("HICACHE_NO_LIB_BUILD") == "1":
            return
        build = "build/python"
        lib = f"{build}/libhicache.so.{VERSION}"
        r = subprocess.run(["make", "-C", str(TREE), "--no-print-directory", f"BUILD={build}", lib],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(
                "hicache: building libhicache failed (the build tools and libraries: run "
                "scripts/install-deps.sh in the checkout):\n" + r.stdout[-2000:] + r.stderr[-4000:]
            )
        dest = Path(self.build_lib) / "hicache" / "libhicache.so.0"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TREE / lib, dest)


class BinaryDistribution(Distribution):
    """The wheel holds a shared library: tag it for the platform."""

    def has_ext_modules(self):
        return _in_tree() and os.environ.get("HICACHE_NO_LIB_BUILD") != "1"


options = {}
if _in_tree():
    # setuptools' scratch (build/, *.egg-info) goes under the tree's build/,
    # not into client/python
    base = TREE / "build" / "python-pkg"
    base.mkdir(parents=True, exist_ok=True)
    options = {"build": {"build_base": str(base)}, "egg_info": {"egg_base": str(base)}}

setup(cmdclass={"build_py": BuildPyWithLib}, distclass=BinaryDistribution, options=options)
