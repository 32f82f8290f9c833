/* rssload: indexes many tiny pages in hicached through libhicache, to
 * measure the daemon's memory per indexed page (target 6).
 *
 *   rssload SOCKET NAMESPACE NPAGES PAGE_BYTES
 *
 * One connection, 128-key batches of distinct keys "p<index>", every page
 * PAGE_BYTES of the same bytes. Prints JSON: pages stored, seconds. Exit 0
 * when every page was stored, 1 otherwise, 2 on an error. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hicache.h"

int main(int argc, char **argv)
{
    hc_client *c = NULL;
    hc_connect_opts o = {0};
    char keys[HC_MAX_BATCH][24];
    hc_page pages[HC_MAX_BATCH];
    int results[HC_MAX_BATCH];
    struct timespec t0, t1;
    uint64_t stored = 0;

    if (argc != 5) {
        fprintf(stderr, "usage: rssload SOCKET NAMESPACE NPAGES PAGE_BYTES\n");
        return 2;
    }
    uint64_t n = strtoull(argv[3], NULL, 10);
    size_t psz = strtoull(argv[4], NULL, 10);
    char *buf = malloc(psz);
    hc_buf b = {buf, psz};
    if (!buf)
        return 2;
    memset(buf, 0x5a, psz);
    o.ns = argv[2];
    o.page_size_hint = psz;
    o.timeout_ms = 60000;
    int rc = hc_connect(&c, argv[1], &o);
    if (rc < 0) {
        fprintf(stderr, "rssload: connect: %s\n", hc_strerror(rc));
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 0; i < n; i += HC_MAX_BATCH) {
        size_t k = n - i < HC_MAX_BATCH ? (size_t)(n - i) : HC_MAX_BATCH;
        for (size_t j = 0; j < k; j++) {
            snprintf(keys[j], sizeof(keys[j]), "p%" PRIu64, i + j);
            pages[j] = (hc_page){keys[j], &b, 1};
        }
        rc = hc_batch_set(c, pages, k, results);
        if (rc < 0) {
            fprintf(stderr, "rssload: batch set at %" PRIu64 ": %s\n", i, hc_strerror(rc));
            return 2;
        }
        stored += (uint64_t)rc;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("{\"pages\": %" PRIu64 ", \"stored\": %" PRIu64 ", \"seconds\": %.3f}\n", n, stored,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    hc_close(c);
    free(buf);
    return stored == n ? 0 : 1;
}
