/* Cuckoo filter with semi-sorted buckets. See filter.h. */
#include "filter.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_NUM 95 /* sized for 95% load */
#define LOAD_DEN 100
#define MAX_KICKS 500 /* moves one add may make before it gives up */
#define NCODES 3876   /* sorted 4-tuples of 4-bit values: C(16 + 3, 4) */
#define LOW_BITS 11   /* a fingerprint's bits below its top 4 */
#define LOW_MASK 0x7ffu

/* The 3,876 sorted tuples (a <= b <= c <= d) of the fingerprints' top 4
 * bits: code_of maps the tuple a << 12 | b << 8 | c << 4 | d to its code,
 * tuple_of the code back. Built once (codes_build), read only after. */
static uint16_t code_of[1u << 16];
static uint16_t tuple_of[NCODES];
static pthread_once_t codes_once = PTHREAD_ONCE_INIT;

static void codes_build(void)
{
    uint16_t n = 0;
    for (unsigned a = 0; a < 16; a++)
        for (unsigned b = a; b < 16; b++)
            for (unsigned c = b; c < 16; c++)
                for (unsigned d = c; d < 16; d++) {
                    uint16_t t = (uint16_t)(a << 12 | b << 8 | c << 4 | d);
                    code_of[t] = n;
                    tuple_of[n++] = t;
                }
}

/* Bucket i's 56 bits. The table has a byte more than its buckets, so an
 * 8-byte load never reads past it. */
static uint64_t bucket_bits(const struct hc_cfilter *f, size_t i)
{
    const unsigned char *p = f->b + i * HC_CF_BUCKET;
    uint64_t v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, sizeof(v));
#else
    v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
#endif
    return v & 0x00ffffffffffffffULL;
}

/* A bucket's four fingerprints (0: an empty slot), in ascending order. */
static void bucket_get(const struct hc_cfilter *f, size_t i, uint16_t fp[HC_CF_SLOTS])
{
    uint64_t v = bucket_bits(f, i);
    uint16_t t = tuple_of[v & 0xfff];
    for (int s = 0; s < HC_CF_SLOTS; s++)
        fp[s] = (uint16_t)(((t >> (12 - 4 * s)) & 0xf) << LOW_BITS |
                           ((v >> (12 + LOW_BITS * s)) & LOW_MASK));
}

/* Stores four fingerprints (any order) in bucket i, sorted. */
static void bucket_set(struct hc_cfilter *f, size_t i, uint16_t fp[HC_CF_SLOTS])
{
    for (int s = 1; s < HC_CF_SLOTS; s++) /* insertion sort of four */
        for (int k = s; k > 0 && fp[k - 1] > fp[k]; k--) {
            uint16_t x = fp[k];
            fp[k] = fp[k - 1];
            fp[k - 1] = x;
        }
    uint16_t t = 0;
    uint64_t v = 0;
    for (int s = 0; s < HC_CF_SLOTS; s++) {
        t = (uint16_t)(t << 4 | fp[s] >> LOW_BITS);
        v |= (uint64_t)(fp[s] & LOW_MASK) << (12 + LOW_BITS * s);
    }
    v |= code_of[t];
    unsigned char *p = f->b + i * HC_CF_BUCKET;
    for (int k = 0; k < HC_CF_BUCKET; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static uint16_t fingerprint(struct hc_hash h)
{
    uint16_t fp = (uint16_t)(h.hi >> 49);
    return fp ? fp : 1; /* 0 marks an empty slot */
}

/* The first bucket of h: its low word mapped onto [0, nbuckets). */
static size_t first_bucket(const struct hc_cfilter *f, struct hc_hash h)
{
    return (size_t)(((unsigned __int128)h.lo * f->nbuckets) >> 64);
}

/* The other bucket of an entry with fingerprint fp in bucket i: (a - i) mod
 * nbuckets for a derived from fp, so either bucket leads to the other with
 * any number of buckets. No division: a is a multiply-shift of fp's mix,
 * and a - i is in (-nbuckets, nbuckets). */
static size_t other_bucket(const struct hc_cfilter *f, size_t i, uint16_t fp)
{
    uint64_t k = fp * 0x9e3779b97f4a7c15ULL;
    size_t a = (size_t)(((unsigned __int128)(k ^ (k >> 29)) * f->nbuckets) >> 64);
    return a >= i ? a - i : a + f->nbuckets - i;
}

/* Replaces one slot holding old (0: an empty one) in bucket i by new.
 * Returns whether there was one. */
static bool bucket_swap(struct hc_cfilter *f, size_t i, uint16_t old, uint16_t new_)
{
    uint16_t fp[HC_CF_SLOTS];
    bucket_get(f, i, fp);
    for (int s = 0; s < HC_CF_SLOTS; s++)
        if (fp[s] == old) {
            fp[s] = new_;
            bucket_set(f, i, fp);
            return true;
        }
    return false;
}

/* 11-bit lanes of the four rests: the lowest and the highest bit of each */
#define LANES_LO 0x200400801ULL
#define LANES_HI (LANES_LO << (LOW_BITS - 1))

/* Whether a bucket's bits v hold fp. The four 11-bit rests are compared at
 * once (a lane equal to fp's rest is a zero lane of their XOR: the
 * has-a-zero test of "Bit Twiddling Hacks", exact for whether one exists);
 * only then, rarely, is the tuple decoded to compare the top 4 bits. */
static bool bits_have(uint64_t v, uint16_t fp)
{
    uint64_t x = (v >> 12) ^ ((uint64_t)(fp & LOW_MASK) * LANES_LO);
    if (!((x - LANES_LO) & ~x & LANES_HI))
        return false;
    uint16_t t = tuple_of[v & 0xfff];
    for (int s = 0; s < HC_CF_SLOTS; s++)
        if (((x >> (LOW_BITS * s)) & LOW_MASK) == 0 &&
            ((t >> (12 - 4 * s)) & 0xf) == fp >> LOW_BITS)
            return true;
    return false;
}

int hc_cfilter_init(struct hc_cfilter *f, size_t n)
{
    size_t nb;

    (void)pthread_once(&codes_once, codes_build);
    f->b = NULL;
    f->nbuckets = f->count = 0;
    f->seed = 0x2545f491u;
    if (n > SIZE_MAX / LOAD_DEN / 2)
        return -EINVAL;
    nb = (n * LOAD_DEN / LOAD_NUM + HC_CF_SLOTS - 1) / HC_CF_SLOTS;
    if (nb < 2)
        nb = 2;
    if (nb > (SIZE_MAX - 1) / HC_CF_BUCKET)
        return -EINVAL;
    /* all zero: every bucket four empty slots (code 0 is the tuple 0,0,0,0);
     * one byte more for bucket_bits' 8-byte loads */
    f->b = calloc(nb * HC_CF_BUCKET + 1, 1);
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
        uint16_t in, out; /* the swap made there */
    } path[MAX_KICKS];

    if (bucket_swap(f, i1, 0, fp) || bucket_swap(f, i2, 0, fp)) {
        f->count++;
        return 0;
    }
    /* Move entries out of the way, remembering each swap to undo them all
     * if no place is found. */
    size_t i = (f->seed & 1) ? i1 : i2;
    for (int k = 0; k < MAX_KICKS; k++) {
        uint16_t b[HC_CF_SLOTS];
        f->seed = f->seed * 1103515245u + 12345u;
        bucket_get(f, i, b);
        uint16_t out = b[(f->seed >> 16) % HC_CF_SLOTS];
        bucket_swap(f, i, out, fp);
        path[k].bucket = i;
        path[k].in = fp;
        path[k].out = out;
        fp = out;
        i = other_bucket(f, i, fp);
        if (bucket_swap(f, i, 0, fp)) {
            f->count++;
            return 0;
        }
    }
    /* Undo: walk the swaps back (a bucket is a multiset of fingerprints:
     * giving each swap's bucket back what it took restores it). */
    for (int k = MAX_KICKS - 1; k >= 0; k--)
        bucket_swap(f, path[k].bucket, path[k].in, path[k].out);
    return -ENOSPC;
}

bool hc_cfilter_maybe(const struct hc_cfilter *f, struct hc_hash h)
{
    if (!f->nbuckets)
        return false;
    size_t i1 = first_bucket(f, h);
    uint16_t fp = fingerprint(h);
    /* both buckets loaded before either is tested: their cache misses overlap */
    uint64_t v1 = bucket_bits(f, i1), v2 = bucket_bits(f, other_bucket(f, i1, fp));
    bool in1 = bits_have(v1, fp), in2 = bits_have(v2, fp);
    return in1 || in2;
}

void hc_cfilter_prefetch(const struct hc_cfilter *f, struct hc_hash h)
{
    if (!f->nbuckets)
        return;
    size_t i1 = first_bucket(f, h);
    __builtin_prefetch(f->b + i1 * HC_CF_BUCKET);
    __builtin_prefetch(f->b + other_bucket(f, i1, fingerprint(h)) * HC_CF_BUCKET);
}

bool hc_cfilter_remove(struct hc_cfilter *f, struct hc_hash h)
{
    if (!f->nbuckets)
        return false;
    size_t i1 = first_bucket(f, h);
    uint16_t fp = fingerprint(h);

    if (bucket_swap(f, i1, fp, 0) || bucket_swap(f, other_bucket(f, i1, fp), fp, 0)) {
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
    return f->nbuckets * HC_CF_BUCKET;
}
