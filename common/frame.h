/* Length-prefixed frames on the control socket: a 4-byte little-endian length
 * followed by that many bytes of one protobuf-c message. Shared by the daemon
 * and libhicache; no libuv, no protobuf here. */
#ifndef HC_FRAME_H
#define HC_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HC_FRAME_HDR 4u

/* Writes the 4-byte header for a body of len bytes into hdr. */
void hc_frame_put_len(uint8_t hdr[HC_FRAME_HDR], uint32_t len);

/* Room for one passed descriptor in a msghdr's control buffer. */
union hc_fd_cmsg {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
};

/* Makes m pass fd with its bytes (SCM_RIGHTS), in ctl: the region's memfd
 * from the daemon at hello, a host pool's from a client (PoolRequest). */
void hc_frame_pass_fd(struct msghdr *m, union hc_fd_cmsg *ctl, int fd);
uint32_t hc_frame_get_len(const uint8_t hdr[HC_FRAME_HDR]);

/* Incremental decoder for a byte stream. Feed it what arrived; take frames out.
 * It owns a buffer that grows up to max_frame + HC_FRAME_HDR bytes, no more. */
struct hc_frame_decoder {
    uint8_t *buf;
    size_t len;      /* bytes held */
    size_t cap;      /* bytes allocated */
    size_t consumed; /* bytes of buf already handed out as frames */
    uint32_t max_frame;
};

void hc_frame_decoder_init(struct hc_frame_decoder *d, uint32_t max_frame);
void hc_frame_decoder_free(struct hc_frame_decoder *d);

/* Appends n bytes. Returns 0, or -ENOMEM. */
int hc_frame_decoder_feed(struct hc_frame_decoder *d, const void *data, size_t n);

/* Takes the next whole frame. Returns 1 and sets *body and *len (valid until the
 * next feed or next call), 0 if no whole frame is held yet, or -EMSGSIZE when
 * the next frame announces a body larger than max_frame (the stream is then
 * unusable: the caller replies with an error and closes). */
int hc_frame_decoder_next(struct hc_frame_decoder *d, const uint8_t **body, uint32_t *len);

#endif
