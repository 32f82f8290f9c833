/* sd_notify and socket activation, against real sockets. */
#include "notify.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hc_test_notify.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    unsetenv("NOTIFY_SOCKET");
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* A service manager's end: a datagram socket bound at addr. */
static int manager_socket(const struct sockaddr_un *sa, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (const struct sockaddr *)sa, len), 0);
    struct timeval tv = {.tv_sec = 5};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    return fd;
}

static void expect_msg(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_eq(n, (ssize_t)strlen(want));
    buf[n] = '\0';
    ck_assert_str_eq(buf, want);
}

START_TEST(t_notify_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify.sock", tmpdir);
    int fd = manager_socket(&sa, sizeof(sa));
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);

    ck_assert_int_eq(hc_notify("READY=1"), 1);
    expect_msg(fd, "READY=1");
    ck_assert_int_eq(hc_notify("STATUS=serving 3 clients"), 1);
    expect_msg(fd, "STATUS=serving 3 clients");
    ck_assert_int_eq(hc_notify("STOPPING=1"), 1);
    expect_msg(fd, "STOPPING=1");
    /* the variable stays for later messages */
    ck_assert_str_eq(getenv("NOTIFY_SOCKET"), sa.sun_path);
    close(fd);
}
END_TEST

START_TEST(t_notify_unset)
{
    unsetenv("NOTIFY_SOCKET");
    ck_assert_int_eq(hc_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    ck_assert_int_eq(hc_notify("READY=1"), 0);
}
END_TEST

START_TEST(t_notify_abstract)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char name[64], env[80];
    snprintf(name, sizeof(name), "hc-test-notify-%d-%ld", (int)getpid(), (long)random());
    sa.sun_path[0] = '\0';
    memcpy(sa.sun_path + 1, name, strlen(name));
    int fd =
        manager_socket(&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name)));
    snprintf(env, sizeof(env), "@%s", name);
    setenv("NOTIFY_SOCKET", env, 1);
    ck_assert_int_eq(hc_notify("READY=1"), 1);
    expect_msg(fd, "READY=1");
    close(fd);
}
END_TEST

START_TEST(t_notify_errors)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/nobody-listens.sock", tmpdir);
    setenv("NOTIFY_SOCKET", path, 1);
    int rc = hc_notify("READY=1");
    ck_assert_msg(rc == -ENOENT || rc == -ECONNREFUSED, "rc %d", rc);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    ck_assert_int_lt(hc_notify("READY=1"), 0);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    ck_assert_int_lt(hc_notify("READY=1"), 0);
}
END_TEST

/* fd 3 belongs to the test framework here, so the activation itself runs in a
 * child that reports by exit status: 0 ok, else the number of the check that
 * failed. */
static int activated_child(int nfds)
{
    char num[32];
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0)
        return 10;
    for (int i = 0; i < nfds; i++)
        if (dup2(s, 3 + i) != 3 + i) /* dup2 leaves FD_CLOEXEC clear, as systemd does */
            return 11;
    snprintf(num, sizeof(num), "%d", (int)getpid());
    setenv("LISTEN_PID", num, 1);
    snprintf(num, sizeof(num), "%d", nfds);
    setenv("LISTEN_FDS", num, 1);
    setenv("LISTEN_FDNAMES", "hicached.socket", 1);
    if (hc_listen_fds() != 3)
        return 1;
    for (int i = 0; i < nfds; i++)
        if (!(fcntl(3 + i, F_GETFD) & FD_CLOEXEC))
            return 2;
    if (getenv("LISTEN_PID") || getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES"))
        return 3;
    int type = 0;
    socklen_t tl = sizeof(type);
    if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
        return 4;
    /* a second call finds nothing */
    if (hc_listen_fds() != -ENOENT)
        return 5;
    return 0;
}

/* Run in a child like activated_child: fds that systemd says it passed but
 * that are not open give -EBADF, and the variables are gone all the same. */
static int closed_child(void)
{
    char num[32];
    close(3);
    close(4);
    snprintf(num, sizeof(num), "%d", (int)getpid());
    setenv("LISTEN_PID", num, 1);
    setenv("LISTEN_FDS", "2", 1);
    if (hc_listen_fds() != -EBADF)
        return 1;
    if (getenv("LISTEN_PID") || getenv("LISTEN_FDS"))
        return 2;
    setenv("LISTEN_PID", "junk", 1);
    setenv("LISTEN_FDS", "1", 1);
    if (hc_listen_fds() != -EINVAL)
        return 3;
    return 0;
}

static void run_child(int nfds)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(nfds > 0 ? activated_child(nfds) : closed_child());
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_msg(WEXITSTATUS(st) == 0, "activation check %d failed", WEXITSTATUS(st));
}

START_TEST(t_listen_fds_ours)
{
    run_child(1);
    run_child(2);
}
END_TEST

START_TEST(t_listen_fds_closed)
{
    run_child(0);
}
END_TEST

START_TEST(t_listen_fds_not_ours)
{
    char num[32];
    snprintf(num, sizeof(num), "%d", (int)getpid() + 1);
    setenv("LISTEN_PID", num, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "x", 1);
    ck_assert_int_eq(hc_listen_fds(), -ENOENT);
    /* meant for another process: still not passed on to our children */
    ck_assert_ptr_null(getenv("LISTEN_PID"));
    ck_assert_ptr_null(getenv("LISTEN_FDS"));

    unsetenv("LISTEN_PID");
    ck_assert_int_eq(hc_listen_fds(), -ENOENT);

    snprintf(num, sizeof(num), "%d", (int)getpid());
    setenv("LISTEN_PID", num, 1);
    setenv("LISTEN_FDS", "0", 1);
    ck_assert_int_eq(hc_listen_fds(), -ENOENT);
    setenv("LISTEN_PID", num, 1);
    setenv("LISTEN_FDS", "junk", 1);
    ck_assert_int_eq(hc_listen_fds(), -EINVAL);
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("notify");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t_notify_path);
    tcase_add_test(tc, t_notify_unset);
    tcase_add_test(tc, t_notify_abstract);
    tcase_add_test(tc, t_notify_errors);
    tcase_add_test(tc, t_listen_fds_ours);
    tcase_add_test(tc, t_listen_fds_not_ours);
    tcase_add_test(tc, t_listen_fds_closed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    srandom((unsigned)getpid());
    SRunner *sr = srunner_create(notify_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
