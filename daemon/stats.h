/* Daemon counters. Changed on the loop thread only (I/O threads report through
 * request results), so plain integers suffice. The JSON names are part of the
 * public surface (hicachectl stats --json, DESIGN §7). */
#ifndef HC_STATS_H
#define HC_STATS_H

#include <stdint.h>

#include "stats_map.h"

struct hc_stats {
#define HC_STATS_FIELD(name, kind, desc) uint64_t name;
    HC_STATS_MAP(HC_STATS_FIELD)
#undef HC_STATS_FIELD
};

/* Request latency as the daemon sees it (receipt to reply), per kind of
 * batch request: a histogram with fixed bounds (microseconds). Loop thread
 * only, like the counters. */
#define HC_LAT_BOUNDS_US                                                                           \
    {                                                                                              \
        50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, \
            2500000, 5000000, 10000000                                                             \
    }
#define HC_LAT_NB 17
struct hc_latency {
    uint64_t buckets[HC_LAT_NB + 1]; /* [i]: <= bound i and > bound i-1; last: above all */
    uint64_t count, sum_us;
};
struct hc_latencies {
    struct hc_latency set, get, exists;
};

void hc_latency_record(struct hc_latency *l, uint64_t us);

struct json_t;

/* A JSON object with every counter plus "node_id" (null when NULL),
 * "uptime_s", "capacity_bytes", "version" and, when lat is not NULL,
 * "latency" (the histograms, as common/prom.c reads them). NULL on
 * allocation failure; the caller json_decref()s it. */
struct json_t *hc_stats_object(const struct hc_stats *st, const struct hc_latencies *lat,
                               const char *node_id, uint64_t uptime_s, uint64_t capacity_bytes);

/* The same object as malloc'd compact text (the stats reply). */
char *hc_stats_json(const struct hc_stats *st, const struct hc_latencies *lat, const char *node_id,
                    uint64_t uptime_s, uint64_t capacity_bytes);

#endif
