/* Records: the header block in front of every page in a segment (layout in
 * store.h). Encoding and checking are pure functions of their arguments.
 *
 * Threads: any. hc__hdr_fill runs on the loop thread (a set), hc__hdr_finish
 * on an I/O thread (the CRCs of a write), hc__hdr_check on an I/O thread (a
 * read) and on the loop thread at open (recover.c). */
#include "store_int.h"

#include <errno.h>
#include <string.h>

#include "crc32c.h"

#define REC_MAGIC "HCR1"
#define REC_VERSION 1
#define REC_FIXED 40  /* header bytes before the namespace and key */
#define REC_F_ZSTD 1u /* header flag: the payload is a zstd frame */

/* Fills the header block h (HC_STORE_ALIGN bytes) of a raw record of len
 * bytes of namespace ns and key key, written by the run of epoch epoch;
 * hc__hdr_set_zstd turns it into a compressed one, hc__hdr_finish adds the
 * CRCs later. Any thread (a set: the loop thread). */
void hc__hdr_fill(unsigned char *h, const char *ns, uint16_t nslen, const char *key, size_t klen,
                  uint64_t len, uint64_t epoch)
{
    memset(h, 0, HC_STORE_ALIGN);
    memcpy(h, REC_MAGIC, 4);
    put16(h + 4, REC_VERSION);
    put16(h + 6, 0);
    put32(h + 8, (uint32_t)(REC_FIXED + nslen + klen));
    put64(h + 16, epoch);
    put64(h + 24, len);
    put16(h + 36, nslen);
    put16(h + 38, (uint16_t)klen);
    memcpy(h + REC_FIXED, ns, nslen);
    memcpy(h + REC_FIXED + nslen, key, klen);
}

/* Marks a filled header as a compressed record: stored is the payload length
 * on storage, the original length follows the key (inside the header CRC).
 * Any thread (the loop thread, when the record takes its place). */
void hc__hdr_set_zstd(unsigned char *h, uint64_t stored)
{
    uint32_t hlen = get32(h + 8);
    put64(h + hlen, get64(h + 24));
    put32(h + 8, hlen + 8);
    put16(h + 6, REC_F_ZSTD);
    put64(h + 24, stored);
}

/* The header CRC32C: over the header with its own CRC field taken as zero.
 * Any thread. */
static uint32_t hdr_crc(const unsigned char *h, uint32_t hlen)
{
    static const unsigned char zero4[4];
    uint32_t c = hc_crc32c(0, h, 12);
    c = hc_crc32c(c, zero4, 4);
    return hc_crc32c(c, h + 16, hlen - 16);
}

/* Sets the payload CRC and then the header CRC. Called on an I/O thread (the
 * write of the record). */
void hc__hdr_finish(unsigned char *h, uint32_t payload_crc)
{
    put32(h + 32, payload_crc);
    put32(h + 12, hdr_crc(h, get32(h + 8)));
}

/* Checks a header block's magic, version, lengths and CRC. Returns 0 and
 * fills v (pointing into h), or -EBADMSG. Any thread: called on an I/O thread
 * (a read) and on the loop thread at open (the scan of a segment). */
int hc__hdr_check(const unsigned char *h, struct hdr_view *v)
{
    if (memcmp(h, REC_MAGIC, 4) != 0 || get16(h + 4) != REC_VERSION)
        return -EBADMSG;
    uint32_t hlen = get32(h + 8);
    uint16_t flags = get16(h + 6), nl = get16(h + 36), kl = get16(h + 38);
    bool zstd = flags == REC_F_ZSTD;
    if ((flags & ~REC_F_ZSTD) || nl == 0 || nl > HC_MAX_NS || kl == 0 || kl > HC_MAX_KEY ||
        hlen != (uint32_t)REC_FIXED + nl + kl + (zstd ? 8 : 0))
        return -EBADMSG;
    if (hdr_crc(h, hlen) != get32(h + 12))
        return -EBADMSG;
    v->len = get64(h + 24);
    v->zstd = zstd;
    v->orig = zstd ? get64(h + REC_FIXED + nl + kl) : v->len;
    if (zstd && (v->orig == 0 || v->orig > UINT32_MAX || round_up(v->len) >= round_up(v->orig) ||
                 round_up(v->len) / HC_STORE_ALIGN > ZBLOCKS_MAX))
        return -EBADMSG;
    v->payload_crc = get32(h + 32);
    v->nslen = nl;
    v->klen = kl;
    v->ns = (const char *)h + REC_FIXED;
    v->key = v->ns + nl;
    if (v->len == 0 || v->len > UINT32_MAX)
        return -EBADMSG;
    return 0;
}
