/* This node's keys file (keysfile.h): the entries of all its sealed pages,
 * sorted by hash, in <root>/<node>/keys, for other nodes' fleet index (issue
 * 14, item 3: with remote_index "filter" they hold this node's pages as a
 * filter and read the exact entry here on a positive: fleet.c). With keys_interval_ms set
 * (0, the default: never), the tick publishes it at most that often when the
 * set of this node's sealed segments changed since the last one: a task
 * loads the .idx of each segment sealed at submit (their seqs are the
 * snapshot), writes keys.tmp and renames it over keys. An entry of a segment
 * evicted meanwhile, or of a page dropped from the index, is stale: a reader
 * checks the segment and the record's header, so it is a miss. A start
 * removes a leftover keys.tmp (recover.c, as every *.tmp).
 *
 * Threads: loop thread, except keys_before, which runs on an I/O thread and
 * touches only its task (the seqs and paths made at submit). */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keysfile.h"
#include "log.h"

struct keys_task {
    struct hc_io_req req;
    struct hc_store *s;
    uint64_t *seqs;
    uint32_t nsegs;
    uint64_t gen; /* s->sealed_gen at submit */
    size_t nents; /* set by keys_before */
    char dir[PATH_MAX];
};

/* Called on an I/O thread: loads each segment's .idx (a segment evicted
 * since the snapshot is skipped), writes the keys file to keys.tmp and
 * renames it to keys. Touches only t. */
static int keys_before(struct hc_io_req *req)
{
    struct keys_task *t = container_of(req, struct keys_task, req);
    struct hc_keys_ent *ents = NULL;
    size_t n = 0, cap = 0;
    char path[PATH_MAX + 32], tmp[PATH_MAX + 16];
    int rc = 0, fd;

    for (uint32_t i = 0; i < t->nsegs && rc == 0; i++) {
        struct idx_data d;
        snprintf(path, sizeof(path), "%s/%016" PRIx64 ".idx", t->dir, t->seqs[i]);
        if (hc__idx_load(path, t->seqs[i], &d) < 0)
            continue; /* gone (evicted) or unreadable: its pages are not listed */
        if (n + d.nent > cap) {
            size_t ncap = (n + d.nent) * 2;
            struct hc_keys_ent *ne = realloc(ents, ncap * sizeof(*ents));
            if (!ne)
                rc = -ENOMEM;
            else
                ents = ne, cap = ncap;
        }
        for (uint32_t j = 0; rc == 0 && j < d.nent; j++) {
            const unsigned char *e = d.ents + (size_t)j * 32;
            ents[n++] = (struct hc_keys_ent){.h = get64(e),
                                             .seg = i,
                                             .off = (uint32_t)(get64(e + 16) / HC_STORE_ALIGN),
                                             .len = get32(e + 24),
                                             .flags = get16(e + 30)};
        }
        hc__idx_free(&d);
    }
    if (rc < 0) {
        free(ents);
        return rc;
    }
    snprintf(tmp, sizeof(tmp), "%s/keys.tmp", t->dir);
    snprintf(path, sizeof(path), "%s/keys", t->dir);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        rc = -errno;
    else {
        rc = hc_keys_write(fd, t->seqs, t->nsegs, ents, n);
        if (close(fd) < 0 && rc == 0)
            rc = -errno;
        if (rc == 0 && rename(tmp, path) < 0)
            rc = -errno;
        if (rc < 0)
            (void)unlink(tmp);
    }
    free(ents);
    t->nents = n;
    return rc;
}

/* Back on the loop thread. */
static void keys_done(struct hc_io_req *req)
{
    struct keys_task *t = container_of(req, struct keys_task, req);
    struct hc_store *s = t->s;

    s->inflight--;
    s->keys_busy = false;
    if (req->result < 0)
        hc_log(HC_LOG_WARN, "store: publishing %s/keys: %s (tried again at the next interval)",
               t->dir, strerror((int)-req->result));
    else {
        s->keys_gen = t->gen;
        hc_log(HC_LOG_DEBUG, "store: published %s/keys: %zu pages of %u segments", t->dir, t->nents,
               t->nsegs);
    }
    free(t->seqs);
    free(t);
}

/* At a tick: publishes the keys file when keys_interval_ms has passed since
 * the last try and the sealed segments changed since the last publish. */
void hc__keys_publish(struct hc_store *s, uint64_t now_ms)
{
    struct keys_task *t;
    uint32_t n = 0;

    if (!s->cfg.keys_interval_ms || s->keys_busy || s->stopping || s->keys_gen == s->sealed_gen ||
        now_ms - s->keys_last_ms < s->cfg.keys_interval_ms)
        return;
    s->keys_last_ms = now_ms;
    if (!(t = calloc(1, sizeof(*t))) ||
        !(t->seqs = malloc((s->segs_cap ? s->segs_cap : 1) * sizeof(*t->seqs)))) {
        free(t);
        return; /* the next interval */
    }
    for (uint32_t i = 0; i < s->segs_cap && n < HC_KEYS_MAX_SEGS; i++) {
        const struct seg *seg = s->segs[i];
        if (seg && seg->local && seg->state == SEG_SEALED)
            t->seqs[n++] = seg->seq;
    }
    t->s = s;
    t->nsegs = n;
    t->gen = s->sealed_gen;
    snprintf(t->dir, sizeof(t->dir), "%s", s->dir);
    s->keys_busy = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, keys_before, keys_done, NULL);
}
