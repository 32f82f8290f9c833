/* libFuzzer target: a node's keys file (daemon/keysfile.c; make fuzz). Every
 * keys file on the shared volume may come from another node, broken or
 * hostile. The input is written to a file and loaded as a reader loads it
 * (hc_keys_load: counts against the file's size, both table CRCs); when it is
 * accepted, each block's first hash, and the hashes around it, are looked up
 * (hc_keys_lookup: one block read, its CRC and order checked): the answer
 * must be found, not there or a bad block, and an entry found must carry the
 * hash asked for and name a segment of the table. The input's first byte
 * chooses whether its CRCs (header, tables, each block) are fixed up first
 * (otherwise nearly every input would stop at a CRC). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "keysfile.h"
#include "le.h"

#define HDR 64
#define BLK 16

static char path[] = "/tmp/hc_fuzz_keys.XXXXXX";
static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = mkstemp(path);
    if (fd < 0)
        abort();
    unlink(path);
    return 0;
}

/* Makes the CRCs of buf (len bytes) right wherever its counts let them be
 * found inside it. */
static void fix_crcs(unsigned char *buf, size_t len)
{
    if (len < HDR)
        return;
    uint64_t nsegs = get32(buf + 16), nblocks = get32(buf + 20);
    uint64_t bt = HDR + nsegs * 8, ents = bt + nblocks * BLK; /* no overflow: 32-bit counts */
    if (bt <= len)
        put32(buf + 24, hc_crc32c(0, buf + HDR, (size_t)(bt - HDR)));
    if (ents <= len) {
        for (uint64_t b = 0; b < nblocks; b++) {
            unsigned char *t = buf + bt + b * BLK;
            uint64_t n = get32(t + 8), at = ents + b * HC_KEYS_PER_BLOCK * HC_KEYS_ENT;
            if (n <= HC_KEYS_PER_BLOCK && at + n * HC_KEYS_ENT <= len) {
                if (n > 0)
                    put64(t, get64(buf + at));
                put32(t + 12, hc_crc32c(0, buf + at, (size_t)(n * HC_KEYS_ENT)));
            }
        }
        put32(buf + 28, hc_crc32c(0, buf + bt, (size_t)(ents - bt)));
    }
    put32(buf + 32, hc_crc32c(0, buf, 32));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hc_keys k;
    if (size < 1)
        return 0;
    size_t len = size - 1;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, len);
    if (data[0] & 1)
        fix_crcs(buf, len);
    if (ftruncate(fd, 0) < 0 || (len && pwrite(fd, buf, len, 0) != (ssize_t)len))
        abort();
    free(buf);

    if (hc_keys_load(fd, len, &k) != 0)
        return 0;
    for (uint32_t b = 0; b < k.nblocks; b++) {
        for (int d = -1; d <= 1; d++) {
            uint64_t h = k.blocks[b].first + (uint64_t)(int64_t)d;
            struct hc_keys_ent got;
            int rc = hc_keys_lookup(&k, fd, h, &got);
            if (rc != 0 && rc != -ENOENT && rc != -EBADMSG)
                abort(); /* no other answer for a file of the size it said */
            if (rc == 0 && (got.h != h || got.seg >= k.nsegs))
                abort(); /* an entry of another hash, or outside the table */
        }
    }
    hc_keys_free(&k);
    return 0;
}
