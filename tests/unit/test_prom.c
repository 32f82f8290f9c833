/* Unit: the Prometheus text of common/prom.c from a stats JSON object: HELP
 * and TYPE for every counter and gauge, _total on counters, label values
 * escaped, histogram buckets cumulative and ending in +Inf = count. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"
#include "stats_map.h"

static char *text_of(const char *js)
{
    json_error_t err;
    json_t *o = json_loads(js, 0, &err);
    char *t;

    ck_assert_msg(o != NULL, "bad JSON in the test: %s", err.text);
    t = hc_prom_text(o);
    json_decref(o);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* One counter or gauge of the map in t: HELP, TYPE and value, _total on a
 * counter; one in microseconds (name ending in _microseconds) as <stem>_seconds
 * with its value in seconds. */
static void check_one(const char *t, const char *name, const char *kind, const char *desc,
                      unsigned long long v)
{
    const char *sfx = strcmp(kind, "counter") == 0 ? "_total" : "";
    size_t n = strlen(name), us = strlen("_microseconds");
    char line[256], metric[128], value[32];

    if (n > us && strcmp(name + n - us, "_microseconds") == 0) {
        snprintf(metric, sizeof(metric), "%.*s_seconds%s", (int)(n - us), name, sfx);
        snprintf(value, sizeof(value), "%.6f", (double)v / 1e6);
    } else {
        snprintf(metric, sizeof(metric), "%s%s", name, sfx);
        snprintf(value, sizeof(value), "%llu", v);
    }
    snprintf(line, sizeof(line), "# TYPE hicached_%s %s\n", metric, kind);
    ck_assert_msg(strstr(t, line), "no '%s' in:\n%s", line, t);
    snprintf(line, sizeof(line), "# HELP hicached_%s %s\n", metric, desc);
    ck_assert_msg(strstr(t, line), "no '%s'", line);
    snprintf(line, sizeof(line), "\nhicached_%s %s\n", metric, value);
    ck_assert_msg(strstr(t, line), "no '%s'", line);
}

START_TEST(test_every_counter_with_help_and_type)
{
    char js[8192] = "{\"node_id\": \"n1\", \"version\": \"0.1.0\", \"uptime_s\": 7";
    char *t;
    unsigned long long v = 100;

#define ADD(name, kind, desc)                                                                      \
    snprintf(js + strlen(js), sizeof(js) - strlen(js), ", \"%s\": %llu", #name, v++);
    HC_STATS_MAP(ADD)
#undef ADD
    strcat(js, "}");
    t = text_of(js);
    v = 100;
#define CHECK(name, kind, desc) check_one(t, #name, #kind, desc, v++);
    HC_STATS_MAP(CHECK)
#undef CHECK
    ck_assert(strstr(t, "hicached_info{node_id=\"n1\",version=\"0.1.0\"} 1\n"));
    ck_assert(strstr(t, "\nhicached_uptime_seconds 7\n"));
    ck_assert(strstr(t, "\nhicached_sets_total "));    /* a counter */
    ck_assert(strstr(t, "\nhicached_pages "));         /* a gauge */
    ck_assert(!strstr(t, "hicached_pages_total"));     /* gauges have no _total */
    ck_assert(!strstr(t, "request_duration_seconds")); /* no latency: no histogram */
    ck_assert(!strstr(t, "_microseconds"));            /* base units only */
    free(t);
}
END_TEST

START_TEST(test_labels_escaped)
{
    char *t = text_of("{\"node_id\": \"a\\\"b\\\\c\\nd\", \"version\": \"v\"}");

    ck_assert_msg(strstr(t, "hicached_info{node_id=\"a\\\"b\\\\c\\nd\",version=\"v\"} 1\n"), "%s",
                  t);
    free(t);
}
END_TEST

START_TEST(test_histogram_cumulative)
{
    char *t = text_of("{\"latency\": {\"bounds_us\": [100, 1000, 10000],"
                      " \"set\": {\"buckets\": [1, 2, 3, 4], \"count\": 10, \"sum_us\": 2500000},"
                      " \"get\": {\"buckets\": [5, 0, 0, 0], \"count\": 5, \"sum_us\": 250},"
                      " \"exists\": {\"buckets\": [1, 2], \"count\": 3, \"sum_us\": 1}}}");

    ck_assert(strstr(t, "# TYPE hicached_request_duration_seconds histogram\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_bucket{op=\"set\",le=\"0.0001\"} 1\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_bucket{op=\"set\",le=\"0.001\"} 3\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_bucket{op=\"set\",le=\"0.01\"} 6\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_bucket{op=\"set\",le=\"+Inf\"} 10\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_sum{op=\"set\"} 2.500000\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_count{op=\"set\"} 10\n"));
    ck_assert(strstr(t, "hicached_request_duration_seconds_bucket{op=\"get\",le=\"0.01\"} 5\n"));
    /* a histogram whose bucket count does not match the bounds is left out */
    ck_assert(!strstr(t, "op=\"exists\""));
    free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("prom");
    TCase *tc = tcase_create("prom");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_every_counter_with_help_and_type);
    tcase_add_test(tc, test_labels_escaped);
    tcase_add_test(tc, test_histogram_cumulative);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
