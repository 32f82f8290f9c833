/* Length-prefixed frames: a 4-byte little-endian body length, then the body.
 *
 * The decoder keeps one buffer. Bytes already handed out as frames are
 * compacted away at the next feed, and the buffer grows geometrically up to
 * max_frame + HC_FRAME_HDR: enough for the largest acceptable frame. A header
 * announcing a larger body poisons the stream as soon as its 4 bytes are in:
 * the body is never buffered, later bytes are dropped, and next() answers
 * -EMSGSIZE once the frames before it have been taken. */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HC_FRAME_MIN_CAP 4096u

void hc_frame_put_len(uint8_t hdr[HC_FRAME_HDR], uint32_t len)
{
    hdr[0] = (uint8_t)len;
    hdr[1] = (uint8_t)(len >> 8);
    hdr[2] = (uint8_t)(len >> 16);
    hdr[3] = (uint8_t)(len >> 24);
}

uint32_t hc_frame_get_len(const uint8_t hdr[HC_FRAME_HDR])
{
    return (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
           (uint32_t)hdr[3] << 24;
}

void hc_frame_decoder_init(struct hc_frame_decoder *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame;
}

/* Frees the buffer; the decoder may be initialized again. Accepts NULL. */
void hc_frame_decoder_free(struct hc_frame_decoder *d)
{
    if (!d)
        return;
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = d->consumed = 0;
}

static size_t frame_limit(const struct hc_frame_decoder *d)
{
    return (size_t)d->max_frame + HC_FRAME_HDR;
}

/* Walks the frame headers in the held bytes followed by the n new ones (a
 * header may straddle the two) and returns how many of the new bytes to keep:
 * all of them, or only those up to the end of the first header announcing an
 * oversize body (0 when such a header is already held). */
static size_t bytes_to_keep(const struct hc_frame_decoder *d, const uint8_t *data, size_t n)
{
    size_t total = d->len + n;
    size_t pos = 0;

    for (;;) {
        uint8_t hdr[HC_FRAME_HDR];
        uint32_t flen;
        size_t i;

        if (total - pos < HC_FRAME_HDR)
            return n;
        for (i = 0; i < HC_FRAME_HDR; i++) {
            size_t at = pos + i;
            hdr[i] = at < d->len ? d->buf[at] : data[at - d->len];
        }
        flen = hc_frame_get_len(hdr);
        if (flen > d->max_frame) {
            size_t end = pos + HC_FRAME_HDR;
            return end <= d->len ? 0 : end - d->len;
        }
        if (total - pos - HC_FRAME_HDR < flen)
            return n;
        pos += HC_FRAME_HDR + flen;
    }
}

/* Appends n bytes. Returns 0 or -ENOMEM (then nothing was appended).
 *
 * Bytes of frames already taken are dropped first. The buffer then grows by
 * doubling, but never past max_frame + HC_FRAME_HDR while the bytes it must
 * hold fit there, which is always the case for a caller that takes every
 * whole frame out after each feed and feeds at most max_frame + HC_FRAME_HDR
 * bytes at once. A caller that feeds a larger chunk holding whole frames gets
 * a buffer sized to that chunk until it has taken them; the peer cannot make
 * it larger. Bytes after an oversize header are never stored. */
int hc_frame_decoder_feed(struct hc_frame_decoder *d, const void *data, size_t n)
{
    size_t keep, need, limit = frame_limit(d);

    if (d->consumed > 0) {
        memmove(d->buf, d->buf + d->consumed, d->len - d->consumed);
        d->len -= d->consumed;
        d->consumed = 0;
    }
    if (n == 0)
        return 0;
    keep = bytes_to_keep(d, data, n);
    if (keep == 0)
        return 0;
    need = d->len + keep;
    if (need > d->cap || (d->cap > limit && need <= limit)) {
        size_t cap = d->cap > limit ? limit : d->cap;
        uint8_t *nb;

        if (cap < HC_FRAME_MIN_CAP)
            cap = HC_FRAME_MIN_CAP;
        while (cap < need)
            cap *= 2;
        if (cap > limit)
            cap = need > limit ? need : limit;
        nb = realloc(d->buf, cap);
        if (!nb)
            return -ENOMEM;
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, keep);
    d->len += keep;
    return 0;
}

/* Takes the next whole frame: 1 with *body and *len set (valid until the next
 * feed or next call), 0 when none is whole yet, -EMSGSIZE when the next
 * header announces more than max_frame bytes. Never allocates. */
int hc_frame_decoder_next(struct hc_frame_decoder *d, const uint8_t **body, uint32_t *len)
{
    size_t held = d->len - d->consumed;
    uint32_t flen;

    if (held < HC_FRAME_HDR)
        return 0;
    flen = hc_frame_get_len(d->buf + d->consumed);
    if (flen > d->max_frame)
        return -EMSGSIZE;
    if (held - HC_FRAME_HDR < flen)
        return 0;
    *body = d->buf + d->consumed + HC_FRAME_HDR;
    *len = flen;
    d->consumed += HC_FRAME_HDR + (size_t)flen;
    return 1;
}

void hc_frame_pass_fd(struct msghdr *m, union hc_fd_cmsg *ctl, int fd)
{
    struct cmsghdr *h;

    memset(ctl, 0, sizeof(*ctl));
    m->msg_control = ctl->buf;
    m->msg_controllen = sizeof(ctl->buf);
    h = CMSG_FIRSTHDR(m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof(int));
}
