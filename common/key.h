/* Validation of keys and namespaces, shared by daemon and client. */
#ifndef HC_KEY_H
#define HC_KEY_H

#include <stddef.h>

#include "hicache_defs.h"

#define HC_KEY_MAX ((unsigned)HC_MAX_KEY)
#define HC_NS_MAX ((unsigned)HC_MAX_NS)

/* A key or namespace is 1..256 characters of [A-Za-z0-9_.-], and not "." or
 * "..". Returns NULL when s[0..len) is valid, else a static readable reason
 * ("key is empty", "key is longer than 256 characters", "key contains '/'",
 * "key contains a NUL byte", "key contains a space", "key contains '..'", ...).
 * what is "key" or "namespace" and begins the reason. */
const char *hc_name_invalid(const char *what, const char *s, size_t len);

#endif
