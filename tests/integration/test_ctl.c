/* Integration: hicachectl against a real daemon. Exit status 0 done (exists:
 * every key exists), 1 a miss, 2 an error (bad usage, invalid key, daemon
 * unreachable) with the reason on stderr (DESIGN §7). */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static struct hd *ctl_d;
static char ctl_out[H_PATH + 32], ctl_err[H_PATH + 32];

/* Runs hicachectl [--socket <daemon>] args... (NULL-terminated); stdout and
 * stderr land in ctl_out / ctl_err. Returns the exit status. */
static int ctl(const char *sock, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)h_hicachectl_bin();
    if (sock) {
        argv[n++] = "--socket";
        argv[n++] = (char *)sock;
    }
    va_list ap;
    va_start(ap, sock);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    int st = h_exec(argv, ctl_out, ctl_err, 20000);
    ck_assert_msg(st != -1, "hicachectl %s did not finish in 20 s", argv[sock ? 3 : 1]);
    ck_assert_msg(st < 128, "hicachectl died of signal %d", st - 128);
    return st;
}

static char *ctl_stderr(void)
{
    static char buf[4096];
    char *e = h_read_file(ctl_err, NULL);
    snprintf(buf, sizeof(buf), "%s", e ? e : "");
    free(e);
    return buf;
}

#define CTL_EXPECT(want, ...)                                                                      \
    do {                                                                                           \
        int st_ = ctl(ctl_d->sock, __VA_ARGS__, NULL);                                             \
        ck_assert_msg(st_ == (want), "hicachectl %s: exit %d, want %d; stderr: %s", #__VA_ARGS__,  \
                      st_, (want), ctl_stderr());                                                  \
        if ((want) == 2)                                                                           \
            ck_assert_msg(ctl_stderr()[0] != 0, "hicachectl %s: exit 2 without a reason",          \
                          #__VA_ARGS__);                                                           \
    } while (0)

START_TEST(test_ctl_put_get_exists)
{
    ctl_d = hd_new("A", NULL);
    hd_start(ctl_d);
    snprintf(ctl_out, sizeof(ctl_out), "%s/out.txt", ctl_d->dir);
    snprintf(ctl_err, sizeof(ctl_err), "%s/err.txt", ctl_d->dir);
    char in[H_PATH + 32], got[H_PATH + 32], got2[H_PATH + 32];
    snprintf(in, sizeof(in), "%s/in.bin", ctl_d->dir);
    snprintf(got, sizeof(got), "%s/got.bin", ctl_d->dir);
    snprintf(got2, sizeof(got2), "%s/got2.bin", ctl_d->dir);
    size_t len = 100003;
    char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    h_fill(data, len, "ctl-key", 4);
    ck_assert_int_eq(h_write_file(in, data, len), 0);

    CTL_EXPECT(0, "ping");
    CTL_EXPECT(0, "put", "ctl-key", in);
    ck_assert_int_eq(hd_stat(ctl_d, "pages"), 1);
    ck_assert_int_eq(hd_stat(ctl_d, "bytes_stored"), (int64_t)len);
    CTL_EXPECT(0, "get", "ctl-key", got);
    size_t glen = 0;
    char *g = h_read_file(got, &glen);
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(glen, len);
    ck_assert_msg(memcmp(g, data, len) == 0, "hicachectl get returned other bytes");
    free(g);

    /* the library sees what the CLI stored */
    hc_client *c = hd_connect(ctl_d, NULL, 0);
    char *lb = calloc(1, len);
    ck_assert_ptr_nonnull(lb);
    hc_buf b = {lb, len};
    hc_page p = {"ctl-key", &b, 1};
    int res = 1;
    ck_assert_int_eq(hc_batch_get(c, &p, 1, &res), 1);
    ck_assert_msg(memcmp(lb, data, len) == 0, "library reads other bytes than put");
    free(lb);
    hc_close(c);

    CTL_EXPECT(1, "get", "no-such-key", got2);
    CTL_EXPECT(0, "exists", "ctl-key");
    CTL_EXPECT(1, "exists", "ctl-key", "no-such-key");
    CTL_EXPECT(1, "exists", "no-such-key", "ctl-key");
    CTL_EXPECT(1, "--namespace", "other-ns", "get", "ctl-key", got2);
    CTL_EXPECT(1, "--namespace", "other-ns", "exists", "ctl-key");

    /* errors */
    CTL_EXPECT(2, "exists", "a/b");
    CTL_EXPECT(2, "get", "a/b", got2);
    CTL_EXPECT(2, "put", "a b", in);
    CTL_EXPECT(2, "put", "ctl-key2", "/nonexistent/file");
    CTL_EXPECT(2, "put", "ctl-key2");
    CTL_EXPECT(2, "frobnicate");
    ck_assert_int_eq(hd_stat(ctl_d, "pages"), 1);
    int st = ctl(NULL, NULL);
    ck_assert_msg(st == 2, "hicachectl without arguments: exit %d, want 2", st);
    char nosock[H_PATH + 32];
    snprintf(nosock, sizeof(nosock), "%s/nobody.sock", ctl_d->dir);
    st = ctl(nosock, "ping", NULL);
    ck_assert_msg(st == 2, "hicachectl ping with no daemon: exit %d, want 2", st);
    ck_assert_msg(ctl_stderr()[0], "no reason on stderr when the daemon is unreachable");
    st = ctl(nosock, "get", "ctl-key", got2, NULL);
    ck_assert_msg(st == 2, "hicachectl get with no daemon: exit %d, want 2", st);

    CTL_EXPECT(0, "clear");
    CTL_EXPECT(1, "get", "ctl-key", got2);
    CTL_EXPECT(1, "exists", "ctl-key");
    free(data);
}
END_TEST

START_TEST(test_ctl_stats_json)
{
    ctl_d = hd_new("A", NULL);
    hd_start(ctl_d);
    snprintf(ctl_out, sizeof(ctl_out), "%s/out.txt", ctl_d->dir);
    snprintf(ctl_err, sizeof(ctl_err), "%s/err.txt", ctl_d->dir);
    char in[H_PATH + 32];
    snprintf(in, sizeof(in), "%s/in.bin", ctl_d->dir);
    char data[5000];
    h_fill(data, sizeof(data), "s1", 1);
    ck_assert_int_eq(h_write_file(in, data, sizeof(data)), 0);
    CTL_EXPECT(0, "put", "s1", in);
    CTL_EXPECT(0, "put", "s2", in);
    CTL_EXPECT(0, "put", "s2", in);

    CTL_EXPECT(0, "stats", "--json");
    char *out = h_read_file(ctl_out, NULL);
    ck_assert_ptr_nonnull(out);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    ck_assert_msg(root && json_is_object(root), "stats --json output is no JSON object (%s): %s",
                  jerr.text, out);
    static const char *const names[] = {
        "pages",
        "bytes_stored",
        "sets",
        "gets",
        "hits",
        "misses",
        "dedup_hits",
        "bytes_written",
        "bytes_read_storage",
        "bytes_served",
        "coalesced_reads",
        "clients",
        "corrupt_records",
        "evicted_pages",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ck_assert_msg(json_is_integer(json_object_get(root, names[i])),
                      "stats --json has no integer '%s': %s", names[i], out);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "pages")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "sets")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "dedup_hits")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "bytes_written")), 10000);
    json_t *node = json_object_get(root, "node_id");
    ck_assert_msg(json_is_string(node) && strcmp(json_string_value(node), "A") == 0,
                  "stats --json node_id: %s", out);
    json_decref(root);
    free(out);

    CTL_EXPECT(0, "stats");
    out = h_read_file(ctl_out, NULL);
    ck_assert_msg(out && strstr(out, "dedup_hits"), "plain stats lacks the counters: %s",
                  out ? out : "");
    free(out);
}
END_TEST

/* The loop thread's own counters: a daemon stopped for half a second (as a
 * callback that ran that long would keep it) reports a stall of about that
 * much (its tick ran late), and an idle daemon's loop waits rather than
 * works (loop_busy_microseconds grows by far less than the time passed). */
START_TEST(test_ctl_loop_stall)
{
    ctl_d = hd_new("L", NULL);
    hd_start(ctl_d);
    int64_t stalls0 = hd_stat(ctl_d, "loop_stalls");
    int64_t busy0 = hd_stat(ctl_d, "loop_busy_microseconds");
    uint64_t t0 = h_now_ms();
    h_sleep_ms(600);
    int64_t busy1 = hd_stat(ctl_d, "loop_busy_microseconds");
    uint64_t waited_us = (h_now_ms() - t0) * 1000;
    ck_assert_msg(busy1 >= busy0 && busy1 - busy0 < (int64_t)waited_us / 2,
                  "an idle loop worked %lld us of %llu", (long long)(busy1 - busy0),
                  (unsigned long long)waited_us);

    ck_assert_int_eq(kill(ctl_d->pid, SIGSTOP), 0);
    h_sleep_ms(500);
    ck_assert_int_eq(kill(ctl_d->pid, SIGCONT), 0);
    h_sleep_ms(400); /* a tick (200 ms at most) runs, late */
    int64_t stalls1 = hd_stat(ctl_d, "loop_stalls");
    int64_t worst = hd_stat(ctl_d, "loop_stall_max_microseconds");
    ck_assert_msg(stalls1 > stalls0, "no stall counted (%lld, then %lld)", (long long)stalls0,
                  (long long)stalls1);
    /* the tick due soonest after the stop ran at least 500 - 200 ms late */
    ck_assert_msg(worst >= 290000 && worst < 10000000,
                  "loop_stall_max_microseconds %lld after 500 ms stopped", (long long)worst);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_ctl");
    TCase *tc = h_tcase("ctl", 60);
    tcase_add_test(tc, test_ctl_put_get_exists);
    tcase_add_test(tc, test_ctl_stats_json);
    tcase_add_test(tc, test_ctl_loop_stall);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
