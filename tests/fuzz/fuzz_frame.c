/* libFuzzer target: the control socket's frame decoder and request decoding
 * (make fuzz). The input is a byte stream as a peer would send it, fed in
 * pieces whose size the first byte picks; every whole frame is unpacked as a
 * Request, and every key and namespace in it goes through the one name rule
 * (hc_name_invalid) and the packed-keys check the daemon applies. Any crash,
 * leak or undefined behaviour is a finding. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"
#include "hicache.pb-c.h"
#include "key.h"

static void check_slots(Hicache__Slot **slots, size_t n)
{
    for (size_t i = 0; i < n; i++)
        (void)hc_name_invalid("key", (const char *)slots[i]->key.data, slots[i]->key.len);
}

static void check_request(const Hicache__Request *req)
{
    switch (req->body_case) {
    case HICACHE__REQUEST__BODY_HELLO:
        (void)hc_name_invalid("namespace", (const char *)req->hello->namespace_.data,
                              req->hello->namespace_.len);
        break;
    case HICACHE__REQUEST__BODY_SET:
        check_slots(req->set->pages, req->set->n_pages);
        break;
    case HICACHE__REQUEST__BODY_GET:
        check_slots(req->get->pages, req->get->n_pages);
        break;
    case HICACHE__REQUEST__BODY_EXISTS:
        for (size_t i = 0; i < req->exists->n_keys; i++)
            (void)hc_name_invalid("key", (const char *)req->exists->keys[i].data,
                                  req->exists->keys[i].len);
        if (req->exists->packed_keys.len) {
            const char *p = (const char *)req->exists->packed_keys.data;
            size_t left = req->exists->packed_keys.len;
            while (left > 0) { /* each key ends in NUL */
                const char *nul = memchr(p, 0, left);
                if (!nul)
                    break;
                (void)hc_name_invalid("key", p, (size_t)(nul - p));
                left -= (size_t)(nul - p) + 1;
                p = nul + 1;
            }
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hc_frame_decoder d;
    size_t piece = size ? (size_t)(data[0] % 61) + 1 : 1;

    hc_frame_decoder_init(&d, 1u << 16);
    for (size_t off = 1; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        const uint8_t *body;
        uint32_t len;
        int rc;
        if (hc_frame_decoder_feed(&d, data + off, n) < 0)
            break;
        while ((rc = hc_frame_decoder_next(&d, &body, &len)) > 0) {
            Hicache__Request *req = hicache__request__unpack(NULL, len, body);
            if (req) {
                check_request(req);
                hicache__request__free_unpacked(req, NULL);
            }
        }
        if (rc < 0)
            break;
    }
    hc_frame_decoder_free(&d);
    return 0;
}
