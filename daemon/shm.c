/* Shared-memory regions: one sealed memfd per client connection (see shm.h). */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
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

void hc_region_ref(struct hc_region *r)
{
    r->refs++;
}

void hc_region_unref(struct hc_region *r)
{
    if (!r || --r->refs > 0)
        return;
    munmap(r->base, (size_t)r->size);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

int hc_region_check(const struct hc_region *r, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= r->size || len > r->size - off)
        return -ERANGE;
    return 0;
}
