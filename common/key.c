/* Validation of keys and namespaces: 1..256 characters of [A-Za-z0-9_.-],
 * not "." and without "..". Keys never become paths; the rule keeps them printable,
 * unambiguous in logs and safe in any later use. */
#include "key.h"

#include <string.h>

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

static int name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Returns NULL when s[0..len) is a valid key or namespace, else a static
 * reason that begins with what ("key", "namespace"; anything else reads
 * "name"). The first offending byte decides the reason. Thread-safe. */
const char *hc_name_invalid(const char *what, const char *s, size_t len)
{
    size_t i;

    if (len == 0 || s == NULL)
        return reason(what, R_EMPTY);
    if (len > HC_KEY_MAX)
        return reason(what, R_LONG);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!name_char_ok(c))
            return reason(what, bad_char(c));
    }
    if (len == 1 && s[0] == '.')
        return reason(what, R_DOT);
    /* ".." anywhere is refused, not only as the whole name: no key can ever
     * read as a path step, whatever a later use does with it. */
    if (memmem(s, len, "..", 2))
        return reason(what, R_DOTDOT);
    return NULL;
}
