/* Clear and tombstones. hc_store_clear drops a namespace from this node's
 * view at once and records a clear point per namespace, (segment seq, offset):
 * this node's records of the namespace before it are gone for good, also
 * across a restart (cleared.json in the node directory, written as .tmp,
 * fsynced and renamed). Other nodes' pages are not tombstoned: those seen
 * later are picked up again.
 *
 * A clear answers once cleared.json is written, on an I/O thread, with an
 * error if it could not be (a restart would bring the pages back). One write
 * is in flight at a time; clears meanwhile wait for the next one, which
 * carries all of them.
 *
 * Threads: loop thread, except tomb_before, which runs on an I/O thread.
 * hc__tomb_load reads cleared.json at open, blocking: start-up, before the
 * server listens. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* True when this node's record at (seq, off) of namespace ns was cleared. */
bool hc__tombstoned(const struct hc_store *s, uint16_t ns, uint64_t seq, uint64_t off)
{
    const struct nsent *e = &s->ns[ns];
    return e->tomb && (seq < e->tomb_seq || (seq == e->tomb_seq && off < e->tomb_off));
}

/* The tombstones as cleared.json's text (malloc'ed), or NULL when out of
 * memory. */
static char *tomb_encode(const struct hc_store *s)
{
    json_t *root = json_object();
    char *text = NULL;

    if (!root)
        return NULL;
    for (uint32_t i = 0; i < s->nns; i++) {
        const struct nsent *n = &s->ns[i];
        if (!n->tomb)
            continue;
        json_t *v = json_pack("{s:I,s:I}", "seq", (json_int_t)n->tomb_seq, "offset",
                              (json_int_t)n->tomb_off);
        if (!v || json_object_set_new(root, n->name, v) < 0)
            goto out;
    }
    text = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(2));
out:
    json_decref(root);
    return text;
}

/* cleared.json is read whole at start: more than this is not a tombstone
 * table (a namespace name and two numbers an entry). */
#define TOMB_FILE_MAX (64u << 20)

/* A write of cleared.json and the clears it answers. */
struct tomb_task {
    struct hc_io_req req;
    struct hc_store *s;
    struct deferred *clears; /* each clear's callback; len: the pages it dropped */
    char *text;              /* NULL: no memory to encode it */
    char tmp[PATH_MAX], path[PATH_MAX];
};

/* Called on an I/O thread: writes cleared.json (tmp + fsync + rename). Reads
 * only its task: the text and the paths were made for it at submit. */
static int tomb_before(struct hc_io_req *req)
{
    struct tomb_task *t = container_of(req, struct tomb_task, req);
    if (!t->text)
        return -ENOMEM;
    return hc__write_file_atomic(t->tmp, t->path, t->text, strlen(t->text));
}

static void tomb_submit(struct hc_store *s, struct tomb_task *t);

/* Runs the callbacks of the clears on list with status (0 or -errno). */
static void clears_answer(struct deferred *list, int status)
{
    for (struct deferred *d = list, *next; d; d = next) {
        next = d->next;
        d->cb(d->data, status, status == 0 ? d->len : 0);
        free(d);
    }
}

/* Back on the loop thread: answers the clears the write carried, and starts
 * the next write for the clears that came meanwhile. */
static void tomb_done(struct hc_io_req *req)
{
    struct tomb_task *t = container_of(req, struct tomb_task, req);
    struct hc_store *s = t->s;
    struct deferred *done = t->clears, *waiting = s->tomb_wait;
    int rc = (int)req->result;

    s->inflight--;
    s->tomb_busy = false;
    if (rc < 0) {
        s->st->io_errors++;
        hc_log(HC_LOG_ERR, "store: saving %s: %s (a restart brings the cleared pages back)",
               t->path, strerror(-rc));
    }
    free(t->text);
    free(t);
    if (waiting) {
        struct tomb_task *n = calloc(1, sizeof(*n));
        if (n) {
            tomb_submit(s, n);
        } else {
            s->tomb_wait = NULL;
            clears_answer(waiting, -ENOMEM);
        }
    }
    clears_answer(done, rc < 0 ? rc : 0);
}

/* Writes cleared.json as the table is now on an I/O thread, for the clears
 * on s->tomb_wait (t: zeroed, the caller's until now). */
static void tomb_submit(struct hc_store *s, struct tomb_task *t)
{
    t->s = s;
    t->text = tomb_encode(s);
    snprintf(t->tmp, sizeof(t->tmp), "%s/cleared.json.tmp", s->dir);
    snprintf(t->path, sizeof(t->path), "%s/cleared.json", s->dir);
    t->clears = s->tomb_wait;
    s->tomb_wait = NULL;
    s->tomb_busy = true;
    hc__task_submit(s, &t->req, HC_IO_PRIO_HIGH, tomb_before, tomb_done, NULL);
}

/* Reads cleared.json if present (at open). Returns 0 or -errno with err
 * set. */
int hc__tomb_load(struct hc_store *s, char *err, size_t errlen)
{
    char *path = hc__path_join(s->dir, "cleared.json");
    json_error_t jerr;
    json_t *root = NULL, *v;
    const char *name, *bad = NULL;
    struct stat st;
    char why[160];
    int rc = 0, fd;

    if (!path)
        return -ENOMEM;
    if (lstat(path, &st) < 0) {
        free(path);
        return 0;
    }
    /* not trusted: opened as a regular file only, its size bounded */
    fd = hc__open_regular(path, O_RDONLY, 0);
    if (fd < 0) {
        snprintf(why, sizeof(why), "%s", fd == -EBADMSG ? "not a regular file" : strerror(-fd));
        bad = why;
    } else if (fstat(fd, &st) < 0 || st.st_size > TOMB_FILE_MAX) {
        bad = "larger than any tombstone table";
    } else if (!(root = json_loadfd(fd, 0, &jerr)) || !json_is_object(root)) {
        snprintf(why, sizeof(why), "%s", root ? "not a JSON object" : jerr.text);
        bad = why;
    }
    if (fd >= 0)
        close(fd);
    json_object_foreach(bad ? NULL : root, name, v)
    {
        json_int_t seq, off;
        if (json_unpack(v, "{s:I,s:I}", "seq", &seq, "offset", &off) < 0 || seq < 0 || off < 0 ||
            strlen(name) == 0 || strlen(name) > HC_MAX_NS) {
            snprintf(why, sizeof(why), "bad entry '%.64s'", name);
            bad = why;
            break;
        }
        int id = hc__ns_intern(s, name, strlen(name));
        if (id < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(-id));
            rc = id;
            goto out;
        }
        s->ns[id].tomb = true;
        s->ns[id].tomb_seq = (uint64_t)seq;
        s->ns[id].tomb_off = (uint64_t)off;
    }
    /* A cache starts anyway: the file is set aside (the clears it recorded
     * are lost, so pages cleared before can be found again: bytes that were
     * stored under their keys, never other bytes). */
    if (bad)
        hc__quarantine(s, path, bad);
out:
    json_decref(root);
    free(path);
    return rc;
}

/* hc_store_clear of a valid ns: see store.h. Returns 0 (cb will run once
 * cleared.json is written), or -ENOMEM with nothing changed. */
int hc__clear(struct hc_store *s, int ns, hc_store_cb cb, void *data)
{
    struct deferred *d = calloc(1, sizeof(*d));
    struct tomb_task *t = NULL;
    struct nsent *e = &s->ns[ns];

    if (!d || (!s->tomb_busy && !(t = calloc(1, sizeof(*t))))) {
        free(d);
        return -ENOMEM;
    }
    d->cb = cb;
    d->data = data;
    d->len = hc__index_drop_ns(s, ns);
    hc__write_clear_ns(s, ns);
    hc__linger_drop(s, -1, ns);

    /* Everything this node allocated so far lies before this position: the
     * open segments stop taking appends (several are written at once, so no
     * point inside one of them orders records across them) and every later
     * record goes to a segment created after now (a create in flight makes
     * one of seq >= next_seq). Writes still in flight are kept out of the
     * index by the same test. */
    while (s->nopen > 0)
        hc__seg_close_appends(s, s->opens[s->nopen - 1]);
    e->tomb = true;
    e->tomb_seq = s->next_seq;
    e->tomb_off = 0;
    d->next = s->tomb_wait;
    s->tomb_wait = d;
    if (t)
        tomb_submit(s, t);
    return 0;
}
