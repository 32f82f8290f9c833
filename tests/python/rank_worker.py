"""One simulated SGLang TP rank (a separate process) for test_ranks.py.

run() is called in a forked child by the tests (SGLang already imported), or
    rank_worker.py SOCKET KIND LAYOUT RANK WORLD PAGES SYNCDIR
prints one JSON line: {"rank", "wrote", "read_ok", "digest"}.

mha: every rank fills its own shard (seed = rank), backs up PAGES pages,
     meets the others, reads them back into a fresh pool and compares.
mla: only the storage writer (TP rank 0) fills and backs up; then all ranks
     meet and read at once into fresh pools; digest = sha256 of the pages read.
"""

import hashlib
import json
import os
import sys
import time

import hc_testenv  # noqa: F401

from pools import P, fill_random, make_pool, page_bytes, storage_config


def barrier(syncdir, name, rank, world, timeout=120):
    open(os.path.join(syncdir, f"{name}.{rank}"), "w").close()
    deadline = time.monotonic() + timeout
    while sum(os.path.exists(os.path.join(syncdir, f"{name}.{r}")) for r in range(world)) < world:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {name}")
        time.sleep(0.002)


def run(sock, kind, layout, rank, world, pages, syncdir):
    rank, world, pages = int(rank), int(world), int(pages)
    import torch

    torch.set_num_threads(1)  # four ranks share two cores
    from juicefs_hicache_storage import HiCacheJuiceFS

    cfg = storage_config(kind, tp_rank=rank, tp_size=world, layout=layout,
                         extra={"socket_path": sock, "interface_v1": 1})
    src = make_pool(kind, layout)
    b = HiCacheJuiceFS(cfg, {})
    b.register_mem_pool_host(src)
    keys = [hashlib.sha256(f"page-{i}".encode()).hexdigest() for i in range(pages)]
    idx = src.alloc(pages * P)
    wrote = False
    barrier(syncdir, "imported", rank, world)
    if b.is_storage_writer:
        fill_random(src, seed=1000 + rank)
        assert all(b.batch_set_v1(keys, idx)), "backup failed"
        wrote = True
    barrier(syncdir, "written", rank, world)

    # read back into a fresh pool (its own backend: one backend serves one pool)
    dst = make_pool(kind, layout)
    dst.alloc(3 * P)
    didx = dst.alloc(pages * P)
    rb = HiCacheJuiceFS(cfg, {})
    rb.register_mem_pool_host(dst)
    assert rb.batch_exists(keys) == pages
    barrier(syncdir, "read", rank, world)
    res = rb.batch_get_v1(keys, didx)
    rb.close()
    got = [page_bytes(dst, int(didx[i * P])) for i in range(pages)]
    read_ok = all(res)
    if wrote:
        read_ok = read_ok and got == [page_bytes(src, int(idx[i * P])) for i in range(pages)]
    digest = hashlib.sha256(b"".join(got)).hexdigest()
    b.close()
    return {"rank": rank, "wrote": wrote, "read_ok": read_ok, "digest": digest,
            "page_bytes": b.page_bytes, "namespace": b.namespace}


def main():
    print(json.dumps(run(*sys.argv[1:8])))


if __name__ == "__main__":
    main()
