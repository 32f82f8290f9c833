/* Cuckoo filter. See filter.h. */
#include "filter.h"

#include <errno.h>
#include <stdlib.h>

#define LOAD_NUM 95 /* sized for 95% load */
#define LOAD_DEN 100
#define MAX_KICKS 500 /* moves one add may make before it gives up */

static uint16_t fingerprint(struct hc_hash h)
{
    uint16_t fp = (uint16_t)(h.hi >> 48);
    return fp ? fp : 1; /* 0 marks an empty slot */
}

/* The first bucket of h: its low word mapped onto [0, nbuckets). */
static size_t first_bucket(const struct hc_cfilter *f, struct hc_hash h)
{
    return (size_t)(((unsigned __int128)h.lo * f->nbuckets) >> 64);
}

/* The other bucket of an entry with fingerprint fp in bucket i: (a - i) mod
 * nbuckets for a derived from fp, so either bucket leads to the other with
 * any number of buckets. */
static size_t other_bucket(const struct hc_cfilter *f, size_t i, uint16_t fp)
{
    uint64_t k = fp * 0x9e3779b97f4a7c15ULL;
    size_t a = (size_t)((k ^ (k >> 29)) % f->nbuckets);
    return (a + f->nbuckets - i) % f->nbuckets;
}

static bool bucket_put(struct hc_cfilter *f, size_t i, uint16_t fp)
{
    for (int s = 0; s < HC_CF_SLOTS; s++)
        if (f->b[i][s] == 0) {
            f->b[i][s] = fp;
            return true;
        }
    return false;
}

static bool bucket_has(const struct hc_cfilter *f, size_t i, uint16_t fp)
{
    for (int s = 0; s < HC_CF_SLOTS; s++)
        if (f->b[i][s] == fp)
            return true;
    return false;
}

int hc_cfilter_init(struct hc_cfilter *f, size_t n)
{
    size_t nb;

    f->b = NULL;
    f->nbuckets = f->count = 0;
    f->seed = 0x2545f491u;
    if (n > SIZE_MAX / LOAD_DEN / 2)
        return -EINVAL;
    nb = (n * LOAD_DEN / LOAD_NUM + HC_CF_SLOTS - 1) / HC_CF_SLOTS;
    if (nb < 2)
        nb = 2;
    if (nb > SIZE_MAX / sizeof(*f->b))
        return -EINVAL;
    f->b = calloc(nb, sizeof(*f->b));
    if (!f->b)
        return -ENOMEM;
    f->nbuckets = nb;
    return 0;
}

void hc_cfilter_free(struct hc_cfilter *f)
{
    free(f->b);
    f->b = NULL;
    f->nbuckets = f->count = 0;
}

int hc_cfilter_add(struct hc_cfilter *f, struct hc_hash h)
{
    size_t i1 = first_bucket(f, h);
    uint16_t fp = fingerprint(h);
    size_t i2 = other_bucket(f, i1, fp);
    struct {
        size_t bucket;
        int slot;
    } path[MAX_KICKS];

    if (bucket_put(f, i1, fp) || bucket_put(f, i2, fp)) {
        f->count++;
        return 0;
    }
    /* Move entries out of the way, remembering each swap to undo them all
     * if no place is found. */
    size_t i = (f->seed & 1) ? i1 : i2;
    for (int k = 0; k < MAX_KICKS; k++) {
        f->seed = f->seed * 1103515245u + 12345u;
        int s = (int)((f->seed >> 16) % HC_CF_SLOTS);
        uint16_t out = f->b[i][s];
        f->b[i][s] = fp;
        path[k].bucket = i;
        path[k].slot = s;
        fp = out;
        i = other_bucket(f, i, fp);
        if (bucket_put(f, i, fp)) {
            f->count++;
            return 0;
        }
    }
    /* Undo: fp is the entry left homeless; walk the swaps back. */
    for (int k = MAX_KICKS - 1; k >= 0; k--) {
        uint16_t back = f->b[path[k].bucket][path[k].slot];
        f->b[path[k].bucket][path[k].slot] = fp;
        fp = back;
    }
    return -ENOSPC;
}

bool hc_cfilter_maybe(const struct hc_cfilter *f, struct hc_hash h)
{
    if (!f->nbuckets)
        return false;
    size_t i1 = first_bucket(f, h);
    uint16_t fp = fingerprint(h);
    return bucket_has(f, i1, fp) || bucket_has(f, other_bucket(f, i1, fp), fp);
}

bool hc_cfilter_remove(struct hc_cfilter *f, struct hc_hash h)
{
    if (!f->nbuckets)
        return false;
    size_t i1 = first_bucket(f, h);
    uint16_t fp = fingerprint(h);
    size_t cand[2] = {i1, other_bucket(f, i1, fp)};

    for (int c = 0; c < 2; c++)
        for (int s = 0; s < HC_CF_SLOTS; s++)
            if (f->b[cand[c]][s] == fp) {
                f->b[cand[c]][s] = 0;
                f->count--;
                return true;
            }
    return false;
}

size_t hc_cfilter_count(const struct hc_cfilter *f)
{
    return f->count;
}

size_t hc_cfilter_memory(const struct hc_cfilter *f)
{
    return f->nbuckets * sizeof(*f->b);
}
