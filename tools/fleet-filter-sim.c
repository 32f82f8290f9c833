/* fleet-filter-sim: what the fleet index of issue 14's design would cost a
 * daemon (docs/BENCHMARKS.md, "What a compact fleet index has to be"): one
 * cuckoo filter (daemon/filter.c) per remote node over that node's pages,
 * and batch_exists of 128 keys answered from the filters alone, the node of
 * the previous key tried first.
 *
 *   fleet-filter-sim NODES TOTAL_PAGES [BATCHES]
 *
 * Pages are "p<node>-<j>" in namespace "fleet" (fleet-sim's keys), hashed as
 * the daemon hashes them. Prints the filters' memory per page, the time to
 * build them, and for BATCHES (default 2000) batches of 128 keys (a run of
 * 127 consecutive pages of a random node, then a key no node holds, as
 * SGLang asks: leading hits, then the first miss) the time per batch (p50,
 * p99) and the false positives met on the misses. Memory is measured, not
 * the process's RSS: the filters are all it allocates. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filter.h"

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

/* Which node may hold h: the hint first, then every node. -1: none. */
static int find_node(const struct hc_cfilter *f, unsigned nodes, int hint, struct hc_hash h)
{
    if (hint >= 0 && hc_cfilter_maybe(&f[hint], h))
        return hint;
    for (unsigned n = 0; n < nodes; n++)
        if ((int)n != hint && hc_cfilter_maybe(&f[n], h))
            return (int)n;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s NODES TOTAL_PAGES [BATCHES]\n", argv[0]);
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
    return misses_lost ? 1 : 0;
}
