/* Namespace and node tables. A namespace name gets a small id (at most
 * NS_LIMIT) for the life of the process: index entries, records in flight and
 * tombstones name it by id. Ids are per process; on storage a namespace is
 * always its name. Node names (this node is 0) name the directories segments
 * come from.
 *
 * Threads: loop thread only. */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a of a name: the slot of the namespace map. */
static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Returns the id of namespace name, or -1 if it is not interned. */
int hc__ns_find(const struct hc_store *s, const char *name, size_t len)
{
    uint32_t mask = s->ns_map_cap - 1, i = (uint32_t)fnv1a(name, len) & mask;
    for (; s->ns_map[i]; i = (i + 1) & mask) {
        const struct nsent *e = &s->ns[s->ns_map[i] - 1];
        if (e->len == len && !memcmp(e->name, name, len))
            return (int)(s->ns_map[i] - 1);
    }
    return -1;
}

/* Doubles the namespace map. Returns 0 or -ENOMEM (the map unchanged). */
static int ns_map_grow(struct hc_store *s)
{
    uint32_t ncap = s->ns_map_cap * 2;
    uint32_t *m = calloc(ncap, sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (uint32_t id = 0; id < s->nns; id++) {
        uint32_t i = (uint32_t)fnv1a(s->ns[id].name, s->ns[id].len) & (ncap - 1);
        while (m[i])
            i = (i + 1) & (ncap - 1);
        m[i] = id + 1;
    }
    free(s->ns_map);
    s->ns_map = m;
    s->ns_map_cap = ncap;
    return 0;
}

/* Returns the id of namespace name, adding it if new; -EINVAL, -ENOSPC (too
 * many) or -ENOMEM. */
int hc__ns_intern(struct hc_store *s, const char *name, size_t len)
{
    if (len == 0 || len > HC_MAX_NS)
        return -EINVAL;
    int id = hc__ns_find(s, name, len);
    if (id >= 0)
        return id;
    if (s->nns >= NS_LIMIT)
        return -ENOSPC;
    if ((s->nns + 1) * 2 > s->ns_map_cap && ns_map_grow(s) < 0)
        return -ENOMEM;
    if (s->nns == s->ns_cap) {
        uint32_t ncap = s->ns_cap ? s->ns_cap * 2 : 16;
        struct nsent *n = realloc(s->ns, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->ns = n;
        s->ns_cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len);
    copy[len] = '\0';
    id = (int)s->nns++;
    s->ns[id] = (struct nsent){.name = copy, .len = (uint16_t)len};
    uint32_t mask = s->ns_map_cap - 1, i = (uint32_t)fnv1a(name, len) & mask;
    while (s->ns_map[i])
        i = (i + 1) & mask;
    s->ns_map[i] = (uint32_t)id + 1;
    return id;
}

/* Returns the index of node name in s->nodes, adding it; -ENOMEM. */
int hc__node_intern(struct hc_store *s, const char *name)
{
    for (uint32_t i = 0; i < s->nnodes; i++)
        if (!strcmp(s->nodes[i], name))
            return (int)i;
    if (s->nnodes == s->nodes_cap) {
        uint32_t ncap = s->nodes_cap ? s->nodes_cap * 2 : 8;
        char **n = realloc(s->nodes, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->nodes = n;
        s->nodes_cap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    s->nodes[s->nnodes] = copy;
    return (int)s->nnodes++;
}

/* The index hash of key in namespace ns (an interned id). */
struct hc_hash hc__page_hash(const struct hc_store *s, int ns, const char *key, size_t klen)
{
    return hc_index_hash(s->ns[ns].name, s->ns[ns].len, key, klen);
}
