#ifndef HC_CRC32C_H
#define HC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2, and
 * folded with VPCLMULQDQ where it also has AVX-512 (1 KiB or more).
 * crc is the previous value (0 to start); returns the updated value.
 * Thread-safe; callable from any thread. */
uint32_t hc_crc32c(uint32_t crc, const void *buf, size_t len);

/* Copies len bytes from src to dst (not overlapping) and returns the CRC32C of
 * them, continuing crc, in one pass where the CPU has SSE4.2 (each word is
 * loaded once; non-temporal stores where no load runs into them, see
 * crc32c.c). Thread-safe. */
uint32_t hc_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len);

#endif
