/* Cuckoo filter: a compact set of page hashes that answers "maybe here" or
 * "not here", for the pages of other nodes in a fleet too large to index
 * exactly (issue 14; docs/BENCHMARKS.md, "What a compact fleet index has to
 * be"). Used by fleet.c (remote_index "filter").
 *
 * Buckets of 4 slots of a 16-bit fingerprint (0 = empty); a hash has two
 * candidate buckets, the second derived from the first and the fingerprint
 * (partial-key cuckoo hashing, Fan et al., CoNEXT 2014, with (a - i) mod n
 * in place of XOR so any number of buckets works), so entries can be moved
 * and removed knowing only their fingerprint. At 95% load a page costs
 * 16.8 bits (2.1 bytes); a hash that was never added is answered "maybe" with
 * a probability of at most 8 / 65535 (two buckets of four slots). A "maybe" is
 * only a hint: the exact entry is looked up before any byte is served, so a
 * false positive becomes a miss, never a wrong page.
 *
 * Not thread-safe: one owner (the loop thread). */
#ifndef HC_FILTER_H
#define HC_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index.h" /* struct hc_hash */

#define HC_CF_SLOTS 4

struct hc_cfilter {
    uint16_t (*b)[HC_CF_SLOTS]; /* nbuckets buckets */
    size_t nbuckets;            /* at least 2 */
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

/* Removes one entry for h, which must have been added (removing a hash that
 * was not may remove another with the same fingerprint and bucket). Returns
 * whether one was found. */
bool hc_cfilter_remove(struct hc_cfilter *f, struct hc_hash h);

/* Entries held, and bytes the table takes. */
size_t hc_cfilter_count(const struct hc_cfilter *f);
size_t hc_cfilter_memory(const struct hc_cfilter *f);

#endif
