/* Guarded CPU access to memory that may vanish under the daemon: client
 * memory, and the I/O threads' mappings of segment files (io_threads.c,
 * map_xfer: a file cut short, by another node too, raises SIGBUS there).
 *
 * A client's shared region is sealed (shm.c) and can never shrink, but a
 * host pool a client registered (SGLang's shm allocator) is a memfd its owner
 * can truncate at any moment: a load or store of the daemon into a page past
 * its new end raises SIGBUS. Kernel copies (preadv/pwritev, io_uring) answer
 * EFAULT instead; every CPU pass over a client's buffer (a CRC, a copy,
 * compression) goes through these functions, which answer -EFAULT instead of
 * letting the daemon die.
 *
 * How: a SIGBUS handler (installed once, SA_NODEFER) that jumps back to the
 * innermost guarded call of the thread it hit, when that thread is inside
 * one; a fault anywhere else gets the default action (the process dies with
 * a core, as without the handler), and a SIGBUS sent by another process is
 * ignored. The guarded functions must hold no lock while they touch client
 * memory and keep nothing half-done that outlives them, so that leaving them
 * by the jump leaves no state behind (memcpy and the CRC; zstd's compression
 * through its per-thread context, which its next call resets; zstd may size
 * its workspace on first use, before it reads the source).
 *
 * Threads: any; each thread has its own guard (thread-local). */
#ifndef HC_GUARD_H
#define HC_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Installs the SIGBUS handler (once per process; later calls do nothing).
 * Returns 0 or -errno. */
int hc_guard_install(void);

/* memcpy(dst, src, n) where either side may be client memory. Returns 0, or
 * -EFAULT when a page of it vanished (dst then holds part of the bytes). */
int hc_guard_copy(void *dst, const void *src, size_t n);

/* *out = hc_crc32c(0, p, n). Returns 0, or -EFAULT (*out untouched). */
int hc_guard_crc(const void *p, size_t n, uint32_t *out);

/* Runs fn(arg). Returns 0, or -EFAULT when it was cut short by a fault on
 * client memory (fn's own results are then undefined). */
int hc_guard_run(void (*fn)(void *arg), void *arg);

/* A page's buffer in a client's memory: pieces filled in order (a K and a V
 * half of a host pool page, or one slot). n == 1 keeps its piece in one (so
 * a pbuf copies by value); else v points to the caller's array, which must
 * live as long as the pbuf is used. */
struct hc_pbuf {
    struct iovec one;
    const struct iovec *v;
    unsigned n;
    /* A get into a region slot of a client that checks pages itself
     * (GetRequest.client_check), else NULL: the store may skip its payload
     * check of a page read straight into the slot and store 1 << 32 | its
     * CRC32C here for the client to check (docs/PROTOCOL.md). */
    uint64_t *check;
};

/* A pbuf of one piece [buf, buf + len). */
static inline struct hc_pbuf hc_pbuf_one(void *buf, uint64_t len)
{
    return (struct hc_pbuf){.one = {buf, (size_t)len}, .v = NULL, .n = 1};
}

/* The pieces of pb (n of them). */
static inline const struct iovec *hc_pbuf_vec(const struct hc_pbuf *pb)
{
    return pb->n == 1 ? &pb->one : pb->v;
}

/* Bytes pb holds (the sum of its pieces). */
uint64_t hc_pbuf_cap(const struct hc_pbuf *pb);

/* The first len bytes of src copied into pb's pieces in order, guarded.
 * Returns 0 or -EFAULT. len <= hc_pbuf_cap(pb). */
int hc_pbuf_put(const struct hc_pbuf *pb, const void *src, uint64_t len);

/* The first len bytes of pb copied to dst, guarded. Returns 0 or -EFAULT. */
int hc_pbuf_get(void *dst, const struct hc_pbuf *pb, uint64_t len);

/* *out = CRC32C of the first len bytes of pb, guarded. Returns 0 or
 * -EFAULT (*out untouched). */
int hc_pbuf_crc(const struct hc_pbuf *pb, uint64_t len, uint32_t *out);

/* Fills out (room for max entries) with the pieces covering the first len
 * bytes of pb. Returns how many, or 0 when more than max are needed. */
unsigned hc_pbuf_iov(const struct hc_pbuf *pb, uint64_t len, struct iovec *out, unsigned max);

#endif
