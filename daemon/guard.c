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

/* The SIGBUS handler: back into the guarded call that faulted, else the
 * default action (the faulting access runs again and kills the process). */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    sigjmp_buf *jb = guard_jb;
    (void)si;
    (void)uc;
    if (jb) {
        guard_jb = NULL;
        siglongjmp(*jb, 1);
    }
    signal(sig, SIG_DFL);
}

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

int hc_guard_install(void)
{
    pthread_once(&guard_once, install_once);
    return guard_err;
}

int hc_guard_run(void (*fn)(void *arg), void *arg)
{
    sigjmp_buf jb;
    if (sigsetjmp(jb, 0) != 0)
        return -EFAULT; /* guard_jb was cleared by the handler */
    guard_jb = &jb;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    fn(arg);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    guard_jb = NULL;
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
