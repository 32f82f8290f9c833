/* The request glue (daemon/request.c) where the store refuses: the daemon
 * runs in a child process of this test (hc_server_run), with hc_store_ns
 * wrapped at link time (-Wl,--wrap=hc_store_ns, see the Makefile) so that
 * interning one namespace name fails with -ENOMEM, and a client of
 * libhicache talks to it over its socket. */
#include "hicache.h"
#include "config.h"
#include "server.h"
#include "store.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOMEM_NS "nomem-ns"

int __real_hc_store_ns(struct hc_store *s, const char *ns, size_t len);

/* hc_store_ns as the glue sees it: out of memory for NOMEM_NS. */
int __wrap_hc_store_ns(struct hc_store *s, const char *ns, size_t len);
int __wrap_hc_store_ns(struct hc_store *s, const char *ns, size_t len)
{
    if (ns && len == strlen(NOMEM_NS) && !memcmp(ns, NOMEM_NS, len))
        return -ENOMEM;
    return __real_hc_store_ns(s, ns, len);
}

static char tmpdir[256], sock[300];
static pid_t daemon_pid = -1;

/* The daemon in a child; returns once a client can connect. */
static void daemon_start(void)
{
    char mount[300];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hc-request.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(mount, sizeof(mount), "%s/data", tmpdir);
    snprintf(sock, sizeof(sock), "%s/hicached.sock", tmpdir);
    ck_assert_int_eq(mkdir(mount, 0755), 0);
    daemon_pid = fork();
    ck_assert_int_ge(daemon_pid, 0);
    if (daemon_pid == 0) {
        char *argv[] = {"hicached", "--mount-point", mount,   "--socket",
                        sock,       "--node-id",     "node1", NULL};
        struct hc_config cfg;
        char err[256];
        bool exit_now = false;
        if (hc_config_init(&cfg) < 0 ||
            hc_config_parse_args(&cfg, 7, argv, &exit_now, err, sizeof(err)) < 0)
            _exit(3);
        _exit(hc_server_run(&cfg, 7, argv));
    }
    for (int i = 0; i < 500; i++) {
        hc_client *c = NULL;
        if (hc_connect(&c, sock, NULL) == 0) {
            hc_close(c);
            return;
        }
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    ck_abort_msg("the daemon did not listen on %s within 5 s", sock);
}

static void daemon_stop(void)
{
    int st;
    char cmd[300];

    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        ck_assert_int_eq(waitpid(daemon_pid, &st, 0), daemon_pid);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        daemon_pid = -1;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static json_int_t stat_of(hc_client *c, const char *name)
{
    char *js = NULL;
    ck_assert_int_eq(hc_stats(c, &js), 0);
    json_t *root = json_loads(js, 0, NULL);
    ck_assert_ptr_nonnull(root);
    json_t *v = json_object_get(root, name);
    ck_assert_msg(json_is_integer(v), "no counter %s in %s", name, js);
    json_int_t n = json_integer_value(v);
    json_decref(root);
    free(js);
    return n;
}

/* A set whose namespace cannot be interned is answered -ENOMEM and counted as
 * a set error, not as a get miss; the daemon goes on serving. */
START_TEST(t_set_ns_nomem)
{
    char page[4096];
    hc_buf b = {page, sizeof(page)};
    hc_page p = {.key = "k1", .bufs = &b, .nbufs = 1};
    hc_client *c = NULL;
    int res = 0;

    memset(page, 'p', sizeof(page));
    daemon_start();
    ck_assert_int_eq(hc_connect(&c, sock, &(hc_connect_opts){.ns = NOMEM_NS}), 0);
    ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 0);
    ck_assert_int_eq(res, -ENOMEM);
    ck_assert_int_eq(stat_of(c, "set_errors"), 1);
    ck_assert_int_eq(stat_of(c, "sets"), 0);
    ck_assert_int_eq(stat_of(c, "gets"), 0);
    ck_assert_int_eq(stat_of(c, "misses"), 0);
    hc_close(c);

    ck_assert_int_eq(hc_connect(&c, sock, &(hc_connect_opts){.ns = "fine"}), 0);
    ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    ck_assert_int_eq(stat_of(c, "sets"), 1);
    ck_assert_int_eq(stat_of(c, "set_errors"), 1);
    hc_close(c);
    daemon_stop();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("request");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_set_ns_nomem);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
