"""pytest fixtures: a real hicached on a temporary directory.

HICACHED_BIN (default build/default/hicached) and HICACHE_LIB (default
build/default/libhicache.so) name what is tested."""

import hc_testenv  # noqa: F401  (sys.path, stub, env defaults)

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest


class Daemon:
    """One hicached process: start(), stop() (SIGTERM, expects exit 0),
    kill(), restart() on the same directory and socket."""

    def __init__(self, base, node_id="pytest", extra_args=()):
        self.base = str(base)
        # HICACHE_TEST_DATA_ROOT (set by tests/juicefs/test_suites_on_juicefs.sh)
        # puts the data directory on that mount; socket and log stay local.
        root = os.environ.get("HICACHE_TEST_DATA_ROOT")
        os.makedirs(self.base, exist_ok=True)
        if root:
            os.makedirs(root, exist_ok=True)
            self.data = tempfile.mkdtemp(prefix="pytest-data.", dir=root)
        else:
            self.data = os.path.join(self.base, "data")
        self.socket = os.path.join(self.base, "hicached.sock")
        self.log = os.path.join(self.base, "hicached.log")
        self.node_id = node_id
        self.extra_args = list(extra_args)
        self.proc = None
        os.makedirs(self.data, exist_ok=True)

    def start(self, timeout=10.0):
        binary = os.environ["HICACHED_BIN"]
        if not os.access(binary, os.X_OK):
            pytest.fail(f"hicached not built: {binary} (run `make` or set HICACHED_BIN)")
        args = [binary, "--mount-point", self.data, "--socket", self.socket,
                "--node-id", self.node_id, "--foreground", *self.extra_args]
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"hicached exited with {self.proc.returncode}:\n{self.read_log()}")
            if os.path.exists(self.socket):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.socket)
                    return self
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.02)
        pytest.fail(f"hicached did not listen on {self.socket} within {timeout}s:\n{self.read_log()}")

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=15.0):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"hicached did not stop on SIGTERM within {timeout}s")
        self.proc = None
        assert rc == 0, f"hicached exited {rc} on SIGTERM:\n{self.read_log()}"
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def client(self, namespace="default", **kw):
        import hicache

        return hicache.Client(self.socket, namespace=namespace, **kw)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path).start()
    yield d
    try:
        d.stop()
    finally:
        d.kill()


@pytest.fixture
def daemon_factory(tmp_path):
    made = []

    def make(name="d", **kw):
        d = Daemon(tmp_path / name, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()


def pytest_report_header(config):
    return [
        f"hicached: {os.environ.get('HICACHED_BIN')}",
        f"libhicache: {os.environ.get('HICACHE_LIB')}",
    ]
