/* .idx files: the index of a sealed segment, written beside it as
 * <seq>.idx.tmp and renamed, read back at restart and by other nodes. Every
 * .idx may come from another node, broken or hostile: parsing bounds every
 * count and offset and checks the whole file's CRC32C before it is used.
 *
 * Layout (little-endian): magic "HCI1", u32 version, u64 seq, u64 segment
 * bytes, u32 namespaces, u32 entries; the namespace names (u16 length then
 * bytes); padding to 8; the entries (IDX_ENT bytes: u64 hash lo, u64 hash hi,
 * u64 offset, u32 length, u16 namespace, u16 stored blocks); u32 CRC32C.
 *
 * Loading reads the header first and refuses a file whose counts do not fit
 * its size or its segment (a record takes at least 2 blocks, so a segment of
 * B bytes has at most B / 8 KiB entries; at most IDX_MAX_ENTRIES in any case)
 * before it allocates anything for the rest, which it then reads in chunks,
 * the CRC computed as they come: a hostile file costs at most what a valid
 * index of its claimed segment would.
 *
 * Threads: hc__idx_load and hc__idx_free touch only their arguments (any
 * thread: discovery loads on an I/O thread). hc__idx_encode and hc__idx_merge
 * read and change the store: loop thread. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"

#define IDX_MAGIC "HCI1"
#define IDX_VERSION 1
#define IDX_HDR 32
#define IDX_ENT 32
#define IDX_MAX_ENTRIES (4u << 20)  /* 128 MiB of entries: a 32 GiB segment of 8 KiB pages */
#define IDX_CHUNK ((size_t)4 << 20) /* bytes read at a time */

/* Frees a parsed .idx (any thread) and zeroes it. */
void hc__idx_free(struct idx_data *d)
{
    free(d->buf);
    free(d->ns_name);
    memset(d, 0, sizeof(*d));
}

/* True when the header at h (IDX_HDR bytes) can start a valid .idx of len
 * bytes for segment seq: magic, version, seq, and counts that fit both the
 * file's size and the segment's. Any thread. */
static bool idx_hdr_ok(const unsigned char *h, uint64_t len, uint64_t seq)
{
    uint64_t seg_bytes = get64(h + 16), nns = get32(h + 24), nent = get32(h + 28);
    return len >= IDX_HDR + 4 && memcmp(h, IDX_MAGIC, 4) == 0 && get32(h + 4) == IDX_VERSION &&
           get64(h + 8) == seq && nns <= NS_LIMIT && nent <= IDX_MAX_ENTRIES &&
           nent <= seg_bytes / (2 * HC_STORE_ALIGN) &&
           len >= IDX_HDR + nns * 3 + nent * IDX_ENT + 4 &&
           len <= IDX_HDR + nns * (2 + HC_MAX_NS) + 7 + nent * IDX_ENT + 4;
}

/* Validates and parses an .idx image whose CRC32C was checked (takes buf).
 * Returns 0 or -EBADMSG / -ENOMEM (buf freed). Any thread. */
static int idx_parse(unsigned char *buf, size_t len, uint64_t seq, struct idx_data *d)
{
    memset(d, 0, sizeof(*d));
    d->buf = buf;
    if (!idx_hdr_ok(buf, len, seq))
        goto bad;
    d->seq = get64(buf + 8);
    d->seg_bytes = get64(buf + 16);
    d->nns = get32(buf + 24);
    d->nent = get32(buf + 28);
    if (d->seq != seq || d->nns > NS_LIMIT)
        goto bad;
    d->ns_name = calloc(d->nns ? d->nns : 1, sizeof(*d->ns_name));
    if (!d->ns_name) {
        hc__idx_free(d);
        return -ENOMEM;
    }
    size_t p = IDX_HDR, end = len - 4;
    for (uint32_t i = 0; i < d->nns; i++) {
        if (p + 2 > end)
            goto bad;
        uint16_t nl = get16(buf + p);
        if (nl == 0 || nl > HC_MAX_NS || p + 2 + nl > end)
            goto bad;
        d->ns_name[i] = buf + p;
        p += 2 + (size_t)nl;
    }
    p = (p + 7) & ~(size_t)7;
    if (p > end || (end - p) / IDX_ENT != d->nent || (end - p) % IDX_ENT != 0)
        goto bad;
    d->ents = buf + p;
    for (uint32_t i = 0; i < d->nent; i++) {
        const unsigned char *e = d->ents + (size_t)i * IDX_ENT;
        uint64_t off = get64(e + 16);
        uint32_t elen = get32(e + 24);
        uint16_t sblocks = get16(e + 30);
        if (get16(e + 28) >= d->nns || elen == 0 || off % HC_STORE_ALIGN ||
            off / HC_STORE_ALIGN > UINT32_MAX || sblocks > ZBLOCKS_MAX ||
            (sblocks && (uint64_t)sblocks * HC_STORE_ALIGN >= round_up(elen)) ||
            off + ent_rec_size(elen, sblocks) > d->seg_bytes)
            goto bad;
    }
    return 0;
bad:
    hc__idx_free(d);
    return -EBADMSG;
}

/* Reads and parses the .idx at path: the header first (idx_hdr_ok), then
 * the rest in IDX_CHUNK pieces with the CRC32C computed as they come.
 * Blocking; any thread: called on an I/O thread (discovery) and on the loop
 * thread at open. Returns 0, or -errno (-EBADMSG for a damaged file). */
int hc__idx_load(const char *path, uint64_t seq, struct idx_data *d)
{
    struct stat sb;
    unsigned char hdr[IDX_HDR], *buf = NULL;
    uint32_t crc;
    int rc, fd = hc__open_regular(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto err;
    }
    rc = -EBADMSG;
    if (sb.st_size < IDX_HDR + 4 || (uint64_t)sb.st_size > HC_IDX_MAX_BYTES)
        goto err;
    size_t len = (size_t)sb.st_size;
    if ((rc = hc__pread_all(fd, hdr, IDX_HDR, 0)) < 0)
        goto err;
    rc = -EBADMSG;
    if (!idx_hdr_ok(hdr, len, seq))
        goto err;
    rc = -ENOMEM;
    if (!(buf = malloc(len)))
        goto err;
    memcpy(buf, hdr, IDX_HDR);
    crc = hc_crc32c(0, hdr, IDX_HDR);
    for (size_t off = IDX_HDR; off < len;) {
        size_t n = len - off < IDX_CHUNK ? len - off : IDX_CHUNK;
        if ((rc = hc__pread_all(fd, buf + off, n, off)) < 0)
            goto err;
        size_t upto = off + n < len - 4 ? off + n : len - 4; /* the CRC covers [0, len - 4) */
        if (upto > off)
            crc = hc_crc32c(crc, buf + off, upto - off);
        off += n;
    }
    close(fd);
    if (crc != get32(buf + len - 4)) {
        free(buf);
        return -EBADMSG;
    }
    return idx_parse(buf, len, seq, d);
err:
    close(fd);
    free(buf);
    return rc == -ENODATA ? -EBADMSG : rc;
}

static struct hc_hash idx_ent_hash(const unsigned char *e)
{
    return (struct hc_hash){get64(e), get64(e + 8)};
}

/* Builds the .idx image of a local segment from its committed records (loop
 * thread). Returns 0 or -ENOMEM. */
int hc__idx_encode(const struct hc_store *s, const struct seg *seg, unsigned char **out,
                   size_t *outlen)
{
    return hc__idx_encode_n(s, seg, seg->nrecs, seg->size, out, outlen);
}

/* The same of its first nrecs committed records, in a segment of seg_bytes
 * (a tail index: tail.c). */
int hc__idx_encode_n(const struct hc_store *s, const struct seg *seg, size_t nrecs,
                     uint64_t seg_bytes, unsigned char **out, size_t *outlen)
{
    uint32_t *map = calloc(s->nns ? s->nns : 1, sizeof(*map)); /* ns id -> file index + 1 */
    uint16_t *order = malloc((s->nns ? s->nns : 1) * sizeof(*order));
    unsigned char *buf = NULL;
    uint32_t nns = 0;
    size_t names = 0;

    if (!map || !order)
        goto err;
    for (size_t i = 0; i < nrecs; i++) {
        uint16_t ns = seg->recs[i].ns;
        if (!map[ns]) {
            order[nns] = ns;
            map[ns] = ++nns;
            names += 2 + s->ns[ns].len;
        }
    }
    size_t ents = (IDX_HDR + names + 7) & ~(size_t)7;
    size_t len = ents + nrecs * IDX_ENT + 4;
    buf = calloc(1, len);
    if (!buf)
        goto err;
    memcpy(buf, IDX_MAGIC, 4);
    put32(buf + 4, IDX_VERSION);
    put64(buf + 8, seg->seq);
    put64(buf + 16, seg_bytes);
    put32(buf + 24, nns);
    put32(buf + 28, (uint32_t)nrecs);
    size_t p = IDX_HDR;
    for (uint32_t i = 0; i < nns; i++) {
        const struct nsent *n = &s->ns[order[i]];
        put16(buf + p, n->len);
        memcpy(buf + p + 2, n->name, n->len);
        p += 2 + (size_t)n->len;
    }
    for (size_t i = 0; i < nrecs; i++) {
        unsigned char *e = buf + ents + i * IDX_ENT;
        const struct seg_rec *r = &seg->recs[i];
        put64(e, r->h.lo);
        put64(e + 8, r->h.hi);
        put64(e + 16, r->off);
        put32(e + 24, r->len);
        put16(e + 28, (uint16_t)(map[r->ns] - 1));
        put16(e + 30, r->sblocks);
    }
    put32(buf + len - 4, hc_crc32c(0, buf, len - 4));
    free(map);
    free(order);
    *out = buf;
    *outlen = len;
    return 0;
err:
    free(map);
    free(order);
    free(buf);
    return -ENOMEM;
}

/* Adds the entries of a parsed .idx to the index for seg. Local segments skip
 * tombstoned records. Namespaces beyond the limit are skipped. */
void hc__idx_merge(struct hc_store *s, struct seg *seg, const struct idx_data *d)
{
    int *ids = malloc((d->nns ? d->nns : 1) * sizeof(*ids));
    if (!ids) {
        hc_log(HC_LOG_ERR, "store: out of memory loading segment %016" PRIx64, seg->seq);
        return;
    }
    for (uint32_t i = 0; i < d->nns; i++)
        ids[i] = hc__ns_intern(s, (const char *)d->ns_name[i] + 2, get16(d->ns_name[i]));
    for (uint32_t i = 0; i < d->nent; i++) {
        const unsigned char *e = d->ents + (size_t)i * IDX_ENT;
        int ns = ids[get16(e + 28)];
        uint64_t off = get64(e + 16);
        if (ns < 0 || (seg->local && hc__tombstoned(s, (uint16_t)ns, seg->seq, off)))
            continue;
        hc__index_put(s, seg, idx_ent_hash(e), off, get32(e + 24), (uint16_t)ns, get16(e + 30));
    }
    free(ids);
}
