/* Remote-read hints: a node reading another node's page tells the page's
 * owner, through the volume, so the owner's reinsertion (evict.c) counts that
 * read as its own clients' reads count (issue 14: the owner cannot see other
 * nodes' reads otherwise, and there is no other service to tell it).
 *
 * The reader: each read of a remote page from storage for a client (as
 * counted for local pages, read.c) adds a hint (the segment's owner, its seq,
 * the page's key hash), at most HINT_MAX waiting (more are dropped: a hint
 * is advice). Every HINT_FLUSH_MS the tick writes the waiting hints, one file
 * per owner, into this node's own directory as
 * <owner>.<16 hex digits: a number counting up>.rh (written under a
 * temporary name, fsync'ed, renamed: another mount reads it whole or not at
 * all), and removes its hint files older than HINT_KEEP_MS. A start removes
 * this node's leftovers (hc__hints_cleanup).
 *
 * The owner: discovery (discovery.c) lists the other nodes' directories; a
 * file there named <this node>.<n>.rh with n above the last one taken from
 * that node is read (at most HINT_FILE_MAX bytes, checked: another node's
 * file may be broken or hostile) and its hints applied on the loop thread: a
 * hint whose key is in the index on a local segment of the same seq adds one
 * read to that page (the two bits of IDX_READ, saturating). A broken file
 * is skipped (and counted in idx_refused); nothing else is trusted in it. A
 * hint costs its owner at most a rewrite of the page within REINSERT_RATIO.
 *
 * File: 32-byte header ("HCRH0001", u32 count, u32 CRC32C of the entries,
 * 16 zero bytes), then count entries of 32 bytes (u64 seq, u64 key hash lo,
 * u64 key hash hi, 8 zero bytes), little-endian.
 *
 * Threads: loop thread, except hints_before and hc__hints_read_file, which
 * run on an I/O thread and touch only their task or their arguments. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"

#define HINT_MAX 65536u      /* hints waiting at most */
#define HINT_FLUSH_MS 5000u  /* the waiting hints go out this often */
#define HINT_KEEP_MS 60000u  /* a hint file is removed after this long */
#define HINT_FILES_MAX 4096u /* hint files remembered for removal */
#define HINT_HDR 32u
#define HINT_ENT 32u
#define HINT_FILE_MAX (HINT_HDR + (size_t)HINT_MAX * HINT_ENT)
static const char HINT_MAGIC[8] = {'H', 'C', 'R', 'H', '0', '0', '0', '1'};

struct hint_file {
    char path[PATH_MAX];
    char tmp[PATH_MAX + 8];
    unsigned char *buf;
    size_t len;
};

/* A flush: the files to write and the old ones to remove. Owned by the pool
 * from submit to done. */
struct hints_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct hint_file *files;
    size_t nfiles;
    char (*old)[PATH_MAX];
    size_t nold;
    uint64_t at_ms;
    size_t written; /* set by hints_before: files written */
};

/* A read of the remote page e (on seg) from storage for a client. */
void hc__hint_add(struct hc_store *s, const struct seg *seg, const struct hc_index_ent *e)
{
    if (seg->local || s->nhints >= HINT_MAX)
        return;
    if (s->nhints == s->caphints) {
        size_t cap = s->caphints ? 2 * s->caphints : 256;
        struct rhint *n = realloc(s->hints, cap * sizeof(*n));
        if (!n)
            return;
        s->hints = n;
        s->caphints = cap;
    }
    s->hints[s->nhints++] = (struct rhint){.node = seg->node, .seq = seg->seq, .h = e->h};
}

static int hint_node_cmp(const void *a, const void *b)
{
    const struct rhint *x = a, *y = b;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Called on an I/O thread: writes the task's files, removes the old ones.
 * Touches only its task. */
static int hints_before(struct hc_io_req *req)
{
    struct hints_task *t = container_of(req, struct hints_task, req);
    for (size_t i = 0; i < t->nfiles; i++)
        if (hc__write_file_atomic(t->files[i].tmp, t->files[i].path, t->files[i].buf,
                                  t->files[i].len) == 0)
            t->written++;
    for (size_t i = 0; i < t->nold; i++)
        (void)unlink(t->old[i]);
    return 0;
}

static void hints_task_free(struct hints_task *t)
{
    for (size_t i = 0; i < t->nfiles; i++)
        free(t->files[i].buf);
    free(t->files);
    free(t->old);
    free(t);
}

/* Back on the loop thread: the files written are remembered for removal. */
static void hints_done(struct hc_io_req *req)
{
    struct hints_task *t = container_of(req, struct hints_task, req);
    struct hc_store *s = t->s;

    s->inflight--;
    s->hint_busy = false;
    s->st->hint_files += t->written;
    for (size_t i = 0; i < t->nfiles; i++) {
        if (s->nhint_files == HINT_FILES_MAX)
            break; /* left to the start's cleanup */
        struct hint_made *m = &s->hint_made[(s->hint_made_head + s->nhint_files) % HINT_FILES_MAX];
        memcpy(m->path, t->files[i].path, sizeof(m->path));
        m->at_ms = t->at_ms;
        s->nhint_files++;
    }
    hints_task_free(t);
}

/* At a tick: every HINT_FLUSH_MS, the waiting hints out to their owners and
 * the hint files older than HINT_KEEP_MS removed (one flush in flight). */
void hc__hints_tick(struct hc_store *s, uint64_t now_ms)
{
    struct hints_task *t;
    size_t nold = 0, groups = 0;

    if (s->hint_busy || now_ms - s->last_hint_ms < HINT_FLUSH_MS)
        return;
    s->last_hint_ms = now_ms;
    if (!s->hint_made && !(s->hint_made = calloc(HINT_FILES_MAX, sizeof(*s->hint_made))))
        return;
    while (nold < s->nhint_files &&
           s->hint_made[(s->hint_made_head + nold) % HINT_FILES_MAX].at_ms + HINT_KEEP_MS <= now_ms)
        nold++;
    if (!s->nhints && !nold)
        return;
    qsort(s->hints, s->nhints, sizeof(*s->hints), hint_node_cmp);
    for (size_t i = 0; i < s->nhints; i++)
        groups += i == 0 || s->hints[i].node != s->hints[i - 1].node;
    if (!(t = calloc(1, sizeof(*t))) ||
        (groups && !(t->files = calloc(groups, sizeof(*t->files)))) ||
        (nold && !(t->old = calloc(nold, sizeof(*t->old))))) {
        if (t)
            hints_task_free(t);
        return; /* the hints wait for the next tick */
    }
    for (size_t i = 0; i < s->nhints;) {
        size_t j = i;
        while (j < s->nhints && s->hints[j].node == s->hints[i].node)
            j++;
        struct hint_file *f = &t->files[t->nfiles];
        size_t n = j - i;
        f->len = HINT_HDR + n * HINT_ENT;
        if (!(f->buf = calloc(1, f->len))) {
            i = j;
            continue; /* those hints are lost: advice only */
        }
        for (size_t k = 0; k < n; k++) {
            unsigned char *p = f->buf + HINT_HDR + k * HINT_ENT;
            put64(p, s->hints[i + k].seq);
            put64(p + 8, s->hints[i + k].h.lo);
            put64(p + 16, s->hints[i + k].h.hi);
        }
        memcpy(f->buf, HINT_MAGIC, sizeof(HINT_MAGIC));
        put32(f->buf + 8, (uint32_t)n);
        put32(f->buf + 12, hc_crc32c(0, f->buf + HINT_HDR, n * HINT_ENT));
        s->hint_seq++;
        snprintf(f->path, sizeof(f->path), "%s/%s.%016" PRIx64 ".rh", s->dir,
                 s->nodes[s->hints[i].node], s->hint_seq);
        snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", f->path);
        t->nfiles++;
        i = j;
    }
    s->st->hints_sent += s->nhints;
    s->nhints = 0;
    for (size_t i = 0; i < nold; i++) {
        memcpy(t->old[i], s->hint_made[s->hint_made_head].path, PATH_MAX);
        s->hint_made_head = (s->hint_made_head + 1) % HINT_FILES_MAX;
        s->nhint_files--;
    }
    t->nold = nold;
    t->s = s;
    t->at_ms = now_ms;
    s->hint_busy = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, hints_before, hints_done, NULL);
}

/* Whether name is a hint file of another node for self: <self>.<16 hex>.rh;
 * *n set. Any thread. */
bool hc__hints_name(const char *name, const char *self, uint64_t *n)
{
    size_t len = strlen(name), sl = strlen(self);
    if (len != sl + 1 + 16 + 3 || strncmp(name, self, sl) != 0 || name[sl] != '.' ||
        strcmp(name + sl + 17, ".rh") != 0)
        return false;
    return hc__parse_hex16(name + sl + 1, n);
}

/* Called on an I/O thread (discovery's walk): reads and checks the hint file
 * at dirfd/name. Returns the number of hints (*out malloc'ed: seq, lo, hi
 * triples) or -errno (-EBADMSG: broken or hostile). Touches only its
 * arguments. */
ssize_t hc__hints_read_file(int dirfd, const char *name, uint64_t **out)
{
    struct stat st;
    unsigned char *buf = NULL;
    ssize_t got, rc;
    uint32_t n;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

    *out = NULL;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)HINT_HDR ||
        st.st_size > (off_t)HINT_FILE_MAX) {
        close(fd);
        return -EBADMSG;
    }
    if (!(buf = malloc((size_t)st.st_size))) {
        close(fd);
        return -ENOMEM;
    }
    got = pread(fd, buf, (size_t)st.st_size, 0);
    close(fd);
    n = get32(buf + 8);
    if (got != st.st_size || memcmp(buf, HINT_MAGIC, sizeof(HINT_MAGIC)) != 0 ||
        (size_t)got != HINT_HDR + (size_t)n * HINT_ENT ||
        get32(buf + 12) != hc_crc32c(0, buf + HINT_HDR, (size_t)n * HINT_ENT)) {
        free(buf);
        return got < 0 ? -EIO : -EBADMSG;
    }
    if (n && !(*out = malloc((size_t)n * 3 * sizeof(uint64_t)))) {
        free(buf);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *p = buf + HINT_HDR + (size_t)i * HINT_ENT;
        (*out)[3 * i] = get64(p);
        (*out)[3 * i + 1] = get64(p + 8);
        (*out)[3 * i + 2] = get64(p + 16);
    }
    rc = n;
    free(buf);
    return rc;
}

/* Applies n hints (seq, lo, hi triples) read from another node's file: each
 * whose page is indexed on a local segment of that seq adds one read to it
 * (saturating). */
void hc__hints_apply(struct hc_store *s, const uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct hc_hash h = {.lo = v[3 * i + 1], .hi = v[3 * i + 2]};
        const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
        struct seg *seg = e ? s->segs[e->seg] : NULL;
        if (!seg || !seg->local || seg->seq != v[3 * i] || (e->flags & IDX_READ) == IDX_READ)
            continue;
        ((struct hc_index_ent *)e)->flags += IDX_READ_ONE; /* the index's entry */
        s->st->hints_applied++;
    }
}
