/* Prometheus text from the stats JSON: see prom.h. */
#include "prom.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats_map.h"

/* A growing text buffer; on allocation failure it drops everything and
 * stays failed. */
struct tb {
    char *s;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void tb_printf(struct tb *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            free(b->s);
            b->s = NULL;
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}

/* A label value with \, " and newline escaped. */
static void tb_label(struct tb *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            tb_printf(b, "\\%c", *v);
        else if (*v == '\n')
            tb_printf(b, "\\n");
        else
            tb_printf(b, "%c", *v);
    }
}

static int get_u64(const json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* A counter or gauge. One counted in microseconds (a name ending in
 * _microseconds) goes out in Prometheus's base unit: <stem>_seconds. */
static void one(struct tb *b, const char *name, const char *suffix, const char *type,
                const char *help, uint64_t v)
{
    static const char us[] = "_microseconds";
    size_t n = strlen(name);

    if (n > sizeof(us) - 1 && strcmp(name + n - (sizeof(us) - 1), us) == 0) {
        int stem = (int)(n - (sizeof(us) - 1));
        tb_printf(b,
                  "# HELP hicached_%.*s_seconds%s %s\n# TYPE hicached_%.*s_seconds%s %s\n"
                  "hicached_%.*s_seconds%s %.6f\n",
                  stem, name, suffix, help, stem, name, suffix, type, stem, name, suffix,
                  (double)v / 1e6);
        return;
    }
    tb_printf(b, "# HELP hicached_%s%s %s\n# TYPE hicached_%s%s %s\nhicached_%s%s %" PRIu64 "\n",
              name, suffix, help, name, suffix, type, name, suffix, v);
}

/* "latency": {"bounds_us": [b0, b1, ...], "set": {"buckets": [n0, ..., nK],
 * "count": n, "sum_us": s}, "get": ..., "exists": ...}: buckets[i] counts the
 * requests that took at most bounds_us[i] and more than bounds_us[i-1]; the
 * last bucket (one more than the bounds) those above every bound. */
static void histograms(struct tb *b, const json_t *lat)
{
    static const char *const ops[] = {"set", "get", "exists"};
    json_t *bounds = json_object_get(lat, "bounds_us");
    size_t nb = json_array_size(bounds), i, k;
    int head = 0;

    if (!json_is_array(bounds) || nb == 0)
        return;
    for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        json_t *h = json_object_get(lat, ops[k]), *bk = json_object_get(h, "buckets");
        uint64_t count, sum_us, cum = 0;

        if (!json_is_array(bk) || json_array_size(bk) != nb + 1 || get_u64(h, "count", &count) ||
            get_u64(h, "sum_us", &sum_us))
            continue;
        if (!head) {
            tb_printf(b, "# HELP hicached_request_duration_seconds batch requests from receipt to "
                         "reply, as the daemon sees them\n"
                         "# TYPE hicached_request_duration_seconds histogram\n");
            head = 1;
        }
        for (i = 0; i < nb; i++) {
            json_t *n = json_array_get(bk, i), *le = json_array_get(bounds, i);

            cum += json_is_integer(n) ? (uint64_t)json_integer_value(n) : 0;
            tb_printf(
                b, "hicached_request_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                ops[k], (json_is_integer(le) ? (double)json_integer_value(le) : 0) / 1e6, cum);
        }
        tb_printf(b,
                  "hicached_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
                  "hicached_request_duration_seconds_sum{op=\"%s\"} %.6f\n"
                  "hicached_request_duration_seconds_count{op=\"%s\"} %" PRIu64 "\n",
                  ops[k], count, ops[k], (double)sum_us / 1e6, ops[k], count);
    }
}

char *hc_prom_text(const json_t *stats)
{
    struct tb b = {0};
    const json_t *node = json_object_get(stats, "node_id"),
                 *ver = json_object_get(stats, "version");
    uint64_t v;

    tb_printf(&b, "# HELP hicached_info the daemon's node id and version\n"
                  "# TYPE hicached_info gauge\nhicached_info{node_id=\"");
    tb_label(&b, json_is_string(node) ? json_string_value(node) : "");
    tb_printf(&b, "\",version=\"");
    tb_label(&b, json_is_string(ver) ? json_string_value(ver) : "");
    tb_printf(&b, "\"} 1\n");
    if (get_u64(stats, "uptime_s", &v) == 0)
        one(&b, "uptime_seconds", "", "gauge", "time since the daemon started", v);
    if (get_u64(stats, "capacity_bytes", &v) == 0)
        one(&b, "capacity_bytes", "", "gauge", "byte limit of this node's segments (0: none)", v);
#define HC_PROM_ONE(name, kind, desc)                                                              \
    if (get_u64(stats, #name, &v) == 0)                                                            \
        one(&b, #name, strcmp(#kind, "counter") == 0 ? "_total" : "", #kind, desc, v);
    HC_STATS_MAP(HC_PROM_ONE)
#undef HC_PROM_ONE
    histograms(&b, json_object_get(stats, "latency"));
    return b.failed ? NULL : b.s;
}
