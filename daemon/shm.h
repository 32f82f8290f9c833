/* Shared memory with clients: one sealed memfd region per client connection
 * (created by the daemon), and the host pools a client registered (its own
 * memfds, not sealed: it may shrink them at any moment, see guard.h). */
#ifndef HC_SHM_H
#define HC_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hc_region {
    int fd;        /* memfd, MFD_CLOEXEC|MFD_ALLOW_SEALING, sealed against shrink and grow;
                      the owner may close it (and set -1) once it was passed on */
    uint8_t *base; /* MAP_SHARED mapping of the whole region */
    uint64_t size;
    unsigned refs;   /* the connection holds one; each request in flight one more */
    bool pool;       /* a client's host pool: fd stays open for hc_region_live */
    uint64_t maplen; /* bytes mapped: size, rounded to a huge page on hugetlbfs */
};

/* Creates a region of size bytes (rounded up to the page size), named for
 * /proc/<pid>/fd readability, sealed with F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL
 * so a client can never make the daemon fault by truncating it. refs is 1.
 * Returns 0 and sets *out, or -errno (nothing left behind). */
int hc_region_create(struct hc_region **out, uint64_t size, const char *name);

/* Allocates the pages of r's bytes [off, off + len) (clipped to its size)
 * and maps them into r's mapping (MADV_POPULATE_WRITE, Linux 5.14), so that
 * requests through them copy into memory that is there already instead of
 * faulting a page at a time, 2 MiB a call (each call holds the mmap lock
 * for reading). Slow (a page at a time; a new page is zeroed):
 * called on an I/O thread (hello.c), reading only r->base and r->size, which
 * never change; the caller holds a reference meanwhile. Never faults: a pool
 * its client shrank gives -EFAULT. Returns 0, or -errno (-EINVAL before
 * Linux 5.14, -ENOMEM when the memory is not there: those pages then fault
 * in on use). The pages are allocated now, under the daemon's memory limits
 * (reclaim, or the OOM killer, as for any allocation of its own). */
int hc_region_populate(const struct hc_region *r, uint64_t off, uint64_t len);

/* True when every byte of pool r, a tmpfs file, has its memory already (the
 * file's blocks cover the whole file: an SGLang pool pinned for the GPU's
 * copies, or written whole), so that populating it allocates nothing its
 * owner has not (unless the client punches holes after this check); always
 * true for a region of the daemon's own; false for a pool on hugetlbfs (its
 * faults come 2 MiB at a time: nothing to gain). */
bool hc_region_allocated(const struct hc_region *r);

void hc_region_ref(struct hc_region *r);
/* Drops a reference; the last one frees the pages of a region of the
 * daemon's own (MADV_REMOVE: its client reads zeros from then on, if it kept
 * a mapping), unmaps, closes and frees. Accepts NULL. */
void hc_region_unref(struct hc_region *r);

/* Returns 0 if [off, off + len) lies inside [0, size) and len > 0, else
 * -ERANGE. Never overflows. */
int hc_range_check(uint64_t size, uint64_t off, uint64_t len);

/* hc_range_check against the region's size. */
int hc_region_check(const struct hc_region *r, uint64_t off, uint64_t len);

/* Maps size bytes of a client's host pool, fd (taken over on success: the
 * pool closes it). Refused unless fd is a regular file on tmpfs or hugetlbfs
 * (a memfd, or a file in /dev/shm: never a file whose pages a filesystem
 * daemon could withhold), opened read-write, of at least size bytes now.
 * refs is 1. Returns 0 and sets *out, or -errno with *why set (fd still the
 * caller's). */
int hc_pool_map(struct hc_region **out, int fd, uint64_t size, const char **why);

/* The bytes of r a request may use now: its size, and for a pool no more than
 * its file holds now (fstat; 0 when that fails). */
uint64_t hc_region_live(const struct hc_region *r);

#endif
