/* libhicache without the real daemon: the error table, argument checks,
 * connecting where nobody listens, and, against a small fake daemon in a
 * thread, batch splitting (129+ keys), streaming through a small region,
 * out-of-order answers, get length rules, lost connections and timeouts.
 *
 * The Makefile links unit suites against the engine archive only, so the
 * library source is compiled into this test directly. */
#include "hicache.c"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>

/* ---- a fake daemon: one connection, blocking I/O, pages kept in memory --- */

enum fake_mode {
    FAKE_NORMAL,
    FAKE_REVERSE, /* when two requests are queued, answer the second first */
    FAKE_SILENT,  /* never answer after hello */
    FAKE_CLOSE,   /* close right after hello */
    FAKE_REFUSE,  /* answer hello with -EBUSY, no region */
};

#define FAKE_MAX_PAGES 1024

struct fake_page {
    char key[HC_MAX_KEY + 1];
    uint8_t *data;
    size_t len;
};

struct fake {
    char dir[64];
    char path[108];
    int lfd;
    int cfd;
    enum fake_mode mode;
    uint64_t region_size;
    uint8_t *region;
    pthread_t th;
    /* what the fake saw */
    unsigned requests;
    unsigned max_keys;
    unsigned reversed;  /* pairs answered out of order */
    unsigned bad_slots; /* unaligned, outside the region, or overlapping */
    unsigned set_reqs, get_reqs, exists_reqs;
    struct fake_page pages[FAKE_MAX_PAGES];
    unsigned npages;
};

static int read_full(int fd, void *p, size_t n)
{
    uint8_t *b = p;

    while (n > 0) {
        ssize_t k = read(fd, b, n);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static Hicache__Request *fake_read(struct fake *f)
{
    uint8_t hdr[4], *body;
    uint32_t len;
    Hicache__Request *req;

    if (read_full(f->cfd, hdr, 4) < 0)
        return NULL;
    len = hc_frame_get_len(hdr);
    body = malloc(len ? len : 1);
    if (body == NULL || read_full(f->cfd, body, len) < 0) {
        free(body);
        return NULL;
    }
    req = hicache__request__unpack(NULL, len, body);
    free(body);
    return req;
}

/* Sends resp, with fd (if >= 0) attached to the first byte. */
static void fake_send(struct fake *f, const Hicache__Response *resp, int fd)
{
    size_t len = hicache__response__get_packed_size(resp);
    uint8_t *frame = malloc(4 + len);
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = {.iov_base = frame, .iov_len = 4 + len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t off = 0;

    hc_frame_put_len(frame, (uint32_t)len);
    hicache__response__pack(resp, frame + 4);
    if (fd >= 0) {
        struct cmsghdr *h;

        memset(&cm, 0, sizeof(cm));
        m.msg_control = cm.buf;
        m.msg_controllen = sizeof(cm.buf);
        h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fd, sizeof(int));
    }
    while (off < 4 + len) {
        ssize_t k;

        iov.iov_base = frame + off;
        iov.iov_len = 4 + len - off;
        k = sendmsg(f->cfd, &m, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        off += (size_t)k;
        m.msg_control = NULL;
        m.msg_controllen = 0;
    }
    free(frame);
}

static struct fake_page *fake_find(struct fake *f, const ProtobufCBinaryData *key)
{
    unsigned i;

    for (i = 0; i < f->npages; i++)
        if (strlen(f->pages[i].key) == key->len &&
            memcmp(f->pages[i].key, key->data, key->len) == 0)
            return &f->pages[i];
    return NULL;
}

/* Checks the slots of one request like the daemon would, plus what the
 * library promises: aligned, inside the region, not overlapping. */
static void fake_check_slots(struct fake *f, Hicache__Slot **s, size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i++) {
        if (s[i]->offset % 4096 != 0 || s[i]->length == 0 ||
            s[i]->offset + s[i]->length > f->region_size)
            f->bad_slots++;
        for (j = 0; j < i; j++)
            if (s[i]->offset < s[j]->offset + s[j]->length &&
                s[j]->offset < s[i]->offset + s[i]->length)
                f->bad_slots++;
    }
}

static void fake_answer(struct fake *f, Hicache__Request *req)
{
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    int32_t results[HC_MAX_BATCH * 2];
    uint64_t lengths[HC_MAX_BATCH * 2];
    size_t n = 0, i;
    char json[128];

    resp.id = req->id;
    f->requests++;
    switch (req->body_case) {
    case HICACHE__REQUEST__BODY_SET:
    case HICACHE__REQUEST__BODY_GET: {
        bool set = req->body_case == HICACHE__REQUEST__BODY_SET;
        Hicache__Slot **s = set ? req->set->pages : req->get->pages;

        n = set ? req->set->n_pages : req->get->n_pages;
        if (set)
            f->set_reqs++;
        else
            f->get_reqs++;
        if (n > f->max_keys)
            f->max_keys = n;
        if (n > HC_MAX_BATCH) {
            resp.status = -E2BIG;
            resp.error = "too many keys";
            break;
        }
        fake_check_slots(f, s, n);
        for (i = 0; i < n; i++) {
            struct fake_page *p = fake_find(f, &s[i]->key);

            lengths[i] = 0;
            results[i] = 0;
            if (set) {
                if (p == NULL && f->npages < FAKE_MAX_PAGES) {
                    p = &f->pages[f->npages++];
                    memcpy(p->key, s[i]->key.data, s[i]->key.len);
                    p->key[s[i]->key.len] = '\0';
                    p->data = malloc(s[i]->length);
                    p->len = s[i]->length;
                    memcpy(p->data, f->region + s[i]->offset, p->len);
                }
            } else if (p == NULL) {
                results[i] = -ENOENT;
            } else {
                lengths[i] = p->len;
                if (p->len > s[i]->length)
                    results[i] = -ENOSPC;
                else
                    memcpy(f->region + s[i]->offset, p->data, p->len);
            }
        }
        resp.n_results = n;
        resp.results = results;
        resp.n_lengths = set ? 0 : n;
        resp.lengths = lengths;
        break;
    }
    case HICACHE__REQUEST__BODY_EXISTS: {
        const ProtobufCBinaryData *pk = &req->exists->packed_keys;
        ProtobufCBinaryData keys[HC_MAX_BATCH + 1];
        bool lead = true;

        /* the keys as sent: one field each, or packed (each followed by a NUL) */
        n = req->exists->n_keys;
        for (size_t off = 0; off < pk->len && n <= HC_MAX_BATCH; n++) {
            const uint8_t *nul = memchr(pk->data + off, 0, pk->len - off);
            size_t end = nul ? (size_t)(nul - pk->data) : pk->len;

            keys[n] = (ProtobufCBinaryData){end - off, pk->data + off};
            off = end + 1;
        }
        for (i = 0; i < req->exists->n_keys && i <= HC_MAX_BATCH; i++)
            keys[i] = req->exists->keys[i];
        f->exists_reqs++;
        if (n > f->max_keys)
            f->max_keys = n;
        if (n > HC_MAX_BATCH) {
            resp.status = -E2BIG;
            resp.error = "too many keys";
            break;
        }
        for (i = 0; i < n; i++) {
            struct fake_page *p = fake_find(f, &keys[i]);

            results[i] = p != NULL ? 0 : -ENOENT;
            lengths[i] = p != NULL ? p->len : 0;
            lead = lead && p != NULL;
            resp.leading += lead;
        }
        resp.n_results = resp.n_lengths = n;
        resp.results = results;
        resp.lengths = lengths;
        break;
    }
    case HICACHE__REQUEST__BODY_STATS:
        snprintf(json, sizeof(json), "{\"pages\": %u}", f->npages);
        resp.stats_json = json;
        break;
    case HICACHE__REQUEST__BODY_CLEAR:
        lengths[0] = f->npages;
        resp.n_lengths = 1;
        resp.lengths = lengths;
        for (i = 0; i < f->npages; i++)
            free(f->pages[i].data);
        f->npages = 0;
        break;
    case HICACHE__REQUEST__BODY_PING:
        resp.nonce = req->ping->nonce;
        break;
    default:
        resp.status = -EPROTO;
        resp.error = "unexpected";
        break;
    }
    fake_send(f, &resp, -1);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    Hicache__Response resp = HICACHE__RESPONSE__INIT;
    Hicache__HelloReply hr = HICACHE__HELLO_REPLY__INIT;
    Hicache__Request *req;
    int memfd;

    f->cfd = accept(f->lfd, NULL, NULL);
    if (f->cfd < 0)
        return NULL;
    req = fake_read(f);
    if (req == NULL)
        goto out;
    resp.id = req->id;
    if (req->body_case != HICACHE__REQUEST__BODY_HELLO) {
        hicache__request__free_unpacked(req, NULL);
        goto out;
    }
    hicache__request__free_unpacked(req, NULL);
    if (f->mode == FAKE_REFUSE) {
        resp.status = -EBUSY;
        resp.error = "too many clients";
        fake_send(f, &resp, -1);
        goto out;
    }
    memfd = memfd_create("fake-region", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, (off_t)f->region_size) < 0)
        goto out;
    f->region = mmap(NULL, f->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    hr.protocol_version = HC_PROTOCOL_VERSION;
    hr.region_size = f->region_size;
    hr.slot_align = 4096;
    hr.max_batch = HC_MAX_BATCH;
    hr.max_frame = 1 << 20;
    hr.node_id = "fake-node";
    resp.hello = &hr;
    fake_send(f, &resp, memfd);
    close(memfd);
    if (f->mode == FAKE_CLOSE)
        goto out;
    while ((req = fake_read(f)) != NULL) {
        struct pollfd p = {.fd = f->cfd, .events = POLLIN};

        if (f->mode == FAKE_SILENT) {
            hicache__request__free_unpacked(req, NULL);
            continue;
        }
        if (f->mode == FAKE_REVERSE && poll(&p, 1, 200) == 1) {
            Hicache__Request *second = fake_read(f);

            if (second != NULL) {
                fake_answer(f, second);
                hicache__request__free_unpacked(second, NULL);
                f->reversed++;
            }
        }
        fake_answer(f, req);
        hicache__request__free_unpacked(req, NULL);
    }
out:
    close(f->cfd);
    f->cfd = -1;
    return NULL;
}

static struct fake *fake_start(enum fake_mode mode, uint64_t region_size)
{
    struct fake *f = calloc(1, sizeof(*f));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    ck_assert_ptr_nonnull(f);
    f->mode = mode;
    f->region_size = region_size;
    f->cfd = -1;
    strcpy(f->dir, "/tmp/hc-client-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/s.sock", f->dir);
    strcpy(sa.sun_path, f->path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->lfd, 0);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(f->lfd, 4), 0);
    ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

/* Call after the client closed (the fake thread ends at EOF). */
static void fake_stop(struct fake *f)
{
    unsigned i;

    pthread_join(f->th, NULL);
    close(f->lfd);
    unlink(f->path);
    rmdir(f->dir);
    if (f->region != NULL)
        munmap(f->region, f->region_size);
    for (i = 0; i < f->npages; i++)
        free(f->pages[i].data);
    free(f);
}

static hc_client *fake_connect(struct fake *f, int timeout_ms)
{
    hc_connect_opts o = {.ns = "test", .timeout_ms = timeout_ms};
    hc_client *c = NULL;

    ck_assert_int_eq(hc_connect(&c, f->path, &o), 0);
    ck_assert_uint_eq(hc_region_size(c), f->region_size);
    ck_assert_str_eq(hc_node_id(c), "fake-node");
    return c;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

/* ---- tests without a daemon ------------------------------------------------ */

START_TEST(test_errno_table)
{
#define CHECK_ENTRY(name, msg)                                                                     \
    ck_assert_str_eq(hc_err_name(-name), #name);                                                   \
    ck_assert_str_eq(hc_strerror(-name), msg);
    HC_ERRNO_MAP(CHECK_ENTRY)
#undef CHECK_ENTRY
    ck_assert_str_eq(hc_err_name(-EXDEV), "UNKNOWN");
    ck_assert_str_eq(hc_strerror(-EXDEV), strerror(EXDEV));
    ck_assert_ptr_nonnull(hc_strerror(0));
    ck_assert_ptr_nonnull(hc_strerror(-99999));
    ck_assert_str_eq(hc_err_name(0), "UNKNOWN");
}
END_TEST

START_TEST(test_null_args)
{
    char buf[16];
    hc_buf b = {buf, sizeof(buf)};
    hc_page page = {"k", &b, 1};
    const char *key = "k";
    int results[1] = {12345};
    char *json = NULL;

    ck_assert_int_eq(hc_connect(NULL, "/nonexistent/x.sock", NULL), -EINVAL);
    ck_assert_int_eq(hc_batch_set(NULL, &page, 1, results), -EINVAL);
    ck_assert_int_eq(results[0], -EINVAL);
    results[0] = 12345;
    ck_assert_int_eq(hc_batch_get(NULL, &page, 1, results), -EINVAL);
    ck_assert_int_eq(results[0], -EINVAL);
    ck_assert_int_eq(hc_batch_set(NULL, &page, 1, NULL), -EINVAL);
    ck_assert_int_eq(hc_batch_exists(NULL, &key, 1, NULL), -EINVAL);
    ck_assert_int_eq(hc_stats(NULL, &json), -EINVAL);
    ck_assert_ptr_null(json);
    ck_assert_int_eq(hc_clear(NULL), -EINVAL);
    ck_assert_int_eq(hc_ping(NULL), -EINVAL);
    ck_assert_uint_eq(hc_region_size(NULL), 0);
    ck_assert_str_eq(hc_node_id(NULL), "");
    hc_close(NULL);
    hc_free(NULL);
}
END_TEST

START_TEST(test_connect_no_listener)
{
    char dir[] = "/tmp/hc-client-test.XXXXXX";
    char path[108], longpath[200];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    hc_client *c = NULL;
    hc_connect_opts bad_ns = {.ns = "a/b"};
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/none.sock", dir);
    ck_assert_int_eq(hc_connect(&c, path, NULL), -ENOENT);
    ck_assert_ptr_null(c);

    /* A socket file nobody listens on. */
    snprintf(path, sizeof(path), "%s/dead.sock", dir);
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(hc_connect(&c, path, NULL), -ECONNREFUSED);
    ck_assert_ptr_null(c);

    /* NULL path: $HICACHED_SOCKET is used. */
    ck_assert_int_eq(setenv("HICACHED_SOCKET", path, 1), 0);
    ck_assert_int_eq(hc_connect(&c, NULL, NULL), -ECONNREFUSED);
    unsetenv("HICACHED_SOCKET");

    /* Refused before any connect. */
    ck_assert_int_eq(hc_connect(&c, path, &bad_ns), -EINVAL);
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    ck_assert_int_eq(hc_connect(&c, longpath, NULL), -ENAMETOOLONG);
    ck_assert_ptr_null(c);

    close(fd);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* ---- tests against the fake daemon --------------------------------------- */

#define NPAGES 300
#define PAGE_LEN 1000

/* 300 pages through a 64 KiB region: sets and gets are split into requests
 * of at most 128 keys that fit, every byte comes back, exists splits too. */
START_TEST(test_split_large_batches)
{
    struct fake *f = fake_start(FAKE_NORMAL, 64 << 10);
    hc_client *c = fake_connect(f, 5000);
    static uint8_t data[NPAGES][PAGE_LEN], back[NPAGES][PAGE_LEN];
    static char keys[NPAGES + 1][32];
    hc_page pages[NPAGES];
    hc_buf bufs[NPAGES][2];
    const char *kp[NPAGES + 1];
    uint64_t lengths[NPAGES + 1];
    int results[NPAGES];
    int i;

    for (i = 0; i <= NPAGES; i++) {
        snprintf(keys[i], sizeof(keys[i]), "page-%04d", i);
        kp[i] = keys[i];
    }
    for (i = 0; i < NPAGES; i++) {
        fill(data[i], PAGE_LEN, (unsigned)i);
        bufs[i][0] = (hc_buf){data[i], 400};
        bufs[i][1] = (hc_buf){data[i] + 400, PAGE_LEN - 400};
        pages[i] = (hc_page){keys[i], bufs[i], 2};
    }
    ck_assert_int_eq(hc_batch_set(c, pages, NPAGES, results), NPAGES);
    for (i = 0; i < NPAGES; i++)
        ck_assert_int_eq(results[i], 0);
    ck_assert_uint_eq(f->npages, NPAGES);
    for (i = 0; i < NPAGES; i++)
        ck_assert_mem_eq(f->pages[i].data, data[i], PAGE_LEN);
    /* 16 slots of 4 KiB; half the region per chunk. */
    ck_assert_uint_ge(f->set_reqs, NPAGES / 8);

    /* exists: 301 keys (the last missing) -> 3 requests of <= 128. */
    kp[150] = keys[NPAGES];
    kp[NPAGES] = keys[150];
    ck_assert_int_eq(hc_batch_exists(c, kp, NPAGES + 1, lengths), 150);
    for (i = 0; i <= NPAGES; i++)
        ck_assert_uint_eq(lengths[i], i == 150 ? 0 : PAGE_LEN);
    ck_assert_uint_eq(f->exists_reqs, 3);
    ck_assert_uint_le(f->max_keys, HC_MAX_BATCH);

    for (i = 0; i < NPAGES; i++) {
        bufs[i][0] = (hc_buf){back[i], 400};
        bufs[i][1] = (hc_buf){back[i] + 400, PAGE_LEN - 400};
        results[i] = 12345;
    }
    ck_assert_int_eq(hc_batch_get(c, pages, NPAGES, results), NPAGES);
    for (i = 0; i < NPAGES; i++) {
        ck_assert_int_eq(results[i], 0);
        ck_assert_mem_eq(back[i], data[i], PAGE_LEN);
    }
    ck_assert_uint_eq(f->bad_slots, 0);
    ck_assert_uint_le(f->max_keys, HC_MAX_BATCH);
    hc_close(c);
    fake_stop(f);
}
END_TEST

/* Many small pages, a roomy region: 128 keys per request, not more. */
START_TEST(test_split_at_max_batch)
{
    struct fake *f = fake_start(FAKE_NORMAL, 4 << 20);
    hc_client *c = fake_connect(f, 5000);
    static char keys[NPAGES][32];
    static uint8_t data[NPAGES][8];
    hc_buf bufs[NPAGES];
    hc_page pages[NPAGES];
    int results[NPAGES], i;

    for (i = 0; i < NPAGES; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        memset(data[i], i, sizeof(data[i]));
        bufs[i] = (hc_buf){data[i], sizeof(data[i])};
        pages[i] = (hc_page){keys[i], &bufs[i], 1};
    }
    ck_assert_int_eq(hc_batch_set(c, pages, NPAGES, results), NPAGES);
    ck_assert_uint_eq(f->max_keys, HC_MAX_BATCH);
    ck_assert_uint_eq(f->set_reqs, 3);
    hc_close(c);
    fake_stop(f);
}
END_TEST

/* The fake answers the second of two queued requests first: results still
 * land on the right pages. */
START_TEST(test_out_of_order)
{
    struct fake *f = fake_start(FAKE_REVERSE, 64 << 10);
    hc_client *c = fake_connect(f, 5000);
    static uint8_t data[64][PAGE_LEN], back[64][PAGE_LEN];
    static char keys[64][16];
    hc_buf bufs[64];
    hc_page pages[64];
    int results[64], i;

    for (i = 0; i < 64; i++) {
        snprintf(keys[i], sizeof(keys[i]), "o%d", i);
        fill(data[i], PAGE_LEN, (unsigned)i + 1000);
        bufs[i] = (hc_buf){data[i], PAGE_LEN};
        pages[i] = (hc_page){keys[i], &bufs[i], 1};
    }
    ck_assert_int_eq(hc_batch_set(c, pages, 64, results), 64);
    /* Pages 8..11 (in the second request of the first pair) are misses. */
    for (i = 8; i < 12; i++)
        keys[i][0] = 'x';
    memset(back, 0, sizeof(back));
    for (i = 0; i < 64; i++)
        bufs[i].base = back[i];
    ck_assert_int_eq(hc_batch_get(c, pages, 64, results), 60);
    for (i = 0; i < 64; i++) {
        ck_assert_int_eq(results[i], i >= 8 && i < 12 ? -ENOENT : 0);
        if (results[i] == 0)
            ck_assert_mem_eq(back[i], data[i], PAGE_LEN);
    }
    ck_assert_uint_gt(f->reversed, 0);
    ck_assert_uint_eq(f->bad_slots, 0);
    hc_close(c);
    fake_stop(f);
}
END_TEST

/* Get copies out only an exact fit; invalid keys and oversize pages are
 * refused per page, the rest of the batch goes on. */
START_TEST(test_get_lengths_and_page_errors)
{
    struct fake *f = fake_start(FAKE_NORMAL, 64 << 10);
    hc_client *c = fake_connect(f, 5000);
    static uint8_t big[(64 << 10) + 1];
    uint8_t data[1000], small[800], large[1200];
    hc_buf b = {data, sizeof(data)};
    hc_buf bs = {small, sizeof(small)}, bl = {large, sizeof(large)};
    hc_buf bbig = {big, sizeof(big)}, bempty = {data, 0};
    hc_page set[5] = {
        {"good", &b, 1},       {"bad/key", &b, 1}, {"huge", &bbig, 1},
        {"empty", &bempty, 1}, {NULL, &b, 1},
    };
    hc_page get[3] = {{"good", &bs, 1}, {"good", &bl, 1}, {"missing", &bl, 1}};
    int results[5];
    char *json = NULL;

    fill(data, sizeof(data), 7);
    ck_assert_int_eq(hc_batch_set(c, set, 5, results), 1);
    ck_assert_int_eq(results[0], 0);
    ck_assert_int_eq(results[1], -EINVAL);
    ck_assert_int_eq(results[2], -EMSGSIZE);
    ck_assert_int_eq(results[3], -EINVAL);
    ck_assert_int_eq(results[4], -EINVAL);
    ck_assert_uint_eq(f->npages, 1);

    memset(small, 0xAA, sizeof(small));
    memset(large, 0xBB, sizeof(large));
    ck_assert_int_eq(hc_batch_get(c, get, 3, results), 0);
    ck_assert_int_eq(results[0], -ENOSPC);
    ck_assert_int_eq(results[1], -EMSGSIZE);
    ck_assert_int_eq(results[2], -ENOENT);
    for (size_t i = 0; i < sizeof(small); i++)
        ck_assert_uint_eq(small[i], 0xAA);
    for (size_t i = 0; i < sizeof(large); i++)
        ck_assert_uint_eq(large[i], 0xBB);

    /* exists refuses the whole call on an invalid key. */
    {
        const char *k[2] = {"good", "no spaces"};
        ck_assert_int_eq(hc_batch_exists(c, k, 2, NULL), -EINVAL);
        ck_assert_int_eq(hc_batch_exists(c, k, 1, NULL), 1);
    }
    ck_assert_int_eq(hc_ping(c), 0);
    ck_assert_int_eq(hc_stats(c, &json), 0);
    ck_assert_str_eq(json, "{\"pages\": 1}");
    hc_free(json);
    ck_assert_int_eq(hc_clear(c), 1);
    ck_assert_uint_eq(f->npages, 0);
    hc_close(c);
    fake_stop(f);
}
END_TEST

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The daemon goes away: the next call fails, later calls fail at once, no
 * SIGPIPE. */
START_TEST(test_connection_lost)
{
    struct fake *f = fake_start(FAKE_CLOSE, 64 << 10);
    hc_client *c = fake_connect(f, 5000);
    uint8_t data[100] = {1};
    hc_buf b = {data, sizeof(data)};
    hc_page p = {"k", &b, 1};
    int results[1] = {0};
    struct timespec t0;
    int r;

    pthread_join(f->th, NULL); /* the fake has closed its end */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = hc_ping(c);
    ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "ping gave %s", hc_err_name(r));
    r = hc_batch_set(c, &p, 1, results);
    ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "set gave %s", hc_err_name(r));
    ck_assert_int_eq(results[0], r);
    r = hc_batch_get(c, &p, 1, results);
    ck_assert_msg(r == -ECONNRESET || r == -EPIPE, "get gave %s", hc_err_name(r));
    ck_assert_double_lt(elapsed_ms(&t0), 1000);
    hc_close(c);
    close(f->lfd);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
}
END_TEST

/* The daemon never answers: -ETIMEDOUT after timeout_ms, then -ECONNRESET
 * at once. */
START_TEST(test_timeout)
{
    struct fake *f = fake_start(FAKE_SILENT, 64 << 10);
    hc_client *c = fake_connect(f, 300);
    const char *k = "k";
    struct timespec t0;
    double ms;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(hc_batch_exists(c, &k, 1, NULL), -ETIMEDOUT);
    ms = elapsed_ms(&t0);
    ck_assert_double_ge(ms, 250);
    ck_assert_double_lt(ms, 3000);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(hc_ping(c), -ECONNRESET);
    ck_assert_double_lt(elapsed_ms(&t0), 100);
    hc_close(c);
    fake_stop(f);
}
END_TEST

START_TEST(test_handshake_refused)
{
    struct fake *f = fake_start(FAKE_REFUSE, 64 << 10);
    hc_client *c = NULL;

    ck_assert_int_eq(hc_connect(&c, f->path, NULL), -EBUSY);
    ck_assert_ptr_null(c);
    fake_stop(f);
}
END_TEST

static Suite *client_suite(void)
{
    Suite *s = suite_create("client_errors");
    TCase *t = tcase_create("no_daemon");
    TCase *fk = tcase_create("fake_daemon");

    tcase_add_test(t, test_errno_table);
    tcase_add_test(t, test_null_args);
    tcase_add_test(t, test_connect_no_listener);
    suite_add_tcase(s, t);
    tcase_set_timeout(fk, 30);
    tcase_add_test(fk, test_split_large_batches);
    tcase_add_test(fk, test_split_at_max_batch);
    tcase_add_test(fk, test_out_of_order);
    tcase_add_test(fk, test_get_lengths_and_page_errors);
    tcase_add_test(fk, test_connection_lost);
    tcase_add_test(fk, test_timeout);
    tcase_add_test(fk, test_handshake_refused);
    suite_add_tcase(s, fk);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(client_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
