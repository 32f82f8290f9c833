/* Integration-test harness: real hicached processes in temporary directories,
 * clients through libhicache, raw sockets for bad input, forked client
 * processes.
 *
 * Lifetime rules. Every suite makes its test case with h_tcase (checked
 * fixture h_setup/h_teardown). A daemon started here is a child of the test
 * process and dies with it (PR_SET_PDEATHSIG); h_teardown stops every running
 * daemon with SIGTERM and asserts a clean exit, then removes the temporary
 * directories. If a test fails (Check then _exits the test process without the
 * teardown) or overruns, the guardian process (see h_setup) prints every
 * daemon's log, kills the daemons and client processes and removes the
 * directories.
 *
 * Functions whose names end in nothing special assert with Check (call them
 * from the test process only). In forked client processes use H_REQUIRE, which
 * prints and _exit(1)s, never ck_assert. */
#ifndef HC_HARNESS_H
#define HC_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include "hicache.h"
#include "hicache.pb-c.h"

#define H_PATH 256
#define H_MAX_ARGS 48
#define H_MAX_PROCS 64

/* One hicached instance. dir (always a local temporary dir) holds the socket,
 * the log and any config file; mount is dir/data, or a fresh directory under
 * $HICACHE_TEST_DATA_ROOT when that is set, or the peer's (hd_new_peer). */
struct hd {
    char dir[64];
    char mount[H_PATH];
    char sock[H_PATH];
    char log[H_PATH];
    char node_id[65];
    char *extra[H_MAX_ARGS]; /* extra flags, strdup'd */
    int nextra;
    pid_t pid; /* 0 when not running */
    int starts;
};

/* Fixture functions (h_tcase registers them). h_setup forks: the process
 * Check made for the test becomes a guardian that waits for the test process,
 * prints the daemon logs if the test failed or ran past its deadline, kills
 * what is left and removes the directories. */
void h_setup(void);
void h_teardown(void);

/* A test case with the fixture and a deadline of timeout_s per test (the
 * guardian's; Check's own timeout is a little longer). One per suite. */
TCase *h_tcase(const char *name, int timeout_s);
/* Runs the suite (CK_NORMAL); returns the process exit status. */
int h_run_suite(Suite *s);

/* Creates an instance (not started) in a fresh directory, with node id
 * node_id and extra flags (a NULL-terminated list of strings, e.g.
 * "--segment-size", "1048576", NULL). Asserts on failure.
 *
 * Env HICACHE_TEST_DATA_ROOT (optional, e.g. a directory on a JuiceFS mount):
 * the data dir (the daemon's --mount-point) is made there (mkdtemp), created
 * with its parents if missing, and removed at teardown; the socket and the
 * log stay in the local temporary dir. */
struct hd *hd_new(const char *node_id, ...) __attribute__((sentinel));

/* Same, but on the mount point of peer (own socket and log). With both
 * HICACHE_TEST_DATA_ROOT and HICACHE_TEST_PEER_ROOT set (the latter a second
 * mount of the same volume), the peer gets the same directory seen through
 * the second mount: <peer root>/<peer's path below the data root>, waited
 * for up to 10 s. Two daemons on two mounts of one volume are two nodes. */
struct hd *hd_new_peer(const struct hd *peer, const char *node_id, ...) __attribute__((sentinel));

/* Starts the daemon ($HICACHED_BIN) and waits until the socket answers a ping
 * (up to 10 s). Returns 0, or -errno / -ECHILD if the daemon exited (its exit
 * status then in *status when status is not NULL). */
int hd_try_start(struct hd *d, int *status);

/* hd_try_start, asserting success (prints the log on failure). */
void hd_start(struct hd *d);

/* SIGTERM; asserts exit status 0 within 15 s and the socket path unlinked. */
void hd_stop(struct hd *d);

/* SIGKILL and reap. */
void hd_kill(struct hd *d);

/* Connects through libhicache (asserts). ns NULL = "default". */
hc_client *hd_connect(const struct hd *d, const char *ns, uint64_t page_size_hint);

/* One counter from the daemon's stats JSON (asserts it is present and an
 * integer). h_stat uses an existing connection, hd_stat a new one. */
int64_t h_stat(hc_client *c, const char *name);
int64_t hd_stat(const struct hd *d, const char *name);

/* A "<field>: N kB" line of the daemon's /proc/<pid>/status (VmRSS, VmHWM),
 * in KiB, or -1. */
long hd_status_kib(const struct hd *d, const char *field);

/* Resident KiB of the daemon's mappings whose path contains name (a memfd's
 * name: "hicache-client-", a pool's), summed from /proc/<pid>/smaps, or -1
 * when it maps none. */
long hd_map_rss_kib(const struct hd *d, const char *name);

/* Number of open fds of the daemon (/proc/<pid>/fd), not counting those
 * whose target starts with skip_prefix (may be NULL), or -1. */
int hd_fd_count(const struct hd *d, const char *skip_prefix);
/* Lists the daemon's fds ("  3 -> socket:[123]" lines) into buf. */
void hd_fd_list(const struct hd *d, char *buf, size_t len);

/* Sum of sizes of the regular files under path (recursively); 0 if none. */
uint64_t h_dir_bytes(const char *path);

/* Drops the page cache of every regular file under path (fdatasync +
 * POSIX_FADV_DONTNEED), so the next read of them goes to the device. */
void h_drop_cache(const char *path);

/* Prints every instance's log to stderr. */
void h_dump_logs(void);

/* Monotonic milliseconds. */
uint64_t h_now_ms(void);
void h_sleep_ms(unsigned ms);

/* ---- page contents ---------------------------------------------------- */

/* Deterministic bytes for (key, salt): any process can regenerate them. */
void h_fill(void *buf, size_t len, const char *key, uint64_t salt);
/* Returns -1 if buf holds h_fill's bytes, else the first differing offset. */
long h_check(const void *buf, size_t len, const char *key, uint64_t salt);

/* A page split into separately allocated buffers (so a library that ignored
 * the scatter/gather list could not pass by accident). */
struct h_page {
    char key[H_PATH + 8];
    size_t len;
    unsigned nbufs;
    hc_buf bufs[4];
};

/* A batch of n pages named "<prefix>-<i>", each len bytes in 2..4 buffers
 * (split points drawn from split_seed). */
struct h_batch {
    size_t n;
    struct h_page *pages;
    hc_page *hc;
    int *results;
};

int h_batch_init(struct h_batch *b, const char *prefix, size_t n, size_t len, uint64_t split_seed);
void h_batch_free(struct h_batch *b);
void h_batch_fill(struct h_batch *b, uint64_t salt);
void h_batch_zero(struct h_batch *b);
/* Returns -1 if page i holds the expected bytes, else the first bad offset. */
long h_page_check(const struct h_page *p, uint64_t salt);

/* ---- forked client processes ------------------------------------------- */

/* Runs in a child; returns 0 for pass. Call h_barrier() exactly once. */
typedef int (*h_client_fn)(int idx, void *arg);

struct h_procs {
    int n;
    pid_t pids[H_MAX_PROCS];
    int status[H_MAX_PROCS];
    int ready_r;   /* parent reads one byte per child at the barrier */
    int barrier_w; /* closed by the parent to release the children */
    bool killed;   /* set when the test SIGKILLs them: h_procs_wait is quiet */
};

/* Forks n children running fn(i, arg) then _exit(0 / 1). Asserts. */
void h_procs_start(struct h_procs *p, int n, h_client_fn fn, void *arg);
/* Waits (up to 30 s) until every child called h_barrier() or exited, then
 * releases them all at once. Returns how many reached the barrier. */
int h_procs_release(struct h_procs *p);
/* Waits for every child (killing the rest with SIGKILL after timeout_ms).
 * Returns the number that did not exit with status 0. */
int h_procs_wait(struct h_procs *p, int timeout_ms);
/* start + release + wait(60 s); returns failures. */
int h_run_clients(int n, h_client_fn fn, void *arg);
/* In a child: report ready, block until the parent releases everyone. */
void h_barrier(void);

/* Child-side assertion: prints the condition and message, then _exit(1). */
#define H_REQUIRE(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            h_child_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                  \
    } while (0)
void h_child_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* Forks a child process (PR_SET_PDEATHSIG, tracked for cleanup) that runs
 * fn(idx, arg) and exits with its result. Returns the pid (asserts). */
pid_t h_fork(h_client_fn fn, int idx, void *arg);
/* Waits for pid up to timeout_ms (then SIGKILL). Returns the wait status, or
 * -1 on error. */
int h_wait_pid(pid_t pid, int timeout_ms);

/* ---- acknowledgement log of a writer process ---------------------------- */

/* A writer process (crash and kill tests) tells its parent, through a pipe,
 * each batch it attempts (idx -1) before sending it and each page the daemon
 * acknowledged after: the parent then knows which pages must survive. */
#define H_ACK_MAX_BATCHES 512

struct h_ack_log {
    int attempted;                     /* batches attempted: 0 .. attempted-1 */
    uint32_t acked[H_ACK_MAX_BATCHES]; /* bit i: page i of the batch acknowledged */
    int nacked;
};

/* In the writer: one record to fd. */
void h_ack_send(int fd, int32_t batch, int32_t idx);
/* In a writer process: connects to sock and stores batches named
 * "<stem>-b<b>" (b = 0, 1, ...) of npages pages of len bytes (h_batch_init
 * with split seed b, h_batch_fill with salt) until a set fails or max_batches
 * were stored, recording each attempt and each acknowledged page on rec_w,
 * which it closes. Returns 0 (a child's pass). */
int h_ack_writer(const char *sock, const char *stem, int max_batches, size_t npages, size_t len,
                 uint64_t salt, int rec_w);
/* In the parent: reads records from fd into log until at least until_acked
 * pages are acknowledged (or EOF when until_acked < 0). False on timeout. */
bool h_ack_read(int fd, struct h_ack_log *log, int until_acked, int timeout_ms);

/* ---- raw socket --------------------------------------------------------- */

struct h_raw {
    int fd;
    uint8_t *region;
    uint64_t region_size;
    uint32_t max_frame;
    uint64_t next_id;
};

/* Connects without saying hello. Returns 0 or -errno. */
int h_raw_connect(struct h_raw *r, const char *sock);
/* Sends hello, reads the reply, maps the passed region. Returns the reply
 * status (0 or -errno), or -EPROTO when the reply is missing / had no fd. */
int h_raw_hello(struct h_raw *r, const char *ns, uint64_t page_size_hint);
/* Sends bytes as they are. Returns 0 or -errno. */
int h_raw_send(struct h_raw *r, const void *buf, size_t n);
/* Sends a 4-byte little-endian length and the body. */
int h_raw_send_frame(struct h_raw *r, const void *body, uint32_t len);
/* Packs and sends a Request. */
int h_raw_send_req(struct h_raw *r, const Hicache__Request *req);
/* Reads one Response frame (up to timeout_ms). NULL on EOF, timeout or a
 * frame that does not decode. Free with hicache__response__free_unpacked. */
Hicache__Response *h_raw_recv(struct h_raw *r, int timeout_ms);
/* Sends req (with req->id set to a fresh id) and returns the matching
 * response (asserts it arrives within 10 s). */
Hicache__Response *h_raw_call(struct h_raw *r, Hicache__Request *req);
/* True if the peer closes the connection within timeout_ms (bytes that
 * arrive meanwhile are discarded). */
bool h_raw_wait_eof(struct h_raw *r, int timeout_ms);
void h_raw_close(struct h_raw *r);

/* ---- processes and files ------------------------------------------------ */

/* Runs argv (argv[0] a path) with stdout and stderr into the given files
 * (NULL = /dev/null). Returns the exit status 0..255, 128+signal, or -1 on a
 * timeout (the process is killed). */
int h_exec(char *const argv[], const char *out_path, const char *err_path, int timeout_ms);
/* Reads a whole file (NUL-terminated, *len without it). NULL on error. */
char *h_read_file(const char *path, size_t *len);
/* Writes a whole file. Returns 0 or -errno. */
int h_write_file(const char *path, const void *buf, size_t len);

/* Paths of the binaries under test. */
const char *h_hicached_bin(void);
const char *h_hicachectl_bin(void);

#endif
