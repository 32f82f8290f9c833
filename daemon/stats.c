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

void hc_latency_record(struct hc_latency *l, uint64_t us)
{
    static const uint64_t bounds[HC_LAT_NB] = HC_LAT_BOUNDS_US;
    unsigned i = 0;

    while (i < HC_LAT_NB && us > bounds[i])
        i++;
    l->buckets[i]++;
    l->count++;
    l->sum_us += us;
}

static json_t *latency_one(const struct hc_latency *l)
{
    json_t *o = json_object(), *b = json_array();
    int rc = (o && b) ? 0 : -1;

    for (unsigned i = 0; rc == 0 && i <= HC_LAT_NB; i++)
        rc |= json_array_append_new(b, counter(l->buckets[i]));
    if (rc == 0) {
        rc |= json_object_set_new(o, "buckets", b);
        b = NULL;
        rc |= json_object_set_new(o, "count", counter(l->count));
        rc |= json_object_set_new(o, "sum_us", counter(l->sum_us));
    }
    json_decref(b);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *latency_object(const struct hc_latencies *lat)
{
    static const uint64_t bounds[HC_LAT_NB] = HC_LAT_BOUNDS_US;
    json_t *o = json_object(), *b = json_array();
    int rc = (o && b) ? 0 : -1;

    for (unsigned i = 0; rc == 0 && i < HC_LAT_NB; i++)
        rc |= json_array_append_new(b, counter(bounds[i]));
    rc |= json_object_set_new(o, "bounds_us", b);
    rc |= json_object_set_new(o, "set", latency_one(&lat->set));
    rc |= json_object_set_new(o, "get", latency_one(&lat->get));
    rc |= json_object_set_new(o, "exists", latency_one(&lat->exists));
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Every counter of HC_STATS_MAP under its own name, and the rest as
 * stats.h says. Any thread; reads *st and *lat without locking (the caller
 * owns the snapshot). */
json_t *hc_stats_object(const struct hc_stats *st, const struct hc_latencies *lat,
                        const char *node_id, uint64_t uptime_s, uint64_t capacity_bytes)
{
    json_t *o = json_object();
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
    if (lat)
        rc |= json_object_set_new(o, "latency", latency_object(lat));
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *hc_stats_json(const struct hc_stats *st, const struct hc_latencies *lat, const char *node_id,
                    uint64_t uptime_s, uint64_t capacity_bytes)
{
    json_t *o = hc_stats_object(st, lat, node_id, uptime_s, capacity_bytes);
    char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return out;
}
