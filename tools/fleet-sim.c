/* fleet-sim: synthetic .idx files of a fleet, to measure what indexing other
 * nodes' pages costs a daemon (issue 14: the fleet-scale index).
 *
 *   fleet-sim DIR NODES PAGES_PER_NODE [PAGES_PER_SEGMENT]
 *
 * writes DIR/hicache/sim-node-<n>/<seq>.idx for n in [0, NODES): sealed
 * segments of PAGES_PER_SEGMENT (default 32768) records of 4 KiB pages each
 * (8 KiB a record), in the format hicached writes (daemon/idxfile.c). Page j
 * of node n is key "p<n>-<j>" in namespace "fleet" (tools/fleet_sim.py asks
 * for those). Only the indexes are written, no segment data: exists is
 * answered from the index, which is what is measured. Each node's keys file
 * (DIR/hicache/sim-node-<n>/keys, daemon/keysfile.c) is written too, for a
 * daemon with remote_index "filter". */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crc32c.h"
#include "index.h"
#include "keysfile.h"
#include "le.h"
#include <fcntl.h>
#include <unistd.h>

#define IDX_HDR 32
#define IDX_ENT 32
#define PAGE 4096u
#define REC (2u * PAGE) /* header block + payload */

/* Writes one segment's .idx: pages [first, first + n) of node; their keys
 * file entries (segment index si) go to keys. */
static int write_idx(const char *dir, unsigned node, uint64_t seq, uint64_t first, uint32_t n,
                     struct hc_keys_ent *keys, uint32_t si)
{
    static const char ns[] = "fleet";
    size_t nslen = sizeof(ns) - 1;
    size_t ents = (IDX_HDR + 2 + nslen + 7) & ~(size_t)7;
    size_t len = ents + (size_t)n * IDX_ENT + 4;
    unsigned char *buf = calloc(1, len);
    char path[4200], key[64];
    FILE *f;

    if (!buf)
        return -ENOMEM;
    memcpy(buf, "HCI1", 4);
    put32(buf + 4, 1);
    put64(buf + 8, seq);
    put64(buf + 16, (uint64_t)n * REC);
    put32(buf + 24, 1);
    put32(buf + 28, n);
    put16(buf + IDX_HDR, (uint16_t)nslen);
    memcpy(buf + IDX_HDR + 2, ns, nslen);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char *e = buf + ents + (size_t)i * IDX_ENT;
        int kl = snprintf(key, sizeof(key), "p%u-%" PRIu64, node, first + i);
        struct hc_hash h = hc_index_hash(ns, nslen, key, (size_t)kl);
        put64(e, h.lo);
        put64(e + 8, h.hi);
        put64(e + 16, (uint64_t)i * REC);
        put32(e + 24, PAGE);
        put16(e + 28, 0);
        put16(e + 30, 0);
        keys[i] = (struct hc_keys_ent){.h = h.lo, .seg = si, .off = i * (REC / PAGE), .len = PAGE};
    }
    put32(buf + len - 4, hc_crc32c(0, buf, len - 4));
    snprintf(path, sizeof(path), "%s/%016" PRIx64 ".idx", dir, seq);
    if (!(f = fopen(path, "wb")) || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        free(buf);
        return -EIO;
    }
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s DIR NODES PAGES_PER_NODE [PAGES_PER_SEGMENT]\n", argv[0]);
        return 2;
    }
    const char *root = argv[1];
    unsigned nodes = (unsigned)strtoul(argv[2], NULL, 10);
    uint64_t per_node = strtoull(argv[3], NULL, 10);
    uint32_t per_seg = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 10) : 32768;
    char dir[4000];

    if (!nodes || !per_node || !per_seg || per_seg > (4u << 20)) {
        fprintf(stderr, "fleet-sim: bad sizes\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/hicache", root);
    mkdir(root, 0755);
    mkdir(dir, 0755);
    for (unsigned n = 0; n < nodes; n++) {
        snprintf(dir, sizeof(dir), "%s/hicache/sim-node-%u", root, n);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            perror(dir);
            return 1;
        }
        uint64_t seq = 0x1000;
        uint32_t nsegs = (uint32_t)((per_node + per_seg - 1) / per_seg);
        struct hc_keys_ent *keys = malloc(per_node * sizeof(*keys));
        uint64_t *seqs = malloc(nsegs * sizeof(*seqs));
        if (!keys || !seqs) {
            fprintf(stderr, "fleet-sim: out of memory\n");
            return 1;
        }
        for (uint64_t first = 0; first < per_node; first += per_seg, seq++) {
            uint32_t k = per_node - first < per_seg ? (uint32_t)(per_node - first) : per_seg;
            uint32_t si = (uint32_t)(seq - 0x1000);
            seqs[si] = seq;
            if (write_idx(dir, n, seq, first, k, keys + first, si) < 0) {
                fprintf(stderr, "fleet-sim: writing %s: failed\n", dir);
                return 1;
            }
        }
        char kpath[4100];
        snprintf(kpath, sizeof(kpath), "%s/keys", dir);
        int fd = open(kpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || hc_keys_write(fd, seqs, nsegs, keys, per_node) < 0 || close(fd) < 0) {
            fprintf(stderr, "fleet-sim: writing %s: failed\n", kpath);
            return 1;
        }
        free(keys);
        free(seqs);
    }
    return 0;
}
