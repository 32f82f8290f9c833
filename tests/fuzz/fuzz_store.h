/* What the fuzz targets of the storage engine (fuzz_idx, fuzz_record)
 * share: one I/O pool for the process and the store configuration they open
 * on their temporary directory. */
#ifndef HC_FUZZ_STORE_H
#define HC_FUZZ_STORE_H

#include <stdlib.h>

#include "log.h"
#include "store.h"

static void fuzz_wake(void *arg)
{
    (void)arg;
}

/* A one-thread I/O pool (aborts when it cannot start); logs errors only. */
static struct hc_io_pool *fuzz_io_pool(void)
{
    struct hc_io_config ioc = {.threads = 1, .queue_depth = 8, .max_inflight_bytes = 1u << 20};
    struct hc_io_pool *io = NULL;
    hc_log_set_level(HC_LOG_ERR);
    if (hc_io_pool_create(&io, &ioc, fuzz_wake, NULL) < 0)
        abort();
    return io;
}

/* Node "fuzz" under dir/hicache, 4 MiB segments, no sealing or discovery by
 * time. */
static struct hc_store_config fuzz_store_config(const char *dir)
{
    return (struct hc_store_config){.mount_point = dir,
                                    .root_dir = "hicache",
                                    .node_id = "fuzz",
                                    .segment_size = 4u << 20,
                                    .seal_interval_ms = 1000000,
                                    .discovery_interval_ms = 1000000,
                                    .dedupe = true};
}

#endif
