/* Index: (namespace, key) -> location of the page's record. Part of the
 * storage engine (DESIGN §4, §5); loop thread only, no locking.
 *
 * Built for memory (a million pages cost well under 100 bytes each): keys are
 * not stored, only a 128-bit hash of (namespace name, key) (hc_index_hash),
 * plus the location. Two keys with one hash would share an entry; the record
 * header, checked on every read, turns such a (negligible) collision into a
 * miss, never into wrong bytes.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones); the table doubles at 3/4 load. */
#ifndef HC_INDEX_H
#define HC_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hc_hash {
    uint64_t lo, hi;
};

/* One page. 32 bytes. */
struct hc_index_ent {
    struct hc_hash h;
    uint32_t seg;   /* segment id (slot in the store's segment table) */
    uint32_t off;   /* record offset in HC_STORE_ALIGN units */
    uint32_t len;   /* payload length in bytes */
    uint16_t ns;    /* namespace id (per process) */
    uint16_t flags; /* bit 15 (0x8000) private to the index; bits 0-14 are the
                       caller's, kept as inserted (the store puts a compressed
                       record's size in 4 KiB blocks there) */
};

#define HC_INDEX_FLAGS_USER 0x7fffu

struct hc_index {
    struct hc_index_ent *slots;
    size_t cap; /* power of two */
    size_t count;
};

/* 128-bit hash of (namespace name, key): the same on every node and across
 * restarts, so .idx files can carry it. */
struct hc_hash hc_index_hash(const char *ns, size_t nslen, const char *key, size_t klen);

/* Initializes an empty index. Returns 0 or -ENOMEM (ix then needs no free). */
int hc_index_init(struct hc_index *ix);

/* Frees the table. Accepts an index that init left untouched on error. */
void hc_index_free(struct hc_index *ix);

/* Inserts e (bit 15 of e->flags is ignored). An entry already there for e->h is kept:
 * returns -EEXIST and changes nothing. Returns 0, or -ENOMEM (nothing
 * changed) when the table had to grow and could not. */
int hc_index_insert(struct hc_index *ix, const struct hc_index_ent *e);

/* Returns the entry for h, or NULL. The pointer is valid until the next
 * insert or removal. */
const struct hc_index_ent *hc_index_lookup(const struct hc_index *ix, struct hc_hash h);

/* Removes the entry for h, copying it to *out when out is not NULL. Returns
 * true if there was one. */
bool hc_index_remove(struct hc_index *ix, struct hc_hash h, struct hc_index_ent *out);

/* Removes every entry for which pred returns true (pred sees each entry at
 * least once, and returns true at most once per entry: it may count what it
 * removes). pred must not change the index. Returns how many were removed. */
size_t hc_index_remove_if(struct hc_index *ix, bool (*pred)(const struct hc_index_ent *, void *),
                          void *arg);

/* Entries in the index, and bytes the table takes. */
size_t hc_index_count(const struct hc_index *ix);
size_t hc_index_memory(const struct hc_index *ix);

#endif
