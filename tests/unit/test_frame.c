/* Frame decoder: a byte stream cut anywhere gives back the same frames, and a
 * peer cannot make the decoder buffer more than max_frame + HC_FRAME_HDR. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* A stream of frames: body i is len[i] bytes of pattern (i, offset). */
struct stream {
    uint8_t *bytes;
    size_t len;
    uint32_t *flen;
    size_t nframes;
};

static uint8_t pattern(size_t frame, size_t off)
{
    return (uint8_t)(frame * 31 + off * 7 + 1);
}

static void stream_build(struct stream *st, const uint32_t *lens, size_t n)
{
    size_t i, j, total = 0, pos = 0;

    for (i = 0; i < n; i++)
        total += HC_FRAME_HDR + lens[i];
    st->bytes = malloc(total ? total : 1);
    st->flen = malloc(n * sizeof(*st->flen));
    ck_assert(st->bytes && st->flen);
    for (i = 0; i < n; i++) {
        hc_frame_put_len(st->bytes + pos, lens[i]);
        pos += HC_FRAME_HDR;
        for (j = 0; j < lens[i]; j++)
            st->bytes[pos++] = pattern(i, j);
        st->flen[i] = lens[i];
    }
    st->len = total;
    st->nframes = n;
}

static void stream_free(struct stream *st)
{
    free(st->bytes);
    free(st->flen);
}

/* Takes every whole frame out, checking each against the stream; returns the
 * index of the next expected frame. */
static size_t drain(struct hc_frame_decoder *d, const struct stream *st, size_t next)
{
    const uint8_t *body;
    uint32_t len;
    int rc;

    while ((rc = hc_frame_decoder_next(d, &body, &len)) == 1) {
        ck_assert_uint_lt(next, st->nframes);
        ck_assert_uint_eq(len, st->flen[next]);
        for (uint32_t j = 0; j < len; j++)
            if (body[j] != pattern(next, j))
                ck_abort_msg("frame %zu byte %u differs", next, j);
        next++;
    }
    ck_assert_int_eq(rc, 0);
    return next;
}

START_TEST(test_header_little_endian)
{
    uint8_t hdr[HC_FRAME_HDR];

    hc_frame_put_len(hdr, 0x01020304u);
    ck_assert_uint_eq(hdr[0], 0x04);
    ck_assert_uint_eq(hdr[1], 0x03);
    ck_assert_uint_eq(hdr[2], 0x02);
    ck_assert_uint_eq(hdr[3], 0x01);
    ck_assert_uint_eq(hc_frame_get_len(hdr), 0x01020304u);
    hc_frame_put_len(hdr, UINT32_MAX);
    ck_assert_uint_eq(hc_frame_get_len(hdr), UINT32_MAX);
}
END_TEST

/* Two feeds, cut at every byte of a stream holding an empty frame, a small
 * one and a larger one. */
START_TEST(test_split_at_every_byte)
{
    static const uint32_t lens[] = {0, 5, 300, 1, 0};
    struct stream st;
    size_t cut;

    stream_build(&st, lens, 5);
    for (cut = 0; cut <= st.len; cut++) {
        struct hc_frame_decoder d;
        size_t next;

        hc_frame_decoder_init(&d, 1024);
        ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes, cut), 0);
        next = drain(&d, &st, 0);
        ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes + cut, st.len - cut), 0);
        next = drain(&d, &st, next);
        ck_assert_uint_eq(next, st.nframes);
        ck_assert_uint_le(d.cap, 1024 + HC_FRAME_HDR);
        hc_frame_decoder_free(&d);
    }
    stream_free(&st);
}
END_TEST

/* One byte at a time: each frame appears exactly when its last byte is in. */
START_TEST(test_byte_at_a_time)
{
    static const uint32_t lens[] = {3, 0, 17, 0, 64};
    struct stream st;
    struct hc_frame_decoder d;
    size_t i, next = 0, ends = 0;

    stream_build(&st, lens, 5);
    hc_frame_decoder_init(&d, 64);
    for (i = 0; i < st.len; i++) {
        size_t before = next;
        ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes + i, 1), 0);
        next = drain(&d, &st, next);
        if (next != before) {
            ends += HC_FRAME_HDR + lens[before];
            ck_assert_uint_eq(next, before + 1);
            ck_assert_uint_eq(i + 1, ends); /* delivered on its last byte */
        }
        ck_assert_uint_le(d.cap, 64 + HC_FRAME_HDR);
    }
    ck_assert_uint_eq(next, 5);
    hc_frame_decoder_free(&d);
    stream_free(&st);
}
END_TEST

START_TEST(test_many_frames_one_feed)
{
    uint32_t lens[200];
    struct stream st;
    struct hc_frame_decoder d;
    size_t i;

    for (i = 0; i < 200; i++)
        lens[i] = (uint32_t)((i * 37) % 101);
    stream_build(&st, lens, 200);
    hc_frame_decoder_init(&d, 1u << 20);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes, st.len), 0);
    ck_assert_uint_eq(drain(&d, &st, 0), 200);
    /* the decoder is reusable once drained */
    ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes, st.len), 0);
    ck_assert_uint_eq(drain(&d, &st, 0), 200);
    hc_frame_decoder_free(&d);
    stream_free(&st);
}
END_TEST

START_TEST(test_zero_length_frame)
{
    uint8_t hdr[HC_FRAME_HDR];
    struct hc_frame_decoder d;
    const uint8_t *body = NULL;
    uint32_t len = 99;

    hc_frame_decoder_init(&d, 16);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &body, &len), 0);
    hc_frame_put_len(hdr, 0);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, hdr, 3), 0);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &body, &len), 0);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, hdr + 3, 1), 0);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &body, &len), 1);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(body);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &body, &len), 0);
    hc_frame_decoder_free(&d);
}
END_TEST

/* max_frame bytes is accepted; max_frame + 1 is refused from its header
 * alone, with nothing of its body buffered. */
START_TEST(test_oversize_refused_before_body)
{
    enum { MAX = 1000 };
    uint8_t hdr[HC_FRAME_HDR], *body = calloc(1, MAX + 1);
    struct hc_frame_decoder d;
    const uint8_t *b;
    uint32_t len;

    ck_assert_ptr_nonnull(body);
    hc_frame_decoder_init(&d, MAX);
    hc_frame_put_len(hdr, MAX);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, hdr, HC_FRAME_HDR), 0);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, body, MAX), 0);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), 1);
    ck_assert_uint_eq(len, MAX);
    ck_assert_uint_le(d.cap, MAX + HC_FRAME_HDR);

    /* header of MAX+1 in two pieces: nothing before its 4th byte */
    hc_frame_put_len(hdr, MAX + 1);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, hdr, 2), 0);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), 0);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, hdr + 2, 2), 0);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), -EMSGSIZE);
    /* the body that follows is dropped, not buffered; the error stays */
    ck_assert_int_eq(hc_frame_decoder_feed(&d, body, MAX + 1), 0);
    ck_assert_uint_eq(d.len - d.consumed, HC_FRAME_HDR);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), -EMSGSIZE);
    hc_frame_decoder_free(&d);

    /* a huge announced length allocates nothing near it */
    hc_frame_decoder_init(&d, MAX);
    hc_frame_put_len(hdr, UINT32_MAX);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, hdr, HC_FRAME_HDR), 0);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), -EMSGSIZE);
    ck_assert_uint_le(d.cap, MAX + HC_FRAME_HDR);
    hc_frame_decoder_free(&d);
    free(body);
}
END_TEST

/* A good frame then a bad header in one feed: the good one is delivered,
 * then the error; the bad frame's body (same feed) is not stored. */
START_TEST(test_good_then_oversize_in_one_feed)
{
    uint8_t buf[HC_FRAME_HDR + 3 + HC_FRAME_HDR + 200];
    struct hc_frame_decoder d;
    const uint8_t *b;
    uint32_t len;

    memset(buf, 0xab, sizeof(buf));
    hc_frame_put_len(buf, 3);
    hc_frame_put_len(buf + HC_FRAME_HDR + 3, 100);
    hc_frame_decoder_init(&d, 50);
    ck_assert_int_eq(hc_frame_decoder_feed(&d, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(d.len, HC_FRAME_HDR + 3 + HC_FRAME_HDR);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), 1);
    ck_assert_uint_eq(len, 3);
    ck_assert_uint_eq(b[0], 0xab);
    ck_assert_int_eq(hc_frame_decoder_next(&d, &b, &len), -EMSGSIZE);
    hc_frame_decoder_free(&d);
}
END_TEST

/* Largest frames, fed in pieces of every size from 1 to 2 * max: the buffer
 * stays within max + HC_FRAME_HDR whenever a feed fits there, and comes back
 * to it once a larger feed's frames are taken. */
START_TEST(test_buffer_bound)
{
    enum { MAX = 4096 };
    static const uint32_t lens[] = {MAX, MAX, 0, MAX, 17, MAX};
    const size_t limit = MAX + HC_FRAME_HDR;
    struct stream st;
    size_t chunk;

    stream_build(&st, lens, 6);
    for (chunk = 1; chunk <= 2 * limit; chunk += chunk < 64 ? 1 : 127) {
        struct hc_frame_decoder d;
        size_t pos = 0, next = 0;

        hc_frame_decoder_init(&d, MAX);
        while (pos < st.len) {
            size_t n = st.len - pos < chunk ? st.len - pos : chunk;
            size_t held = d.len - d.consumed;
            ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes + pos, n), 0);
            if (held + n <= limit)
                ck_assert_uint_le(d.cap, limit);
            else /* held < limit after a drain: the excess is this chunk */
                ck_assert_uint_le(d.cap, limit + chunk);
            next = drain(&d, &st, next);
            pos += n;
        }
        ck_assert_uint_eq(next, st.nframes);
        ck_assert_uint_eq(d.len - d.consumed, 0);
        /* next feed after draining returns the buffer to the bound */
        ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes, 1), 0);
        ck_assert_uint_le(d.cap, limit);
        hc_frame_decoder_free(&d);
    }
    stream_free(&st);
}
END_TEST

/* Random frame sizes and random cuts (fixed seed), checked byte by byte. */
START_TEST(test_random_stream)
{
    uint32_t lens[300];
    struct stream st;
    struct hc_frame_decoder d;
    uint32_t seed = 12345;
    size_t i, pos = 0, next = 0;

    for (i = 0; i < 300; i++) {
        seed = seed * 1103515245u + 12345u;
        lens[i] = (seed >> 8) % 700;
    }
    stream_build(&st, lens, 300);
    hc_frame_decoder_init(&d, 700);
    while (pos < st.len) {
        size_t n;
        seed = seed * 1103515245u + 12345u;
        n = (seed >> 8) % 900 + 1;
        if (n > st.len - pos)
            n = st.len - pos;
        ck_assert_int_eq(hc_frame_decoder_feed(&d, st.bytes + pos, n), 0);
        pos += n;
        next = drain(&d, &st, next);
    }
    ck_assert_uint_eq(next, 300);
    hc_frame_decoder_free(&d);
    hc_frame_decoder_free(&d); /* harmless twice */
    stream_free(&st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("decoder");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_header_little_endian);
    tcase_add_test(tc, test_split_at_every_byte);
    tcase_add_test(tc, test_byte_at_a_time);
    tcase_add_test(tc, test_many_frames_one_feed);
    tcase_add_test(tc, test_zero_length_frame);
    tcase_add_test(tc, test_oversize_refused_before_body);
    tcase_add_test(tc, test_good_then_oversize_in_one_feed);
    tcase_add_test(tc, test_buffer_bound);
    tcase_add_test(tc, test_random_stream);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
