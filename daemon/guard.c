/* Guarded CPU access to client memory (see guard.h). */
#include "guard.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

#include "crc32c.h"

/* The guarded call this thread is inside, or NULL. Written only by its own
 * thread (and its signal handler); local-exec TLS, safe in the handler. */
static __thread sigjmp_buf *volatile guard_jb;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static int guard_err;

/* Runs on the thread the fault hit: any thread, I/O threads included. The
 * SIGBUS handler. A SIGBUS another process sent (si_code <= 0) is
 * ignored. A fault inside a guarded call jumps back into it; a fault
 * anywhere else gets the default action (the handler is reset and the
 * faulting access, run again, kills the process with a core). */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    sigjmp_buf *jb = guard_jb;
    (void)uc;
    if (si && si->si_code <= 0)
        return;
    if (jb) {
        guard_jb = NULL;
        siglongjmp(*jb, 1);
    }
    signal(sig, SIG_DFL);
}

/* Any thread: the first caller of hc_guard_install (the store's open, on the
 * loop thread, as a rule). */
static void install_once(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    /* SA_NODEFER: the jump leaves the handler without restoring the signal
     * mask, so SIGBUS must not be blocked while it runs. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    guard_err = sigaction(SIGBUS, &sa, NULL) == 0 ? 0 : -errno;
}

/* Any thread (guard.h). */
int hc_guard_install(void)
{
    pthread_once(&guard_once, install_once);
    return guard_err;
}

/* Any thread (guard.h): I/O threads for the mapped copy (io_threads.c), the
 * hc_pbuf_* calls below and compression; guard_jb is the calling thread's
 * own. */
int hc_guard_run(void (*fn)(void *arg), void *arg)
{
    sigjmp_buf jb, *volatile outer = guard_jb; /* a guarded call inside another */
    if (sigsetjmp(jb, 0) != 0) {
        guard_jb = outer; /* the handler cleared it */
        return -EFAULT;
    }
    guard_jb = &jb;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    fn(arg);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    guard_jb = outer;
    return 0;
}

struct copy_args {
    void *dst;
    const void *src;
    size_t n;
};

static void copy_fn(void *arg)
{
    struct copy_args *a = arg;
    memcpy(a->dst, a->src, a->n);
}

int hc_guard_copy(void *dst, const void *src, size_t n)
{
    struct copy_args a = {dst, src, n};
    return n ? hc_guard_run(copy_fn, &a) : 0;
}

struct crc_args {
    const void *p;
    size_t n;
    uint32_t crc;
};

static void crc_fn(void *arg)
{
    struct crc_args *a = arg;
    a->crc = hc_crc32c(0, a->p, a->n);
}

int hc_guard_crc(const void *p, size_t n, uint32_t *out)
{
    struct crc_args a = {p, n, 0};
    int rc = hc_guard_run(crc_fn, &a);
    if (rc == 0)
        *out = a.crc;
    return rc;
}

uint64_t hc_pbuf_cap(const struct hc_pbuf *pb)
{
    const struct iovec *v = hc_pbuf_vec(pb);
    uint64_t sum = 0;
    for (unsigned i = 0; i < pb->n; i++)
        sum += v[i].iov_len;
    return sum;
}

struct pbuf_args {
    const struct hc_pbuf *pb;
    uint8_t *flat;
    uint64_t len;
    int dir; /* 1: flat into pb; -1: pb into flat; 0: CRC of pb */
    uint32_t crc;
};

/* Any thread, under hc_guard_run: pbuf_args' copy or CRC. */
static void pbuf_fn(void *arg)
{
    struct pbuf_args *a = arg;
    const struct iovec *v = hc_pbuf_vec(a->pb);
    uint64_t left = a->len;
    uint8_t *f = a->flat;

    a->crc = 0;
    for (unsigned i = 0; i < a->pb->n && left > 0; i++) {
        size_t k = v[i].iov_len < left ? v[i].iov_len : (size_t)left;
        if (a->dir > 0)
            memcpy(v[i].iov_base, f, k);
        else if (a->dir < 0)
            memcpy(f, v[i].iov_base, k);
        else
            a->crc = hc_crc32c(a->crc, v[i].iov_base, k);
        if (f)
            f += k; /* (no flat buffer for a CRC) */
        left -= k;
    }
}

/* hc_pbuf_put, hc_pbuf_get and hc_pbuf_crc: any thread (I/O threads for a
 * read's check and copy, rd_after and join_before, and for a write's CRC and
 * compression). */
int hc_pbuf_put(const struct hc_pbuf *pb, const void *src, uint64_t len)
{
    struct pbuf_args a = {pb, (uint8_t *)src, len, 1, 0};
    return len ? hc_guard_run(pbuf_fn, &a) : 0;
}

int hc_pbuf_get(void *dst, const struct hc_pbuf *pb, uint64_t len)
{
    struct pbuf_args a = {pb, dst, len, -1, 0};
    return len ? hc_guard_run(pbuf_fn, &a) : 0;
}

int hc_pbuf_crc(const struct hc_pbuf *pb, uint64_t len, uint32_t *out)
{
    struct pbuf_args a = {pb, NULL, len, 0, 0};
    int rc = hc_guard_run(pbuf_fn, &a);
    if (rc == 0)
        *out = a.crc;
    return rc;
}

unsigned hc_pbuf_iov(const struct hc_pbuf *pb, uint64_t len, struct iovec *out, unsigned max)
{
    const struct iovec *v = hc_pbuf_vec(pb);
    unsigned k = 0;
    for (unsigned i = 0; i < pb->n && len > 0; i++) {
        size_t n = v[i].iov_len < len ? v[i].iov_len : (size_t)len;
        if (n == 0)
            continue;
        if (k == max)
            return 0;
        out[k++] = (struct iovec){v[i].iov_base, n};
        len -= n;
    }
    return k;
}
