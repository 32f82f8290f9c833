/* libFuzzer target: the .idx loader and parser (make fuzz). Every .idx on
 * the shared volume may come from another node, broken or hostile. The input
 * is written as <seq>.idx (the seq its header claims) and loaded as
 * discovery loads it (hc__idx_load:
 * header checks, chunked read, CRC, parse); when it is accepted, every entry
 * must lie inside the segment the header names, and the entries are merged
 * into a real store's index (hc__idx_merge) as another node's segment. The
 * input's first byte chooses whether its CRC is fixed up first (otherwise
 * nearly every input would stop at the CRC). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "crc32c.h"
#include "fuzz_store.h"
#include "store_int.h"

static char dir[] = "/tmp/hc_fuzz_idx.XXXXXX";
static char path[sizeof(dir) + 32];
static struct hc_io_pool *io;
static struct hc_store *store;
static struct hc_stats stats;
static uint32_t node;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    if (!mkdtemp(dir))
        abort();
    io = fuzz_io_pool();
    struct hc_store_config cfg = fuzz_store_config(dir);
    if (hc_store_open(&store, &cfg, io, &stats, err, sizeof(err)) < 0)
        abort();
    node = (uint32_t)hc__node_intern(store, "other");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct idx_data d;
    if (size < 1)
        return 0;
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    size_t len = size - 1;
    if ((data[0] & 1) && len >= 4) { /* a valid CRC over what precedes it */
        uint32_t crc = hc_crc32c(0, buf, len - 4);
        memcpy(buf + len - 4, &crc, 4);
    }
    /* the file is named after the seq its header claims, as a valid one is */
    uint64_t seq = len >= 16 ? get64(buf + 8) : 1;
    snprintf(path, sizeof(path), "%s/%016" PRIx64 ".idx", dir, seq);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
        abort();
    close(fd);
    free(buf);

    int rc = hc__idx_load(path, seq, &d);
    unlink(path);
    if (rc == 0) {
        for (uint32_t i = 0; i < d.nent; i++) {
            const unsigned char *e = d.ents + (size_t)i * 32;
            uint64_t off = get64(e + 16);
            uint32_t elen = get32(e + 24);
            if (get16(e + 28) >= d.nns || off + ent_rec_size(elen, get16(e + 30)) > d.seg_bytes)
                abort(); /* the parser let through an entry outside its segment */
        }
        struct seg *seg = hc__seg_new(store, node, 1 + stats.segments, false, SEG_SEALED);
        if (seg) {
            seg->size = d.seg_bytes;
            hc__idx_merge(store, seg, &d);
            hc__seg_drop(store, seg, false);
        }
        hc__idx_free(&d);
    }
    return 0;
}
