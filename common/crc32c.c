/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78): SSE4.2 crc32
 * instruction where the CPU has it, a slicing-by-8 table otherwise. The choice
 * is made once, at the first call.
 *
 * The crc32 instruction has a latency of 3 cycles but a throughput of one per
 * cycle, so one chain runs at a third of the possible speed. For long buffers
 * the hardware path runs three independent chains over three adjacent lanes of
 * L bytes each and joins them: with the raw (non-inverted) register,
 * R(s, A||B) = shift(R(s, A), |B|) ^ R(0, B), where shift(c, n) is c times
 * x^(8n) mod P. shift by a fixed L is a linear map on 32 bits, kept as four
 * byte-indexed tables built at init.
 *
 * Where the CPU has AVX-512 and VPCLMULQDQ, a CRC (with or without a copy)
 * of 1 KiB or more is folded instead (crc_fold): sixteen 128-bit lanes of the
 * buffer, each carried forward 256 bytes at a time by two carry-less
 * multiplies, so the loop is bound by loads rather than by the crc32
 * instruction. Folding a lane A = A_hi x^64 + A_lo (its first 8 bytes, its
 * low qword, are A_hi, bit-reflected) across D bits replaces it by
 * A x^D mod P, added to the lane D bits later; in the reflected domain that
 * is clmul(A_hi, K(D + 63)) ^ clmul(A_lo, K(D - 1)) with K(n) = x^n mod P
 * reflected over 64 bits (the clmul of reflected operands comes out one bit
 * short, hence 63 and -1). The last lane left is 16 bytes whose CRC,
 * followed by the bytes not folded, is the buffer's: those go through the
 * crc32 instruction. */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u

/* Lane lengths of the 3-way hardware loop (multiples of 8): blocks of
 * 3 * LANE_BIG bytes, then of 3 * LANE_MID, then of 3 * LANE_SMALL, then one
 * chain for the rest. Long lanes keep the join's cost (two table look-ups on
 * the critical path) small; out of cache, they also stream better. */
#define LANE_BIG 32768
#define LANE_MID 2048
#define LANE_SMALL 256

static uint32_t table[8][256];
/* shift_*[k][b]: the raw register b << 8k after LANE_* zero bytes. */
static uint32_t shift_big[4][256], shift_mid[4][256], shift_small[4][256];
static bool have_hw, have_fold;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* crc_fold's shortest buffer (its set-up and final reduction cost about as
 * much as 256 bytes through the crc32 loop). */
#define FOLD_MIN 1024
/* Fold constants: fold_k[i] = {K(D + 63), K(D - 1)} for D = 2048 (256 bytes
 * ahead: the main loop), 512 (64 bytes: joining the four registers), 384,
 * 256 and 128 (the lanes of the last register). */
enum { FK_2048, FK_512, FK_384, FK_256, FK_128, FK_N };
static uint64_t fold_k[FK_N][2];

/* x^n mod P, bit-reflected over 64 bits (the reflected 32-bit value's bit 31,
 * x^0, at bit 63). */
static uint64_t xpow_refl64(unsigned n)
{
    uint32_t v = 0x80000000u; /* x^0, reflected */
    while (n--)
        v = v & 1 ? (v >> 1) ^ POLY : v >> 1;
    return (uint64_t)v << 32;
}

/* The raw register c after n zero bytes (n a multiple of 8), slicing by 8:
 * table[k][0] is 0, so only the four bytes of c contribute. */
static uint32_t zeros_raw(uint32_t c, size_t n)
{
    for (; n; n -= 8)
        c = table[7][c & 0xff] ^ table[6][(c >> 8) & 0xff] ^ table[5][(c >> 16) & 0xff] ^
            table[4][c >> 24];
    return c;
}

/* Fill t with the linear map "append n zero bytes" from its 32 basis vectors. */
static void shift_init(uint32_t t[4][256], size_t n)
{
    uint32_t basis[32];

    for (int i = 0; i < 32; i++)
        basis[i] = zeros_raw(1u << i, n);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if (b >> j & 1)
                    v ^= basis[8 * k + j];
            t[k][b] = v;
        }
}

static void crc32c_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
    shift_init(shift_big, LANE_BIG);
    shift_init(shift_mid, LANE_MID);
    shift_init(shift_small, LANE_SMALL);
    static const unsigned fold_d[FK_N] = {2048, 512, 384, 256, 128};
    for (int i = 0; i < FK_N; i++) {
        fold_k[i][0] = xpow_refl64(fold_d[i] + 63);
        fold_k[i][1] = xpow_refl64(fold_d[i] - 1);
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2");
    have_fold = have_hw && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("pclmul");
#endif
}

/* Software CRC32C, slicing by 8. Exported (hc__) for the unit test. */
uint32_t hc__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    pthread_once(&once, crc32c_init);
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc; /* little-endian: the low 4 bytes meet the running crc */
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
static inline uint32_t shift_apply(const uint32_t t[4][256], uint32_t c)
{
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* The raw register c after the 3 * lane bytes at p: three chains, joined.
 * With d, the bytes are also stored at d (a copy fused with the CRC: each word
 * is loaded once), with non-temporal stores when nt (d 8-byte aligned): the
 * target's lines are not read first, nor kept in the cache. */
__attribute__((target("sse4.2"), always_inline)) static inline uint64_t
crc3(uint64_t c, const unsigned char *p, unsigned char *d, bool nt, size_t lane,
     const uint32_t t[4][256])
{
    uint64_t c1 = 0, c2 = 0;

    for (size_t i = 0; i < lane; i += 8) {
        uint64_t w0, w1, w2;
        memcpy(&w0, p + i, 8);
        memcpy(&w1, p + lane + i, 8);
        memcpy(&w2, p + 2 * lane + i, 8);
        if (d && nt) { /* non-temporal: no read of the target's lines first */
            _mm_stream_si64((long long *)(void *)(d + i), (long long)w0);
            _mm_stream_si64((long long *)(void *)(d + lane + i), (long long)w1);
            _mm_stream_si64((long long *)(void *)(d + 2 * lane + i), (long long)w2);
        } else if (d) {
            memcpy(d + i, &w0, 8);
            memcpy(d + lane + i, &w1, 8);
            memcpy(d + 2 * lane + i, &w2, 8);
        }
        c = _mm_crc32_u64(c, w0);
        c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2);
    }
    uint32_t r = shift_apply(t, (uint32_t)c) ^ (uint32_t)c1;
    return shift_apply(t, r) ^ (uint32_t)c2;
}

/* Whether crc3 over lanes of lane bytes may store non-temporally to a target
 * ahead bytes past the source's offset in a 4 KiB page (mod 4096). crc3 loads
 * at p + j * lane + i and stores at d + k * lane + i (j, k in 0..2) as i
 * grows; a load whose address matches a pending store's partly written line
 * in bits 0-11 waits until that line has gone to memory. So every store
 * stream must lie 256 bytes to a page less 64 ahead of every load stream.
 * Measured on an AMD EPYC (4 MiB copies with 32 KiB lanes): 0.5-0.9 GB/s for
 * a target 8-64 bytes ahead, 3.6-4.8 (some runs 11-15) at the same offset,
 * 10-14 for 2 KiB ahead; plain stores 4-8 in the window. */
static bool nt_ok(uintptr_t ahead, size_t lane)
{
    for (int k = -2; k <= 2; k++) {
        uintptr_t a = (ahead + (uintptr_t)((intptr_t)k * (intptr_t)lane)) & 4095;
        if (a < 256 || a > 4096 - 64)
            return false;
    }
    return true;
}

#define FOLD_TARGET "avx512f,vpclmulqdq,pclmul,sse4.2"

/* x carried forward across k's distance, added to y (a lane at a time). */
__attribute__((target(FOLD_TARGET), always_inline)) static inline __m512i fold(__m512i x, __m512i k,
                                                                               __m512i y)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), y, 0x96);
}

/* fold_k[i] in each 128-bit lane. */
__attribute__((target(FOLD_TARGET), always_inline)) static inline __m512i fold_k4(int i)
{
    return _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k[i][1], (long long)fold_k[i][0]));
}

/* Stores v at d: not (FOLD_NONE), plainly or non-temporally (d 64-byte
 * aligned). */
enum { FOLD_NONE, FOLD_STORE, FOLD_STREAM };
__attribute__((target(FOLD_TARGET), always_inline)) static inline void fold_st(unsigned char *d,
                                                                               __m512i v, int st)
{
    if (st == FOLD_STREAM)
        _mm512_stream_si512((void *)d, v);
    else if (st == FOLD_STORE)
        _mm512_storeu_si512(d, v);
}

/* The raw register c after the bytes at *p, all but the last *len % 64 (*len
 * >= 256), folded (see the top of the file), and stored at *d as they go
 * (st); *p, *d and *len are moved past them. */
__attribute__((target(FOLD_TARGET), always_inline)) static inline uint64_t
fold_body(uint64_t c, const unsigned char **pp, unsigned char **dd, size_t *lenp, int st)
{
    const unsigned char *p = *pp;
    unsigned char *d = *dd;
    size_t len = *lenp;
    __m512i k = fold_k4(FK_2048), k64 = fold_k4(FK_512);
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64);
    __m512i x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);

    if (st) { /* (d is NULL without: no arithmetic on it) */
        fold_st(d, x0, st);
        fold_st(d + 64, x1, st);
        fold_st(d + 128, x2, st);
        fold_st(d + 192, x3, st);
        d += 256;
    }
    /* the register so far goes into the first 4 bytes: R(c, M) = R(0, M ^ c) */
    x0 = _mm512_xor_si512(x0, _mm512_set_epi64(0, 0, 0, 0, 0, 0, 0, (long long)(uint32_t)c));
    for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
        __m512i a0 = _mm512_loadu_si512(p), a1 = _mm512_loadu_si512(p + 64);
        __m512i a2 = _mm512_loadu_si512(p + 128), a3 = _mm512_loadu_si512(p + 192);
        if (st) {
            fold_st(d, a0, st);
            fold_st(d + 64, a1, st);
            fold_st(d + 128, a2, st);
            fold_st(d + 192, a3, st);
            d += 256;
        }
        x0 = fold(x0, k, a0);
        x1 = fold(x1, k, a1);
        x2 = fold(x2, k, a2);
        x3 = fold(x3, k, a3);
    }
    x1 = fold(x0, k64, x1);
    x2 = fold(x1, k64, x2);
    x3 = fold(x2, k64, x3);
    for (; len >= 64; p += 64, len -= 64) {
        __m512i a = _mm512_loadu_si512(p);
        if (st) {
            fold_st(d, a, st);
            d += 64;
        }
        x3 = fold(x3, k64, a);
    }
    /* lanes 0-2 of x3 carried to lane 3 (48, 32 and 16 bytes ahead) */
    __m512i kl = _mm512_set_epi64(0, 0, (long long)fold_k[FK_128][1], (long long)fold_k[FK_128][0],
                                  (long long)fold_k[FK_256][1], (long long)fold_k[FK_256][0],
                                  (long long)fold_k[FK_384][1], (long long)fold_k[FK_384][0]);
    __m512i y = _mm512_xor_si512(_mm512_clmulepi64_epi128(x3, kl, 0x00),
                                 _mm512_clmulepi64_epi128(x3, kl, 0x11));
    __m128i r = _mm_xor_si128(_mm512_extracti32x4_epi32(x3, 3), _mm512_castsi512_si128(y));
    r = _mm_xor_si128(
        r, _mm_xor_si128(_mm512_extracti32x4_epi32(y, 1), _mm512_extracti32x4_epi32(y, 2)));
    c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(r));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(r, 1));
    *pp = p;
    *dd = d;
    *lenp = len;
    return c;
}

/* fold_body, one function for each way of storing. Call only when have_fold. */
__attribute__((target(FOLD_TARGET), noinline)) static uint64_t
crc_fold(uint64_t c, const unsigned char **p, unsigned char **d, size_t *len, int st)
{
    if (st == FOLD_STREAM)
        return fold_body(c, p, d, len, FOLD_STREAM);
    if (st == FOLD_STORE)
        return fold_body(c, p, d, len, FOLD_STORE);
    return fold_body(c, p, d, len, FOLD_NONE);
}

/* Whether crc_fold may store non-temporally to d, ahead bytes past the
 * source's offset in a 4 KiB page: d 64-byte aligned, and no load of a
 * step's 256 bytes matches in address bits 0-11 a line stored in that step
 * or the two before, which may still be on their way to memory (see nt_ok:
 * such a load waits for them). */
static bool fold_nt_ok(const unsigned char *d, uintptr_t ahead)
{
    return ((uintptr_t)d & 63) == 0 && ahead >= 768 && ahead <= 4096 - 64;
}

/* The hardware CRC32C of len bytes at p, continuing crc; with d, the bytes are
 * also copied to d. With use_fold, a long buffer is folded first. */
__attribute__((target("sse4.2"), always_inline)) static inline uint32_t
crc_hw(uint32_t crc, const unsigned char *p, unsigned char *d, size_t len, bool use_fold)
{
    uint64_t c = ~crc;
    /* Non-temporal stores only where no load runs into them: see nt_ok. */
    uintptr_t ahead = ((uintptr_t)d - (uintptr_t)p) & 4095;
    bool nt = d && (ahead & 7) == 0, used = false;

#define ADVANCE(n) (p += (n), d = d ? d + (n) : NULL, len -= (n))
    if (use_fold && len >= FOLD_MIN) {
        /* a copy's first bytes one at a time up to a 64-byte aligned target,
         * where the fold may store non-temporally */
        for (; d && ((uintptr_t)d & 63); ADVANCE(1)) {
            *d = *p;
            c = _mm_crc32_u8((uint32_t)c, *p);
        }
        int st = !d ? FOLD_NONE : fold_nt_ok(d, ahead) ? FOLD_STREAM : FOLD_STORE;
        c = crc_fold(c, &p, &d, &len, st);
        used = st == FOLD_STREAM;
    }
    while (len && ((uintptr_t)p & 7)) {
        if (d)
            *d = *p;
        c = _mm_crc32_u8((uint32_t)c, *p);
        ADVANCE(1);
    }
    if (len >= 3 * LANE_SMALL) {
        pthread_once(&once, crc32c_init); /* the shift tables */
        bool nt_big = nt && nt_ok(ahead, LANE_BIG), nt_mid = nt && nt_ok(ahead, LANE_MID);
        bool nt_small = nt && nt_ok(ahead, LANE_SMALL);
        for (; len >= 3 * LANE_BIG; ADVANCE(3 * LANE_BIG), used |= nt_big)
            c = crc3(c, p, d, nt_big, LANE_BIG, shift_big);
        for (; len >= 3 * LANE_MID; ADVANCE(3 * LANE_MID), used |= nt_mid)
            c = crc3(c, p, d, nt_mid, LANE_MID, shift_mid);
        for (; len >= 3 * LANE_SMALL; ADVANCE(3 * LANE_SMALL), used |= nt_small)
            c = crc3(c, p, d, nt_small, LANE_SMALL, shift_small);
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (d)
            memcpy(d, &w, 8);
        c = _mm_crc32_u64(c, w);
        ADVANCE(8);
    }
    while (len) {
        if (d)
            *d = *p;
        c = _mm_crc32_u8((uint32_t)c, *p);
        ADVANCE(1);
    }
#undef ADVANCE
    if (used)
        _mm_sfence(); /* the non-temporal stores ordered before any later store */
    return ~(uint32_t)c;
}

/* Hardware CRC32C. Call only when the CPU has SSE4.2 (hc__crc32c_hw_ok()). */
__attribute__((target("sse4.2"))) uint32_t hc__crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    return crc_hw(crc, buf, NULL, len, have_fold);
}

/* The same without folding: the three crc32 chains only (for the tests, on a
 * CPU that folds). */
__attribute__((target("sse4.2"))) uint32_t hc__crc32c_hw3(uint32_t crc, const void *buf, size_t len)
{
    return crc_hw(crc, buf, NULL, len, false);
}

/* The same, copying the bytes to dst as it goes. */
__attribute__((target("sse4.2"))) uint32_t hc__crc32c_copy_hw(uint32_t crc, void *dst,
                                                              const void *src, size_t len)
{
    return crc_hw(crc, src, dst, len, have_fold);
}

/* The same without folding (for the tests). */
__attribute__((target("sse4.2"))) uint32_t hc__crc32c_copy_hw3(uint32_t crc, void *dst,
                                                               const void *src, size_t len)
{
    return crc_hw(crc, src, dst, len, false);
}
#endif

/* True when hc__crc32c_hw may be called. */
bool hc__crc32c_hw_ok(void)
{
    pthread_once(&once, crc32c_init);
    return have_hw;
}

/* True when hc__crc32c_hw folds long buffers (AVX-512 and VPCLMULQDQ). */
bool hc__crc32c_fold_ok(void)
{
    pthread_once(&once, crc32c_init);
    return have_fold;
}

uint32_t hc_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&once, crc32c_init);
#if defined(__x86_64__)
    if (have_hw)
        return hc__crc32c_hw(crc, buf, len);
#endif
    return hc__crc32c_sw(crc, buf, len);
}

uint32_t hc_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len)
{
    pthread_once(&once, crc32c_init);
#if defined(__x86_64__)
    if (have_hw)
        return hc__crc32c_copy_hw(crc, dst, src, len);
#endif
    memcpy(dst, src, len);
    return hc__crc32c_sw(crc, dst, len);
}
