/* Clear and tombstones. hc_store_clear drops a namespace from this node's
 * view at once and records a clear point per namespace, (segment seq, offset):
 * this node's records of the namespace before it are gone for good, also
 * across a restart (cleared.json in the node directory, written as .tmp,
 * fsynced and renamed). Other nodes' pages are not tombstoned: those seen
 * later are picked up again.
 *
 * Threads: loop thread only. Blocking on the mount, on the loop thread:
 * hc__clear writes cleared.json (create, write, fsync, rename); hc__tomb_load
 * reads it at open. */
#include "store_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* True when this node's record at (seq, off) of namespace ns was cleared. */
bool hc__tombstoned(const struct hc_store *s, uint16_t ns, uint64_t seq, uint64_t off)
{
    const struct nsent *e = &s->ns[ns];
    return e->tomb && (seq < e->tomb_seq || (seq == e->tomb_seq && off < e->tomb_off));
}

/* Writes cleared.json (tmp + fsync + rename). Blocking, on the loop thread.
 * Returns 0 or -errno. */
static int tomb_save(struct hc_store *s)
{
    json_t *root = json_object();
    char *text = NULL, *tmp = NULL, *path = NULL;
    int rc = -ENOMEM;

    if (!root)
        return -ENOMEM;
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
    tmp = hc__path_join(s->dir, "cleared.json.tmp");
    path = hc__path_join(s->dir, "cleared.json");
    if (!text || !tmp || !path)
        goto out;
    rc = hc__write_file_atomic(tmp, path, text, strlen(text));
out:
    free(text);
    free(tmp);
    free(path);
    json_decref(root);
    return rc;
}

/* Reads cleared.json if present (at open). Returns 0 or -errno with err
 * set. */
int hc__tomb_load(struct hc_store *s, char *err, size_t errlen)
{
    char *path = hc__path_join(s->dir, "cleared.json");
    json_error_t jerr;
    json_t *root, *v;
    const char *name;
    int rc = 0;

    if (!path)
        return -ENOMEM;
    if (access(path, F_OK) < 0) {
        free(path);
        return 0;
    }
    root = json_load_file(path, 0, &jerr);
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "%s: %s", path, root ? "not a JSON object" : jerr.text);
        rc = -EINVAL;
        goto out;
    }
    json_object_foreach(root, name, v)
    {
        json_int_t seq, off;
        if (json_unpack(v, "{s:I,s:I}", "seq", &seq, "offset", &off) < 0 || seq < 0 || off < 0 ||
            strlen(name) == 0 || strlen(name) > HC_MAX_NS) {
            snprintf(err, errlen, "%s: bad entry '%s'", path, name);
            rc = -EINVAL;
            goto out;
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
out:
    json_decref(root);
    free(path);
    return rc;
}

/* hc_store_clear of a valid ns: see store.h. Returns the pages dropped. */
uint64_t hc__clear(struct hc_store *s, int ns)
{
    size_t n = hc__index_drop_ns(s, ns);
    struct nsent *e = &s->ns[ns];

    hc__write_clear_ns(s, ns);
    hc__linger_drop(s, -1, ns);

    /* Everything this node allocated so far lies before this position; writes
     * still in flight are kept out of the index by the same test. */
    e->tomb = true;
    if (s->open) {
        e->tomb_seq = s->open->seq;
        e->tomb_off = s->open->size;
    } else {
        e->tomb_seq = s->next_seq;
        e->tomb_off = 0;
    }
    int rc = tomb_save(s);
    if (rc < 0)
        hc_log(HC_LOG_ERR, "store: saving cleared.json: %s (a restart brings '%s' back)",
               strerror(-rc), e->name);
    return n;
}
