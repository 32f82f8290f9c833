/* Shared-memory regions: one sealed memfd per client connection. */
#ifndef HC_SHM_H
#define HC_SHM_H

#include <stddef.h>
#include <stdint.h>

struct hc_region {
    int fd;        /* memfd, MFD_CLOEXEC|MFD_ALLOW_SEALING, sealed against shrink and grow;
                      the owner may close it (and set -1) once it was passed on */
    uint8_t *base; /* MAP_SHARED mapping of the whole region */
    uint64_t size;
    unsigned refs; /* the connection holds one; each request in flight one more */
};

/* Creates a region of size bytes (rounded up to the page size), named for
 * /proc/<pid>/fd readability, sealed with F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL
 * so a client can never make the daemon fault by truncating it. refs is 1.
 * Returns 0 and sets *out, or -errno (nothing left behind). */
int hc_region_create(struct hc_region **out, uint64_t size, const char *name);

void hc_region_ref(struct hc_region *r);
/* Drops a reference; the last one unmaps, closes and frees. Accepts NULL. */
void hc_region_unref(struct hc_region *r);

/* Returns 0 if [off, off + len) lies inside the region and len > 0, else
 * -ERANGE. Never overflows. */
int hc_region_check(const struct hc_region *r, uint64_t off, uint64_t len);

#endif
