/* Files on the mount: the names the store gives them and the few blocking
 * calls it makes on whole files (see store.h for the layout).
 *
 * Threads: every function here may run on any thread; each touches only its
 * arguments, except hc__seg_path (reads s->root and s->nodes: loop thread)
 * and hc__open_file (see its comment). */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Parses "<16 hex digits>.<ext>". Any thread. */
/* The n lower-case hex digits at p: true and *out set. */
static bool parse_hex(const char *p, int n, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

bool hc__parse_seq_name(const char *name, const char *ext, uint64_t *seq)
{
    size_t n = strlen(name), el = strlen(ext);
    if (n != 16 + 1 + el || name[16] != '.' || strcmp(name + 17, ext) != 0)
        return false;
    return parse_hex(name, 16, seq);
}

/* 16 lowercase or uppercase hex digits at p: true and *v set. Any thread. */
bool hc__parse_hex16(const char *p, uint64_t *v)
{
    return parse_hex(p, 16, v);
}

/* <16 hex digits seq>.<8 hex digits version>.tidx (tail.c): true and *seq,
 * *ver set. Any thread. */
bool hc__parse_tail_name(const char *name, uint64_t *seq, uint32_t *ver)
{
    uint64_t v;
    if (strlen(name) != 16 + 1 + 8 + 5 || name[16] != '.' || name[25] != '.' ||
        strcmp(name + 26, "tidx") != 0 || !parse_hex(name, 16, seq) || !parse_hex(name + 17, 8, &v))
        return false;
    *ver = (uint32_t)v;
    return true;
}

/* Returns "a/b" (malloc'ed), or NULL when out of memory. Any thread. */
char *hc__path_join(const char *a, const char *b)
{
    char *p;
    if (asprintf(&p, "%s/%s", a, b) < 0)
        return NULL;
    return p;
}

/* Writes the path of seg's file with extension ext. Loop thread (reads
 * s->nodes). */
void hc__seg_path(const struct hc_store *s, const struct seg *seg, const char *ext, char *buf,
                  size_t size)
{
    snprintf(buf, size, "%s/%s/%016" PRIx64 ".%s", s->root, s->nodes[seg->node], seg->seq, ext);
}

/* Opens path as a regular file, and only as one: a file on the shared volume
 * may be anything another node put there. Never follows a symlink in the
 * last component (-ELOOP), never blocks in the open on a FIFO or a device
 * (O_NONBLOCK; for a regular file it changes nothing), and refuses what is
 * not a regular file with -EBADMSG, as a damaged file is refused. Returns
 * the fd or -errno. Any thread. */
int hc__open_regular(const char *path, int flags, mode_t mode)
{
    struct stat st;
    int fd = open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, mode), rc;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EBADMSG;
    else
        return fd;
    close(fd);
    return rc;
}

/* Sets a file of this node's directory aside that the store cannot use (not
 * a regular file, unreadable, malformed): renamed to <name>.bad-<unix
 * seconds>, a name nothing parses, never deleted (it may hold data someone
 * wants), logged, and counted in quarantined_files. Returns 0 or -errno (the
 * rename failed: logged; the caller goes on without the file). Loop thread,
 * at open (start-up). */
int hc__quarantine(struct hc_store *s, const char *path, const char *why)
{
    char to[PATH_MAX];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(to, sizeof(to), "%s.bad-%lld", path, (long long)ts.tv_sec);
    if (rename(path, to) < 0) {
        int rc = -errno;

        hc_log(HC_LOG_ERR, "store: %s is unusable (%s) and cannot be set aside: %s", path, why,
               strerror(-rc));
        return rc;
    }
    s->st->quarantined_files++;
    hc_log(HC_LOG_WARN, "store: %s is unusable (%s): set aside as %s", path, why, to);
    return 0;
}

/* Opens path with O_DIRECT when asked, falling back to buffered I/O when the
 * filesystem refuses it (EINVAL), with one log line per store. Returns the fd
 * or -errno. Any thread: called on an I/O thread (a segment opened for reads
 * or created) and on the loop thread at open (recovery). Of the store it reads only
 * s->cfg.use_direct_io and s->root, which are never written after open, and
 * s->direct_warned, atomically. */
int hc__open_file(struct hc_store *s, const char *path, int flags, mode_t mode, bool *direct)
{
    int fd;
    *direct = false;
    if (s->cfg.use_direct_io) {
        fd = hc__open_regular(path, flags | O_DIRECT, mode);
        if (fd >= 0) {
            *direct = true;
            return fd;
        }
        if (fd != -EINVAL)
            return fd;
        if (!__atomic_exchange_n(&s->direct_warned, 1, __ATOMIC_RELAXED))
            hc_log(HC_LOG_WARN, "store: O_DIRECT not supported under %s; using buffered I/O",
                   s->root);
    }
    return hc__open_regular(path, flags, mode);
}

/* Any thread. Returns 0 or -errno. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads len bytes at off, or fails: -ENODATA at end of file, else -errno.
 * Any thread. */
int hc__pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Makes room for one more element in the array at *arrp (a pointer to the
 * array's pointer) of n elements of size bytes, *cap allocated: doubles it
 * (first elements to begin with) when full. Returns 0 or -ENOMEM (the array
 * unchanged). Any thread. */
int hc__grow(void *arrp, size_t n, size_t *cap, size_t size, size_t first)
{
    void *p;
    size_t ncap;

    if (n < *cap)
        return 0;
    ncap = *cap ? 2 * *cap : first;
    memcpy(&p, arrp, sizeof(p));
    if (ncap > SIZE_MAX / size || !(p = realloc(p, ncap * size)))
        return -ENOMEM;
    memcpy(arrp, &p, sizeof(p));
    *cap = ncap;
    return 0;
}

/* Writes buf to tmp, fsyncs it and renames it to path. Blocking; any thread.
 * Returns 0 or -errno (tmp removed). */
int hc__write_file_atomic(const char *tmp, const char *path, const void *buf, size_t len)
{
    int rc, fd = hc__open_regular(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fd;
    rc = write_all(fd, buf, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}
