/* A node's keys file. See keysfile.h. */
#include "keysfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"
#include "le.h"
#include "store_int.h" /* hc__pread_all */

#define KEYS_MAGIC "HCK1"
#define KEYS_VERSION 2 /* 1: blocks of 170 entries */
#define KEYS_HDR 64
#define KEYS_BLK 16 /* bytes a block-table entry */

static int cmp_ent(const void *a, const void *b)
{
    const struct hc_keys_ent *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h;
}

static uint64_t nblocks_of(uint64_t nents)
{
    return (nents + HC_KEYS_PER_BLOCK - 1) / HC_KEYS_PER_BLOCK;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* hc__pread_all (files.c), a file shorter than its header says refused. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    int rc = hc__pread_all(fd, buf, len, off);
    return rc == -ENODATA ? -EBADMSG : rc;
}

int hc_keys_write(int fd, const uint64_t *seqs, uint32_t nsegs, struct hc_keys_ent *ents, size_t n)
{
    uint64_t nblocks = nblocks_of(n);
    size_t tables = (size_t)nsegs * 8 + (size_t)nblocks * KEYS_BLK;
    unsigned char *head, *body;
    int rc;

    if (nsegs > HC_KEYS_MAX_SEGS || n > HC_KEYS_MAX_ENTS || nblocks > UINT32_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (ents[i].seg >= nsegs)
            return -EINVAL;
    if (n > 1)
        qsort(ents, n, sizeof(*ents), cmp_ent);
    head = calloc(1, KEYS_HDR + tables);
    body = malloc(n ? n * HC_KEYS_ENT : 1);
    if (!head || !body) {
        free(head);
        free(body);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char *e = body + i * HC_KEYS_ENT;
        put64(e, ents[i].h);
        put32(e + 8, ents[i].seg);
        put32(e + 12, ents[i].off);
        put32(e + 16, ents[i].len);
        put16(e + 20, ents[i].flags);
        put16(e + 22, 0);
    }
    unsigned char *st = head + KEYS_HDR, *bt = st + (size_t)nsegs * 8;
    for (uint32_t i = 0; i < nsegs; i++)
        put64(st + 8 * (size_t)i, seqs[i]);
    for (uint64_t b = 0; b < nblocks; b++) {
        size_t first = (size_t)b * HC_KEYS_PER_BLOCK;
        size_t cnt = n - first < HC_KEYS_PER_BLOCK ? n - first : HC_KEYS_PER_BLOCK;
        unsigned char *t = bt + (size_t)b * KEYS_BLK;
        put64(t, ents[first].h);
        put32(t + 8, (uint32_t)cnt);
        put32(t + 12, hc_crc32c(0, body + first * HC_KEYS_ENT, cnt * HC_KEYS_ENT));
    }
    memcpy(head, KEYS_MAGIC, 4);
    put32(head + 4, KEYS_VERSION);
    put64(head + 8, n);
    put32(head + 16, nsegs);
    put32(head + 20, (uint32_t)nblocks);
    put32(head + 24, hc_crc32c(0, st, (size_t)nsegs * 8));
    put32(head + 28, hc_crc32c(0, bt, (size_t)nblocks * KEYS_BLK));
    put32(head + 32, hc_crc32c(0, head, 32));
    rc = pwrite_all(fd, head, KEYS_HDR + tables, 0);
    if (rc == 0)
        rc = pwrite_all(fd, body, n * HC_KEYS_ENT, KEYS_HDR + tables);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    free(head);
    free(body);
    return rc;
}

void hc_keys_free(struct hc_keys *k)
{
    free(k->seqs);
    free(k->blocks);
    memset(k, 0, sizeof(*k));
}

int hc_keys_load(int fd, uint64_t size, struct hc_keys *k)
{
    unsigned char h[KEYS_HDR], *t = NULL;
    uint64_t nents, nsegs, nblocks, tables;
    int rc;

    memset(k, 0, sizeof(*k));
    if (size < KEYS_HDR)
        return -EBADMSG;
    if ((rc = pread_all(fd, h, KEYS_HDR, 0)) < 0)
        return rc;
    nents = get64(h + 8);
    nsegs = get32(h + 16);
    nblocks = get32(h + 20);
    if (memcmp(h, KEYS_MAGIC, 4) != 0 || get32(h + 4) != KEYS_VERSION ||
        get32(h + 32) != hc_crc32c(0, h, 32) || nsegs > HC_KEYS_MAX_SEGS ||
        nents > HC_KEYS_MAX_ENTS || nblocks != nblocks_of(nents))
        return -EBADMSG;
    /* every count is bounded above, so none of this overflows; the file's
     * size must be exactly what they say */
    tables = nsegs * 8 + nblocks * KEYS_BLK;
    if (size != KEYS_HDR + tables + nents * HC_KEYS_ENT)
        return -EBADMSG;
    t = malloc(tables ? tables : 1);
    k->seqs = malloc(nsegs ? nsegs * sizeof(*k->seqs) : 1);
    k->blocks = malloc(nblocks ? nblocks * sizeof(*k->blocks) : 1);
    if (!t || !k->seqs || !k->blocks) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = pread_all(fd, t, tables, KEYS_HDR)) < 0)
        goto fail;
    rc = -EBADMSG;
    if (hc_crc32c(0, t, nsegs * 8) != get32(h + 24) ||
        hc_crc32c(0, t + nsegs * 8, nblocks * KEYS_BLK) != get32(h + 28))
        goto fail;
    for (uint64_t i = 0; i < nsegs; i++)
        k->seqs[i] = get64(t + 8 * i);
    for (uint64_t b = 0; b < nblocks; b++) {
        const unsigned char *e = t + nsegs * 8 + b * KEYS_BLK;
        struct hc_keys_block *blk = &k->blocks[b];
        uint64_t want = b + 1 < nblocks ? HC_KEYS_PER_BLOCK : nents - b * HC_KEYS_PER_BLOCK;
        blk->first = get64(e);
        blk->n = get32(e + 8);
        blk->crc = get32(e + 12);
        /* full blocks but the last, in hash order: a lookup's binary search
         * relies on it */
        if (blk->n != want || (b > 0 && blk->first < k->blocks[b - 1].first))
            goto fail;
    }
    free(t);
    k->nents = nents;
    k->nsegs = (uint32_t)nsegs;
    k->nblocks = (uint32_t)nblocks;
    k->ents_off = KEYS_HDR + tables;
    return 0;

fail:
    free(t);
    hc_keys_free(k);
    return rc;
}

long hc_keys_block_pos(const struct hc_keys *k, uint64_t h, uint64_t *pos, size_t *len)
{
    uint32_t lo = 0, hi = k->nblocks;

    if (k->nblocks == 0 || h < k->blocks[0].first)
        return -1;
    while (hi - lo > 1) { /* the last block whose first hash is <= h */
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->blocks[mid].first <= h)
            lo = mid;
        else
            hi = mid;
    }
    /* h, if present, is in it: the next block starts above h (entries of one
     * hash across a block edge: this block starts with one of them) */
    *pos = k->ents_off + (uint64_t)lo * HC_KEYS_PER_BLOCK * HC_KEYS_ENT;
    *len = (size_t)k->blocks[lo].n * HC_KEYS_ENT;
    return lo;
}

int hc_keys_block_find(const struct hc_keys *k, long b, const void *buf, size_t len, uint64_t h,
                       struct hc_keys_ent *out)
{
    const unsigned char *p = buf;
    const struct hc_keys_block *blk;
    uint64_t prev = 0;

    if (b < 0 || (uint64_t)b >= k->nblocks)
        return -ENOENT;
    blk = &k->blocks[b];
    if (len != (size_t)blk->n * HC_KEYS_ENT || hc_crc32c(0, p, len) != blk->crc ||
        (blk->n > 0 && get64(p) != blk->first))
        return -EBADMSG;
    for (uint32_t i = 0; i < blk->n; i++) {
        const unsigned char *e = p + (size_t)i * HC_KEYS_ENT;
        uint64_t eh = get64(e);
        if (eh < prev || get32(e + 8) >= k->nsegs)
            return -EBADMSG;
        prev = eh;
        if (eh == h) {
            out->h = eh;
            out->seg = get32(e + 8);
            out->off = get32(e + 12);
            out->len = get32(e + 16);
            out->flags = get16(e + 20);
            return 0;
        }
        if (eh > h)
            return -ENOENT;
    }
    return -ENOENT;
}

int hc_keys_lookup(const struct hc_keys *k, int fd, uint64_t h, struct hc_keys_ent *out)
{
    uint64_t pos;
    size_t len;
    long b = hc_keys_block_pos(k, h, &pos, &len);
    unsigned char buf[HC_KEYS_PER_BLOCK * HC_KEYS_ENT];
    int rc;

    if (b < 0)
        return -ENOENT;
    if ((rc = pread_all(fd, buf, len, pos)) < 0)
        return rc;
    return hc_keys_block_find(k, b, buf, len, h, out);
}
