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

/* Returns a malloc'd JSON object with every counter plus "node_id",
 * "uptime_s", "capacity_bytes" and "version"; NULL on allocation failure. */
char *hc_stats_json(const struct hc_stats *st, const char *node_id, uint64_t uptime_s,
                    uint64_t capacity_bytes);

#endif
