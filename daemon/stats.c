/* The counters as one JSON object (hicachectl stats --json). */
#include "stats.h"

#include <jansson.h>
#include <stdint.h>

#include "hicache_defs.h"

/* json_int_t is signed: a counter past INT64_MAX (never in practice) is
 * clamped rather than shown negative. */
static json_t *counter(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

/* Returns a malloc'd compact JSON object holding every counter of
 * HC_STATS_MAP under its own name, plus "node_id" (null when NULL),
 * "uptime_s", "capacity_bytes" and "version". NULL on allocation failure.
 * Any thread; reads *st without locking (the caller owns the snapshot). */
char *hc_stats_json(const struct hc_stats *st, const char *node_id, uint64_t uptime_s,
                    uint64_t capacity_bytes)
{
    json_t *o = json_object();
    char *out = NULL;
    int rc = 0;

    if (!o)
        return NULL;
#define HC_STATS_SET(name, kind, desc) rc |= json_object_set_new(o, #name, counter(st->name));
    HC_STATS_MAP(HC_STATS_SET)
#undef HC_STATS_SET
    rc |= json_object_set_new(o, "node_id", node_id ? json_string(node_id) : json_null());
    rc |= json_object_set_new(o, "uptime_s", counter(uptime_s));
    rc |= json_object_set_new(o, "capacity_bytes", counter(capacity_bytes));
    rc |= json_object_set_new(o, "version", json_string(HC_VERSION));
    if (rc == 0)
        out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return out;
}
