/* The daemon's stats as Prometheus text (exposition format 0.0.4): one
 * formatter for the daemon's metrics endpoint and `hicachectl stats
 * --prometheus` (node_exporter's textfile collector), so both print the same
 * text for the same stats. Works on the stats JSON object (daemon/stats.c),
 * with jansson; not part of libhicache. */
#ifndef HC_PROM_H
#define HC_PROM_H

#include <jansson.h>

/* Returns malloc'd text: every counter of HC_STATS_MAP as hicached_<name>_total
 * (counter) or hicached_<name> (gauge) with # HELP and # TYPE;
 * hicached_info{node_id,version} 1, hicached_uptime_seconds,
 * hicached_capacity_bytes; and when stats holds "latency" (daemon/stats.h),
 * the histogram hicached_request_duration_seconds{op="set|get|exists"}.
 * Members missing from stats are left out. NULL on allocation failure.
 * Any thread. */
char *hc_prom_text(const json_t *stats);

#endif
