"""L3 away never breaks inference: daemon absent, stopped, hung, restarted."""

import hc_testenv

import logging
import os
import signal
import time

import pytest

pytestmark = pytest.mark.skipif(not hc_testenv.have_sglang(), reason="SGLang not importable")

from pools import P, fill_random, make_pool, page_bytes, storage_config  # noqa: E402


def backend(sock, pool, **extra):
    from juicefs_hicache_storage import HiCacheJuiceFS

    b = HiCacheJuiceFS(storage_config("mha", extra={"socket_path": sock, **extra}), {})
    b.register_mem_pool_host(pool)
    return b


def outage_warnings(caplog):
    return [r for r in caplog.records if "unreachable" in r.getMessage()]


def test_no_daemon_answers_misses_fast_logs_once_then_recovers(daemon_factory, caplog):
    caplog.set_level(logging.WARNING, logger="hicache")
    d = daemon_factory("late")
    pool = make_pool("mha", "page_first")
    fill_random(pool, seed=1)
    idx = pool.alloc(4 * P)
    b = backend(d.socket, pool)  # nothing listens yet: construction still works
    keys = [f"k{i}" for i in range(4)]
    t0 = time.monotonic()
    for _ in range(50):
        assert b.batch_exists(keys) == 0
        assert b.batch_set_v1(keys, idx) == [False] * 4
        assert b.batch_get_v1(keys, idx) == [False] * 4
        assert b.exists("k0") is False
        assert b.get("k0") is None
        assert b.set("k0", pool.get_data_page(0)) is False
    assert time.monotonic() - t0 < 2.0
    assert len(outage_warnings(caplog)) == 1

    d.start()
    deadline = time.monotonic() + 15
    while b.batch_set_v1(keys, idx) != [True] * 4:
        assert time.monotonic() < deadline, "backend did not reconnect"
        time.sleep(0.05)
    assert b.batch_exists(keys) == 4
    assert any("reconnected" in r.getMessage() for r in caplog.records)
    b.close()
    d.stop()


def test_daemon_restart_is_transparent_and_pages_survive(daemon, caplog):
    caplog.set_level(logging.WARNING, logger="hicache")
    pool = make_pool("mla", "page_first")
    fill_random(pool, seed=2)
    idx = pool.alloc(8 * P)
    from juicefs_hicache_storage import HiCacheJuiceFS

    b = HiCacheJuiceFS(storage_config("mla", extra={"socket_path": daemon.socket}), {})
    b.register_mem_pool_host(pool)
    keys = [f"{i:064x}" for i in range(8)]
    assert all(b.batch_set_v1(keys, idx))
    daemon.restart()  # SIGTERM (clean exit 0), start again on the same directory
    assert b.batch_exists(keys) == 8  # the old connection fails, one retry on a new one
    dst = make_pool("mla", "page_first")
    didx = dst.alloc(8 * P)
    rb = HiCacheJuiceFS(storage_config("mla", extra={"socket_path": daemon.socket}), {})
    rb.register_mem_pool_host(dst)
    assert rb.batch_get_v1(keys, didx) == [True] * 8
    assert all(page_bytes(dst, int(didx[i * P])) == page_bytes(pool, int(idx[i * P])) for i in range(8))
    assert outage_warnings(caplog) == []  # a restart between calls is not an outage


def test_daemon_killed_then_back(daemon, caplog):
    caplog.set_level(logging.WARNING, logger="hicache")
    pool = make_pool("mha", "layer_first")
    fill_random(pool, seed=4)
    idx = pool.alloc(2 * P)
    b = backend(daemon.socket, pool)
    assert b.batch_set_v1(["x0", "x1"], idx) == [True, True]
    daemon.kill()
    t0 = time.monotonic()
    assert b.batch_get_v1(["x0", "x1"], idx) == [False, False]
    assert b.batch_exists(["x0"]) == 0
    assert time.monotonic() - t0 < 1.0
    assert len(outage_warnings(caplog)) == 1
    daemon.start()
    deadline = time.monotonic() + 15
    while b.batch_exists(["x0", "x1"]) != 2:
        assert time.monotonic() < deadline, "backend did not reconnect"
        time.sleep(0.05)


def test_hung_daemon_costs_one_timeout(daemon):
    pool = make_pool("mha", "page_first")
    idx = pool.alloc(P)
    b = backend(daemon.socket, pool, timeout_ms=500)
    assert b.batch_set_v1(["h"], idx) == [True]
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert b.batch_get_v1(["h"], idx) == [False]
        first = time.monotonic() - t0
        t0 = time.monotonic()
        assert b.batch_exists(["h"]) == 0  # in backoff: no wait at all
        second = time.monotonic() - t0
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    assert 0.4 < first < 2.0, first
    assert second < 0.2, second
    deadline = time.monotonic() + 15
    while b.batch_exists(["h"]) != 1:
        assert time.monotonic() < deadline, "backend did not reconnect"
        time.sleep(0.05)
