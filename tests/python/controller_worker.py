"""One TP rank of test_controllers.py's TP=2 test (a separate process):
    controller_worker.py BACKEND SOCKET FILE_DIR INIT_FILE WORLD RANK
SGLang's HiCacheController over an MHA host pool on this rank, gloo over
INIT_FILE. Rank r fills its own shard (seed r) and backs up 20 pages, or 12
on rank 1; then a fresh controller of this rank queries the 20 pages (the
ranks' hits are MIN-reduced by the controller) and loads the agreed hit.
Prints one JSON line: rank, backed_up, hit, loaded (tokens) and the pages
whose bytes differ from this rank's source."""

import json
import sys

import hc_testenv  # noqa: F401

import torch


def main(backend, socket, file_dir, init_file, world, rank):
    import controllers
    from pools import P

    torch.set_num_threads(1)
    world, rank = int(world), int(rank)
    group = controllers.init_dist(init_file, rank, world)
    name, cfg = controllers.backend_args(backend, socket=socket, file_dir=file_dir)
    src = controllers.Ctl("mha", "page_first", name, cfg, group)
    n = 20 if rank == 0 else 12
    toks = controllers.tokens_of(20, seed=5)  # the same request on every rank
    sidx = src.host.alloc(20 * P)
    controllers.fill(src.host, seed=100 + rank)  # each rank's own shard
    backed = src.backup(toks[: n * P], sidx[: n * P])
    torch.distributed.barrier()
    dst = controllers.Ctl("mha", "page_first", name, cfg, group)
    op = dst.query(toks)
    got, didx, _ = dst.load(op)
    bad = controllers.pages_equal(src.host, sidx, dst.host, didx, got // P) if got else []
    torch.distributed.barrier()
    src.close()
    dst.close()
    print(json.dumps({"rank": rank, "backed_up": backed, "hit": op.storage_hit_count,
                      "loaded": got, "bad_pages": bad}))


if __name__ == "__main__":
    main(*sys.argv[1:])
