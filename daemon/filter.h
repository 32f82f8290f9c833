/* Cuckoo filter: a compact set of page hashes that answers "maybe here" or
 * "not here", for the pages of other nodes in a fleet too large to index
 * exactly (issue 14; docs/BENCHMARKS.md, "What a compact fleet index has to
 * be"). Used by fleet.c (remote_index "filter").
 *
 * Buckets of 4 slots of a 15-bit fingerprint (0 = empty); a hash has two
 * candidate buckets, the second derived from the first and the fingerprint
 * (partial-key cuckoo hashing, Fan et al., CoNEXT 2014, with (a - i) mod n
 * in place of XOR so any number of buckets works), so entries can be moved
 * and removed knowing only their fingerprint. A bucket is stored
 * semi-sorted (same paper, section 5.2): its four fingerprints in order, the
 * four top 4-bit parts as one of the 3,876 sorted 4-tuples (12 bits), then
 * the four 11-bit rests: 56 bits, 7 bytes, where 4 x 15 bits would take 60.
 * At 95% load a page costs 14.7 bits (1.84 bytes); a hash that was never
 * added is answered "maybe" with a probability of at most 8 / 32767 (two
 * buckets of four slots). A "maybe" is only a hint: the exact entry is looked
 * up before any byte is served, so a false positive becomes a miss, never a
 * wrong page.
 *
 * Not thread-safe: one owner at a time (the loop thread, or the I/O thread of
 * a task that builds one, fleet.c); the shared code tables are built once,
 * under pthread_once, and only read after. */
#ifndef HC_FILTER_H
#define HC_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index.h" /* struct hc_hash */

#define HC_CF_SLOTS 4
#define HC_CF_BUCKET 7      /* bytes a bucket */
#define HC_CF_FP_MAX 32767u /* fingerprints are 1 to this */

struct hc_cfilter {
    unsigned char *b; /* nbuckets buckets of HC_CF_BUCKET bytes */
    size_t nbuckets;  /* at least 2 */
    size_t count;
    uint32_t seed; /* of the kick choices (deterministic) */
};

/* A filter with room for at least n hashes at 95% load. Returns 0 or -ENOMEM
 * (or -EINVAL for n too large to size). */
int hc_cfilter_init(struct hc_cfilter *f, size_t n);

/* Frees the table; f may be one init failed on. */
void hc_cfilter_free(struct hc_cfilter *f);

/* Adds h. Returns 0, or -ENOSPC when the filter is too full to place it (the
 * filter is then unchanged: the entries the search moved are put back). A
 * hash added twice is counted twice (remove it twice). */
int hc_cfilter_add(struct hc_cfilter *f, struct hc_hash h);

/* Whether h may have been added (false: it was not, or it was removed). */
bool hc_cfilter_maybe(const struct hc_cfilter *f, struct hc_hash h);

/* Starts loading h's two buckets into the CPU's cache, so that the
 * hc_cfilter_maybe of several filters that follows overlaps their memory
 * latencies. */
void hc_cfilter_prefetch(const struct hc_cfilter *f, struct hc_hash h);

/* Removes one entry for h, which must have been added (removing a hash that
 * was not may remove another with the same fingerprint and bucket). Returns
 * whether one was found. */
bool hc_cfilter_remove(struct hc_cfilter *f, struct hc_hash h);

/* Entries held, and bytes the table takes. */
size_t hc_cfilter_count(const struct hc_cfilter *f);
size_t hc_cfilter_memory(const struct hc_cfilter *f);

#endif
