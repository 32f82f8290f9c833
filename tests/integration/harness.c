/* Integration-test harness (see harness.h). Runs in the Check test process;
 * the few helpers meant for client children say so. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define H_MAX_INST 8
#define H_MAX_TRACKED 256

/* State of one test, in memory shared with its guardian process (see
 * h_setup): the guardian reads it after the test process is gone. */
struct h_shared {
    struct hd insts[H_MAX_INST];
    int ninst;
    char tmpdirs[2 * H_MAX_INST][H_PATH]; /* local dirs, and data dirs under the data root */
    int ntmpdirs;
    pid_t tracked[H_MAX_TRACKED]; /* client children, for cleanup */
    int ntracked;
    int teardown_done;
};
static struct h_shared *sh;

/* State of a client child. */
static int child_ready_w = -1;
static int child_barrier_r = -1;

uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void h_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

const char *h_hicached_bin(void)
{
    const char *p = getenv("HICACHED_BIN");
    return p && *p ? p : "build/default/hicached";
}

const char *h_hicachectl_bin(void)
{
    const char *p = getenv("HICACHECTL_BIN");
    return p && *p ? p : "build/default/hicachectl";
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void h_dump_logs(void)
{
    for (int i = 0; sh && i < sh->ninst; i++) {
        const struct hd *d = &sh->insts[i];
        size_t len = 0;
        char *text = h_read_file(d->log, &len);
        fprintf(stderr, "----- hicached log, node %s (%s) -----\n%s\n----- end of log -----\n",
                d->node_id, d->log, text ? text : "(no log)");
        free(text);
    }
    fflush(stderr);
}

/* Reaps pid, waiting up to timeout_ms, then SIGKILLs it. Returns the wait
 * status or -1. */
int h_wait_pid(pid_t pid, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (h_now_ms() >= end)
            break;
        h_sleep_ms(5);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return -1;
}

/* Guardian deadline for one test, in seconds (h_tcase sets it). */
static int h_test_timeout_s = 60;

/* Kills whatever the test left (daemons, clients), reaps them (the guardian is
 * their subreaper), removes the temporary directories. */
static void h_guard_cleanup(void)
{
    for (int i = 0; i < sh->ntracked; i++) {
        if (sh->tracked[i] > 0)
            kill(sh->tracked[i], SIGKILL);
    }
    for (int i = 0; i < sh->ninst; i++) {
        if (sh->insts[i].pid > 0)
            kill(sh->insts[i].pid, SIGKILL);
    }
    uint64_t end = h_now_ms() + 5000;
    while (h_now_ms() < end) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0 && errno == ECHILD)
            break;
        if (r <= 0)
            h_sleep_ms(5);
    }
    for (int i = 0; i < sh->ntmpdirs; i++)
        rm_tree(sh->tmpdirs[i]);
}

/* The guardian: the process Check forked for the test. It waits for the
 * test process (its child), enforces the deadline, prints the daemon logs if
 * the test failed, cleans up, and exits as the test process did. Check ends a
 * failed test with _exit, so nothing inside the test process could do this. */
static void h_guard(pid_t child)
{
    uint64_t end = h_now_ms() + (uint64_t)h_test_timeout_s * 1000u;
    int st = 0;
    bool timed_out = false;
    for (;;) {
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r == child)
            break;
        if (r > 0)
            continue; /* an orphan of the test, reaped */
        if (r < 0 && errno != EINTR && errno != ECHILD)
            break;
        if (h_now_ms() >= end) {
            timed_out = true;
            fprintf(stderr, "harness: test still running after %d s: killed\n", h_test_timeout_s);
            kill(child, SIGKILL);
            waitpid(child, &st, 0);
            break;
        }
        h_sleep_ms(5);
    }
    bool ok = !timed_out && WIFEXITED(st) && WEXITSTATUS(st) == 0 && sh->teardown_done;
    if (!ok)
        h_dump_logs();
    h_guard_cleanup();
    fflush(NULL);
    if (timed_out)
        _exit(1);
    if (WIFSIGNALED(st)) {
        signal(WTERMSIG(st), SIG_DFL);
        raise(WTERMSIG(st));
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

void h_setup(void)
{
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(sh != MAP_FAILED, "mmap: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN); /* the raw-socket helpers write to closing peers */
    const char *nofork = getenv("CK_FORK");
    if (nofork && strcmp(nofork, "no") == 0)
        return; /* no guardian: cleanup only by h_teardown */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    fflush(NULL);
    pid_t guard = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid > 0)
        h_guard(pid); /* never returns */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != guard)
        _exit(1);
}

void h_teardown(void)
{
    for (int i = 0; i < sh->ntracked; i++) {
        if (sh->tracked[i] > 0) {
            kill(sh->tracked[i], SIGKILL);
            waitpid(sh->tracked[i], NULL, 0);
            sh->tracked[i] = 0;
        }
    }
    for (int i = 0; i < sh->ninst; i++) {
        if (sh->insts[i].pid > 0)
            hd_stop(&sh->insts[i]);
    }
    sh->teardown_done = 1;
    for (int i = 0; i < sh->ntmpdirs; i++)
        rm_tree(sh->tmpdirs[i]);
    sh->ntmpdirs = 0;
    for (int i = 0; i < sh->ninst; i++) {
        for (int j = 0; j < sh->insts[i].nextra; j++)
            free(sh->insts[i].extra[j]);
        sh->insts[i].nextra = 0;
    }
}

TCase *h_tcase(const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, h_setup, h_teardown);
    h_test_timeout_s = timeout_s;
    tcase_set_timeout(tc, timeout_s + 15);
    return tc;
}

int h_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? 0 : 1;
}
static void track_pid(pid_t pid)
{
    for (int i = 0; i < sh->ntracked; i++) {
        if (sh->tracked[i] == 0) {
            sh->tracked[i] = pid;
            return;
        }
    }
    if (sh->ntracked < H_MAX_TRACKED)
        sh->tracked[sh->ntracked++] = pid;
}

static void untrack_pid(pid_t pid)
{
    for (int i = 0; i < sh->ntracked; i++) {
        if (sh->tracked[i] == pid)
            sh->tracked[i] = 0;
    }
}

static struct hd *hd_alloc(const char *node_id, va_list ap)
{
    ck_assert_msg(sh != NULL, "h_setup was not run");
    ck_assert_msg(sh->ninst < H_MAX_INST, "too many daemons in one test");
    struct hd *d = &sh->insts[sh->ninst];
    memset(d, 0, sizeof(*d));
    char dir[sizeof(d->dir)] = "/tmp/hcinteg.XXXXXX";
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    memcpy(d->dir, dir, sizeof(dir));
    memcpy(sh->tmpdirs[sh->ntmpdirs++], dir, sizeof(dir));
    snprintf(d->sock, sizeof(d->sock), "%s/hicached.sock", dir);
    snprintf(d->log, sizeof(d->log), "%s/hicached.log", dir);
    snprintf(d->node_id, sizeof(d->node_id), "%s", node_id);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_msg(d->nextra < H_MAX_ARGS, "too many flags");
        d->extra[d->nextra++] = strdup(a);
    }
    sh->ninst++;
    return d;
}

/* $name when set and not empty, else NULL. */
static const char *env_root(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* mkdir -p of path (which must fit in H_PATH). Returns 0 or -errno. */
static int mkdir_p(const char *path)
{
    char buf[H_PATH];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return mkdir(buf, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

struct hd *hd_new(const char *node_id, ...)
{
    va_list ap;
    va_start(ap, node_id);
    struct hd *d = hd_alloc(node_id, ap);
    va_end(ap);
    const char *root = env_root("HICACHE_TEST_DATA_ROOT");
    if (!root) {
        snprintf(d->mount, sizeof(d->mount), "%s/data", d->dir);
        ck_assert_msg(mkdir(d->mount, 0755) == 0, "mkdir %s: %s", d->mount, strerror(errno));
        return d;
    }
    /* The data dir on the file system under test (e.g. a JuiceFS mount); the
     * socket and the log stay in the local dir (Unix sockets need a local
     * file system). */
    int rc = mkdir_p(root);
    ck_assert_msg(rc == 0, "HICACHE_TEST_DATA_ROOT: mkdir %s: %s", root, strerror(-rc));
    int n = snprintf(d->mount, sizeof(d->mount), "%s/hcdata.XXXXXX", root);
    ck_assert_msg(n > 0 && (size_t)n < sizeof(d->mount), "HICACHE_TEST_DATA_ROOT too long: %s",
                  root);
    ck_assert_msg(mkdtemp(d->mount) != NULL, "mkdtemp %s: %s", d->mount, strerror(errno));
    ck_assert_msg(sh->ntmpdirs < (int)(sizeof(sh->tmpdirs) / sizeof(sh->tmpdirs[0])),
                  "too many directories");
    memcpy(sh->tmpdirs[sh->ntmpdirs++], d->mount, sizeof(d->mount));
    return d;
}

struct hd *hd_new_peer(const struct hd *peer, const char *node_id, ...)
{
    va_list ap;
    va_start(ap, node_id);
    struct hd *d = hd_alloc(node_id, ap);
    va_end(ap);
    snprintf(d->mount, sizeof(d->mount), "%s", peer->mount);
    const char *root = env_root("HICACHE_TEST_DATA_ROOT");
    const char *proot = env_root("HICACHE_TEST_PEER_ROOT");
    size_t rl = root ? strlen(root) : 0;
    if (!root || !proot || strncmp(peer->mount, root, rl) != 0 || peer->mount[rl] != '/')
        return d;
    /* The same directory seen through the second mount of the volume: the
     * peer is another node. Wait until that mount sees the directory. */
    int n = snprintf(d->mount, sizeof(d->mount), "%s%s", proot, peer->mount + rl);
    ck_assert_msg(n > 0 && (size_t)n < sizeof(d->mount), "HICACHE_TEST_PEER_ROOT too long: %s",
                  proot);
    struct stat sb;
    uint64_t end = h_now_ms() + 10000;
    while (stat(d->mount, &sb) < 0 && h_now_ms() < end)
        h_sleep_ms(20);
    ck_assert_msg(stat(d->mount, &sb) == 0 && S_ISDIR(sb.st_mode),
                  "peer data dir %s (HICACHE_TEST_PEER_ROOT) not visible after 10 s: %s", d->mount,
                  strerror(errno));
    return d;
}

/* In the forked daemon child: never returns. */
static void hd_exec_child(const struct hd *d, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0)
        _exit(127);
    dup2(nullfd, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    close_range(3, ~0u, 0); /* nothing of the test process leaks into the daemon */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    signal(SIGPIPE, SIG_DFL);
    char *argv[H_MAX_ARGS + 16];
    int n = 0;
    argv[n++] = (char *)h_hicached_bin();
    argv[n++] = "--foreground";
    argv[n++] = "--mount-point";
    argv[n++] = (char *)d->mount;
    argv[n++] = "--socket";
    argv[n++] = (char *)d->sock;
    argv[n++] = "--node-id";
    argv[n++] = (char *)d->node_id;
    for (int i = 0; i < d->nextra; i++)
        argv[n++] = d->extra[i];
    argv[n] = NULL;
    execv(argv[0], argv);
    dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int hd_try_start(struct hd *d, int *status)
{
    ck_assert_msg(d->pid == 0, "daemon %s already running", d->node_id);
    FILE *lf = fopen(d->log, "a");
    if (lf) {
        fprintf(lf, "===== harness: start #%d of node %s =====\n", d->starts + 1, d->node_id);
        fclose(lf);
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        hd_exec_child(d, parent);
    d->pid = pid;
    d->starts++;

    uint64_t end = h_now_ms() + 10000;
    while (h_now_ms() < end) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            d->pid = 0;
            if (status)
                *status = st;
            return -ECHILD;
        }
        hc_client *c = NULL;
        hc_connect_opts o = {.ns = NULL, .timeout_ms = 2000};
        if (hc_connect(&c, d->sock, &o) == 0) {
            int rc = hc_ping(c);
            hc_close(c);
            if (rc == 0)
                return 0;
        }
        h_sleep_ms(20);
    }
    return -ETIMEDOUT;
}

void hd_start(struct hd *d)
{
    int st = 0;
    int rc = hd_try_start(d, &st);
    if (rc == -ECHILD) {
        ck_abort_msg("hicached (%s) exited at start: status %d signal %d (log above)",
                     h_hicached_bin(), WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                     WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
    ck_assert_msg(rc == 0, "hicached (%s) did not answer a ping within 10 s: %s", h_hicached_bin(),
                  strerror(-rc));
}

void hd_stop(struct hd *d)
{
    ck_assert_msg(d->pid > 0, "daemon %s not running", d->node_id);
    pid_t pid = d->pid;
    kill(pid, SIGTERM);
    int st = h_wait_pid(pid, 15000);
    d->pid = 0;
    ck_assert_msg(st != -1, "hicached %s did not exit within 15 s of SIGTERM", d->node_id);
    ck_assert_msg(WIFEXITED(st), "hicached %s died of signal %d after SIGTERM", d->node_id,
                  WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    ck_assert_msg(WEXITSTATUS(st) == 0, "hicached %s exited with status %d after SIGTERM",
                  d->node_id, WEXITSTATUS(st));
    struct stat sb;
    ck_assert_msg(lstat(d->sock, &sb) < 0 && errno == ENOENT,
                  "socket %s still exists after a clean stop", d->sock);
}

void hd_kill(struct hd *d)
{
    ck_assert_msg(d->pid > 0, "daemon %s not running", d->node_id);
    kill(d->pid, SIGKILL);
    h_wait_pid(d->pid, 10000);
    d->pid = 0;
}

hc_client *hd_connect(const struct hd *d, const char *ns, uint64_t page_size_hint)
{
    hc_client *c = NULL;
    hc_connect_opts o = {.ns = ns, .page_size_hint = page_size_hint, .timeout_ms = 20000};
    int rc = hc_connect(&c, d->sock, &o);
    ck_assert_msg(rc == 0, "hc_connect(%s): %s", d->sock, hc_strerror(rc));
    return c;
}

int64_t h_stat(hc_client *c, const char *name)
{
    char *js = NULL;
    int rc = hc_stats(c, &js);
    ck_assert_msg(rc == 0, "hc_stats: %s", hc_strerror(rc));
    json_error_t jerr;
    json_t *root = json_loads(js, 0, &jerr);
    ck_assert_msg(root != NULL, "stats JSON does not parse (%s): %s", jerr.text, js);
    json_t *v = json_object_get(root, name);
    ck_assert_msg(v != NULL && json_is_integer(v), "stats JSON has no integer '%s': %s", name, js);
    int64_t val = (int64_t)json_integer_value(v);
    json_decref(root);
    hc_free(js);
    return val;
}

int64_t hd_stat(const struct hd *d, const char *name)
{
    hc_client *c = hd_connect(d, NULL, 0);
    int64_t v = h_stat(c, name);
    hc_close(c);
    return v;
}

long hd_status_kib(const struct hd *d, const char *field)
{
    char path[64], line[256];
    size_t n = strlen(field);
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':' &&
            sscanf(line + n + 1, "%ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

long hd_map_rss_kib(const struct hd *d, const char *name)
{
    char path[64], line[512];
    bool match = false;
    long kib = -1, v;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)d->pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
            match = strstr(line, name) != NULL;
            if (match && kib < 0)
                kib = 0;
        } else if (match && sscanf(line, "Rss: %ld kB", &v) == 1) {
            kib += v;
        }
    }
    fclose(f);
    return kib;
}

int hd_fd_count(const struct hd *d, const char *skip_prefix)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (skip_prefix) {
            char link[320], target[512];
            snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
            ssize_t k = readlink(link, target, sizeof(target) - 1);
            target[k > 0 ? k : 0] = '\0';
            if (strncmp(target, skip_prefix, strlen(skip_prefix)) == 0)
                continue;
        }
        n++;
    }
    closedir(dir);
    return n;
}

void hd_fd_list(const struct hd *d, char *buf, size_t len)
{
    char path[64];
    size_t used = 0;
    buf[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    DIR *dir = opendir(path);
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && used + 1 < len) {
        if (e->d_name[0] == '.')
            continue;
        char link[320], target[256];
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        int k = snprintf(buf + used, len - used, "  %s -> %s\n", e->d_name, target);
        if (k < 0)
            break;
        used += (size_t)k < len - used ? (size_t)k : len - used - 1;
    }
    closedir(dir);
}

static int drop_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F || !S_ISREG(st->st_mode))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return 0;
}

void h_drop_cache(const char *path)
{
    nftw(path, drop_one, 16, FTW_PHYS);
}

static uint64_t dir_bytes_sum;

static int dir_bytes_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F && S_ISREG(st->st_mode))
        dir_bytes_sum += (uint64_t)st->st_size;
    return 0;
}

uint64_t h_dir_bytes(const char *path)
{
    dir_bytes_sum = 0;
    nftw(path, dir_bytes_one, 16, FTW_PHYS);
    return dir_bytes_sum;
}

/* ---- page contents ---------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t key_seed(const char *key, uint64_t salt)
{
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h;
}

void h_fill(void *buf, size_t len, const char *key, uint64_t salt)
{
    uint64_t s = key_seed(key, salt);
    uint8_t *p = buf;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = splitmix(&s);
        memcpy(p + i, &v, 8);
    }
    if (i < len) {
        uint64_t v = splitmix(&s);
        memcpy(p + i, &v, len - i);
    }
}

long h_check(const void *buf, size_t len, const char *key, uint64_t salt)
{
    uint64_t s = key_seed(key, salt);
    const uint8_t *p = buf;
    size_t i = 0;
    for (; i < len; i += 8) {
        uint64_t v = splitmix(&s);
        size_t n = len - i < 8 ? len - i : 8;
        if (memcmp(p + i, &v, n) != 0) {
            const uint8_t *e = (const uint8_t *)&v;
            for (size_t j = 0; j < n; j++) {
                if (p[i + j] != e[j])
                    return (long)(i + j);
            }
        }
    }
    return -1;
}

/* Checks page p gathered from its buffers. */
long h_page_check(const struct h_page *p, uint64_t salt)
{
    uint8_t *flat = malloc(p->len ? p->len : 1);
    if (!flat)
        return 0;
    size_t off = 0;
    for (unsigned i = 0; i < p->nbufs; i++) {
        memcpy(flat + off, p->bufs[i].base, p->bufs[i].len);
        off += p->bufs[i].len;
    }
    long r = h_check(flat, p->len, p->key, salt);
    free(flat);
    return r;
}

int h_batch_init(struct h_batch *b, const char *prefix, size_t n, size_t len, uint64_t split_seed)
{
    memset(b, 0, sizeof(*b));
    b->n = n;
    b->pages = calloc(n, sizeof(*b->pages));
    b->hc = calloc(n, sizeof(*b->hc));
    b->results = calloc(n, sizeof(*b->results));
    if (!b->pages || !b->hc || !b->results)
        goto err;
    uint64_t s = split_seed;
    for (size_t i = 0; i < n; i++) {
        struct h_page *p = &b->pages[i];
        snprintf(p->key, sizeof(p->key), "%s-%zu", prefix, i);
        p->len = len;
        p->nbufs = len >= 4 ? 2 + (unsigned)(splitmix(&s) % 3) : 1;
        /* nbufs - 1 cut points, each buffer at least one byte */
        size_t cuts[5];
        cuts[0] = 0;
        cuts[p->nbufs] = len;
        for (unsigned k = 1; k < p->nbufs; k++) {
            size_t lo = cuts[k - 1] + 1;
            size_t room = len - (p->nbufs - k) - lo + 1;
            cuts[k] = lo + (size_t)(splitmix(&s) % (room > 0 ? room : 1)) / 2;
        }
        for (unsigned k = 0; k < p->nbufs; k++) {
            p->bufs[k].len = cuts[k + 1] - cuts[k];
            p->bufs[k].base = malloc(p->bufs[k].len ? p->bufs[k].len : 1);
            if (!p->bufs[k].base)
                goto err;
        }
        b->hc[i].key = p->key;
        b->hc[i].bufs = p->bufs;
        b->hc[i].nbufs = p->nbufs;
    }
    return 0;
err:
    h_batch_free(b);
    return -ENOMEM;
}

void h_batch_free(struct h_batch *b)
{
    if (b->pages) {
        for (size_t i = 0; i < b->n; i++) {
            for (unsigned k = 0; k < b->pages[i].nbufs; k++)
                free(b->pages[i].bufs[k].base);
        }
    }
    free(b->pages);
    free(b->hc);
    free(b->results);
    memset(b, 0, sizeof(*b));
}

void h_batch_fill(struct h_batch *b, uint64_t salt)
{
    for (size_t i = 0; i < b->n; i++) {
        struct h_page *p = &b->pages[i];
        uint8_t *flat = malloc(p->len ? p->len : 1);
        if (!flat)
            abort();
        h_fill(flat, p->len, p->key, salt);
        size_t off = 0;
        for (unsigned k = 0; k < p->nbufs; k++) {
            memcpy(p->bufs[k].base, flat + off, p->bufs[k].len);
            off += p->bufs[k].len;
        }
        free(flat);
    }
}

void h_batch_zero(struct h_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        for (unsigned k = 0; k < b->pages[i].nbufs; k++)
            memset(b->pages[i].bufs[k].base, 0, b->pages[i].bufs[k].len);
        b->results[i] = 1; /* no valid result is positive */
    }
}

/* ---- forked client processes ------------------------------------------- */

void h_child_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[client pid %d] %s:%d: failed: %s: %s\n", (int)getpid(), file, line, cond,
            msg);
    fflush(stderr);
    _exit(1);
}

pid_t h_fork(h_client_fn fn, int idx, void *arg)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        signal(SIGPIPE, SIG_DFL); /* as in a plain C application */
        int rc = fn(idx, arg);
        fflush(NULL);
        _exit(rc == 0 ? 0 : 1);
    }
    track_pid(pid);
    return pid;
}

void h_barrier(void)
{
    if (child_ready_w >= 0) {
        char c = 'r';
        while (write(child_ready_w, &c, 1) < 0 && errno == EINTR)
            ;
        close(child_ready_w);
        child_ready_w = -1;
    }
    if (child_barrier_r >= 0) {
        char c;
        ssize_t r;
        while ((r = read(child_barrier_r, &c, 1)) < 0 && errno == EINTR)
            ;
        close(child_barrier_r);
        child_barrier_r = -1;
    }
}

void h_procs_start(struct h_procs *p, int n, h_client_fn fn, void *arg)
{
    ck_assert_int_le(n, H_MAX_PROCS);
    memset(p, 0, sizeof(*p));
    int ready[2], barrier[2];
    ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(barrier, O_CLOEXEC), 0);
    p->n = n;
    fflush(NULL);
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            signal(SIGPIPE, SIG_DFL); /* as in a plain C application */
            close(ready[0]);
            close(barrier[1]);
            child_ready_w = ready[1];
            child_barrier_r = barrier[0];
            int rc = fn(i, arg);
            fflush(NULL);
            _exit(rc == 0 ? 0 : 1);
        }
        p->pids[i] = pid;
        track_pid(pid);
    }
    close(ready[1]);
    close(barrier[0]);
    p->ready_r = ready[0];
    p->barrier_w = barrier[1];
}

int h_procs_release(struct h_procs *p)
{
    int got = 0;
    uint64_t end = h_now_ms() + 30000;
    while (p->ready_r >= 0) {
        int64_t left = (int64_t)(end - h_now_ms());
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = p->ready_r, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        char buf[64];
        ssize_t k = read(p->ready_r, buf, sizeof(buf));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* every child reported or exited */
        got += (int)k;
    }
    if (p->ready_r >= 0)
        close(p->ready_r);
    p->ready_r = -1;
    if (p->barrier_w >= 0)
        close(p->barrier_w);
    p->barrier_w = -1;
    return got;
}

int h_procs_wait(struct h_procs *p, int timeout_ms)
{
    if (p->ready_r >= 0 || p->barrier_w >= 0)
        h_procs_release(p);
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    int failed = 0;
    for (int i = 0; i < p->n; i++) {
        int left = (int)((int64_t)(end - h_now_ms()) > 0 ? end - h_now_ms() : 0);
        int st = h_wait_pid(p->pids[i], left);
        untrack_pid(p->pids[i]);
        p->status[i] = st;
        if (st == -1) {
            fprintf(stderr, "client %d (pid %d) did not finish in time: killed\n", i,
                    (int)p->pids[i]);
            failed++;
        } else if (p->killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
            failed++; /* killed on purpose: counted, not reported */
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "client %d (pid %d) failed: %s %d\n", i, (int)p->pids[i],
                    WIFEXITED(st) ? "exit status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
            failed++;
        }
    }
    return failed;
}

int h_run_clients(int n, h_client_fn fn, void *arg)
{
    struct h_procs p;
    h_procs_start(&p, n, fn, arg);
    h_procs_release(&p);
    return h_procs_wait(&p, 60000);
}

/* ---- raw socket --------------------------------------------------------- */

int h_raw_connect(struct h_raw *r, const char *sock)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->next_id = 1000;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    r->fd = fd;
    return 0;
}

int h_raw_send(struct h_raw *r, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = send(r->fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int h_raw_send_frame(struct h_raw *r, const void *body, uint32_t len)
{
    uint8_t *buf = malloc((size_t)len + 4);
    if (!buf)
        return -ENOMEM;
    buf[0] = (uint8_t)len;
    buf[1] = (uint8_t)(len >> 8);
    buf[2] = (uint8_t)(len >> 16);
    buf[3] = (uint8_t)(len >> 24);
    if (len)
        memcpy(buf + 4, body, len);
    int rc = h_raw_send(r, buf, (size_t)len + 4);
    free(buf);
    return rc;
}

int h_raw_send_req(struct h_raw *r, const Hicache__Request *req)
{
    size_t len = hicache__request__get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    hicache__request__pack(req, buf);
    int rc = h_raw_send_frame(r, buf, (uint32_t)len);
    free(buf);
    return rc;
}

/* Reads exactly n bytes by recvmsg (catching a passed fd into *passed).
 * Returns 0, -ECONNRESET on EOF, -ETIMEDOUT or -errno. */
static int raw_read_full(struct h_raw *r, void *buf, size_t n, uint64_t end, int *passed)
{
    uint8_t *p = buf;
    while (n > 0) {
        int left = (int)((int64_t)(end - h_now_ms()) > 0 ? end - h_now_ms() : 0);
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -errno;
        if (pr == 0)
            return -ETIMEDOUT;
        union {
            char buf[CMSG_SPACE(sizeof(int) * 4)];
            struct cmsghdr align;
        } cm;
        struct iovec iov = {.iov_base = p, .iov_len = n};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cm.buf,
                            .msg_controllen = sizeof(cm.buf)};
        ssize_t k = recvmsg(r->fd, &mh, MSG_CMSG_CLOEXEC);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *fds = (int *)CMSG_DATA(c);
                for (size_t i = 0; i < nfd; i++) {
                    if (passed && *passed < 0)
                        *passed = fds[i];
                    else
                        close(fds[i]);
                }
            }
        }
        if (k == 0)
            return -ECONNRESET;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads one frame body (malloc'd) and any passed fd. */
static int raw_read_frame(struct h_raw *r, uint8_t **body, uint32_t *len, int timeout_ms,
                          int *passed)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    uint8_t hdr[4];
    int rc = raw_read_full(r, hdr, 4, end, passed);
    if (rc < 0)
        return rc;
    uint32_t n =
        (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (n > 64u << 20)
        return -EMSGSIZE;
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return -ENOMEM;
    rc = raw_read_full(r, b, n, end, passed);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *body = b;
    *len = n;
    return 0;
}

Hicache__Response *h_raw_recv(struct h_raw *r, int timeout_ms)
{
    uint8_t *body = NULL;
    uint32_t len = 0;
    int passed = -1;
    if (raw_read_frame(r, &body, &len, timeout_ms, &passed) < 0)
        return NULL;
    if (passed >= 0)
        close(passed);
    Hicache__Response *resp = hicache__response__unpack(NULL, len, body);
    free(body);
    return resp;
}

int h_raw_hello(struct h_raw *r, const char *ns, uint64_t page_size_hint)
{
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__Hello hello = HICACHE__HELLO__INIT;
    hello.protocol_version = HC_PROTOCOL_VERSION;
    const char *name = ns ? ns : "default";
    hello.namespace_.data = (uint8_t *)name;
    hello.namespace_.len = strlen(name);
    hello.page_size_hint = page_size_hint;
    hello.client_name = "integ-raw";
    req.id = r->next_id++;
    req.body_case = HICACHE__REQUEST__BODY_HELLO;
    req.hello = &hello;
    int rc = h_raw_send_req(r, &req);
    if (rc < 0)
        return rc;
    uint8_t *body = NULL;
    uint32_t len = 0;
    int passed = -1;
    rc = raw_read_frame(r, &body, &len, 10000, &passed);
    if (rc < 0)
        return -EPROTO;
    Hicache__Response *resp = hicache__response__unpack(NULL, len, body);
    free(body);
    if (!resp) {
        if (passed >= 0)
            close(passed);
        return -EPROTO;
    }
    rc = resp->status;
    if (rc == 0) {
        if (passed < 0 || !resp->hello) {
            rc = -EPROTO;
        } else {
            r->region_size = resp->hello->region_size;
            r->max_frame = resp->hello->max_frame;
            void *m = mmap(NULL, r->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, passed, 0);
            if (m == MAP_FAILED) {
                rc = -errno;
            } else {
                r->region = m;
            }
        }
    }
    if (passed >= 0)
        close(passed);
    hicache__response__free_unpacked(resp, NULL);
    return rc;
}

Hicache__Response *h_raw_call(struct h_raw *r, Hicache__Request *req)
{
    req->id = r->next_id++;
    int rc = h_raw_send_req(r, req);
    ck_assert_msg(rc == 0, "raw send: %s", strerror(-rc));
    uint64_t end = h_now_ms() + 10000;
    for (;;) {
        int left = (int)((int64_t)(end - h_now_ms()) > 0 ? end - h_now_ms() : 0);
        Hicache__Response *resp = h_raw_recv(r, left);
        ck_assert_msg(resp != NULL, "no response to request %llu within 10 s",
                      (unsigned long long)req->id);
        if (resp->id == req->id)
            return resp;
        hicache__response__free_unpacked(resp, NULL);
    }
}

bool h_raw_wait_eof(struct h_raw *r, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int left = (int)((int64_t)(end - h_now_ms()) > 0 ? end - h_now_ms() : 0);
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return false;
        char buf[4096];
        ssize_t k = recv(r->fd, buf, sizeof(buf), 0);
        if (k == 0)
            return true;
        if (k < 0 && errno != EINTR && errno != EAGAIN)
            return errno == ECONNRESET;
    }
}

void h_raw_close(struct h_raw *r)
{
    if (r->region)
        munmap(r->region, r->region_size);
    if (r->fd >= 0)
        close(r->fd);
    r->region = NULL;
    r->fd = -1;
}

/* ---- processes and files ------------------------------------------------ */

int h_exec(char *const argv[], const char *out_path, const char *err_path, int timeout_ms)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        close_range(3, ~0u, 0);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    track_pid(pid);
    int st = h_wait_pid(pid, timeout_ms);
    untrack_pid(pid);
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

char *h_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        goto err;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                goto err;
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            goto err;
        if (k == 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
err:
    free(buf);
    close(fd);
    return NULL;
}

int h_write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        p += k;
        len -= (size_t)k;
    }
    return close(fd) < 0 ? -errno : 0;
}

/* ---- acknowledgement log of a writer process ---------------------------- */

struct h_ack_rec {
    int32_t batch;
    int32_t idx;
};

void h_ack_send(int fd, int32_t batch, int32_t idx)
{
    struct h_ack_rec r = {batch, idx};
    while (write(fd, &r, sizeof(r)) < 0 && errno == EINTR)
        ;
}

bool h_ack_read(int fd, struct h_ack_log *log, int until_acked, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (until_acked < 0 || log->nacked < until_acked) {
        int64_t left = (int64_t)(end - h_now_ms());
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        struct h_ack_rec r;
        ssize_t k = read(fd, &r, sizeof(r));
        if (k == 0)
            return until_acked < 0;
        if (k != (ssize_t)sizeof(r))
            continue;
        ck_assert(r.batch >= 0 && r.batch < H_ACK_MAX_BATCHES);
        if (r.idx < 0) {
            if (r.batch + 1 > log->attempted)
                log->attempted = r.batch + 1;
        } else {
            log->acked[r.batch] |= 1u << r.idx;
            log->nacked++;
        }
    }
    return true;
}

int h_ack_writer(const char *sock, const char *stem, int max_batches, size_t npages, size_t len,
                 uint64_t salt, int rec_w)
{
    hc_client *c = NULL;
    hc_connect_opts o = {.page_size_hint = len, .timeout_ms = 20000};
    int rc = hc_connect(&c, sock, &o);
    H_REQUIRE(rc == 0, "hc_connect: %s", hc_strerror(rc));
    for (int b = 0; b < max_batches && b < H_ACK_MAX_BATCHES; b++) {
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "%s-b%d", stem, b);
        struct h_batch w;
        H_REQUIRE(h_batch_init(&w, prefix, npages, len, (uint64_t)b) == 0, "oom");
        h_batch_fill(&w, salt);
        h_ack_send(rec_w, b, -1);
        rc = hc_batch_set(c, w.hc, w.n, w.results);
        bool stop = rc < 0;
        for (size_t i = 0; i < w.n; i++) {
            if (rc >= 0 && w.results[i] == 0)
                h_ack_send(rec_w, b, (int32_t)i);
            else
                stop = true;
        }
        h_batch_free(&w);
        if (stop)
            break;
    }
    hc_close(c);
    close(rec_w);
    return 0;
}
