/* Integers on disk are little-endian (the hosts we run on): stored as is.
 * Used by every on-disk format (records, .idx, tail indexes, keys files) and
 * the tools that write them. Any thread. */
#ifndef HC_LE_H
#define HC_LE_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hicached's on-disk formats are written host-endian: little-endian hosts only"
#endif

static inline void put16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static inline void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static inline void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline uint16_t get16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#endif
