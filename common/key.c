/* Validation of keys and namespaces: 1..256 characters of [A-Za-z0-9_.-],
 * not "." and without "..". Keys never become paths; the rule keeps them printable,
 * unambiguous in logs and safe in any later use. */
#include "key.h"

#include <stdbool.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* X(id, text): every reason, written once; the tables below prefix it with
 * "key", "namespace" or "name" at compile time so the strings stay static. */
#define HC_NAME_REASONS(X)                                                                         \
    X(EMPTY, "is empty")                                                                           \
    X(LONG, "is longer than 256 characters")                                                       \
    X(SLASH, "contains '/'")                                                                       \
    X(NUL, "contains a NUL byte")                                                                  \
    X(SPACE, "contains a space")                                                                   \
    X(CONTROL, "contains a control character (tab, newline, ...)")                                 \
    X(NONASCII, "contains a non-ASCII byte")                                                       \
    X(CHAR, "contains a character outside [A-Za-z0-9_.-]")                                         \
    X(DOT, "is '.'")                                                                               \
    X(DOTDOT, "contains '..'")

enum name_reason {
#define HC_REASON_ENUM(id, text) R_##id,
    HC_NAME_REASONS(HC_REASON_ENUM)
#undef HC_REASON_ENUM
};

#define HC_REASON_KEY(id, text) "key " text,
#define HC_REASON_NS(id, text) "namespace " text,
#define HC_REASON_NAME(id, text) "name " text,
static const char *const key_reasons[] = {HC_NAME_REASONS(HC_REASON_KEY)};
static const char *const ns_reasons[] = {HC_NAME_REASONS(HC_REASON_NS)};
static const char *const name_reasons[] = {HC_NAME_REASONS(HC_REASON_NAME)};

static const char *reason(const char *what, enum name_reason r)
{
    if (what && strcmp(what, "key") == 0)
        return key_reasons[r];
    if (what && strcmp(what, "namespace") == 0)
        return ns_reasons[r];
    return name_reasons[r];
}

/* Classifies one byte that is not in [A-Za-z0-9_.-]. */
static enum name_reason bad_char(unsigned char c)
{
    if (c == '/')
        return R_SLASH;
    if (c == '\0')
        return R_NUL;
    if (c == ' ')
        return R_SPACE;
    if (c < 0x20 || c == 0x7f)
        return R_CONTROL;
    if (c >= 0x80)
        return R_NONASCII;
    return R_CHAR;
}

/* 1 for the bytes of [A-Za-z0-9_.-], 2 for '.', 0 for every other byte. */
static const unsigned char name_class[256] = {
    ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1, ['_'] = 1, ['-'] = 1, ['.'] = 2,
};

#if defined(__SSE2__)
/* True when every byte of s[0..len) is in [A-Za-z0-9_.-] and no two dots
 * follow each other: 16 bytes a step (keys are checked on every request, on
 * both sides of the socket). The exact reason for a refusal is left to the
 * byte-wise pass. */
static bool name_fast_ok(const char *s, size_t len)
{
    const __m128i a1 = _mm_set1_epi8('a' - 1), z1 = _mm_set1_epi8('z' + 1);
    const __m128i d1 = _mm_set1_epi8('0' - 1), d9 = _mm_set1_epi8('9' + 1);
    const __m128i lower = _mm_set1_epi8(0x20), dot = _mm_set1_epi8('.');
    const __m128i us = _mm_set1_epi8('_'), dash = _mm_set1_epi8('-');
    unsigned carry = 0; /* the last byte of the previous step was a dot */
    size_t i;

    for (i = 0; i + 16 <= len; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i l = _mm_or_si128(x, lower); /* bytes >= 0x80 stay negative */
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(l, a1), _mm_cmplt_epi8(l, z1));
        __m128i isdot = _mm_cmpeq_epi8(x, dot);
        unsigned dots;

        ok = _mm_or_si128(ok, _mm_and_si128(_mm_cmpgt_epi8(x, d1), _mm_cmplt_epi8(x, d9)));
        ok = _mm_or_si128(
            ok, _mm_or_si128(isdot, _mm_or_si128(_mm_cmpeq_epi8(x, us), _mm_cmpeq_epi8(x, dash))));
        if (_mm_movemask_epi8(ok) != 0xffff)
            return false;
        dots = (unsigned)_mm_movemask_epi8(isdot);
        if ((dots & ((dots << 1) | carry)) != 0)
            return false;
        carry = dots >> 15;
    }
    for (; i < len; i++) {
        unsigned cls = name_class[(unsigned char)s[i]];

        if (cls == 0 || (cls == 2 && carry))
            return false;
        carry = cls == 2;
    }
    return true;
}
#endif

/* Returns NULL when s[0..len) is a valid key or namespace, else a static
 * reason that begins with what ("key", "namespace"; anything else reads
 * "name"). The first byte outside the set decides the reason; a name made only of
 * allowed bytes is refused as "." or for "..". Thread-safe. */
const char *hc_name_invalid(const char *what, const char *s, size_t len)
{
    unsigned prev = 0;
    bool dotdot = false;
    size_t i;

    if (len == 0 || s == NULL)
        return reason(what, R_EMPTY);
    if (len > HC_MAX_KEY)
        return reason(what, R_LONG);
#if defined(__SSE2__)
    if (name_fast_ok(s, len))
        return len == 1 && s[0] == '.' ? reason(what, R_DOT) : NULL;
#endif
    /* One pass, a table lookup a byte: this runs on every key of every
     * request, on both sides of the socket. */
    for (i = 0; i < len; i++) {
        unsigned cls = name_class[(unsigned char)s[i]];

        if (cls == 0)
            return reason(what, bad_char((unsigned char)s[i]));
        dotdot |= cls == 2 && prev == 2;
        prev = cls;
    }
    if (len == 1 && s[0] == '.')
        return reason(what, R_DOT);
    /* ".." anywhere is refused, not only as the whole name: no key can ever
     * read as a path step, whatever a later use does with it. */
    if (dotdot)
        return reason(what, R_DOTDOT);
    return NULL;
}

bool hc_name_char(unsigned char c)
{
    return name_class[c] != 0;
}

bool hc_node_name_ok(const char *s, size_t len)
{
    return len <= HC_MAX_NODE && hc_name_invalid("name", s, len) == NULL;
}
