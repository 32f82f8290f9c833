/* Compression of pages (zstd). A page is stored compressed only when that
 * saves at least ~3% and a block on storage (hc__zlimit); the rest of the
 * store sees a compressed record by its stored blocks (struct seg_rec,
 * index entry flags).
 *
 * Threads: any. Compression and decompression run on I/O threads, each with
 * its own contexts (one of each kind per thread, made on first use, freed
 * when the thread exits); hc__zlimit is pure. */
#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "guard.h"

/* The zstd level of every compressed page: higher levels save no more on KV
 * pages (docs/COMPRESSION.md). */
#define ZSTD_LEVEL 1

/* Keys of the per-thread contexts, made once (zkeys_init) when the first
 * thread needs a context. */
static pthread_key_t cctx_key, dctx_key;
static pthread_once_t zkeys_once = PTHREAD_ONCE_INIT;
static int zkeys_rc;

/* Run by each thread as it exits, on that thread (an I/O thread). */
static void cctx_free(void *p)
{
    ZSTD_freeCCtx(p);
}

/* Same. */
static void dctx_free(void *p)
{
    ZSTD_freeDCtx(p);
}

/* Once per process, on the first thread that needs a context (an I/O
 * thread). */
static void zkeys_init(void)
{
    zkeys_rc = pthread_key_create(&cctx_key, cctx_free);
    if (zkeys_rc == 0 && (zkeys_rc = pthread_key_create(&dctx_key, dctx_free)) != 0)
        pthread_key_delete(cctx_key);
}

/* The calling thread's compression context, made on first use and freed when
 * the thread exits. NULL when out of memory. Any thread. */
static ZSTD_CCtx *thread_cctx(void)
{
    ZSTD_CCtx *c;
    if (pthread_once(&zkeys_once, zkeys_init) != 0 || zkeys_rc != 0)
        return NULL;
    c = pthread_getspecific(cctx_key);
    if (!c && (c = ZSTD_createCCtx()) && pthread_setspecific(cctx_key, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

/* Same for decompression. Any thread. */
static ZSTD_DCtx *thread_dctx(void)
{
    ZSTD_DCtx *d;
    if (pthread_once(&zkeys_once, zkeys_init) != 0 || zkeys_rc != 0)
        return NULL;
    d = pthread_getspecific(dctx_key);
    if (!d && (d = ZSTD_createDCtx()) && pthread_setspecific(dctx_key, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
}

/* Largest stored size worth keeping for a page of len bytes: ~3% smaller and
 * at least one block less on storage (records are block-aligned); 0 when no
 * size is. Pure: any thread. */
uint64_t hc__zlimit(uint64_t len)
{
    uint64_t lim = len - len / 32;
    if (round_up(len) < 2 * HC_STORE_ALIGN)
        return 0;
    if (lim > round_up(len) - HC_STORE_ALIGN)
        lim = round_up(len) - HC_STORE_ALIGN;
    if (lim > (uint64_t)ZBLOCKS_MAX * HC_STORE_ALIGN)
        lim = (uint64_t)ZBLOCKS_MAX * HC_STORE_ALIGN;
    return lim;
}

struct zargs {
    ZSTD_CCtx *cctx;
    void *z;
    uint64_t lim;
    const void *src;
    uint64_t len;
    size_t n;
};

/* Called on an I/O thread, under the guard (hc__zcompress): touches only
 * its args and the thread's context. */
static void zcompress_fn(void *arg)
{
    struct zargs *a = arg;
    a->n = ZSTD_compressCCtx(a->cctx, a->z, a->lim, a->src, a->len, ZSTD_LEVEL);
}

/* Called on an I/O thread: compresses the len bytes at src (ZSTD_LEVEL),
 * guarded (guard.h: src is a client's buffer, which may vanish). Sets *zbuf
 * (HC_STORE_ALIGN-aligned, zero-padded to the block, the caller frees it) and
 * *zlen when the frame fits under hc__zlimit(len); otherwise (or out of
 * memory) leaves both untouched: the page is stored raw. Returns 0, or
 * -EFAULT when src vanished (nothing set). */
int hc__zcompress(const void *src, uint64_t len, void **zbuf, uint64_t *zlen)
{
    struct zargs a = {.cctx = thread_cctx(), .lim = hc__zlimit(len), .src = src, .len = len};

    if (!a.lim || !a.cctx || posix_memalign(&a.z, HC_STORE_ALIGN, round_up(a.lim)) != 0)
        return 0;
    /* Output that would not fit under the limit fails early: stored raw. */
    if (hc_guard_run(zcompress_fn, &a) < 0) {
        free(a.z);
        return -EFAULT;
    }
    if (ZSTD_isError(a.n) || a.n == 0 || a.n > a.lim) {
        free(a.z);
        return 0;
    }
    memset((char *)a.z + a.n, 0, round_up(a.n) - a.n);
    *zbuf = a.z;
    *zlen = a.n;
    return 0;
}

/* Called on an I/O thread: decompresses the zstd frame of slen bytes at src
 * into dst, which must come out exactly len bytes. Returns 0, -ENOMEM (no
 * context) or -EBADMSG. */
int hc__zdecompress(void *dst, size_t len, const void *src, size_t slen)
{
    ZSTD_DCtx *d = thread_dctx();
    size_t n;

    if (!d)
        return -ENOMEM;
    n = ZSTD_decompressDCtx(d, dst, len, src, slen);
    if (ZSTD_isError(n) || n != len)
        return -EBADMSG;
    return 0;
}
