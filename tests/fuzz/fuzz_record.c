/* libFuzzer target: the record header check and the restart's recovery scan
 * (make fuzz). The input's first 4096 bytes go through hc__hdr_check as a
 * record header; then the whole input becomes this node's unsealed segment
 * (<seq>.seg with no .idx, as a crash leaves it) and a real store is opened
 * on it: the recovery scan walks its records, keeps the whole ones, steps
 * over bad payloads, stops at a bad header or a torn tail, and the store
 * seals what it kept when it is closed (a store that refuses to open is
 * fine; a crash, leak or undefined behaviour is a finding). */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_store.h"
#include "store_int.h"

static char dir[] = "/tmp/hc_fuzz_rec.XXXXXX";
static char node_dir[sizeof(dir) + 32];
static struct hc_io_pool *io;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    if (ftw->level > 0)
        remove(p);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!mkdtemp(dir))
        abort();
    io = fuzz_io_pool();
    snprintf(node_dir, sizeof(node_dir), "%s/hicache/fuzz", dir);
    return 0;
}

static void drain(void)
{
    for (int i = 0; i < 100000 && hc_io_pool_pending(io) > 0; i++) {
        usleep(100);
        hc_io_pool_drain(io);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hdr_view v;
    char path[sizeof(node_dir) + 32], err[256];
    struct hc_stats st;
    struct hc_store *s = NULL;

    if (size >= HC_STORE_ALIGN)
        (void)hc__hdr_check(data, &v);

    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    snprintf(path, sizeof(path), "%s/hicache", dir);
    mkdir(path, 0755);
    mkdir(node_dir, 0755);
    snprintf(path, sizeof(path), "%s/0000000000000001.seg", node_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);

    struct hc_store_config cfg = fuzz_store_config(dir);
    memset(&st, 0, sizeof(st));
    if (hc_store_open(&s, &cfg, io, &st, err, sizeof(err)) < 0)
        return 0; /* refused, not crashed: fine */
    while (!hc_store_quiesce(s))
        drain();
    hc_store_close(s);
    drain();
    return 0;
}
