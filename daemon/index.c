/* Index: open addressing, linear probing, backward-shift deletion. See
 * index.h. The hash is MurmurHash3 x64 128 (Austin Appleby, public domain),
 * written out here. */
#include "index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define USED 0x8000u
#define MIN_CAP 1024u

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static struct hc_hash murmur3_128(const void *key, size_t len, uint64_t seed)
{
    const unsigned char *data = key;
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    uint64_t h1 = seed, h2 = seed, k1, k2;
    size_t nblocks = len / 16;

    for (size_t i = 0; i < nblocks; i++) {
        k1 = load64(data + i * 16);
        k2 = load64(data + i * 16 + 8);
        k1 *= c1;
        k1 = rotl64(k1, 31);
        k1 *= c2;
        h1 ^= k1;
        h1 = rotl64(h1, 27);
        h1 += h2;
        h1 = h1 * 5 + 0x52dce729;
        k2 *= c2;
        k2 = rotl64(k2, 33);
        k2 *= c1;
        h2 ^= k2;
        h2 = rotl64(h2, 31);
        h2 += h1;
        h2 = h2 * 5 + 0x38495ab5;
    }

    const unsigned char *tail = data + nblocks * 16;
    size_t rem = len & 15;
    k1 = 0;
    k2 = 0;
    for (size_t i = rem; i > 8; i--)
        k2 ^= (uint64_t)tail[i - 1] << ((i - 9) * 8);
    for (size_t i = rem < 8 ? rem : 8; i > 0; i--)
        k1 ^= (uint64_t)tail[i - 1] << ((i - 1) * 8);
    if (rem > 8) {
        k2 *= c2;
        k2 = rotl64(k2, 33);
        k2 *= c1;
        h2 ^= k2;
    }
    if (rem > 0) {
        k1 *= c1;
        k1 = rotl64(k1, 31);
        k1 *= c2;
        h1 ^= k1;
    }

    h1 ^= len;
    h2 ^= len;
    h1 += h2;
    h2 += h1;
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 += h2;
    h2 += h1;
    return (struct hc_hash){h1, h2};
}

struct hc_hash hc_index_hash(const char *ns, size_t nslen, const char *key, size_t klen)
{
    /* [nslen: 2 bytes][ns][key]; names are at most 256 bytes each. */
    unsigned char buf[2 + 2 * 256 + 2];
    if (nslen > 256 || klen > 256) {
        /* Callers validate; keep the function total anyway. */
        struct hc_hash a = murmur3_128(ns, nslen, 1);
        struct hc_hash b = murmur3_128(key, klen, a.lo ^ a.hi);
        return b;
    }
    buf[0] = (unsigned char)(nslen & 0xff);
    buf[1] = (unsigned char)(nslen >> 8);
    memcpy(buf + 2, ns, nslen);
    memcpy(buf + 2 + nslen, key, klen);
    return murmur3_128(buf, 2 + nslen + klen, 0x6863616368656431ULL);
}

static inline bool used(const struct hc_index_ent *e)
{
    return e->flags & USED;
}

static inline bool heq(struct hc_hash a, struct hc_hash b)
{
    return a.lo == b.lo && a.hi == b.hi;
}

int hc_index_init(struct hc_index *ix)
{
    struct hc_index_ent *t = calloc(MIN_CAP, sizeof(*t));
    if (!t)
        return -ENOMEM;
    ix->slots = t;
    ix->cap = MIN_CAP;
    ix->count = 0;
    return 0;
}

void hc_index_free(struct hc_index *ix)
{
    if (!ix)
        return;
    free(ix->slots);
    ix->slots = NULL;
    ix->cap = 0;
    ix->count = 0;
}

/* Places e in a table known not to hold e->h. */
static void place(struct hc_index_ent *t, size_t mask, const struct hc_index_ent *e)
{
    size_t i = e->h.lo & mask;
    while (used(&t[i]))
        i = (i + 1) & mask;
    t[i] = *e;
    t[i].flags |= USED;
}

static int grow(struct hc_index *ix)
{
    size_t ncap = ix->cap * 2;
    struct hc_index_ent *t = calloc(ncap, sizeof(*t));
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < ix->cap; i++)
        if (used(&ix->slots[i]))
            place(t, ncap - 1, &ix->slots[i]);
    free(ix->slots);
    ix->slots = t;
    ix->cap = ncap;
    return 0;
}

static size_t find(const struct hc_index *ix, struct hc_hash h)
{
    size_t mask = ix->cap - 1, i = h.lo & mask;
    while (used(&ix->slots[i])) {
        if (heq(ix->slots[i].h, h))
            return i;
        i = (i + 1) & mask;
    }
    return SIZE_MAX;
}

int hc_index_insert(struct hc_index *ix, const struct hc_index_ent *e)
{
    if (find(ix, e->h) != SIZE_MAX)
        return -EEXIST;
    if ((ix->count + 1) * 4 > ix->cap * 3) {
        int rc = grow(ix);
        if (rc < 0)
            return rc;
    }
    struct hc_index_ent c = *e;
    c.flags &= HC_INDEX_FLAGS_USER;
    place(ix->slots, ix->cap - 1, &c);
    ix->count++;
    return 0;
}

const struct hc_index_ent *hc_index_lookup(const struct hc_index *ix, struct hc_hash h)
{
    size_t i = find(ix, h);
    return i == SIZE_MAX ? NULL : &ix->slots[i];
}

/* Empties slot i and shifts later members of its cluster back so that every
 * entry stays reachable from its home slot. */
static void del_at(struct hc_index *ix, size_t i)
{
    size_t mask = ix->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!used(&ix->slots[j]))
            break;
        size_t home = ix->slots[j].h.lo & mask;
        /* The entry at j may move to the hole at i unless its home lies
         * cyclically in (i, j]. */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            ix->slots[i] = ix->slots[j];
            i = j;
        }
    }
    memset(&ix->slots[i], 0, sizeof(ix->slots[i]));
    ix->count--;
}

bool hc_index_remove(struct hc_index *ix, struct hc_hash h, struct hc_index_ent *out)
{
    size_t i = find(ix, h);
    if (i == SIZE_MAX)
        return false;
    if (out) {
        *out = ix->slots[i];
        out->flags &= (uint16_t)~USED;
    }
    del_at(ix, i);
    return true;
}

size_t hc_index_remove_if(struct hc_index *ix, bool (*pred)(const struct hc_index_ent *, void *),
                          void *arg)
{
    size_t removed = 0, i = 0;
    /* A deletion at i shifts later cluster members into i (re-examined at
     * once) or into later holes (examined later); entries that wrap around
     * from the start were already kept, and pred keeps them again. */
    while (i < ix->cap) {
        if (used(&ix->slots[i]) && pred(&ix->slots[i], arg)) {
            del_at(ix, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

size_t hc_index_count(const struct hc_index *ix)
{
    return ix->count;
}

size_t hc_index_memory(const struct hc_index *ix)
{
    return ix->cap * sizeof(struct hc_index_ent);
}
