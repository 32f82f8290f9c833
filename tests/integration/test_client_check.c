/* Integration: the payload check of a page read into a region slot done by
 * the client, in its copy out of the region (GetRequest.client_check): pages
 * come back byte for byte with the daemon's pass skipped (client_checks), the
 * CRC the daemon sends is the page's, a client that does not ask gets the
 * daemon's check, and a record that is bad on storage is never handed out:
 * the client's check fails, it asks again with the daemon checking, and the
 * daemon drops the record (a miss, corrupt_records), while the other pages of
 * the batch come back whole. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"

#define CC_PAGES 8
#define CC_LEN (1024 * 1024)

static void cc_keys(char keys[CC_PAGES][32], const char *stem)
{
    for (int i = 0; i < CC_PAGES; i++)
        snprintf(keys[i], 32, "%s-%d", stem, i);
}

/* Stores CC_PAGES pages of CC_LEN bytes (h_fill with salt 1) under stem-i. */
static void cc_store(hc_client *c, const char *stem)
{
    char keys[CC_PAGES][32];
    uint8_t *buf = malloc(CC_LEN);
    int res;

    ck_assert_ptr_nonnull(buf);
    cc_keys(keys, stem);
    for (int i = 0; i < CC_PAGES; i++) {
        hc_buf b = {buf, CC_LEN};
        hc_page p = {keys[i], &b, 1};
        h_fill(buf, CC_LEN, keys[i], 1);
        ck_assert_int_eq(hc_batch_set(c, &p, 1, &res), 1);
    }
    free(buf);
}

/* Gets every page of stem in one batch, each in two buffers; results into
 * res; returns the hits. Pages that hit must hold their bytes. */
static int cc_get(hc_client *c, const char *stem, int res[CC_PAGES])
{
    char keys[CC_PAGES][32];
    uint8_t *buf = malloc((size_t)CC_PAGES * CC_LEN);
    hc_buf b[CC_PAGES][2];
    hc_page p[CC_PAGES];
    int hits;

    ck_assert_ptr_nonnull(buf);
    memset(buf, 0x5a, (size_t)CC_PAGES * CC_LEN);
    cc_keys(keys, stem);
    for (int i = 0; i < CC_PAGES; i++) {
        uint8_t *at = buf + (size_t)i * CC_LEN;
        b[i][0] = (hc_buf){at, 1000};
        b[i][1] = (hc_buf){at + 1000, CC_LEN - 1000};
        p[i] = (hc_page){keys[i], b[i], 2};
    }
    hits = hc_batch_get(c, p, CC_PAGES, res);
    for (int i = 0; i < CC_PAGES; i++)
        if (res[i] == 0)
            ck_assert_msg(h_check(buf + (size_t)i * CC_LEN, CC_LEN, keys[i], 1) < 0,
                          "page %d came back with other bytes", i);
    free(buf);
    return hits;
}

/* One get of key into the region at offset 0 over a raw connection, with or
 * without client_check; returns the response. */
static Hicache__Response *cc_raw_get(struct h_raw *r, const char *key, bool client_check)
{
    Hicache__Slot sl = HICACHE__SLOT__INIT;
    Hicache__Slot *slots[1] = {&sl};
    Hicache__GetRequest get = HICACHE__GET_REQUEST__INIT;
    Hicache__Request req = HICACHE__REQUEST__INIT;

    sl.key.data = (uint8_t *)key;
    sl.key.len = strlen(key);
    sl.length = CC_LEN;
    get.n_pages = 1;
    get.pages = slots;
    get.client_check = client_check;
    req.body_case = HICACHE__REQUEST__BODY_GET;
    req.get = &get;
    req.id = ++r->next_id;
    ck_assert_int_eq(h_raw_send_req(r, &req), 0);
    return h_raw_recv(r, 10000);
}

START_TEST(test_client_checks_its_copy)
{
    struct hd *d = hd_new("n1", NULL);
    char keys[CC_PAGES][32];
    int res[CC_PAGES];
    uint8_t *want = malloc(CC_LEN);
    struct h_raw r;

    ck_assert_ptr_nonnull(want);
    hd_start(d);
    hc_client *c = hd_connect(d, "cc", CC_LEN);
    cc_store(c, "p");
    ck_assert_int_eq(cc_get(c, "p", res), CC_PAGES);
    ck_assert_int_eq(h_stat(c, "client_checks"), CC_PAGES);
    ck_assert_int_eq(h_stat(c, "corrupt_records"), 0);
    hc_close(c);

    /* the CRC sent is the page's; without client_check none is sent */
    cc_keys(keys, "p");
    h_fill(want, CC_LEN, keys[3], 1);
    ck_assert_int_eq(h_raw_connect(&r, d->sock), 0);
    ck_assert_int_eq(h_raw_hello(&r, "cc", CC_LEN), 0);
    Hicache__Response *resp = cc_raw_get(&r, keys[3], true);
    ck_assert_ptr_nonnull(resp);
    ck_assert_uint_eq(resp->n_results, 1);
    ck_assert_int_eq(resp->results[0], 0);
    ck_assert_uint_eq(resp->n_checks, 1);
    ck_assert_uint_eq(resp->checks[0], 1ull << 32 | hc_crc32c(0, want, CC_LEN));
    hicache__response__free_unpacked(resp, NULL);
    resp = cc_raw_get(&r, keys[3], false);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(resp->results[0], 0);
    ck_assert_uint_eq(resp->n_checks, 0);
    ck_assert_msg(memcmp(r.region, want, CC_LEN) == 0, "the daemon-checked page differs");
    hicache__response__free_unpacked(resp, NULL);
    h_raw_close(&r);
    ck_assert_int_eq(hd_stat(d, "client_checks"), CC_PAGES + 1);
    hd_stop(d);
    free(want);
}
END_TEST

/* Flips one byte in the middle of the payload of the page stored under key
 * (found by its first 4 KiB) in a segment file of dir. */
static void cc_corrupt(const char *dir, const char *key)
{
    uint8_t *head = malloc(4096);
    DIR *dh = opendir(dir);
    struct dirent *e;
    bool done = false;

    ck_assert_ptr_nonnull(head);
    ck_assert_ptr_nonnull(dh);
    h_fill(head, 4096, key, 1);
    while (!done && (e = readdir(dh)) != NULL) {
        size_t l = strlen(e->d_name), len;
        char path[H_PATH + 400];

        if (l < 5 || strcmp(e->d_name + l - 4, ".seg") != 0)
            continue;
        snprintf(path, sizeof(path), "%.*s/%.255s", H_PATH + 32, dir, e->d_name);
        uint8_t *f = (uint8_t *)h_read_file(path, &len);
        ck_assert_ptr_nonnull(f);
        uint8_t *at = memmem(f, len, head, 4096);
        if (at != NULL) {
            int fd = open(path, O_WRONLY);
            uint8_t x = at[CC_LEN / 2] ^ 0xff;
            ck_assert_int_ge(fd, 0);
            ck_assert_int_eq(pwrite(fd, &x, 1, (at - f) + CC_LEN / 2), 1);
            close(fd);
            done = true;
        }
        free(f);
    }
    closedir(dh);
    free(head);
    ck_assert_msg(done, "page %s not found in %s", key, dir);
}

START_TEST(test_bad_record_never_handed_out)
{
    struct hd *d = hd_new("n1", NULL);
    char keys[CC_PAGES][32], dir[H_PATH + 32];
    int res[CC_PAGES];
    uint64_t len = 1;

    hd_start(d);
    hc_client *c = hd_connect(d, "cc", CC_LEN);
    cc_store(c, "q");
    hc_close(c);
    hd_stop(d); /* sealed: an earlier run's segment, no re-reads of fresh records */
    cc_keys(keys, "q");
    snprintf(dir, sizeof(dir), "%s/hicache/n1", d->mount);
    cc_corrupt(dir, keys[5]);
    h_drop_cache(d->mount);

    hd_start(d);
    c = hd_connect(d, "cc", CC_LEN);
    ck_assert_int_eq(cc_get(c, "q", res), CC_PAGES - 1);
    for (int i = 0; i < CC_PAGES; i++)
        ck_assert_int_eq(res[i], i == 5 ? -ENOENT : 0);
    ck_assert_int_eq(h_stat(c, "corrupt_records"), 1);
    ck_assert_int_ge(h_stat(c, "client_checks"), CC_PAGES);
    /* gone from the index: no longer said to exist, still a miss */
    const char *k = keys[5];
    ck_assert_int_eq(hc_batch_exists(c, &k, 1, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(cc_get(c, "q", res), CC_PAGES - 1);
    ck_assert_int_eq(res[5], -ENOENT);
    ck_assert_int_eq(h_stat(c, "corrupt_records"), 1);
    hc_close(c);
    hd_stop(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("integration_client_check");
    TCase *tc = h_tcase("client_check", 60);
    tcase_add_test(tc, test_client_checks_its_copy);
    tcase_add_test(tc, test_bad_record_never_handed_out);
    suite_add_tcase(s, tc);
    return h_run_suite(s);
}
