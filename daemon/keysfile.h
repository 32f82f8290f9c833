/* A node's keys file: the entries of all its sealed pages in one file,
 * sorted by hash, so that another daemon that holds only a filter of that
 * node's pages (filter.h) finds a page's exact entry with one small read on a
 * positive (issue 14, item 3; docs/BENCHMARKS.md, "What a compact fleet
 * index has to be"). Written by the owner to a temporary name and renamed;
 * read by any node (fleet.c, remote_index "filter").
 *
 * Layout (little-endian): a header of KEYS_HDR bytes (magic "HCK1", u32
 * version, u64 entries, u32 segments, u32 blocks, u32 CRC32C of the
 * segment table, u32 CRC32C of the block table, u32 CRC32C of the header's
 * first 32 bytes, padding); the segment table (u64 seq each); the block table
 * (a block is HC_KEYS_PER_BLOCK entries, the last one fewer: u64 first hash,
 * u32 entries, u32 CRC32C of the block's bytes, each); padding to 8; the
 * entries (HC_KEYS_ENT bytes: u64 hash lo, u32 segment index into the
 * table, u32 offset in 4 KiB units, u32 length, u16 flags, u16 zero).
 *
 * A reader loads the header and the two tables (hc_keys_load: every count
 * bounded by the file's size and HC_KEYS_MAX_*, both CRCs checked) and then
 * reads one block a lookup (hc_keys_block_pos, hc_keys_block_find: the
 * block's CRC checked, its entries in order). The file may come from another
 * node, broken or hostile: a bad file is refused whole, a bad block is a
 * miss. An entry found says where the owner wrote the page; the record's own
 * header, checked on every read, names the key, so an entry of another key
 * (a 64-bit hash collision, a filter's false positive, a stale file) is a
 * miss, never a wrong page.
 *
 * Threads: every function touches only its arguments (any thread; the ones
 * that read or write a file block on it: I/O threads in the daemon). */
#ifndef HC_KEYSFILE_H
#define HC_KEYSFILE_H

#include <stddef.h>
#include <stdint.h>

#define HC_KEYS_ENT 24
#define HC_KEYS_PER_BLOCK 341 /* 8,184 bytes of entries a block */
/* A node's keys file holds at most this many segments and entries (2.7 *
 * 10^8 pages a node), so that a hostile one, sparse and of the size its
 * header claims, costs a reader at most 8 MiB of segment table and 12 MiB
 * of block table read and kept before the tables' CRCs refuse it. */
#define HC_KEYS_MAX_SEGS (1u << 20)
#define HC_KEYS_MAX_ENTS (1ull << 28)

struct hc_keys_ent {
    uint64_t h;   /* hash lo (hc_index_hash) */
    uint32_t seg; /* index into the segment table */
    uint32_t off; /* record offset in 4 KiB units */
    uint32_t len; /* payload length */
    uint16_t flags;
};

struct hc_keys_block {
    uint64_t first; /* hash of its first entry */
    uint32_t n;     /* entries */
    uint32_t crc;   /* CRC32C of its n * HC_KEYS_ENT bytes */
};

/* What a reader keeps of a keys file: about 0.05 byte a page. */
struct hc_keys {
    uint64_t nents;
    uint32_t nsegs, nblocks;
    uint64_t *seqs;               /* nsegs */
    struct hc_keys_block *blocks; /* nblocks */
    uint64_t ents_off;            /* file offset of the first entry */
};

/* Writes the keys file of ents (n of them; sorted here by hash, in place)
 * whose seg fields index seqs (nsegs) to fd, from offset 0, and fsyncs it.
 * Returns 0, -EINVAL (a seg index out of the table, too many entries or
 * segments) or -errno of a write. */
int hc_keys_write(int fd, const uint64_t *seqs, uint32_t nsegs, struct hc_keys_ent *ents, size_t n);

/* Reads the header and tables of the keys file open on fd (size bytes) into
 * k. Returns 0, -EBADMSG (not a valid keys file of that size), -ENOMEM or
 * -errno of a read. */
int hc_keys_load(int fd, uint64_t size, struct hc_keys *k);

void hc_keys_free(struct hc_keys *k);

/* The block that holds h if any does: its index, or -1 (h sorts before the
 * first entry, or the file has none). *pos and *len: the bytes to read. */
long hc_keys_block_pos(const struct hc_keys *k, uint64_t h, uint64_t *pos, size_t *len);

/* Looks h up in block b, whose bytes (as read from the position
 * hc_keys_block_pos gave) are buf, len of them. Returns 0 with *out, -ENOENT
 * (not there) or -EBADMSG (the block's bytes fail its CRC or order, or name a
 * segment outside the table: treat as not there). */
int hc_keys_block_find(const struct hc_keys *k, long b, const void *buf, size_t len, uint64_t h,
                       struct hc_keys_ent *out);

/* hc_keys_block_pos, a pread, hc_keys_block_find: for tests and tools. */
int hc_keys_lookup(const struct hc_keys *k, int fd, uint64_t h, struct hc_keys_ent *out);

#endif
