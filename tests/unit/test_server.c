/* The daemon in-process: hc_server_run in a child process of the suite,
 * talked to over its socket with libhicache. hc_store_ns is wrapped at link
 * time (-Wl,--wrap=hc_store_ns, see the Makefile) so that interning one
 * namespace name fails with -ENOMEM, which nothing else can make happen on
 * demand. */
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

/* A fresh directory with data/ for the mount point; the socket path in it. */
static void dirs_make(char *mount, size_t mlen)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hc-server.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(mount, mlen, "%s/data", tmpdir);
    snprintf(sock, sizeof(sock), "%s/hicached.sock", tmpdir);
    ck_assert_int_eq(mkdir(mount, 0755), 0);
}

/* Runs hc_server_run in a child (with the listen variables given, when
 * listen_fds is not NULL, as systemd would set them for it) and returns the
 * child's pid. */
static pid_t daemon_fork(const char *mount, const char *listen_fds)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char *argv[] = {"hicached", "--mount-point", (char *)mount, "--socket",
                        sock,       "--node-id",     "node1",       NULL};
        struct hc_config cfg;
        char err[256], num[32];
        bool exit_now = false;
        if (listen_fds) {
            snprintf(num, sizeof(num), "%d", (int)getpid());
            setenv("LISTEN_PID", num, 1);
            setenv("LISTEN_FDS", listen_fds, 1);
        }
        if (hc_config_init(&cfg) < 0 ||
            hc_config_parse_args(&cfg, 7, argv, &exit_now, err, sizeof(err)) < 0)
            _exit(3);
        _exit(hc_server_run(&cfg, 7, argv));
    }
    return pid;
}

/* The daemon in a child; returns once a client can connect. */
static void daemon_start(void)
{
    char mount[300];

    dirs_make(mount, sizeof(mount));
    daemon_pid = daemon_fork(mount, NULL);
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

/* Sockets that systemd says it passed but that are not all open (1000 of
 * them from fd 3 on), or a LISTEN_FDS that does not parse: the daemon
 * refuses to start (exit status 1) instead of binding its own socket path,
 * which would replace the socket systemd listens on. */
START_TEST(t_activation_unusable)
{
    const char *bad[] = {"1000", "junk"};
    char mount[300];
    struct stat st;

    dirs_make(mount, sizeof(mount));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pid_t pid = daemon_fork(mount, bad[i]);
        int status = -1, n = 0;
        while (waitpid(pid, &status, WNOHANG) == 0 && n++ < 500)
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        if (n > 500) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("LISTEN_FDS=%s: the daemon started anyway", bad[i]);
        }
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "LISTEN_FDS=%s: status %#x",
                      bad[i], status);
        ck_assert_msg(stat(sock, &st) < 0 && errno == ENOENT, "LISTEN_FDS=%s: %s was bound", bad[i],
                      sock);
    }
    daemon_stop();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_set_ns_nomem);
    tcase_add_test(tc, t_activation_unusable);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
