/* Integration: malformed input on the socket and in the configuration. Each
 * case checks the error the daemon gives (status and text), that nothing
 * stored changed, and that the daemon keeps serving another client. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "key.h"

#define BI_KNOWN "known-page"
#define BI_KNOWN_LEN 65536
#define BI_SALT 21

/* Starts a daemon holding one known page. */
static struct hd *bi_start(void)
{
    struct hd *d = hd_new("A", NULL);
    hd_start(d);
    hc_client *c = hd_connect(d, NULL, BI_KNOWN_LEN);
    char *buf = malloc(BI_KNOWN_LEN);
    ck_assert_ptr_nonnull(buf);
    h_fill(buf, BI_KNOWN_LEN, BI_KNOWN, BI_SALT);
    hc_buf b = {buf, BI_KNOWN_LEN};
    hc_page p = {BI_KNOWN, &b, 1};
    int res = 1;
    ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    free(buf);
    hc_close(c);
    return d;
}

/* Asserts the daemon holds pages pages, serves the known page exactly to a
 * new client, and answers a ping. */
static void bi_intact(const struct hd *d, int64_t pages)
{
    hc_client *c = hd_connect(d, NULL, BI_KNOWN_LEN);
    ck_assert_int_eq(hc_ping(c), 0);
    ck_assert_int_eq(h_stat(c, "pages"), pages);
    char *buf = calloc(1, BI_KNOWN_LEN);
    ck_assert_ptr_nonnull(buf);
    hc_buf b = {buf, BI_KNOWN_LEN};
    hc_page p = {BI_KNOWN, &b, 1};
    int res = 1;
    ck_assert_int_eq(hc_batch_get(c, &p, 1, &res), 1);
    ck_assert_int_eq(res, 0);
    ck_assert_msg(h_check(buf, BI_KNOWN_LEN, BI_KNOWN, BI_SALT) < 0, "known page changed");
    free(buf);
    hc_close(c);
}

/* Asserts key (a NUL-terminated name) is not stored. */
static void bi_absent(const struct hd *d, const char *key)
{
    hc_client *c = hd_connect(d, NULL, 0);
    uint64_t len = 1;
    ck_assert_int_eq(hc_batch_exists(c, &key, 1, &len), 0);
    ck_assert_uint_eq(len, 0);
    hc_close(c);
}

/* Expects an error Response with id 0 and status want, then the connection
 * closed by the daemon. */
static void bi_expect_frame_error(struct h_raw *r, int want, const char *what)
{
    Hicache__Response *resp = h_raw_recv(r, 5000);
    ck_assert_msg(resp != NULL, "%s: no error response before the connection ended", what);
    ck_assert_msg(resp->status == want, "%s: status %d (%s), want %d (%s)", what, resp->status,
                  hc_err_name(resp->status), want, hc_err_name(want));
    ck_assert_msg(resp->error && resp->error[0], "%s: no error text", what);
    ck_assert_msg(resp->id == 0, "%s: error response id %llu, want 0", what,
                  (unsigned long long)resp->id);
    hicache__response__free_unpacked(resp, NULL);
    ck_assert_msg(h_raw_wait_eof(r, 5000), "%s: daemon did not close the connection", what);
}

START_TEST(test_garbage_bytes)
{
    struct hd *d = bi_start();
    int64_t bad0 = hd_stat(d, "bad_requests");
    struct h_raw r;
    uint8_t junk[32];
    memset(junk, 0xff, sizeof(junk));

    /* a frame whose body does not decode, before hello */
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_send_frame(&r, junk, sizeof(junk)), 0);
    bi_expect_frame_error(&r, -EPROTO, "undecodable frame before hello");
    h_raw_close(&r);

    /* the same after a good hello */
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);
    ck_assert_int_eq(h_raw_send_frame(&r, junk, sizeof(junk)), 0);
    bi_expect_frame_error(&r, -EPROTO, "undecodable frame after hello");
    h_raw_close(&r);

    /* text that is no frame at all ("GET " announces a ~500 MiB frame) */
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    const char *http = "GET / HTTP/1.1\r\nHost: hicached\r\n\r\n";
    ck_assert_int_eq(h_raw_send(&r, http, strlen(http)), 0);
    bi_expect_frame_error(&r, -EMSGSIZE, "HTTP request");
    h_raw_close(&r);

    ck_assert_int_ge(hd_stat(d, "bad_requests"), bad0 + 3);
    bi_intact(d, 1);
}
END_TEST

START_TEST(test_frame_too_large)
{
    struct hd *d = bi_start();
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);
    uint32_t max = r.max_frame;
    ck_assert_uint_eq(max, 1u << 20);
    /* announce max + 1 bytes and send some of them */
    uint8_t hdr[4] = {(uint8_t)(max + 1), (uint8_t)((max + 1) >> 8), (uint8_t)((max + 1) >> 16),
                      (uint8_t)((max + 1) >> 24)};
    ck_assert_int_eq(h_raw_send(&r, hdr, 4), 0);
    uint8_t zeros[1024] = {0};
    h_raw_send(&r, zeros, sizeof(zeros)); /* may fail once the daemon closed */
    bi_expect_frame_error(&r, -EMSGSIZE, "frame of max_frame + 1 bytes");
    h_raw_close(&r);

    /* 4 GiB - 1 announced before hello */
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(h_raw_send(&r, huge, 4), 0);
    bi_expect_frame_error(&r, -EMSGSIZE, "frame of 4 GiB");
    h_raw_close(&r);
    bi_intact(d, 1);
}
END_TEST

START_TEST(test_unknown_message_type)
{
    struct hd *d = bi_start();
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);

    /* Request{id = 7, field 99 (length-delimited, empty)}: a body the daemon
     * does not know */
    const uint8_t unknown[] = {0x08, 0x07, 0x9a, 0x06, 0x00};
    ck_assert_int_eq(h_raw_send_frame(&r, unknown, sizeof(unknown)), 0);
    Hicache__Response *resp = h_raw_recv(&r, 5000);
    ck_assert_msg(resp != NULL, "no response to an unknown message type");
    ck_assert_uint_eq(resp->id, 7);
    ck_assert_int_eq(resp->status, -EPROTO);
    ck_assert_msg(resp->error && strstr(resp->error, "unknown message type"),
                  "error text '%s' does not say 'unknown message type'",
                  resp->error ? resp->error : "");
    hicache__response__free_unpacked(resp, NULL);

    /* Request{id = 8} with no body at all */
    const uint8_t nobody[] = {0x08, 0x08};
    ck_assert_int_eq(h_raw_send_frame(&r, nobody, sizeof(nobody)), 0);
    resp = h_raw_recv(&r, 5000);
    ck_assert_msg(resp != NULL, "no response to a request without a body");
    ck_assert_uint_eq(resp->id, 8);
    ck_assert_int_eq(resp->status, -EPROTO);
    ck_assert_msg(resp->error && resp->error[0], "no error text");
    hicache__response__free_unpacked(resp, NULL);

    /* a second hello is refused too */
    Hicache__Request req = HICACHE__REQUEST__INIT;
    Hicache__Hello hello = HICACHE__HELLO__INIT;
    hello.protocol_version = HC_PROTOCOL_VERSION;
    req.body_case = HICACHE__REQUEST__BODY_HELLO;
    req.hello = &hello;
    resp = h_raw_call(&r, &req);
    ck_assert_int_eq(resp->status, -EPROTO);
    hicache__response__free_unpacked(resp, NULL);

    /* the connection still works */
    Hicache__PingRequest ping = HICACHE__PING_REQUEST__INIT;
    ping.nonce = 0x1234567890ull;
    Hicache__Request preq = HICACHE__REQUEST__INIT;
    preq.body_case = HICACHE__REQUEST__BODY_PING;
    preq.ping = &ping;
    resp = h_raw_call(&r, &preq);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->nonce, 0x1234567890ull);
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);

    /* a request before hello: -EPROTO */
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    resp = h_raw_call(&r, &preq);
    ck_assert_int_eq(resp->status, -EPROTO);
    ck_assert_msg(resp->error && resp->error[0], "no error text");
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);
    bi_intact(d, 1);
}
END_TEST

/* True if text holds the number n as a whole word (not inside "12"). */
static bool bi_has_number(const char *text, unsigned n)
{
    char want[16];
    snprintf(want, sizeof(want), "%u", n);
    size_t wl = strlen(want);
    for (const char *p = text; (p = strstr(p, want)) != NULL; p++) {
        bool before = p > text && p[-1] >= '0' && p[-1] <= '9';
        bool after = p[wl] >= '0' && p[wl] <= '9';
        if (!before && !after)
            return true;
    }
    return false;
}

/* Sends a set (or get) of slots {good key at 0, key k at 4096}. */
static Hicache__Response *bi_two_slots(struct h_raw *r, int body, const uint8_t *k, size_t klen)
{
    Hicache__Slot s0 = HICACHE__SLOT__INIT, s1 = HICACHE__SLOT__INIT;
    s0.key.data = (uint8_t *)"fresh-good";
    s0.key.len = strlen("fresh-good");
    s0.offset = 0;
    s0.length = 4096;
    s1.key.data = (uint8_t *)k;
    s1.key.len = klen;
    s1.offset = 4096;
    s1.length = 4096;
    Hicache__Slot *slots[2] = {&s0, &s1};
    Hicache__SetRequest set = HICACHE__SET_REQUEST__INIT;
    Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    req.body_case = body;
    if (body == HICACHE__REQUEST__BODY_SET) {
        set.n_pages = 2;
        set.pages = slots;
        req.set = &set;
    } else {
        get.n_pages = 2;
        get.pages = slots;
        req.get = &get;
    }
    return h_raw_call(r, &req);
}

START_TEST(test_invalid_keys)
{
    struct hd *d = bi_start();
    char long_key[258];
    memset(long_key, 'a', 257);
    long_key[257] = 0;
    static const struct {
        const char *key;
        size_t len;
    } bad[] = {
        {"", 0},     {NULL, 257}, {"a/b", 3},    {"..", 2},
        {"a\0b", 3}, {"a b", 3},  {"../etc", 6}, {".", 1},
    };
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);
    memset(r.region, 0x11, 8192);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *k = bad[i].key ? bad[i].key : long_key;
        const char *reason = hc_name_invalid("key", k, bad[i].len);
        ck_assert_msg(reason != NULL, "hc_name_invalid accepts bad key %zu", i);
        int bodies[2] = {HICACHE__REQUEST__BODY_SET, HICACHE__REQUEST__BODY_GET};
        for (int j = 0; j < 2; j++) {
            Hicache__Response *resp = bi_two_slots(&r, bodies[j], (const uint8_t *)k, bad[i].len);
            ck_assert_msg(resp->status == -EINVAL, "bad key %zu (%s) in %s: status %d, want %d", i,
                          reason, j ? "get" : "set", resp->status, -EINVAL);
            ck_assert_msg(resp->error && strstr(resp->error, reason),
                          "bad key %zu: error text '%s' does not give the reason '%s'", i,
                          resp->error ? resp->error : "", reason);
            ck_assert_msg(bi_has_number(resp->error, 1),
                          "bad key %zu: error text '%s' does not name index 1", i, resp->error);
            ck_assert_uint_eq(resp->n_results, 0);
            hicache__response__free_unpacked(resp, NULL);
        }
        /* exists {good, bad} */
        ProtobufCBinaryData keys[2] = {{strlen("fresh-good"), (uint8_t *)"fresh-good"},
                                       {bad[i].len, (uint8_t *)k}};
        Hicache__ExistsRequest ex = HICACHE__EXISTS_REQUEST__INIT;
        ex.n_keys = 2;
        ex.keys = keys;
        Hicache__Request req = HICACHE__REQUEST__INIT;
        req.body_case = HICACHE__REQUEST__BODY_EXISTS;
        req.exists = &ex;
        Hicache__Response *resp = h_raw_call(&r, &req);
        ck_assert_msg(resp->status == -EINVAL, "bad key %zu in exists: status %d", i, resp->status);
        hicache__response__free_unpacked(resp, NULL);
    }
    /* the whole request was refused: the good key of those sets is absent */
    bi_absent(d, "fresh-good");

    /* control: the same set with a good second key is stored */
    Hicache__Response *resp =
        bi_two_slots(&r, HICACHE__REQUEST__BODY_SET, (const uint8_t *)"fresh-good2", 11);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->n_results, 2);
    ck_assert_int_eq(resp->results[0], 0);
    ck_assert_int_eq(resp->results[1], 0);
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);

    /* through the library */
    hc_client *c = hd_connect(d, NULL, 0);
    char buf[16] = "x";
    hc_buf b = {buf, sizeof(buf)};
    hc_page p = {"a/b", &b, 1};
    int res = 1;
    int rc = hc_batch_set(c, &p, 1, &res);
    ck_assert_msg(rc == -EINVAL || (rc == 0 && res == -EINVAL),
                  "hc_batch_set of key 'a/b': rc %d result %d", rc, res);
    hc_close(c);
    bi_intact(d, 3);
}
END_TEST

/* Sends a one-slot set or get. */
static Hicache__Response *bi_slot(struct h_raw *r, int body, const char *key, uint64_t off,
                                  uint64_t len)
{
    Hicache__Slot s = HICACHE__SLOT__INIT;
    s.key.data = (uint8_t *)key;
    s.key.len = strlen(key);
    s.offset = off;
    s.length = len;
    Hicache__Slot *slots[1] = {&s};
    Hicache__SetRequest set = HICACHE__SET_REQUEST__INIT;
    Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    req.body_case = body;
    if (body == HICACHE__REQUEST__BODY_SET) {
        set.n_pages = 1;
        set.pages = slots;
        req.set = &set;
    } else {
        get.n_pages = 1;
        get.pages = slots;
        req.get = &get;
    }
    return h_raw_call(r, &req);
}

START_TEST(test_slot_out_of_range)
{
    struct hd *d = bi_start();
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);
    uint64_t R = r.region_size;
    ck_assert_uint_ge(R, 1u << 20);
    const struct {
        uint64_t off, len;
    } cases[] = {
        {R - 4096, 8192},          /* crosses the end */
        {R, 4096},                 /* starts at the end */
        {UINT64_MAX - 4095, 8192}, /* offset + length overflows */
        {4096, UINT64_MAX - 4095}, /* the length alone overflows */
        {0, 0},                    /* empty slot */
        {0, R + 1},                /* longer than the region */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char key[32];
        snprintf(key, sizeof(key), "range-%zu", i);
        for (int j = 0; j < 2; j++) {
            int body = j ? HICACHE__REQUEST__BODY_GET : HICACHE__REQUEST__BODY_SET;
            Hicache__Response *resp =
                bi_slot(&r, body, j ? BI_KNOWN : key, cases[i].off, cases[i].len);
            ck_assert_msg(resp->status == -ERANGE,
                          "%s slot [%llu, +%llu) in a region of %llu: status %d, want -ERANGE",
                          j ? "get" : "set", (unsigned long long)cases[i].off,
                          (unsigned long long)cases[i].len, (unsigned long long)R, resp->status);
            ck_assert_msg(resp->error && resp->error[0], "no error text");
            hicache__response__free_unpacked(resp, NULL);
        }
        bi_absent(d, key);
    }
    /* control: the last whole slot of the region is fine */
    h_fill(r.region + R - 4096, 4096, "range-ok", 1);
    Hicache__Response *resp = bi_slot(&r, HICACHE__REQUEST__BODY_SET, "range-ok", R - 4096, 4096);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->n_results, 1);
    ck_assert_int_eq(resp->results[0], 0);
    hicache__response__free_unpacked(resp, NULL);
    memset(r.region, 0, 4096);
    resp = bi_slot(&r, HICACHE__REQUEST__BODY_GET, "range-ok", 0, 4096);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_int_eq(resp->results[0], 0);
    ck_assert_uint_eq(resp->lengths[0], 4096);
    ck_assert_msg(h_check(r.region, 4096, "range-ok", 1) < 0, "raw get bytes differ");
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);
    bi_intact(d, 2);
}
END_TEST

START_TEST(test_too_many_keys)
{
    struct hd *d = bi_start();
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);
    ck_assert_uint_ge(r.region_size, 129u * 4096);
    enum { N = 129 };
    static Hicache__Slot slots[N];
    static Hicache__Slot *ptrs[N];
    static char names[N][16];
    static ProtobufCBinaryData keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "many-%d", i);
        hicache__slot__init(&slots[i]);
        slots[i].key.data = (uint8_t *)names[i];
        slots[i].key.len = strlen(names[i]);
        slots[i].offset = (uint64_t)i * 4096;
        slots[i].length = 4096;
        ptrs[i] = &slots[i];
        keys[i] = slots[i].key;
        h_fill(r.region + (size_t)i * 4096, 4096, names[i], 2);
    }
    for (int body = HICACHE__REQUEST__BODY_SET; body <= HICACHE__REQUEST__BODY_EXISTS; body++) {
        Hicache__SetRequest set = HICACHE__SET_REQUEST__INIT;
        Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
        Hicache__ExistsRequest ex = HICACHE__EXISTS_REQUEST__INIT;
        Hicache__Request req = HICACHE__REQUEST__INIT;
        req.body_case = body;
        set.n_pages = get.n_pages = N;
        set.pages = get.pages = ptrs;
        ex.n_keys = N;
        ex.keys = keys;
        req.set = &set;
        if (body == HICACHE__REQUEST__BODY_GET)
            req.get = &get;
        if (body == HICACHE__REQUEST__BODY_EXISTS)
            req.exists = &ex;
        Hicache__Response *resp = h_raw_call(&r, &req);
        ck_assert_msg(resp->status == -E2BIG, "129 keys in body %d: status %d, want -E2BIG", body,
                      resp->status);
        ck_assert_msg(resp->error && resp->error[0], "no error text");
        hicache__response__free_unpacked(resp, NULL);
    }
    bi_absent(d, "many-0");
    bi_absent(d, "many-128");
    bi_intact(d, 1);

    /* control: 128 keys are accepted and stored */
    Hicache__SetRequest set = HICACHE__SET_REQUEST__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    set.n_pages = 128;
    set.pages = ptrs;
    req.body_case = HICACHE__REQUEST__BODY_SET;
    req.set = &set;
    Hicache__Response *resp = h_raw_call(&r, &req);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->n_results, 128);
    for (int i = 0; i < 128; i++)
        ck_assert_int_eq(resp->results[i], 0);
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);
    bi_intact(d, 129);
}
END_TEST

/* Sends an exists request with packed_keys = blob[0..len) (and keys when
 * with_keys) and returns the response. */
static Hicache__Response *bi_packed_exists(struct h_raw *r, const char *blob, size_t len,
                                           bool with_keys)
{
    Hicache__ExistsRequest ex = HICACHE__EXISTS_REQUEST__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    ProtobufCBinaryData key = {strlen(BI_KNOWN), (uint8_t *)BI_KNOWN};

    ex.packed_keys.data = (uint8_t *)blob;
    ex.packed_keys.len = len;
    if (with_keys) {
        ex.n_keys = 1;
        ex.keys = &key;
    }
    req.body_case = HICACHE__REQUEST__BODY_EXISTS;
    req.exists = &ex;
    return h_raw_call(r, &req);
}

/* Packs 129 keys, one over HC_MAX_BATCH ("m0", "m1", ...; a NUL after
 * each) into many (129 * 8 bytes). Returns the bytes used. */
static size_t bi_too_many_keys(char *many)
{
    size_t mlen = 0;
    for (int i = 0; i < 129; i++)
        mlen += (size_t)snprintf(many + mlen, 129 * 8 - mlen, "m%d", i) + 1;
    return mlen;
}

/* Asserts resp (case i) refused its request: status, why in its error text,
 * no result. Frees resp. */
static void bi_refused(Hicache__Response *resp, size_t i, int status, const char *why)
{
    ck_assert_msg(resp != NULL, "case %zu: no response", i);
    ck_assert_msg(resp->status == status, "case %zu: status %d, want %d", i, resp->status, status);
    ck_assert_msg(resp->error && strstr(resp->error, why), "case %zu: error '%s'", i,
                  resp->error ? resp->error : "(none)");
    ck_assert_uint_eq(resp->n_results, 0);
    hicache__response__free_unpacked(resp, NULL);
}

/* Packed exists keys (each followed by a NUL): every malformed form is
 * refused with a reason and the connection stays usable; a good one answers
 * per key. */
START_TEST(test_packed_exists_keys)
{
    struct hd *d = bi_start();
    struct h_raw r;
    static char many[129 * 8];
    size_t mlen = bi_too_many_keys(many);
    const struct {
        const char *blob;
        size_t len;
        bool with_keys;
        int status;
        const char *why; /* in the error text */
    } bad[] = {
        {"a\0b", 3, false, -EINVAL, "NUL"},
        {"a\0", 2, true, -EINVAL, "not both"},
        {"a\0bad/key\0", 10, false, -EINVAL, "key 1: key contains '/'"},
        {"a\0\0", 3, false, -EINVAL, "key 1: key is empty"},
        {"x..y\0", 5, false, -EINVAL, "key 0: key contains '..'"},
        {NULL, 0, false, -E2BIG, "limit"},
    };

    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, 0), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        bi_refused(bad[i].blob ? bi_packed_exists(&r, bad[i].blob, bad[i].len, bad[i].with_keys)
                               : bi_packed_exists(&r, many, mlen, false),
                   i, bad[i].status, bad[i].why);
    /* a good one on the same connection: the known page, then one absent */
    char good[64];
    int glen = snprintf(good, sizeof(good), "%s%cabsent-key%c", BI_KNOWN, 0, 0);
    Hicache__Response *resp = bi_packed_exists(&r, good, (size_t)glen, false);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->n_results, 2);
    ck_assert_uint_eq(resp->n_lengths, 2);
    ck_assert_int_eq(resp->results[0], 0);
    ck_assert_uint_eq(resp->lengths[0], BI_KNOWN_LEN);
    ck_assert_int_eq(resp->results[1], -ENOENT);
    ck_assert_uint_eq(resp->lengths[1], 0);
    ck_assert_uint_eq(resp->leading, 1);
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);
    bi_intact(d, 1);
}
END_TEST

START_TEST(test_get_slot_smaller_than_page)
{
    struct hd *d = bi_start();
    struct h_raw r;
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, BI_KNOWN_LEN), 0);
    ck_assert_uint_ge(r.region_size, 2u * BI_KNOWN_LEN);
    memset(r.region, 0xab, BI_KNOWN_LEN);
    memset(r.region + BI_KNOWN_LEN, 0, BI_KNOWN_LEN);

    /* {known into a 4 KiB slot at 0, known into a whole slot at 64 KiB} */
    Hicache__Slot s0 = HICACHE__SLOT__INIT, s1 = HICACHE__SLOT__INIT;
    s0.key.data = s1.key.data = (uint8_t *)BI_KNOWN;
    s0.key.len = s1.key.len = strlen(BI_KNOWN);
    s0.offset = 0;
    s0.length = 4096;
    s1.offset = BI_KNOWN_LEN;
    s1.length = BI_KNOWN_LEN;
    Hicache__Slot *slots[2] = {&s0, &s1};
    Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
    get.n_pages = 2;
    get.pages = slots;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    req.body_case = HICACHE__REQUEST__BODY_GET;
    req.get = &get;
    Hicache__Response *resp = h_raw_call(&r, &req);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->n_results, 2);
    ck_assert_uint_eq(resp->n_lengths, 2);
    ck_assert_int_eq(resp->results[0], -ENOSPC);
    ck_assert_uint_eq(resp->lengths[0], BI_KNOWN_LEN);
    ck_assert_int_eq(resp->results[1], 0);
    ck_assert_uint_eq(resp->lengths[1], BI_KNOWN_LEN);
    hicache__response__free_unpacked(resp, NULL);

    for (size_t i = 4096; i < BI_KNOWN_LEN; i++)
        ck_assert_msg(r.region[i] == 0xab, "byte %zu beyond the 4 KiB slot was written", i);
    for (size_t i = 0; i < 4096; i++)
        ck_assert_msg(r.region[i] == 0xab, "byte %zu of the too-small slot was written", i);
    ck_assert_msg(h_check(r.region + BI_KNOWN_LEN, BI_KNOWN_LEN, BI_KNOWN, BI_SALT) < 0,
                  "whole slot got wrong bytes");
    h_raw_close(&r);
    bi_intact(d, 1);
}
END_TEST

/* A get whose ahead_keys (the read-ahead hint) is malformed is refused as a
 * whole with a reason, before its page is read (its slot keeps its bytes);
 * the connection stays usable, and the same get with a good hint (a key not
 * stored among them) is served. */
START_TEST(test_get_bad_ahead_keys)
{
    struct hd *d = bi_start();
    struct h_raw r;
    static char many[129 * 8];
    size_t mlen = bi_too_many_keys(many);
    const struct {
        const char *blob;
        size_t len;
        int status;
        const char *why;
    } bad[] = {
        {"a\0b", 3, -EINVAL, "ahead_keys: packed_keys does not end with a NUL"},
        {"a\0bad/key\0", 10, -EINVAL, "ahead_keys: key 1: key contains '/'"},
        {"\0", 1, -EINVAL, "ahead_keys: key 0: key is empty"},
        {NULL, 0, -E2BIG, "limit"},
    };
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, NULL, BI_KNOWN_LEN), 0);
    ck_assert_uint_ge(r.region_size, BI_KNOWN_LEN);

    Hicache__Slot s0 = HICACHE__SLOT__INIT;
    s0.key.data = (uint8_t *)BI_KNOWN;
    s0.key.len = strlen(BI_KNOWN);
    s0.length = BI_KNOWN_LEN;
    Hicache__Slot *slots[1] = {&s0};
    Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
    get.n_pages = 1;
    get.pages = slots;
    Hicache__Request req = HICACHE__REQUEST__INIT;
    req.body_case = HICACHE__REQUEST__BODY_GET;
    req.get = &get;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(r.region, 0xab, BI_KNOWN_LEN);
        get.ahead_keys.data = (uint8_t *)(bad[i].blob ? bad[i].blob : many);
        get.ahead_keys.len = bad[i].blob ? bad[i].len : mlen;
        bi_refused(h_raw_call(&r, &req), i, bad[i].status, bad[i].why);
        for (size_t b = 0; b < BI_KNOWN_LEN; b++)
            ck_assert_msg(r.region[b] == 0xab, "case %zu: byte %zu of the slot was written", i, b);
    }
    char good[64];
    int glen = snprintf(good, sizeof(good), "absent-key%c%s%c", 0, BI_KNOWN, 0);
    get.ahead_keys.data = (uint8_t *)good;
    get.ahead_keys.len = (size_t)glen;
    Hicache__Response *resp = h_raw_call(&r, &req);
    ck_assert_int_eq(resp->status, 0);
    ck_assert_uint_eq(resp->n_results, 1);
    ck_assert_int_eq(resp->results[0], 0);
    hicache__response__free_unpacked(resp, NULL);
    ck_assert_msg(h_check(r.region, BI_KNOWN_LEN, BI_KNOWN, BI_SALT) < 0, "wrong bytes");
    h_raw_close(&r);
    bi_intact(d, 1);
}
END_TEST

/* Runs hicached with a config file holding json; asserts it refuses to
 * start, names key on stderr and creates no socket. */
static void bi_bad_config(const char *extra_json, const char *key)
{
    struct hd *d = hd_new("A", NULL);
    char cfg[H_PATH + 32], errp[H_PATH + 32], json[2048];
    snprintf(cfg, sizeof(cfg), "%s/config.json", d->dir);
    snprintf(errp, sizeof(errp), "%s/stderr.txt", d->dir);
    snprintf(json, sizeof(json),
             "{\"mount_point\": \"%s\", \"socket_path\": \"%s\", \"node_id\": \"A\", %s}\n",
             d->mount, d->sock, extra_json);
    ck_assert_int_eq(h_write_file(cfg, json, strlen(json)), 0);
    char *argv[] = {(char *)h_hicached_bin(), "--config", cfg, "--foreground", NULL};
    int st = h_exec(argv, NULL, errp, 10000);
    char *err = h_read_file(errp, NULL);
    ck_assert_msg(st != -1, "hicached kept running with a bad config (%s)", extra_json);
    ck_assert_msg(st > 0 && st < 128, "hicached exit status %d with config %s, want 1..127", st,
                  extra_json);
    ck_assert_msg(err && strstr(err, key), "stderr does not name '%s': %s", key,
                  err ? err : "(none)");
    struct stat sb;
    ck_assert_msg(lstat(d->sock, &sb) < 0, "hicached created its socket with a bad config");
    free(err);
}

START_TEST(test_config_unknown_key)
{
    bi_bad_config("\"mount_pont\": \"/tmp\"", "mount_pont");
}
END_TEST

START_TEST(test_config_wrong_type)
{
    bi_bad_config("\"io_threads\": \"four\"", "io_threads");
}
END_TEST

START_TEST(test_config_control)
{
    /* the same file without the bad key starts (so the two above fail for
     * the key, not for the rest of the file) */
    struct hd *d = hd_new("A", NULL);
    char cfg[H_PATH + 32], json[1024];
    snprintf(cfg, sizeof(cfg), "%s/config.json", d->dir);
    snprintf(json, sizeof(json),
             "{\"mount_point\": \"%s\", \"socket_path\": \"%s\", \"node_id\": \"A\", "
             "\"io_threads\": 4}\n",
             d->mount, d->sock);
    ck_assert_int_eq(h_write_file(cfg, json, strlen(json)), 0);
    d->extra[d->nextra++] = strdup("--config");
    d->extra[d->nextra++] = strdup(cfg);
    hd_start(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_badinput");
    TCase *tc = h_tcase("badinput", 60);
    tcase_add_test(tc, test_garbage_bytes);
    tcase_add_test(tc, test_frame_too_large);
    tcase_add_test(tc, test_unknown_message_type);
    tcase_add_test(tc, test_invalid_keys);
    tcase_add_test(tc, test_slot_out_of_range);
    tcase_add_test(tc, test_too_many_keys);
    tcase_add_test(tc, test_get_slot_smaller_than_page);
    tcase_add_test(tc, test_packed_exists_keys);
    tcase_add_test(tc, test_get_bad_ahead_keys);
    tcase_add_test(tc, test_config_unknown_key);
    tcase_add_test(tc, test_config_wrong_type);
    tcase_add_test(tc, test_config_control);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
