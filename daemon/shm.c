/* Shared memory with clients: regions and host pools (see shm.h). */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

int hc_region_create(struct hc_region **out, uint64_t size, const char *name)
{
    struct hc_region *r = NULL;
    long pagesz = sysconf(_SC_PAGESIZE);
    uint64_t pg = pagesz > 0 ? (uint64_t)pagesz : 4096;
    int fd = -1, rc;
    void *base;

    if (!out || size == 0 || size > (uint64_t)INT64_MAX - pg || size > SIZE_MAX - pg)
        return -EINVAL;
    size = (size + pg - 1) / pg * pg;

    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    fd = memfd_create(name ? name : "hicache-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        goto err_errno;
    if (ftruncate(fd, (off_t)size) < 0)
        goto err_errno;
    /* F_SEAL_SEAL last: after it the seals can never be removed. A client
     * that could shrink the file would make our accesses fault (SIGBUS). */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto err_errno;
    base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        goto err_errno;

    r->fd = fd;
    r->base = base;
    r->size = size;
    r->refs = 1;
    *out = r;
    return 0;

err_errno:
    rc = -errno;
    if (fd >= 0)
        close(fd);
    free(r);
    return rc;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Called on an I/O thread (shm.h). */
int hc_region_populate(const struct hc_region *r, uint64_t off, uint64_t len)
{
    const uint64_t piece = 2u << 20;

    if (off >= r->size)
        return 0;
    if (len > r->size - off)
        len = r->size - off;
    /* 2 MiB a call: each holds the process's mmap lock for reading, which an
     * I/O thread's mmap of a segment file waits for. */
    for (uint64_t end = off + len; off < end; off += piece)
        if (madvise(r->base + off, (size_t)(end - off < piece ? end - off : piece),
                    MADV_POPULATE_WRITE) < 0)
            return -errno;
    return 0;
}

bool hc_region_allocated(const struct hc_region *r)
{
    struct statfs sfs;
    struct stat st;

    if (!r->pool)
        return true;
    /* The whole file's blocks against the whole file's size: holes inside
     * the pool's range hide from a count of blocks when the file has more
     * blocks beyond it. */
    return fstatfs(r->fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC && fstat(r->fd, &st) == 0 &&
           st.st_blocks >= 0 && st.st_size >= 0 && (uint64_t)st.st_size >= r->size &&
           (uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size;
}

void hc_region_ref(struct hc_region *r)
{
    r->refs++;
}

void hc_region_unref(struct hc_region *r)
{
    if (!r || --r->refs > 0)
        return;
    /* A region of the daemon's own gives its pages back now, also when its
     * client kept the fd or a mapping of it: the daemon allocated them (and
     * mapped them ahead), and a peer that keeps regions and reconnects would
     * otherwise hold ever more of the daemon's memory. Such a peer reads
     * zeros after this, and what it writes is its own. When the client let
     * go of the region already, this frees what the munmap below would have:
     * no more work. A pool is its client's memory: never touched. */
    if (!r->pool)
        (void)madvise(r->base, (size_t)r->size, MADV_REMOVE);
    munmap(r->base, (size_t)(r->maplen ? r->maplen : r->size));
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

int hc_range_check(uint64_t size, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= size || len > size - off)
        return -ERANGE;
    return 0;
}

int hc_region_check(const struct hc_region *r, uint64_t off, uint64_t len)
{
    return hc_range_check(r->size, off, len);
}

int hc_pool_map(struct hc_region **out, int fd, uint64_t size, const char **why)
{
    struct hc_region *r;
    struct statfs sfs;
    struct stat st;
    void *base;
    int fl;

    if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0) {
        *why = "its descriptor cannot be examined";
        return -errno;
    }
    if (!S_ISREG(st.st_mode) ||
        (sfs.f_type != TMPFS_MAGIC && sfs.f_type != (typeof(sfs.f_type))HUGETLBFS_MAGIC)) {
        *why = "not a memfd or a tmpfs file";
        return -EINVAL;
    }
    if ((fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_ACCMODE) != O_RDWR) {
        *why = "not opened read-write";
        return -EACCES;
    }
    if (size == 0 || size > (uint64_t)st.st_size || size > SIZE_MAX) {
        *why = "size is 0 or beyond the file's size";
        return -EINVAL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        *why = "out of memory";
        return -ENOMEM;
    }
    r->maplen = size;
    if (sfs.f_type == (typeof(sfs.f_type))HUGETLBFS_MAGIC && st.st_blksize > 0)
        r->maplen = (size + (uint64_t)st.st_blksize - 1) / (uint64_t)st.st_blksize *
                    (uint64_t)st.st_blksize;
    base = mmap(NULL, (size_t)r->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int rc = -errno;
        *why = "it cannot be mapped read-write";
        free(r);
        return rc;
    }
    r->fd = fd;
    r->base = base;
    r->size = size;
    r->refs = 1;
    r->pool = true;
    *out = r;
    return 0;
}

uint64_t hc_region_live(const struct hc_region *r)
{
    struct stat st;

    if (!r->pool)
        return r->size;
    if (fstat(r->fd, &st) < 0 || st.st_size < 0)
        return 0;
    return (uint64_t)st.st_size < r->size ? (uint64_t)st.st_size : r->size;
}
