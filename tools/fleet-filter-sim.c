/* fleet-filter-sim: what the fleet index of issue 14's design would cost a
 * daemon (docs/BENCHMARKS.md, "What a compact fleet index has to be"): one
 * cuckoo filter (daemon/filter.c) per remote node over that node's pages,
 * and batch_exists of 128 keys answered from the filters alone, the node of
 * the previous key tried first.
 *
 *   fleet-filter-sim NODES TOTAL_PAGES [BATCHES [DIR]]
 *
 * Pages are "p<node>-<j>" in namespace "fleet" (fleet-sim's keys), hashed as
 * the daemon hashes them. Prints the filters' memory per page, the time to
 * build them, and for BATCHES (default 2000) batches of 128 keys (a run of
 * 127 consecutive pages of a random node, then a key no node holds, as
 * SGLang asks: leading hits, then the first miss) the time per batch (p50,
 * p99) and the false positives met on the misses. Memory is measured, not
 * the process's RSS: the filters are all it allocates.
 *
 * With DIR: each node's keys file (daemon/keysfile.c; the entries' segment,
 * offset and length made up, 32,768 pages a segment) is written there, its
 * tables loaded as a reader would, and the exact entry of LOOKUPS pages that
 * exist is looked up by one block read each: cold (the files dropped from
 * the page cache first) and again warm. Prints the write time, what the
 * readers keep per page, and the lookup times (p50, p99). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"
#include "keysfile.h"

#define BATCH 128

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct hc_hash page(unsigned node, uint64_t j)
{
    char key[64];
    int n = snprintf(key, sizeof(key), "p%u-%" PRIu64, node, j);
    return hc_index_hash("fleet", 5, key, (size_t)n);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define LOOKUPS 2000
#define SEG_PAGES 32768

/* The keys files of the fleet in dir: writes them, loads their tables, and
 * times LOOKUPS lookups of existing pages, cold then warm. Returns 0, or 1 on
 * a failure (printed). */
static int keys_files(const char *dir, unsigned nodes, uint64_t per)
{
    struct hc_keys *k = calloc(nodes, sizeof(*k));
    int *fds = calloc(nodes, sizeof(*fds));
    struct hc_keys_ent *e = malloc(per * sizeof(*e));
    uint32_t nsegs = (uint32_t)((per + SEG_PAGES - 1) / SEG_PAGES);
    uint64_t *seqs = malloc(nsegs * sizeof(*seqs)), lat[2][LOOKUPS];
    size_t kept = 0;
    char path[4096];

    if (!k || !fds || !e || !seqs)
        return 1;
    uint64_t t0 = now_ns();
    for (unsigned n = 0; n < nodes; n++) {
        for (uint32_t i = 0; i < nsegs; i++)
            seqs[i] = ((uint64_t)n << 32) | i;
        for (uint64_t j = 0; j < per; j++)
            e[j] = (struct hc_keys_ent){.h = page(n, j).lo,
                                        .seg = (uint32_t)(j / SEG_PAGES),
                                        .off = (uint32_t)(j % SEG_PAGES) * 257,
                                        .len = 1 << 20};
        snprintf(path, sizeof(path), "%s/keys-%u", dir, n);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int rc = fd < 0 ? -errno : hc_keys_write(fd, seqs, nsegs, e, per);
        if (rc < 0) {
            fprintf(stderr, "%s: %s\n", path, strerror(-rc));
            return 1;
        }
        fds[n] = fd;
    }
    double write_s = (double)(now_ns() - t0) / 1e9;
    for (unsigned n = 0; n < nodes; n++) {
        struct stat st;
        if (fstat(fds[n], &st) < 0 || hc_keys_load(fds[n], (uint64_t)st.st_size, &k[n]) < 0) {
            fprintf(stderr, "node %u: keys file does not load\n", n);
            return 1;
        }
        kept += k[n].nsegs * sizeof(*k[n].seqs) + k[n].nblocks * sizeof(*k[n].blocks);
    }
    for (int pass = 0; pass < 2; pass++) {
        uint64_t seed = 0x2545F4914F6CDD1DULL;
        for (unsigned n = 0; pass == 0 && n < nodes; n++) { /* no read-ahead either */
            (void)posix_fadvise(fds[n], 0, 0, POSIX_FADV_DONTNEED);
            (void)posix_fadvise(fds[n], 0, 0, POSIX_FADV_RANDOM);
        }
        for (unsigned i = 0; i < LOOKUPS; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            unsigned n = (unsigned)(seed % nodes);
            uint64_t j = (seed >> 20) % per;
            struct hc_keys_ent got;
            uint64_t t = now_ns();
            int rc = hc_keys_lookup(&k[n], fds[n], page(n, j).lo, &got);
            lat[pass][i] = now_ns() - t;
            if (rc != 0 || got.seg != j / SEG_PAGES || got.off != (j % SEG_PAGES) * 257) {
                fprintf(stderr, "node %u page %" PRIu64 ": lookup %d\n", n, j, rc);
                return 1;
            }
        }
        qsort(lat[pass], LOOKUPS, sizeof(uint64_t), cmp_u64);
    }
    printf("keys files in %s: written in %.1f s; readers keep %.3f bytes a page; exact entry "
           "of an existing page, one block read: cold p50 %.1f us, p99 %.1f us; warm p50 %.1f "
           "us, p99 %.1f us\n",
           dir, write_s, (double)kept / (double)(per * nodes), (double)lat[0][LOOKUPS / 2] / 1e3,
           (double)lat[0][LOOKUPS * 99 / 100] / 1e3, (double)lat[1][LOOKUPS / 2] / 1e3,
           (double)lat[1][LOOKUPS * 99 / 100] / 1e3);
    for (unsigned n = 0; n < nodes; n++) {
        hc_keys_free(&k[n]);
        close(fds[n]);
        snprintf(path, sizeof(path), "%s/keys-%u", dir, n);
        unlink(path);
    }
    free(k);
    free(fds);
    free(e);
    free(seqs);
    return 0;
}

/* Which node may hold h: the hint first, then every node. -1: none. */
static int find_node(const struct hc_cfilter *f, unsigned nodes, int hint, struct hc_hash h)
{
    if (hint >= 0 && hc_cfilter_maybe(&f[hint], h))
        return hint;
    for (unsigned n = 0; n < nodes; n++) /* as the daemon does (fleet.c) */
        if ((int)n != hint)
            hc_cfilter_prefetch(&f[n], h);
    for (unsigned n = 0; n < nodes; n++)
        if ((int)n != hint && hc_cfilter_maybe(&f[n], h))
            return (int)n;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s NODES TOTAL_PAGES [BATCHES [DIR]]\n", argv[0]);
        return 2;
    }
    unsigned nodes = (unsigned)strtoul(argv[1], NULL, 10);
    uint64_t total = strtoull(argv[2], NULL, 10);
    unsigned batches = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 2000;
    uint64_t per = nodes ? total / nodes : 0;
    if (!nodes || per < BATCH) {
        fprintf(stderr, "need NODES > 0 and at least %d pages a node\n", BATCH);
        return 2;
    }
    struct hc_cfilter *f = calloc(nodes, sizeof(*f));
    uint64_t *lat = calloc(batches, sizeof(*lat));
    if (!f || !lat)
        return 1;
    size_t mem = 0;
    uint64_t t0 = now_ns();
    for (unsigned n = 0; n < nodes; n++) {
        if (hc_cfilter_init(&f[n], per) < 0) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        for (uint64_t j = 0; j < per; j++)
            if (hc_cfilter_add(&f[n], page(n, j)) < 0) {
                fprintf(stderr, "node %u: filter full at %" PRIu64 "\n", n, j);
                return 1;
            }
        mem += hc_cfilter_memory(&f[n]);
    }
    double build_s = (double)(now_ns() - t0) / 1e9;

    /* the keys of each batch are hashed before the clock starts: the daemon
     * gets hashes with its requests' keys either way */
    struct hc_hash keys[BATCH];
    uint64_t seed = 0x9E3779B97F4A7C15ULL, fps = 0, misses_lost = 0;
    for (unsigned b = 0; b < batches; b++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        unsigned node = (unsigned)(seed % nodes);
        uint64_t first = (seed >> 20) % (per - BATCH + 1);
        for (int k = 0; k < BATCH - 1; k++)
            keys[k] = page(node, first + (uint64_t)k);
        keys[BATCH - 1] = page(nodes + 1, seed); /* a node that does not exist */
        uint64_t tb = now_ns();
        int hint = -1, hits = 0;
        for (int k = 0; k < BATCH; k++) {
            int at = find_node(f, nodes, hint, keys[k]);
            if (at < 0)
                break;
            hint = at;
            hits++;
        }
        lat[b] = now_ns() - tb;
        if (hits < BATCH - 1)
            misses_lost++; /* a page that is there answered absent: never */
        fps += hits == BATCH;
    }
    qsort(lat, batches, sizeof(*lat), cmp_u64);
    printf("nodes %u, pages %" PRIu64 " (%" PRIu64 " a node): filters %.1f MB, %.2f bytes a "
           "page, built in %.1f s\n",
           nodes, per * nodes, per, (double)mem / 1e6, (double)mem / (double)(per * nodes),
           build_s);
    printf("batch_exists of %d keys from the filters: p50 %.1f us, p99 %.1f us; the miss "
           "answered 'maybe' in %" PRIu64 " of %u batches; pages lost %" PRIu64 "\n",
           BATCH, (double)lat[batches / 2] / 1e3, (double)lat[batches * 99 / 100] / 1e3, fps,
           batches, misses_lost);
    for (unsigned n = 0; n < nodes; n++)
        hc_cfilter_free(&f[n]);
    free(f);
    free(lat);
    if (misses_lost)
        return 1;
    return argc > 4 ? keys_files(argv[4], nodes, per) : 0;
}
