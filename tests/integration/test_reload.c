/* Integration: SIGHUP re-reads the configuration. A new capacity applies to
 * the running daemon (it evicts down to it); a configuration that does not
 * load changes nothing and the daemon keeps serving. */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RL_LEN 65536
#define RL_BATCH 16
#define RL_BATCHES 12 /* 12 MiB */

static void write_config(const char *path, const char *capacity)
{
    char json[256];

    snprintf(json, sizeof(json),
             "{\"segment_size\": \"1M\", \"seal_interval_ms\": 100, \"capacity_bytes\": %s}\n",
             capacity);
    ck_assert_int_eq(h_write_file(path, json, strlen(json)), 0);
}

static void write_batches(hc_client *c)
{
    for (int b = 0; b < RL_BATCHES; b++) {
        char prefix[32];
        struct h_batch w;

        snprintf(prefix, sizeof(prefix), "reload-b%d", b);
        ck_assert_int_eq(h_batch_init(&w, prefix, RL_BATCH, RL_LEN, (uint64_t)b), 0);
        h_batch_fill(&w, 11);
        ck_assert_int_eq(hc_batch_set(c, w.hc, w.n, w.results), RL_BATCH);
        h_batch_free(&w);
    }
}

/* Hits of batch b, each checked byte for byte. */
static int read_batch(hc_client *c, int b)
{
    char prefix[32];
    struct h_batch r;
    int hits = 0;

    snprintf(prefix, sizeof(prefix), "reload-b%d", b);
    ck_assert_int_eq(h_batch_init(&r, prefix, RL_BATCH, RL_LEN, (uint64_t)b), 0);
    h_batch_zero(&r);
    ck_assert_int_ge(hc_batch_get(c, r.hc, r.n, r.results), 0);
    for (size_t i = 0; i < r.n; i++) {
        if (r.results[i] != 0)
            continue;
        ck_assert_msg(h_page_check(&r.pages[i], 11) < 0, "page %s differs", r.pages[i].key);
        hits++;
    }
    h_batch_free(&r);
    return hits;
}

static void config_path(char *buf, size_t len)
{
    int fd;

    snprintf(buf, len, "/tmp/hcreload.XXXXXX");
    fd = mkstemp(buf);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

START_TEST(test_reload_applies_capacity)
{
    char cfg[64];
    struct hd *d;
    hc_client *c;
    uint64_t t0;

    config_path(cfg, sizeof(cfg));
    write_config(cfg, "0");
    d = hd_new("A", "--config", cfg, NULL);
    hd_start(d);
    c = hd_connect(d, NULL, RL_LEN);
    write_batches(c);
    ck_assert_int_eq(h_stat(c, "evicted_pages"), 0);
    ck_assert_int_eq(h_stat(c, "capacity_bytes"), 0);

    write_config(cfg, "\"4M\"");
    ck_assert_int_eq(kill(d->pid, SIGHUP), 0);
    t0 = h_now_ms();
    while (h_stat(c, "evicted_pages") == 0 && h_now_ms() - t0 < 5000)
        h_sleep_ms(50);
    ck_assert_int_eq(h_stat(c, "capacity_bytes"), 4 << 20);
    ck_assert_int_gt(h_stat(c, "evicted_pages"), 0);
    ck_assert_int_le(h_stat(c, "disk_bytes"), (4 << 20) + (1 << 20));
    ck_assert_int_eq(read_batch(c, 0), 0);
    ck_assert_int_eq(read_batch(c, RL_BATCHES - 1), RL_BATCH);
    hc_close(c);
    hd_stop(d);
    unlink(cfg);
}
END_TEST

START_TEST(test_reload_bad_config_changes_nothing)
{
    char cfg[64];
    struct hd *d;
    hc_client *c;
    char *log;

    config_path(cfg, sizeof(cfg));
    write_config(cfg, "\"64M\"");
    d = hd_new("A", "--config", cfg, NULL);
    hd_start(d);
    c = hd_connect(d, NULL, RL_LEN);
    write_config(cfg, "\"lots\"");
    ck_assert_int_eq(kill(d->pid, SIGHUP), 0);
    h_sleep_ms(300);
    ck_assert_int_eq(h_stat(c, "capacity_bytes"), 64 << 20);
    write_batches(c);
    ck_assert_int_eq(read_batch(c, 0), RL_BATCH);
    log = h_read_file(d->log, NULL);
    ck_assert_ptr_nonnull(log);
    ck_assert_msg(strstr(log, "reload failed") && strstr(log, "capacity_bytes"),
                  "no reload error naming the key in the log:\n%s", log);
    free(log);
    hc_close(c);
    hd_stop(d);
    unlink(cfg);
}
END_TEST

/* --log-level warning drops DEBUG and INFO lines; a SIGHUP with log_level
 * "debug" in the file makes them appear (a client's hello logs one). */
START_TEST(test_reload_log_level)
{
    char cfg[64];
    struct hd *d;
    hc_client *c;
    char *log, *after;
    const char *warning = "{\"log_level\": \"warning\"}\n", *debug = "{\"log_level\": \"debug\"}\n";

    config_path(cfg, sizeof(cfg));
    ck_assert_int_eq(h_write_file(cfg, warning, strlen(warning)), 0);
    d = hd_new("A", "--config", cfg, NULL);
    hd_start(d);
    hc_close(hd_connect(d, "before-debug", RL_LEN));
    ck_assert_int_eq(h_write_file(cfg, debug, strlen(debug)), 0);
    ck_assert_int_eq(kill(d->pid, SIGHUP), 0);
    h_sleep_ms(300);
    c = hd_connect(d, "after-debug", RL_LEN);
    h_stat(c, "pages"); /* the hello was handled */
    hc_close(c);
    hd_stop(d);
    log = h_read_file(d->log, NULL);
    ck_assert_ptr_nonnull(log);
    after = strstr(log, "<6>hicached: reloaded:"); /* the first line at the new level */
    ck_assert_msg(after != NULL, "no reload line:\n%s", log);
    *after = '\0';
    ck_assert_msg(!strstr(log, "before-debug"), "a DEBUG line at level warning:\n%s", log);
    ck_assert_msg(!strstr(log, "<6>"), "an INFO line at level warning:\n%s", log);
    ck_assert_msg(strstr(after + 1, "<7>hicached: client") && strstr(after + 1, "after-debug"),
                  "no DEBUG line after the reload to debug:\n%s", after + 1);
    free(log);
    unlink(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_reload");
    TCase *tc = h_tcase("reload", 60);

    tcase_add_test(tc, test_reload_applies_capacity);
    tcase_add_test(tc, test_reload_bad_config_changes_nothing);
    tcase_add_test(tc, test_reload_log_level);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
