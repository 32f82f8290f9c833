/* libFuzzer target: remote-read hint files (make fuzz). Every hint file on
 * the shared volume comes from another node, broken or hostile. The input is
 * written as a hint file for this node and read as discovery reads it
 * (hc__hints_read_file: type and size checks, the whole read, header, count,
 * CRC); when it is accepted, the hints are applied to a real store's index
 * (hc__hints_apply), which holds one local page the input may name. The
 * input's first byte chooses whether its count and CRC are fixed up first
 * (otherwise nearly every input would stop there). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "fuzz_store.h"
#include "store_int.h"

static char dir[] = "/tmp/hc_fuzz_hints.XXXXXX";
static int dirfd_;
static struct hc_io_pool *io;
static struct hc_store *store;
static struct hc_stats stats;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    if (!mkdtemp(dir) || (dirfd_ = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
        abort();
    io = fuzz_io_pool();
    struct hc_store_config cfg = fuzz_store_config(dir);
    if (hc_store_open(&store, &cfg, io, &stats, err, sizeof(err)) < 0)
        abort();
    /* one local page (hash 1, 2) on a local segment of seq 1 */
    struct seg *seg = hc__seg_new(store, 0, 1, true, SEG_SEALED);
    if (!seg)
        abort();
    seg->size = 1 << 20;
    hc__index_put(store, seg, (struct hc_hash){1, 2}, 0, 4096, 0, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char name[] = "n1.0000000000000001.rh";
    uint64_t *v = NULL;
    size_t budget = HC_HINT_PASS_BYTES;
    if (size < 1)
        return 0;
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    size_t len = size - 1;
    memcpy(buf, data + 1, len);
    if ((data[0] & 1) && len >= 32) { /* a count and a CRC that match */
        uint32_t n = (uint32_t)((len - 32) / 32), crc;
        len = 32 + (size_t)n * 32;
        memcpy(buf + 8, &n, 4);
        crc = hc_crc32c(0, buf + 32, (size_t)n * 32);
        memcpy(buf + 12, &crc, 4);
    }
    int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
        abort();
    close(fd);
    free(buf);

    char path[sizeof(dir) + sizeof(name) + 1];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ssize_t n = hc__hints_read_file(path, &budget, &v);
    unlinkat(dirfd_, name, 0);
    if (n > 0) {
        if ((size_t)n > (len - 32) / 32)
            abort(); /* more hints than the file holds */
        hc__hints_apply(store, v, (size_t)n);
    }
    free(v);
    return 0;
}
