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
 * <owner>.<16 lowercase hex digits: a number counting up>.rh (written under a
 * temporary name, fsync'ed, renamed: another mount reads it whole or not at
 * all), and removes its hint files older than hint_keep_ms (a minute, or four
 * discovery intervals when that is longer, so the owner's discovery sees
 * them), at most HINT_FILES_MAX kept (the oldest go early). The close
 * removes what is left (hc__hints_close), a start removes leftovers
 * (recover.c).
 *
 * The owner: discovery (discovery.c) lists the other nodes' directories; a
 * file there named <this node>.<n>.rh not taken before is read (at most
 * HINT_FILE_MAX bytes, HINT_PASS_BYTES a walk; checked: another node's file
 * may be broken or hostile) and its hints applied on the loop thread: a hint
 * whose key is in the index on a local segment of the same seq counts as a
 * read of that page (hc__note_read: read again, or late in its segment's
 * life, it is reinserted at eviction). Each file is taken
 * once, applied or refused (idx_refused); the names taken are kept while
 * their node lists them. A hint costs its owner at most a rewrite of the
 * page within REINSERT_RATIO.
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
#define HINT_KEEP_MS 60000u  /* a hint file is removed after this long at least */
#define HINT_FILES_MAX 1024u /* hint files kept at most */
#define HINT_HDR 32u
#define HINT_ENT 32u
#define HINT_FILE_MAX (HINT_HDR + (size_t)HINT_MAX * HINT_ENT)
static const char HINT_MAGIC[8] = {'H', 'C', 'R', 'H', '0', '0', '0', '1'};

struct hint_file {
    char path[PATH_MAX];
    char tmp[PATH_MAX + 8];
    unsigned char *buf;
    size_t len;
    uint32_t owner;
    uint64_t n;
    bool ok; /* written (hints_before) */
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
};

/* A read of the remote page e (on seg) from storage for a client. */
void hc__hint_add(struct hc_store *s, const struct seg *seg, const struct hc_index_ent *e)
{
    if (seg->local || s->nhints >= HINT_MAX ||
        hc__grow(&s->hints, s->nhints, &s->caphints, sizeof(*s->hints), 256) < 0)
        return;
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
        t->files[i].ok = hc__write_file_atomic(t->files[i].tmp, t->files[i].path, t->files[i].buf,
                                               t->files[i].len) == 0;
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

/* Back on the loop thread: the files written are remembered for removal
 * (the tick made room for them in the ring). */
static void hints_done(struct hc_io_req *req)
{
    struct hints_task *t = container_of(req, struct hints_task, req);
    struct hc_store *s = t->s;

    s->inflight--;
    s->hint_busy = false;
    for (size_t i = 0; i < t->nfiles; i++) {
        if (!t->files[i].ok || s->nhint_files == HINT_FILES_MAX)
            continue;
        s->hint_made[(s->hint_made_head + s->nhint_files) % HINT_FILES_MAX] =
            (struct hint_made){.owner = t->files[i].owner, .n = t->files[i].n, .at_ms = t->at_ms};
        s->nhint_files++;
        s->st->hint_files++;
        s->st->hints_sent += (t->files[i].len - HINT_HDR) / HINT_ENT;
    }
    hints_task_free(t);
}

/* The path of this node's hint file for owner numbered n. Loop thread. */
static void hint_path(const struct hc_store *s, uint32_t owner, uint64_t n, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s.%016" PRIx64 ".rh", s->dir, s->nodes[owner], n);
}

/* How long this node's hint files stay: long enough for the owners'
 * discovery (at least four of its intervals, the fleet's being alike). */
static uint64_t hint_keep_ms(const struct hc_store *s)
{
    uint64_t k = 4 * (uint64_t)s->cfg.discovery_interval_ms;
    return k > HINT_KEEP_MS ? k : HINT_KEEP_MS;
}

/* At a tick: every HINT_FLUSH_MS, the waiting hints out to their owners and
 * the hint files older than hint_keep_ms removed, or the oldest ones early
 * to keep HINT_FILES_MAX (one flush in flight). */
void hc__hints_tick(struct hc_store *s, uint64_t now_ms)
{
    struct hints_task *t;
    size_t nold = 0, groups = 0;

    if (s->hint_busy || now_ms - s->last_hint_ms < HINT_FLUSH_MS)
        return;
    s->last_hint_ms = now_ms;
    if (!s->nhints && !s->nhint_files)
        return;
    if (!s->hint_made && !(s->hint_made = calloc(HINT_FILES_MAX, sizeof(*s->hint_made))))
        return;
    qsort(s->hints, s->nhints, sizeof(*s->hints), hint_node_cmp);
    for (size_t i = 0; i < s->nhints; i++)
        groups += i == 0 || s->hints[i].node != s->hints[i - 1].node;
    while (nold < s->nhint_files &&
           (s->hint_made[(s->hint_made_head + nold) % HINT_FILES_MAX].at_ms + hint_keep_ms(s) <=
                now_ms ||
            s->nhint_files - nold + groups > HINT_FILES_MAX))
        nold++;
    if (!s->nhints && !nold)
        return;
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
        f->owner = s->hints[i].node;
        f->n = ++s->hint_seq;
        hint_path(s, f->owner, f->n, f->path, sizeof(f->path));
        snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", f->path);
        t->nfiles++;
        i = j;
    }
    s->nhints = 0;
    for (size_t i = 0; i < nold; i++) {
        const struct hint_made *m = &s->hint_made[s->hint_made_head];
        hint_path(s, m->owner, m->n, t->old[i], PATH_MAX);
        s->hint_made_head = (s->hint_made_head + 1) % HINT_FILES_MAX;
        s->nhint_files--;
    }
    t->nold = nold;
    t->s = s;
    t->at_ms = now_ms;
    s->hint_busy = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_LOW, hints_before, hints_done, NULL);
}

/* At close (loop thread, nothing in flight): this node's hint files go;
 * their owners took them or will not need them. */
void hc__hints_close(struct hc_store *s)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < s->nhint_files; i++) {
        const struct hint_made *m = &s->hint_made[(s->hint_made_head + i) % HINT_FILES_MAX];
        hint_path(s, m->owner, m->n, path, sizeof(path));
        (void)unlink(path);
    }
    s->nhint_files = 0;
}

/* Orders taken hint files by (node, n). Any thread. */
int hc__hint_seen_cmp(const void *a, const void *b)
{
    const struct hint_seen *x = a, *y = b;
    int c = strcmp(x->node, y->node);
    if (c)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* Whether name is a hint file of another node for self: <self>.<16 hex>.rh;
 * *n set. Any thread. */
bool hc__hints_name(const char *name, const char *self, uint64_t *n)
{
    size_t len = strlen(name), sl = strlen(self);
    if (len != sl + 1 + 16 + 3 || strncmp(name, self, sl) != 0 || name[sl] != '.' ||
        strcmp(name + sl + 17, ".rh") != 0)
        return false;
    for (size_t i = sl + 1; i < sl + 17; i++) /* one spelling a number */
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return hc__parse_hex16(name + sl + 1, n);
}

/* Called on an I/O thread (discovery's walk): reads and checks the hint file
 * at path (opened as hc__open_regular opens a file of the shared volume), if
 * it is at most *budget bytes (then taken from *budget).
 * Returns the number of hints (*out malloc'ed: seq, lo, hi triples) or
 * -errno: -EBADMSG broken or hostile (not a regular file, a symlink, a bad
 * size, header or CRC), -EAGAIN over the budget, else an error worth another
 * try. Touches only its arguments. */
ssize_t hc__hints_read_file(const char *path, size_t *budget, uint64_t **out)
{
    struct stat st;
    unsigned char *buf = NULL;
    uint32_t n;
    int rc, fd = hc__open_regular(path, O_RDONLY | O_NOCTTY, 0);

    *out = NULL;
    if (fd < 0)
        return fd == -ELOOP ? -EBADMSG : fd;
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)HINT_HDR || st.st_size > (off_t)HINT_FILE_MAX) {
        close(fd);
        return -EBADMSG;
    }
    if ((size_t)st.st_size > *budget) {
        close(fd);
        return -EAGAIN;
    }
    if (!(buf = malloc((size_t)st.st_size))) {
        close(fd);
        return -ENOMEM;
    }
    rc = hc__pread_all(fd, buf, (size_t)st.st_size, 0);
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc == -ENODATA ? -EBADMSG : rc; /* shorter than it said */
    }
    *budget -= (size_t)st.st_size;
    n = get32(buf + 8);
    if (memcmp(buf, HINT_MAGIC, sizeof(HINT_MAGIC)) != 0 ||
        (size_t)st.st_size != HINT_HDR + (size_t)n * HINT_ENT ||
        get32(buf + 12) != hc_crc32c(0, buf + HINT_HDR, (size_t)n * HINT_ENT)) {
        free(buf);
        return -EBADMSG;
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
    free(buf);
    return n;
}

/* Applies n hints (seq, lo, hi triples) read from another node's file: each
 * whose page is indexed on a local segment of that seq counts as a read of
 * it, made now. */
void hc__hints_apply(struct hc_store *s, const uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct hc_hash h = {.lo = v[3 * i + 1], .hi = v[3 * i + 2]};
        const struct hc_index_ent *e = hc_index_lookup(&s->ix, h);
        struct seg *seg = e ? s->segs[e->seg] : NULL;
        if (!seg || !seg->local || seg->seq != v[3 * i])
            continue;
        hc__note_read(s, seg, e);
        s->st->hints_applied++;
    }
}
