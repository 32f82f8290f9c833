/* Configuration: defaults, the JSON file, command-line flags, every refusal
 * naming its source and key, and the stats JSON. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "stats.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hc_test_config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Writes text to <tmpdir>/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static bool str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Field-by-field equality, strings by content. */
static void assert_cfg_equal(const struct hc_config *a, const struct hc_config *b)
{
    ck_assert(str_same(a->mount_point, b->mount_point));
    ck_assert(str_same(a->root_dir, b->root_dir));
    ck_assert(str_same(a->socket_path, b->socket_path));
    ck_assert(str_same(a->node_id, b->node_id));
    ck_assert(str_same(a->allowed_uids, b->allowed_uids));
    ck_assert(str_same(a->allowed_gids, b->allowed_gids));
    ck_assert(str_same(a->config_path, b->config_path));
    ck_assert_uint_eq(a->region_size, b->region_size);
    ck_assert_uint_eq(a->map_ahead, b->map_ahead);
    ck_assert_uint_eq(a->segment_size, b->segment_size);
    ck_assert_uint_eq(a->capacity_bytes, b->capacity_bytes);
    ck_assert(a->min_free_ratio == b->min_free_ratio);
    ck_assert_uint_eq(a->io_threads, b->io_threads);
    ck_assert_uint_eq(a->queue_depth, b->queue_depth);
    ck_assert_uint_eq(a->max_inflight_bytes, b->max_inflight_bytes);
    ck_assert_uint_eq(a->max_frame_bytes, b->max_frame_bytes);
    ck_assert_uint_eq(a->max_clients, b->max_clients);
    ck_assert_uint_eq(a->max_batch, b->max_batch);
    ck_assert_uint_eq(a->seal_interval_ms, b->seal_interval_ms);
    ck_assert_uint_eq(a->discovery_interval_ms, b->discovery_interval_ms);
    ck_assert_uint_eq(a->socket_mode, b->socket_mode);
    ck_assert_int_eq(a->use_direct_io, b->use_direct_io);
    ck_assert_int_eq(a->enable_compression, b->enable_compression);
    ck_assert_int_eq(a->dedupe, b->dedupe);
    ck_assert_int_eq(a->coalesce_reads, b->coalesce_reads);
    ck_assert_int_eq(a->foreground, b->foreground);
}

START_TEST(test_defaults)
{
    struct hc_config c;
    char host[256], expect[65];
    size_t i, n;

    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_str_eq(c.mount_point, "/mnt/jfs");
    ck_assert_str_eq(c.root_dir, "hicache");
    ck_assert_str_eq(c.socket_path, "/run/hicached/hicached.sock");
    ck_assert_uint_eq(c.region_size, 64 * MiB);
    ck_assert_uint_eq(c.map_ahead, 4 * GiB);
    ck_assert_uint_eq(c.segment_size, 256 * MiB);
    ck_assert_uint_eq(c.capacity_bytes, 0);
    ck_assert(c.min_free_ratio == 0.05);
    ck_assert_uint_eq(c.io_threads, 2);
    ck_assert_uint_eq(c.queue_depth, 64);
    ck_assert_uint_eq(c.max_inflight_bytes, 256 * MiB);
    ck_assert_uint_eq(c.max_frame_bytes, 1 * MiB);
    ck_assert_uint_eq(c.max_clients, 1024);
    ck_assert_uint_eq(c.max_batch, 128);
    ck_assert_uint_eq(c.seal_interval_ms, 30000);
    ck_assert_uint_eq(c.discovery_interval_ms, 5000);
    ck_assert_uint_eq(c.socket_mode, 0660);
    ck_assert(!c.use_direct_io);
    ck_assert(!c.enable_compression);
    ck_assert(c.dedupe);
    ck_assert(c.coalesce_reads);
    ck_assert(!c.foreground);
    ck_assert_ptr_null(c.allowed_uids);
    ck_assert_ptr_null(c.allowed_gids);
    ck_assert_ptr_null(c.config_path);

    /* node_id: the host name, sanitized and cut to 64 */
    ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    n = strlen(host) > 64 ? 64 : strlen(host);
    for (i = 0; i < n; i++) {
        char ch = host[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '.' || ch == '-';
        expect[i] = ok ? ch : '-';
    }
    expect[n] = '\0';
    if (n > 0 && strcmp(expect, ".") != 0 && strcmp(expect, "..") != 0)
        ck_assert_str_eq(c.node_id, expect);
    ck_assert_uint_ge(strlen(c.node_id), 1);
    ck_assert_uint_le(strlen(c.node_id), 64);

    hc_config_free(&c);
    ck_assert_ptr_null(c.mount_point);
    hc_config_free(&c); /* twice is harmless */
    hc_config_free(NULL);
}
END_TEST

START_TEST(test_full_file)
{
    static const char *json = "{\n"
                              "  \"mount_point\": \"/mnt/juicefs\",\n"
                              "  \"root_dir\": \"kv-cache\",\n"
                              "  \"socket_path\": \"/run/hc/test.sock\",\n"
                              "  \"node_id\": \"gpu-node_07.rack2\",\n"
                              "  \"region_size\": \"128M\",\n"
                              "  \"map_ahead\": 0,\n"
                              "  \"segment_size\": 1073741824,\n"
                              "  \"capacity_bytes\": \"2T\",\n"
                              "  \"min_free_ratio\": 0.1,\n"
                              "  \"io_threads\": 8,\n"
                              "  \"queue_depth\": 256,\n"
                              "  \"max_inflight_bytes\": \"1GiB\",\n"
                              "  \"max_frame_bytes\": \"4M\",\n"
                              "  \"max_clients\": 64,\n"
                              "  \"max_batch\": 32,\n"
                              "  \"seal_interval_ms\": 1000,\n"
                              "  \"discovery_interval_ms\": 250,\n"
                              "  \"socket_mode\": \"0600\",\n"
                              "  \"use_direct_io\": true,\n"
                              "  \"enable_compression\": true,\n"
                              "  \"dedupe\": false,\n"
                              "  \"coalesce_reads\": false,\n"
                              "  \"foreground\": true,\n"
                              "  \"allowed_uids\": [1000, \"alice\"],\n"
                              "  \"allowed_gids\": \"render, video\"\n"
                              "}\n";
    struct hc_config c;
    char err[512] = "";
    const char *path;

    make_tmpdir();
    path = write_file("config.json", json);
    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_msg(hc_config_load_file(&c, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(c.mount_point, "/mnt/juicefs");
    ck_assert_str_eq(c.root_dir, "kv-cache");
    ck_assert_str_eq(c.socket_path, "/run/hc/test.sock");
    ck_assert_str_eq(c.node_id, "gpu-node_07.rack2");
    ck_assert_uint_eq(c.region_size, 128 * MiB);
    ck_assert_uint_eq(c.map_ahead, 0);
    ck_assert_uint_eq(c.segment_size, GiB);
    ck_assert_uint_eq(c.capacity_bytes, 2048 * GiB);
    ck_assert(c.min_free_ratio == 0.1);
    ck_assert_uint_eq(c.io_threads, 8);
    ck_assert_uint_eq(c.queue_depth, 256);
    ck_assert_uint_eq(c.max_inflight_bytes, GiB);
    ck_assert_uint_eq(c.max_frame_bytes, 4 * MiB);
    ck_assert_uint_eq(c.max_clients, 64);
    ck_assert_uint_eq(c.max_batch, 32);
    ck_assert_uint_eq(c.seal_interval_ms, 1000);
    ck_assert_uint_eq(c.discovery_interval_ms, 250);
    ck_assert_uint_eq(c.socket_mode, 0600);
    ck_assert(c.use_direct_io);
    ck_assert(c.enable_compression);
    ck_assert(!c.dedupe);
    ck_assert(!c.coalesce_reads);
    ck_assert(c.foreground);
    ck_assert_str_eq(c.allowed_uids, "1000,alice");
    ck_assert_str_eq(c.allowed_gids, "render,video");

    /* a partial file changes only its keys; null resets a list to anyone */
    ck_assert_int_eq(hc_config_load_string(&c, "{\"io_threads\": 3, \"allowed_uids\": null}",
                                           "more.json", err, sizeof(err)),
                     0);
    ck_assert_uint_eq(c.io_threads, 3);
    ck_assert_ptr_null(c.allowed_uids);
    ck_assert_str_eq(c.allowed_gids, "render,video");
    ck_assert_uint_eq(c.queue_depth, 256);
    ck_assert_uint_eq(c.io_engine, 0); /* uring by default */
    ck_assert_int_eq(
        hc_config_load_string(&c, "{\"io_engine\": \"threads\"}", "e", err, sizeof(err)), 0);
    ck_assert_uint_eq(c.io_engine, 1);
    ck_assert_int_eq(hc_config_log_level(&c), HC_LOG_INFO); /* default */
    ck_assert_int_eq(hc_config_load_string(&c, "{\"log_level\": \"debug\"}", "l", err, sizeof(err)),
                     0);
    ck_assert_int_eq(hc_config_log_level(&c), HC_LOG_DEBUG);
    ck_assert_int_eq(hc_config_load_string(&c, "{\"log_level\": \"error\"}", "l", err, sizeof(err)),
                     0);
    ck_assert_int_eq(hc_config_log_level(&c), HC_LOG_ERR);
    /* JSON has no octal: 640 means 0640, as with chmod */
    ck_assert_int_eq(hc_config_load_string(&c, "{\"socket_mode\": 640}", "m", err, sizeof(err)), 0);
    ck_assert_uint_eq(c.socket_mode, 0640);
    /* the bounds themselves are accepted */
    ck_assert_int_eq(hc_config_load_string(&c,
                                           "{\"io_threads\": 64, \"region_size\": \"4G\", "
                                           "\"max_frame_bytes\": 4096, \"min_free_ratio\": 0}",
                                           "b", err, sizeof(err)),
                     0);
    ck_assert_uint_eq(c.io_threads, 64);
    ck_assert_uint_eq(c.region_size, 4 * GiB);
    ck_assert_uint_eq(c.max_frame_bytes, 4096);
    hc_config_free(&c);
    remove_tmpdir();
}
END_TEST

/* A bad file and the words its message must hold (every one, in order of
 * appearance not required). */
static const struct bad_case {
    const char *json;
    const char *msg[3];
} bad_cases[] = {
    /* u32 */
    {"{\"io_threads\": \"four\"}",
     {"cfg.json: 'io_threads' must be an integer from 1 to 64 (got \"four\")"}},
    {"{\"io_threads\": 0}", {"cfg.json: 'io_threads' must be an integer from 1 to 64 (got 0)"}},
    {"{\"io_threads\": 65}", {"'io_threads'", "from 1 to 64", "(got 65)"}},
    {"{\"io_threads\": 2.5}", {"'io_threads'", "from 1 to 64", "(got 2.5)"}},
    {"{\"io_threads\": -1}", {"'io_threads'", "(got -1)"}},
    {"{\"io_threads\": 99999999999999999}", {"'io_threads'", "from 1 to 64"}},
    {"{\"queue_depth\": 3}", {"'queue_depth' must be an integer from 4 to 4096 (got 3)"}},
    {"{\"max_clients\": 65537}", {"'max_clients'", "from 1 to 65536"}},
    {"{\"max_batch\": 129}", {"'max_batch'", "from 1 to 128"}},
    {"{\"max_batch\": null}", {"'max_batch'", "(got null)"}},
    {"{\"seal_interval_ms\": 9}", {"'seal_interval_ms'", "from 10 to 86400000"}},
    {"{\"discovery_interval_ms\": 86400001}", {"'discovery_interval_ms'", "from 10 to 86400000"}},
    /* sizes */
    {"{\"segment_size\": \"12X\"}",
     {"cfg.json: 'segment_size' must be a size from 1M to 32G", "(got \"12X\")"}},
    {"{\"segment_size\": \"65G\"}", {"'segment_size'", "from 1M to 32G", "(got \"65G\")"}},
    {"{\"segment_size\": 1048575}", {"'segment_size'", "from 1M to 32G", "(got 1048575)"}},
    {"{\"region_size\": \"5G\"}", {"'region_size' must be a size from 1M to 4G"}},
    {"{\"map_ahead\": \"2T\"}", {"'map_ahead' must be a size from 0 to 1T"}},
    {"{\"region_size\": \"-1M\"}", {"'region_size'", "(got \"-1M\")"}},
    {"{\"region_size\": true}", {"'region_size'", "(got true)"}},
    {"{\"region_size\": \"64 M\"}", {"'region_size'", "K/M/G/T"}},
    {"{\"region_size\": \"1.5G\"}", {"'region_size'", "(got \"1.5G\")"}},
    {"{\"region_size\": \"64P\"}", {"'region_size'", "(got \"64P\")"}},
    {"{\"region_size\": 67108864.0}", {"'region_size'", "(got 67108864.0)"}},
    {"{\"max_frame_bytes\": 4095}", {"'max_frame_bytes' must be a size from 4K to 64M"}},
    {"{\"max_frame_bytes\": \"65M\"}", {"'max_frame_bytes'", "from 4K to 64M"}},
    {"{\"max_inflight_bytes\": \"1023K\"}",
     {"'max_inflight_bytes' must be a size of at least 1M", "(got \"1023K\")"}},
    {"{\"capacity_bytes\": \"lots\"}", {"'capacity_bytes' must be a size", "(got \"lots\")"}},
    {"{\"capacity_bytes\": \"99999999999T\"}", {"'capacity_bytes'"}},
    {"{\"capacity_bytes\": -5}", {"'capacity_bytes'", "(got -5)"}},
    /* choices */
    {"{\"io_engine\": \"Threads\"}",
     {"cfg.json: 'io_engine' must be one of \"uring\", \"threads\" (got \"Threads\")"}},
    {"{\"io_engine\": 1}", {"'io_engine'", "(got 1)"}},
    {"{\"log_level\": \"verbose\"}",
     {"'log_level' must be one of \"error\", \"warning\", \"info\", \"debug\""}},
    /* double */
    {"{\"min_free_ratio\": 0.95}",
     {"cfg.json: 'min_free_ratio' must be a number from 0 to 0.9 (got 0.95)"}},
    {"{\"min_free_ratio\": -0.1}", {"'min_free_ratio'", "(got -0.1)"}},
    {"{\"min_free_ratio\": \"0.1\"}", {"'min_free_ratio'", "(got \"0.1\")"}},
    /* bool */
    {"{\"use_direct_io\": \"yes\"}",
     {"cfg.json: 'use_direct_io' must be true or false (got \"yes\")"}},
    {"{\"dedupe\": 1}", {"'dedupe' must be true or false (got 1)"}},
    {"{\"foreground\": null}", {"'foreground' must be true or false"}},
    /* mode */
    {"{\"socket_mode\": \"0999\"}", {"'socket_mode' must be an octal mode", "(got \"0999\")"}},
    {"{\"socket_mode\": \"01777\"}", {"'socket_mode'", "\"0777\""}},
    {"{\"socket_mode\": 888}", {"'socket_mode'", "(got 888)"}},
    {"{\"socket_mode\": \"rw\"}", {"'socket_mode'", "(got \"rw\")"}},
    /* strings and names */
    {"{\"mount_point\": \"\"}", {"cfg.json: 'mount_point' must be a non-empty path (got \"\")"}},
    {"{\"mount_point\": 5}", {"'mount_point' must be a non-empty path (got 5)"}},
    /* a NUL inside a string is refused by the parser itself */
    {"{\"mount_point\": \"/mnt/a\\u0000b\"}", {"cfg.json: JSON syntax error at line 1, column 31"}},
    {"{\"socket_path\": \"/run/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock\"}",
     {"cfg.json: 'socket_path' must be a non-empty path of at most 107 bytes", "...\")"}},
    {"{\"socket_path\": []}", {"'socket_path'", "(got [])"}},
    {"{\"node_id\": \"bad/name\"}",
     {"cfg.json: 'node_id' must be 1 to 64 characters of [A-Za-z0-9_.-], not '.', without "
      "'..' (got \"bad/name\")"}},
    {"{\"node_id\": \"a..b\"}", {"'node_id'", "(got \"a..b\")"}}, /* the rule of keys */
    {"{\"node_id\": \"node one\"}", {"'node_id'", "(got \"node one\")"}},
    {"{\"node_id\": \"..\"}", {"'node_id'", "(got \"..\")"}},
    {"{\"node_id\": \".\"}", {"'node_id'", "(got \".\")"}},
    {"{\"node_id\": \"\"}", {"'node_id'", "(got \"\")"}},
    {"{\"node_id\": \"n\\u00e9\"}", {"'node_id'", "(got \"n\\xc3\\xa9\")"}},
    {"{\"node_id\": \"a\\tb\"}", {"'node_id'", "(got \"a\\x09b\")"}},
    {"{\"node_id\": \"a\\u0000b\"}", {"cfg.json: JSON syntax error at line 1"}},
    {"{\"node_id\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     {"'node_id' must be 1 to 64 characters"}},
    {"{\"root_dir\": \"x/y\"}", {"cfg.json: 'root_dir' must be 1 to 64 characters"}},
    {"{\"root_dir\": \"..\"}", {"'root_dir'"}},
    /* lists */
    {"{\"allowed_uids\": \"alice,,bob\"}", {"'allowed_uids' must be a comma-separated list"}},
    {"{\"allowed_uids\": []}", {"'allowed_uids'", "(got [])"}},
    {"{\"allowed_gids\": [true]}", {"'allowed_gids'", "(got [true])"}},
    {"{\"allowed_uids\": [-1]}", {"'allowed_uids'"}},
    {"{\"allowed_uids\": 5}", {"'allowed_uids'", "(got 5)"}},
    {"{\"allowed_uids\": \"root;reboot\"}", {"'allowed_uids'"}},
    /* keys and shape */
    {"{\"mount_pont\": \"/x\"}",
     {"cfg.json: unknown key 'mount_pont'", "did you mean 'mount_point'"}},
    {"{\"config_path\": \"/x\"}", {"cfg.json: unknown key 'config_path'"}},
    {"{\"zzzzzz\": 1}", {"cfg.json: unknown key 'zzzzzz'"}},
    {"[1, 2]", {"cfg.json: the top level must be a JSON object, not an array"}},
    {"{\"io_threads\": 4,}", {"cfg.json: JSON syntax error at line 1, column"}},
    {"{\n  \"io_threads\": 4\n  \"dedupe\": true\n}", {"cfg.json: JSON syntax error at line 3"}},
    {"", {"cfg.json: JSON syntax error at line"}},
    {"{} {}", {"cfg.json: JSON syntax error"}},
    {"{\"io_threads\": 4, \"io_threads\": 5}", {"cfg.json: JSON syntax error", "duplicate"}},
    /* a good key before a bad one changes nothing either */
    {"{\"io_threads\": 8, \"segment_size\": \"bad\"}", {"'segment_size'"}},
};

START_TEST(test_bad_values_named)
{
    const struct bad_case *bc = &bad_cases[_i];
    struct hc_config c, before;
    char err[1024] = "";
    int rc, k;

    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_int_eq(hc_config_init(&before), 0);
    rc = hc_config_load_string(&c, bc->json, "cfg.json", err, sizeof(err));
    ck_assert_msg(rc == -EINVAL, "case %d (%s) gave %d", _i, bc->json, rc);
    for (k = 0; k < 3 && bc->msg[k]; k++)
        ck_assert_msg(strstr(err, bc->msg[k]) != NULL, "case %d: \"%s\" lacks \"%s\"", _i, err,
                      bc->msg[k]);
    assert_cfg_equal(&c, &before);
    hc_config_free(&c);
    hc_config_free(&before);
}
END_TEST

/* The same refusals through a file: the path names the source. */
START_TEST(test_bad_file)
{
    struct hc_config c, before;
    char err[1024] = "", expect[256];
    const char *path;

    make_tmpdir();
    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_int_eq(hc_config_load_string(&c, "{\"io_threads\": 5, \"node_id\": \"n1\"}", "x", err,
                                           sizeof(err)),
                     0);
    ck_assert_int_eq(hc_config_init(&before), 0);
    ck_assert_int_eq(hc_config_load_string(&before, "{\"io_threads\": 5, \"node_id\": \"n1\"}", "x",
                                           err, sizeof(err)),
                     0);

    path = write_file("bad.json", "{\"io_threads\": 6, \"mount_pont\": \"/x\"}");
    ck_assert_int_eq(hc_config_load_file(&c, path, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s: unknown key 'mount_pont'", path);
    ck_assert_msg(strncmp(err, expect, strlen(expect)) == 0, "%s", err);
    assert_cfg_equal(&c, &before);

    snprintf(expect, sizeof(expect), "%s/missing.json", tmpdir);
    ck_assert_int_eq(hc_config_load_file(&c, expect, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "missing.json: cannot open"));
    ck_assert_int_eq(hc_config_load_file(&c, tmpdir, err, sizeof(err)), -EISDIR);
    assert_cfg_equal(&c, &before);

    /* err may be NULL */
    ck_assert_int_eq(hc_config_load_string(&c, "[]", "x", NULL, 0), -EINVAL);
    assert_cfg_equal(&c, &before);
    hc_config_free(&c);
    hc_config_free(&before);
    remove_tmpdir();
}
END_TEST

/* Sizes: integers, K/M/G/T suffixes (binary, any case, optional B or iB). */
static const struct {
    const char *text;
    uint64_t bytes; /* 0 with ok = 0: refused */
    int ok;
} sizes[] = {
    {"0", 0, 1},
    {"4096", 4096, 1},
    {"512B", 512, 1},
    {"64K", 64 << 10, 1},
    {"64k", 64 << 10, 1},
    {"64M", 64 * MiB, 1},
    {"64MiB", 64 * MiB, 1},
    {"64MB", 64 * MiB, 1},
    {"1G", GiB, 1},
    {"1g", GiB, 1},
    {"3T", 3 * 1024 * GiB, 1},
    {"16777215T", UINT64_C(16777215) << 40, 1},
    {"16777216T", 0, 0},            /* 2^64: overflow */
    {"18446744073709551616", 0, 0}, /* 2^64 */
    {"", 0, 0},
    {"G", 0, 0},
    {"1.5G", 0, 0},
    {"1 G", 0, 0},
    {" 1G", 0, 0},
    {"+1", 0, 0},
    {"-1", 0, 0},
    {"0x10", 0, 0},
    {"1P", 0, 0},
    {"1Gi", 0, 0},
    {"1iB", 0, 0},
    {"1GB2", 0, 0},
};

START_TEST(test_size_suffixes)
{
    struct hc_config c;
    char json[128], err[512] = "", flag[128];
    char *argv[] = {"hicached", flag, NULL};
    bool exit_now;
    int rc;

    ck_assert_int_eq(hc_config_init(&c), 0);
    /* in a file */
    snprintf(json, sizeof(json), "{\"capacity_bytes\": \"%s\"}", sizes[_i].text);
    rc = hc_config_load_string(&c, json, "s.json", err, sizeof(err));
    if (sizes[_i].ok) {
        ck_assert_msg(rc == 0, "%s: %s", sizes[_i].text, err);
        ck_assert_uint_eq(c.capacity_bytes, sizes[_i].bytes);
    } else {
        ck_assert_msg(rc == -EINVAL, "%s accepted", sizes[_i].text);
        ck_assert_ptr_nonnull(strstr(err, "s.json: 'capacity_bytes' must be a size"));
    }
    /* on the command line */
    c.capacity_bytes = 7;
    snprintf(flag, sizeof(flag), "--capacity-bytes=%s", sizes[_i].text);
    rc = hc_config_parse_args(&c, 2, argv, &exit_now, err, sizeof(err));
    if (sizes[_i].ok) {
        ck_assert_msg(rc == 0, "%s: %s", sizes[_i].text, err);
        ck_assert_uint_eq(c.capacity_bytes, sizes[_i].bytes);
    } else {
        ck_assert_int_eq(rc, -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "--capacity-bytes: must be a size"));
        ck_assert_uint_eq(c.capacity_bytes, 7);
    }
    hc_config_free(&c);
}
END_TEST

/* Flags win over the file wherever --config stands. */
START_TEST(test_args_override_file)
{
    char cfgpath[128], real[PATH_MAX];
    char *first[] = {"hicached", "--config",  cfgpath, "--io-threads",
                     "16",       "--node-id", "cli",   NULL};
    char *last[] = {"hicached", "--io-threads", "16", "--node-id=cli", "--config", cfgpath, NULL};
    char **sets[] = {first, last};
    int argcs[] = {7, 6};
    int k;

    make_tmpdir();
    snprintf(cfgpath, sizeof(cfgpath), "%s",
             write_file("c.json", "{\"io_threads\": 8, \"node_id\": \"from-file\", "
                                  "\"mount_point\": \"/file\", \"dedupe\": false}"));
    ck_assert_ptr_nonnull(realpath(cfgpath, real));
    for (k = 0; k < 2; k++) {
        struct hc_config c;
        char err[512] = "";
        bool exit_now = true;

        ck_assert_int_eq(hc_config_init(&c), 0);
        ck_assert_msg(hc_config_parse_args(&c, argcs[k], sets[k], &exit_now, err, sizeof(err)) == 0,
                      "%s", err);
        ck_assert(!exit_now);
        ck_assert_uint_eq(c.io_threads, 16);
        ck_assert_str_eq(c.node_id, "cli");
        ck_assert_str_eq(c.mount_point, "/file");
        ck_assert(!c.dedupe);
        ck_assert_str_eq(c.config_path, real);
        hc_config_free(&c);
    }
    remove_tmpdir();
}
END_TEST

START_TEST(test_args_every_form)
{
    char *argv[] = {"hicached",
                    "--mount-point",
                    "var/data",
                    "--socket",
                    "var/run/h.sock",
                    "--foreground",
                    "--segment-size",
                    "1G",
                    "--region-size=128MiB",
                    "--dedupe",
                    "false",
                    "--use-direct-io=yes",
                    "--min-free-ratio",
                    "0.25",
                    "--socket-mode",
                    "0600",
                    "--allowed-uids",
                    "1000, alice",
                    "--max-frame-bytes",
                    "64K",
                    "--seal-interval-ms",
                    "100",
                    NULL};
    char *alias[] = {"hicached", "--socket-path", "/tmp/x.sock", "--allowed-uids", "", NULL};
    struct hc_config c;
    char err[512] = "";
    bool exit_now = true;

    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_msg(hc_config_parse_args(&c, 22, argv, &exit_now, err, sizeof(err)) == 0, "%s", err);
    ck_assert(!exit_now);
    ck_assert_str_eq(c.mount_point, "var/data");
    ck_assert_str_eq(c.socket_path, "var/run/h.sock");
    ck_assert(c.foreground);
    ck_assert_uint_eq(c.segment_size, GiB);
    ck_assert_uint_eq(c.region_size, 128 * MiB);
    ck_assert(!c.dedupe);
    ck_assert(c.use_direct_io);
    ck_assert(c.min_free_ratio == 0.25);
    ck_assert_uint_eq(c.socket_mode, 0600);
    ck_assert_str_eq(c.allowed_uids, "1000,alice");
    ck_assert_uint_eq(c.max_frame_bytes, 64 << 10);
    ck_assert_uint_eq(c.seal_interval_ms, 100);
    ck_assert_ptr_null(c.config_path);

    ck_assert_int_eq(hc_config_parse_args(&c, 5, alias, &exit_now, err, sizeof(err)), 0);
    ck_assert_str_eq(c.socket_path, "/tmp/x.sock");
    ck_assert_ptr_null(c.allowed_uids);
    ck_assert_str_eq(c.mount_point, "var/data"); /* earlier values stay */
    hc_config_free(&c);
}
END_TEST

static const struct {
    const char *args[4];
    const char *msg[2];
} bad_args[] = {
    {{"--segment-size", "12X"}, {"--segment-size: must be a size from 1M to 32G", "(got \"12X\")"}},
    {{"--io-threads", "four"}, {"--io-threads: must be an integer from 1 to 64 (got \"four\")"}},
    {{"--io-threads", "0"}, {"--io-threads: must be an integer from 1 to 64 (got \"0\")"}},
    {{"--io-threads", "+4"}, {"--io-threads:"}},
    {{"--io-threads"}, {"--io-threads: needs a value"}},
    {{"--io-thread", "4"}, {"unknown option '--io-thread'", "did you mean '--io-threads'"}},
    {{"--bogus"}, {"unknown option '--bogus'"}},
    {{"stray"}, {"unexpected argument 'stray'"}},
    {{"-x"}, {"unexpected argument '-x'"}},
    {{"--foreground=yes"}, {"--foreground takes no value"}},
    {{"--dedupe", "maybe"}, {"--dedupe: must be true or false", "(got \"maybe\")"}},
    {{"--min-free-ratio", "0.95"}, {"--min-free-ratio: must be a number from 0 to 0.9"}},
    {{"--min-free-ratio", "nan"}, {"--min-free-ratio:"}},
    {{"--node-id", "a/b"}, {"--node-id: must be 1 to 64 characters"}},
    {{"--socket", ""}, {"--socket: must be a non-empty path"}},
    {{"--socket-mode", "999"}, {"--socket-mode: must be an octal mode"}},
    {{"--config"}, {"--config: needs a FILE"}},
    {{"--config", "/nonexistent/hc.json"}, {"/nonexistent/hc.json: cannot open"}},
    {{"--config", "a.json", "--config", "b.json"}, {"--config: given twice"}},
};

START_TEST(test_bad_args)
{
    struct hc_config c, before;
    char *argv[6] = {"hicached"};
    char err[512] = "";
    bool exit_now = true;
    int argc = 1, k;

    for (k = 0; k < 4 && bad_args[_i].args[k]; k++)
        argv[argc++] = (char *)bad_args[_i].args[k];
    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_int_eq(hc_config_init(&before), 0);
    ck_assert_int_eq(hc_config_parse_args(&c, argc, argv, &exit_now, err, sizeof(err)), -EINVAL);
    ck_assert(!exit_now);
    for (k = 0; k < 2 && bad_args[_i].msg[k]; k++)
        ck_assert_msg(strstr(err, bad_args[_i].msg[k]) != NULL, "\"%s\" lacks \"%s\"", err,
                      bad_args[_i].msg[k]);
    assert_cfg_equal(&c, &before);
    hc_config_free(&c);
    hc_config_free(&before);
}
END_TEST

/* A bad file given with --config, after good flags: nothing applied. */
START_TEST(test_args_bad_file_unchanged)
{
    char path[128];
    char *argv[] = {"hicached", "--io-threads", "9", "--config", path, NULL};
    struct hc_config c, before;
    char err[512] = "";
    bool exit_now;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s", write_file("bad.json", "{\"queue_depth\": 1}"));
    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_int_eq(hc_config_init(&before), 0);
    ck_assert_int_eq(hc_config_parse_args(&c, 5, argv, &exit_now, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bad.json: 'queue_depth' must be an integer from 4 to 4096"));
    assert_cfg_equal(&c, &before);
    hc_config_free(&c);
    hc_config_free(&before);
    remove_tmpdir();
}
END_TEST

/* Runs parse_args with stdout sent to a file; returns what was printed. */
static char *run_capturing(struct hc_config *c, int argc, char **argv, bool *exit_now, int *rc)
{
    char path[128], err[512] = "", *text;
    FILE *f;
    long n;
    int saved, fd;

    snprintf(path, sizeof(path), "%s/stdout", tmpdir);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(dup2(fd, STDOUT_FILENO), 0);
    close(fd);
    *rc = hc_config_parse_args(c, argc, argv, exit_now, err, sizeof(err));
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(fread(text, 1, (size_t)n, f), n);
    fclose(f);
    return text;
}

static const char *const every_flag[] = {
    "--config FILE",
    "--help",
    "--version",
    "--mount-point DIR",
    "--root-dir NAME",
    "--node-id NAME",
    "--socket-path PATH",
    "--socket-mode MODE",
    "--allowed-uids LIST",
    "--allowed-gids LIST",
    "--region-size SIZE",
    "--segment-size SIZE",
    "--capacity-bytes SIZE",
    "--min-free-ratio RATIO",
    "--io-threads N",
    "--queue-depth N",
    "--max-inflight-bytes SIZE",
    "--max-frame-bytes SIZE",
    "--max-clients N",
    "--max-batch N",
    "--seal-interval-ms MS",
    "--discovery-interval-ms MS",
    "--use-direct-io BOOL",
    "--enable-compression BOOL",
    "--dedupe BOOL",
    "--coalesce-reads BOOL",
    "--foreground",
    "(default /mnt/jfs)",
    "(default hicache)",
    "(default /run/hicached/hicached.sock)",
    "(default 0660)",
    "(default 64M; 1M to 4G)",
    "(default 256M; 1M to 32G)",
    "(default 1M; 4K to 64M)",
    "(default 0.05; 0 to 0.9)",
    "(default 30000; 10 to 86400000)",
    "(default 128; 1 to 128)",
    "(default anyone)",
    "from the host name",
};

START_TEST(test_help_and_version)
{
    char *help[] = {"hicached", "--io-threads", "5", "--help", NULL};
    char *help_bad[] = {"hicached", "--bogus", "-h", NULL};
    char *version[] = {"hicached", "--version", NULL};
    struct hc_config c, before;
    bool exit_now = false;
    char *out;
    size_t k;
    int rc;

    make_tmpdir();
    ck_assert_int_eq(hc_config_init(&c), 0);
    ck_assert_int_eq(hc_config_init(&before), 0);
    out = run_capturing(&c, 4, help, &exit_now, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert(exit_now);
    for (k = 0; k < sizeof(every_flag) / sizeof(every_flag[0]); k++)
        ck_assert_msg(strstr(out, every_flag[k]) != NULL, "usage lacks \"%s\"", every_flag[k]);
    assert_cfg_equal(&c, &before); /* --help applies nothing */
    free(out);

    exit_now = false;
    out = run_capturing(&c, 3, help_bad, &exit_now, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert(exit_now);
    ck_assert_ptr_nonnull(strstr(out, "Usage: hicached"));
    free(out);

    exit_now = false;
    out = run_capturing(&c, 2, version, &exit_now, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert(exit_now);
    ck_assert_str_eq(out, "hicached 0.1.0\n");
    free(out);
    hc_config_free(&c);
    hc_config_free(&before);
    remove_tmpdir();
}
END_TEST

/* ---- stats ---- */

START_TEST(test_stats_json)
{
    struct hc_stats st;
    json_t *root, *v;
    json_error_t je;
    char *text;
    size_t n = 0, i;
    uint64_t val = 1;
    static const char *const public_names[] = {"pages",
                                               "bytes_stored",
                                               "sets",
                                               "gets",
                                               "hits",
                                               "misses",
                                               "dedup_hits",
                                               "bytes_written",
                                               "bytes_read_storage",
                                               "bytes_served",
                                               "coalesced_reads",
                                               "clients",
                                               "corrupt_records",
                                               "evicted_pages"};

    memset(&st, 0, sizeof(st));
#define SET(name, kind, desc) st.name = (val += 1000003) + (1ull << 40);
    HC_STATS_MAP(SET)
#undef SET
    text = hc_stats_json(&st, NULL, "node-7", 3600, 5 * GiB);
    ck_assert_ptr_nonnull(text);
    root = json_loads(text, 0, &je);
    ck_assert_msg(root != NULL, "%s", je.text);
    ck_assert(json_is_object(root));
#define CHECK(name, kind, desc)                                                                    \
    v = json_object_get(root, #name);                                                              \
    ck_assert_msg(json_is_integer(v), "%s missing or not an integer", #name);                      \
    ck_assert_uint_eq((uint64_t)json_integer_value(v), st.name);                                   \
    n++;
    HC_STATS_MAP(CHECK)
#undef CHECK
    for (i = 0; i < sizeof(public_names) / sizeof(public_names[0]); i++)
        ck_assert_ptr_nonnull(json_object_get(root, public_names[i]));
    ck_assert_str_eq(json_string_value(json_object_get(root, "node_id")), "node-7");
    ck_assert_int_eq(json_integer_value(json_object_get(root, "uptime_s")), 3600);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "capacity_bytes")), 5 * GiB);
    ck_assert_str_eq(json_string_value(json_object_get(root, "version")), "0.1.0");
    ck_assert_uint_eq(json_object_size(root), n + 4);
    json_decref(root);
    free(text);

    /* zeroes and a missing node id */
    memset(&st, 0, sizeof(st));
    text = hc_stats_json(&st, NULL, NULL, 0, 0);
    ck_assert_ptr_nonnull(text);
    root = json_loads(text, 0, &je);
    ck_assert_ptr_nonnull(root);
    ck_assert(json_is_null(json_object_get(root, "node_id")));
    ck_assert_int_eq(json_integer_value(json_object_get(root, "pages")), 0);
    json_decref(root);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *file = tcase_create("file");
    TCase *args = tcase_create("args");
    TCase *stats = tcase_create("stats");
    SRunner *sr;
    int failed;

    tcase_add_test(file, test_defaults);
    tcase_add_test(file, test_full_file);
    tcase_add_loop_test(file, test_bad_values_named, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(file, test_bad_file);
    tcase_add_loop_test(file, test_size_suffixes, 0, (int)(sizeof(sizes) / sizeof(sizes[0])));
    tcase_add_test(args, test_args_override_file);
    tcase_add_test(args, test_args_every_form);
    tcase_add_loop_test(args, test_bad_args, 0, (int)(sizeof(bad_args) / sizeof(bad_args[0])));
    tcase_add_test(args, test_args_bad_file_unchanged);
    tcase_add_test(args, test_help_and_version);
    tcase_add_test(stats, test_stats_json);
    suite_add_tcase(s, file);
    suite_add_tcase(s, args);
    suite_add_tcase(s, stats);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
