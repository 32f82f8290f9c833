"""The package without SGLang, and `pip install` of client/python."""

import hc_testenv

import os
import shutil
import subprocess
import sys
import textwrap

NO_SGLANG = textwrap.dedent(
    """
    import sys
    sys.modules["sglang"] = None            # SGLang absent: imports of it fail
    sys.path.insert(0, {pkg!r})
    import numpy as np
    import hicache, juicefs_hicache_storage
    from juicefs_hicache_storage import HiCacheJuiceFS
    assert not hicache.sglang_backend.HAVE_SGLANG
    b = HiCacheJuiceFS({{"tp_rank": 0, "tp_size": 1, "model_name": "plain",
                         "extra_config": {{"socket_path": {sock!r}}}}})
    page = np.arange(4096, dtype=np.uint8)
    assert b.set("k", page)
    out = np.zeros(4096, np.uint8)
    assert b.get("k", out) is out and (out == page).all()
    assert b.batch_exists(["k", "nope"]) == 1
    assert b.batch_get(["nope"], [out]) == [None]
    got = b.get("k")                         # no target: sized from the stored length
    print("OK", b.namespace, bytes(memoryview(got.numpy()))[:4] == page.tobytes()[:4])
    """
)


def test_backend_works_without_sglang(daemon):
    code = NO_SGLANG.format(pkg=hc_testenv.PKG, sock=daemon.socket)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK plain.generic.") and r.stdout.strip().endswith("True")


def test_pip_install_of_the_package(tmp_path, daemon):
    # from a copy: setuptools leaves build/ and *.egg-info in the source tree
    src = tmp_path / "src"
    shutil.copytree(hc_testenv.PKG, src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "hicache" / "client.py").exists()
    assert (target / "juicefs_hicache_storage.py").exists()
    assert (target / "register_juicefs_backend.py").exists()
    code = (
        "import hicache, numpy as np; "
        f"c = hicache.Client({daemon.socket!r}, namespace='pip'); "
        "assert c.batch_set(['a'], [np.ones(8, np.uint8)]) == [0]; print(hicache.__file__)"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(target))


def test_library_is_found_through_hicache_lib(tmp_path):
    code = (
        "import hicache._lib as l\n"
        "try:\n    l.lib()\nexcept OSError as e:\n    print('ERR', e)\n"
    )
    env = dict(os.environ, HICACHE_LIB=str(tmp_path / "missing.so"), PYTHONPATH=hc_testenv.PKG)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "ERR libhicache not found: set HICACHE_LIB" in r.stdout


def test_wheel_in_a_fresh_venv_needs_nothing_else(tmp_path, daemon):
    """`make wheel`'s build (pip wheel of client/python in the checkout) puts
    libhicache inside the package: a fresh venv with only that wheel (and
    numpy, its dependency, from the index) imports juicefs_hicache_storage
    and round-trips a page through the daemon with no HICACHE_LIB set, using
    the library from the wheel."""
    whl = tmp_path / "wheel"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(whl), hc_testenv.PKG],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(whl.glob("hicache-*.whl"))
    assert len(wheels) == 1 and "linux" in wheels[0].name, wheels  # a platform wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(wheels[0])], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    code = textwrap.dedent(
        f"""
        import numpy as np, hicache._lib as l
        from juicefs_hicache_storage import HiCacheJuiceFS
        b = HiCacheJuiceFS({{"tp_rank": 0, "tp_size": 1, "model_name": "wheel",
                             "extra_config": {{"socket_path": {daemon.socket!r}}}}})
        page = np.random.default_rng(3).integers(0, 256, 65536, dtype=np.uint8)
        assert b.set("wheel-page", page)
        out = np.zeros_like(page)
        assert b.get("wheel-page", out) is out and (out == page).all()
        print(l.lib_path())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HICACHE_LIB", "PYTHONPATH")}
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(venv)), r.stdout  # the wheel's own library
